"""The phases: plan, code, review (and any phase of the user's own), as plain async calls.

``PhaseService.run`` gathers the phase's context from the workspace (``phases.context``, in a
thread), builds the prompt (``prompts.layout``: what is stable first, for the providers' prompt
caches), asks the router, and turns the answer into a ``PhaseResult``: text for ``plan``, a
``ChangeSet`` (every file the change touches, each with its diff) for ``code``, findings for
``review``. A code answer whose blocks do not match gets one repair round (the model is told which
block failed and why); if that fails too, the phase fails and nothing is applied. An answer cut
at the output limit: a code answer (or its repair) is refused whole, a plan or a review is kept,
marked ``incomplete``, with a ``note`` naming the limit and the setting that raises it. An identical
request may be answered from the response cache (``cache.responses``). It applies nothing itself:
whoever called it (the LSP edge, the CLI) applies the change with its own safety checks. Knows
nothing of LSP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasewise.gate import PathRefused
from phasewise.phases.context import CHANGED, NAMED, Context, Workspace, gather, sensitive
from phasewise.phases.documents import (
    MAX_DOCUMENT_CHARS,
    AnswerError,
    Document,
    Finding,
    LineEdit,
    LineRange,
    parse_findings,
    structured_answer,
)
from phasewise.phases.edits import ChangeSet, EditFailure, FileText, line_edits
from phasewise.phases.formats import FORMATS, TOOL_CALL, EditFormat
from phasewise.phases.prompts import (
    EDIT_TOOL_SPEC,
    FINDINGS_TOOL_SPEC,
    RUN_TOOLS,
    Layout,
    ToolSpec,
    context_blocks,
    document_block,
    layout,
)
from phasewise.phases.response_cache import ResponseCache, request_key, responses_dir
from phasewise.problems import Problem, ProblemKind
from phasewise.providers.pricing import cost, saving
from phasewise.router.messages import cancelled, provider_label
from phasewise.router.router import (
    Attempt,
    Engine,
    Observer,
    Preflight,
    RouteFailed,
    Router,
    Served,
    output_budget,
    phase_request,
)
from phasewise.router.routes import PhaseRoute, Route
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.settings import DEFAULT_CONTEXT_TOKENS, LoadedSettings, phase_kind
from phasewise.tokens import estimate_tokens

_TOOLS: dict[str, ToolSpec] = {"code": EDIT_TOOL_SPEC, "review": FINDINGS_TOOL_SPEC}  # by the phase's kind
_MAX_INSTRUCTIONS = 100_000  # characters of an instructions file that are sent


class CutAtLimit(AnswerError):
    """A code answer (or its repair round's) stopped at the output limit: none of its edits is applied."""


@dataclass(slots=True)
class PhaseInput:
    document: Document
    instruction: str
    range: LineRange | None = None
    plan: str | None = None
    change: str | None = None
    run_id: str | None = None
    workspace: Workspace | None = None  # folders and open buffers: related files go with the document
    changed_files: tuple[str, ...] = ()  # review after code: the files the change touched
    # The instruction is the user's own words (typed: a command's argument, `-i`), not the
    # repository's (a `phasewise:` comment, a phase's default): only then may it name credential files.
    users_words: bool = False


def _code_view(result: PhaseResult) -> bool:
    return (result.kind or result.phase) == "code" or bool(result.edits)


def _review_view(result: PhaseResult) -> bool:
    return (result.kind or result.phase) == "review" or bool(result.findings)


@dataclass(slots=True)
class PhaseResult(Jsonable):
    """The contract's phase result, plus what the caller needs to apply or publish it."""

    ok: bool
    run_id: str
    phase: str
    # what the phase's answer is (plan, code, review): written only for a phase of the user's own
    kind: str = field(default="", metadata=json_rule(when=lambda r: bool(r.kind) and r.kind != r.phase))
    provider: str | None = None
    model: str | None = None
    text: str = ""
    input_tokens: int = field(default=0, metadata=json_rule(key="usage.inputTokens"))
    output_tokens: int = field(default=0, metadata=json_rule(key="usage.outputTokens"))
    cache_read_tokens: int = field(default=0, metadata=json_rule(key="usage.cacheReadTokens"))
    cache_write_tokens: int = field(default=0, metadata=json_rule(key="usage.cacheWriteTokens"))
    first_token_ms: float | None = field(default=None, metadata=json_rule(key="latencyMs.firstToken", round=1))
    total_ms: float = field(default=0.0, metadata=json_rule(key="latencyMs.total", round=1))
    attempts: list[Attempt] = field(default_factory=list)
    error: Problem | None = None
    cost_usd: float | None = field(default=None, metadata=json_rule(round=6))
    fallback_used: bool = False
    incomplete: bool = field(default=False, metadata=json_rule(omit="falsy"))
    # what the user should know about a result that is still ok (a plan cut at the output limit)
    note: str | None = field(default=None, metadata=json_rule(omit="none"))
    cached: bool = field(default=False, metadata=json_rule(omit="falsy"))  # answered from Phasewise's response cache
    # what the provider's prompt cache saved against list input prices
    saved_usd: float | None = field(default=None, metadata=json_rule(omit="none", round=6))
    edits: list[LineEdit] = field(default_factory=list, metadata=json_rule(when=_code_view))
    diff: str | None = field(default=None, metadata=json_rule(when=_code_view))
    applied: bool | None = field(default=None, metadata=json_rule(when=_code_view))
    # every file the change touches, each with its diff
    changes: ChangeSet | None = field(default=None, metadata=json_rule(
        key="files", when=_code_view, encode=lambda c: list(c.files) if c else []))
    findings: list[Finding] = field(default_factory=list, metadata=json_rule(when=_review_view))
    # what the phase sent besides its instruction: [{path, reason, tokens}]
    context: Context | None = field(default=None, metadata=json_rule(omit="none", encode=lambda c: c.sent()))
    new_text: str | None = field(default=None, metadata=json_rule(skip=True))
    range: LineRange | None = field(default=None, metadata=json_rule(skip=True))
    shown_at: str | None = field(default=None, metadata=json_rule(omit="none"))  # the file a plan was shown in

    @json_property(omit="truthy")
    def sent(self) -> bool:
        """Whether any request reached a provider (False: settings, preflight, a cooldown or the
        response cache answered; ``sent: false`` in JSON then, and only then)."""
        return any(a.sent for a in self.attempts)



def cache_key(workspace: str, route: Route) -> str:
    """``prompt_cache_key``: stable per workspace and route, naming neither."""
    digest = hashlib.sha256(f"{workspace}\0{route.label}".encode()).hexdigest()
    return f"phasewise-{digest[:24]}"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class PhaseService:
    """Runs phases for one engine; stateless between calls apart from the engine's shared state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The response cache's clock and directory (tests inject both; None: the user's cache dir).
        self.clock: Callable[[], float] = time.time
        self.cache_dir: Path | None = None

    def route(self, loaded: LoadedSettings, phase: str) -> PhaseRoute:
        return self.engine.resolver(loaded).phase(phase)

    def prepare(self, phase: str, inp: PhaseInput, context: Context | None = None,
                kind: str | None = None) -> tuple[str, str, ToolSpec | None, LineRange]:
        """The phase, the text of its context blocks (related files, repository map, then the
        document), its tool (by its ``kind``) and its range."""
        doc = inp.document
        rng = doc.clamp(inp.range)
        ws = inp.workspace
        path = (ws.rel(doc.uri) if ws else None) or doc.path
        blocks = [related_blocks(context),
                  document_block(path=path, language=doc.language_id(), text=doc.excerpt(rng),
                                 first_line=rng.start + 1)]
        return phase, "\n".join(b for b in blocks if b), _TOOLS.get(kind or phase), rng

    @staticmethod
    def layout(phase: str, inp: PhaseInput, context: str, tool: ToolSpec | None, fmt: EditFormat,
               kind: str | None = None, instructions: str | None = None) -> Layout:
        """The request's text; a phase with a structured answer (``tool``) ends its own block with
        ``fmt``'s instructions."""
        return layout(phase, instruction=inp.instruction or "Review this code.", context=[context],
                      answer=fmt.prompt(tool) if tool is not None else None, plan=inp.plan, change=inp.change,
                      kind=kind, instructions=instructions)

    def check(self, phase: str, inp: PhaseInput, context: str, tool: ToolSpec | None, main: Route | None,
              kind: str, instructions: str | None) -> Preflight:
        """The preflight of ``phase`` on its main route ``main``. The size counts a structured
        answer's instructions as a tool call's (the 2,000 characters of slack stand for the tools'
        schemas)."""
        fmt = FORMATS.answer(main.edit_format if main else None, kind)
        size = self.layout(phase, inp, context, tool, TOOL_CALL if fmt.structured else fmt, kind,
                           instructions).chars()
        return Preflight(tool_use=FORMATS if tool is not None else None, prompt_chars=size + 2000,
                         output_tokens=output_budget(main) if main else 0)

    @staticmethod
    def instructions(loaded: LoadedSettings, phase: str, inp: PhaseInput) -> str | Problem | None:
        """The phase's own ``instructions`` from settings: the text, or the file ``@path`` names in
        the workspace (through its path gate; never a credential file); a ``config`` problem when
        that file is not there, not allowed, or the document lies outside every workspace folder."""
        own = loaded.settings.phases.get(phase)
        text = own.instructions if own is not None else None
        if not text or not text.strip().startswith("@"):
            return text
        name = text.strip()[1:].strip()
        setting = f"phasewise.phases.{phase}.instructions"
        ws = inp.workspace
        if ws is None or not ws.folders or ws.rel(inp.document.uri) is None:
            why = (f"but {inp.document.path} lies outside every workspace folder, and such a document is worked "
                   f"on alone: no file is read for it. Open its folder as a workspace, or write the instructions "
                   f"themselves there")
        else:
            why = "which is not a readable text file in the workspace: fix the path, or write the instructions " \
                  "themselves there"
            for base in ws.folders:
                path = ws.gate.inside(name, base=base)
                found = ws.locate(path) if path is not None else None
                if found is None:
                    continue
                if sensitive(found[1]):
                    why = "which is a credential file: settings may not send one to a provider"
                    break
                raw = ws.gate.read_bytes(path, _MAX_INSTRUCTIONS * 4) if path is not None else None
                if raw is not None:
                    try:
                        return raw.decode("utf-8")[:_MAX_INSTRUCTIONS]
                    except UnicodeDecodeError:
                        break
        return Problem(ProblemKind.CONFIG, f"`{setting}` names {name}, {why}. Nothing was sent.",
                       phase=phase, setting=setting)

    async def gather(self, loaded: LoadedSettings, phase: str, inp: PhaseInput) -> Context | None:
        """The phase's related files (off the event loop), or None without a workspace."""
        if inp.workspace is None:
            return None
        ps = loaded.settings.phases.get(phase)
        budget = ps.context_tokens if ps else DEFAULT_CONTEXT_TOKENS
        doc = inp.document
        rng = doc.clamp(inp.range) if inp.range is not None else None
        main = self.route(loaded, phase).main
        window = main.info.context_window if main else None
        if main is not None and window:  # related files never crowd out the document and the answer
            sent = estimate_tokens(doc.excerpt(rng) if rng else doc.text)
            budget = min(budget, max(0, (window - output_budget(main)) // 2 - sent))
        return await asyncio.to_thread(
            gather, inp.workspace, document_uri=doc.uri, document_text=doc.text,
            range_text=doc.excerpt(rng) if rng else None, instruction=inp.instruction,
            plan=inp.plan if phase_kind(loaded.settings, phase) == "code" else None, budget_tokens=budget,
            changed=inp.changed_files, users_words=inp.users_words,
        )

    def preflight(self, loaded: LoadedSettings, phase: str, inp: PhaseInput) -> Problem | None:
        """Offline checks of one phase: settings, key, model, tool calling, context window."""
        phase_route = self.route(loaded, phase)
        kind = phase_kind(loaded.settings, phase)
        instructions = self.instructions(loaded, phase, inp)
        if isinstance(instructions, Problem):
            return instructions
        _, context, tool, _ = self.prepare(phase, inp, kind=kind)
        check = self.check(phase, inp, context, tool, phase_route.main, kind, instructions)
        return Router(self.engine, loaded).check(phase_route, check)

    def request(self, loaded: LoadedSettings, phase: str, inp: PhaseInput, route: Route,
                context: str, tool: ToolSpec | None, repair: str | None = None,
                instructions: str | None = None) -> Any:
        """The ``ChatRequest`` of ``phase`` on ``route``, laid out for the provider's prompt cache
        unless ``promptCaching`` is off: every phase that answers by tool call declares the same
        tools, and so does a phase answering in text (plan; code in search-replace or whole), which
        requires none, on a model known to call tools at a provider that takes tools without
        requiring one. ``repair`` (a code answer's repair round) goes after the request's blocks."""
        caching = loaded.settings.prompt_caching
        fmt = FORMATS.answer(route.edit_format, route.kind)
        use_tools = tool is not None and fmt.by_tool
        tools: tuple[ToolSpec, ...] = ()
        may_declare = route.info.tool_calling is True and route.spec.tool_choice_none
        if caching and (use_tools or may_declare):
            tools = RUN_TOOLS
        text = self.layout(phase, inp, context, tool, fmt, route.kind, instructions)
        user = f"{text.user}\n{repair}" if repair else text.user
        ws = inp.workspace
        workspace = str(ws.folders[0]) if ws and ws.folders else os.path.dirname(inp.document.path)
        return phase_request(route, system=text.system, context=text.context, user=user,
                             tool=tool if use_tools else None, tools=tools, caching=caching,
                             cache_key=cache_key(workspace, route))

    async def run(self, loaded: LoadedSettings, phase: str, inp: PhaseInput,
                  observer: Observer) -> PhaseResult:
        run_id = inp.run_id or new_run_id()
        started = time.perf_counter()
        phase_route = self.route(loaded, phase)
        main = phase_route.main
        kind = phase_kind(loaded.settings, phase)
        result = PhaseResult(ok=False, run_id=run_id, phase=phase, kind=kind,
                             provider=main.provider if main else None, model=main.model if main else None)
        instructions = self.instructions(loaded, phase, inp)
        if isinstance(instructions, Problem):
            result.error = instructions
            return result
        context = await self.gather(loaded, phase, inp)
        result.context = context
        if context is not None and (context.files or context.repo_map):
            names = ", ".join(f.path for f in context.files[:3]) + (" …" if len(context.files) > 3 else "")
            observer.on_status(f"context: {len(context.files)} related file{'s' if len(context.files) != 1 else ''}"
                               f"{f' ({names})' if names else ''}"
                               f"{' + repository map' if context.repo_map else ''}, {context.tokens:,} tokens")
        _, context_text, tool, rng = self.prepare(phase, inp, context, kind)
        result.range = rng
        sent_chars = len(context_text)
        if sent_chars > MAX_DOCUMENT_CHARS:  # what would be sent: the range (or document) and related files
            who = f" ({main.provider}/{main.model})" if main else ""
            what = "the selected range" if inp.range is not None else "the document"
            result.error = Problem(
                ProblemKind.CONTEXT_LENGTH,
                f"The {phase} phase{who} would send {sent_chars:,} characters of {what}, over the "
                f"{MAX_DOCUMENT_CHARS:,} Phasewise sends at once: select a smaller range and run it again. "
                f"Nothing was sent.",
                phase=phase, provider=result.provider, model=result.model,
            )
            return result
        router = Router(self.engine, loaded)
        check = self.check(phase, inp, context_text, tool, main, kind, instructions)

        def build(route: Route, repair: str | None = None) -> Any:
            return self.request(loaded, phase, inp, route, context_text, tool, repair, instructions)

        responses, key = self._response_cache(loaded, phase, inp, phase_route, build)
        hit = responses.get(key) if responses is not None and key is not None else None
        try:
            if hit is not None and main is not None:
                # Phasewise's own cache: nothing is sent, nothing billed.
                if hit.text and tool is None:
                    observer.on_text(hit.text)
                served = Served(hit, main, [], fallback_used=False)
                result.cached = True
            else:
                served = await router.serve(phase_route, build, check, observer)
        except RouteFailed as failed:
            result.error = failed.problem
            result.attempts = failed.attempts
            if failed.problem.partial_text and tool is None:
                result.text = failed.problem.partial_text
                result.incomplete = True
                # the partial text may come from a fallback: name who wrote it
                result.provider, result.model = failed.problem.provider, failed.problem.model
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        c = served.completion
        result.provider, result.model = served.route.provider, served.route.model
        result.attempts = served.attempts
        result.fallback_used = served.fallback_used
        result.text = c.text
        result.first_token_ms = c.first_token_ms
        _account(result, served.route, c.usage)
        repaired = False
        try:
            if kind == "code":
                if c.cut_at_limit:
                    # whatever edits came before the cut are a part of the change: none is applied
                    raise CutAtLimit("its edits end where the answer was cut off")
                try:
                    self._code_result(result, served.route, c.text, c.tool_input, inp, rng, context)
                except EditFailure as failed:
                    repaired = True
                    await self._repair(result, router, served, build, failed, check, observer, inp, rng, context)
            elif kind == "review":
                answer = structured_answer(c.tool_input, c.text)
                changed = {f.path: Document(f.uri, f.text) for f in context.files
                           if f.reason == CHANGED} if context else {}
                result.findings = parse_findings(answer, inp.document, rng, changed)
                result.text = str(answer.get("summary") or c.text or "")
        except EditFailure as err:
            f = err.first
            more = f" (and {len(err.failures) - 1} more)" if len(err.failures) > 1 else ""
            if all(x.refused for x in err.failures):  # no format would help: the paths are not the workspace's
                message = (f"{result.provider}/{result.model} answered the code phase with a change to a file it "
                           f"may not change, even after being told why: {f.path}, {f.reason}{more}. Nothing was "
                           f"applied: a change stays inside the workspace folders.")
            else:
                message = (f"{result.provider}/{result.model} answered the code phase with edits that do not apply, "
                           f"even after being told why: {f.path}, {f.reason}{more}. Nothing was applied; retry, or "
                           f"set `phasewise.phases.code.editFormat` (e.g. \"whole\").")
            result.error = Problem(ProblemKind.BAD_REQUEST, message, phase=phase, provider=result.provider,
                                   model=result.model)
            result.edits, result.new_text, result.diff, result.changes = [], None, None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        except AnswerError as err:
            if c.cut_at_limit or isinstance(err, CutAtLimit):
                # the answer is unusable because it was cut off, not because the model got the format wrong
                message = (f"{stopped_at_limit(served.route, phase)}: {err}. Nothing was applied; raise "
                           f"`phasewise.phases.{phase}.maxOutputTokens`, or ask for a smaller change.")
            else:
                who = provider_label(served.route.spec.name, served.route.provider)
                message = (f"{who} answered the {phase} phase ({served.route.model}) in a shape Phasewise "
                           f"cannot use: {err}. Nothing was applied; retry, or set "
                           f"`phasewise.phases.{phase}.editFormat`.")
            result.error = Problem(ProblemKind.BAD_REQUEST, message,
                                   phase=phase, provider=served.route.provider, model=served.route.model)
            result.edits, result.new_text, result.diff, result.changes = [], None, None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        if c.cut_at_limit:  # a code answer cut off never gets here; a plan or a review is still worth reading
            result.incomplete = True
            result.note = (f"{stopped_at_limit(served.route, phase)}: the {kind} ends where the answer was cut "
                           f"off. Raise `phasewise.phases.{phase}.maxOutputTokens` for the whole answer, or ask "
                           f"for less.")
        result.ok = True
        result.total_ms = (time.perf_counter() - started) * 1000
        if responses is not None and key is not None and not (result.cached or served.fallback_used or repaired):
            responses.put(key, c)
        return result

    def _response_cache(self, loaded: LoadedSettings, phase: str, inp: PhaseInput, phase_route: PhaseRoute,
                        build: Callable[[Route], Any]) -> tuple[ResponseCache | None, str | None]:
        """The response cache and this phase's key on its main route, when ``cache.responses`` is on."""
        cfg = loaded.settings.cache
        main = phase_route.main
        if not cfg.responses or main is None or phase_route.problem is not None:
            return None, None
        rng = inp.document.clamp(inp.range)
        key = request_key(
            label=main.label, base_url=main.spec.base_url, edit_format=main.edit_format, phase=phase,
            request=build(main),
            extra={"range": [rng.start, rng.end],
                   "document": hashlib.sha256(inp.document.text.encode("utf-8")).hexdigest()},
        )
        return ResponseCache(self.cache_dir or responses_dir(), cfg.ttl_seconds, self.clock), key


    def _resolver(self, inp: PhaseInput, context: Context | None) -> tuple[FileText, Any]:
        """The document as a change sees it, and the resolver of the paths an answer names."""
        doc, ws = inp.document, inp.workspace
        rel = (ws.rel(doc.uri) if ws else None) or doc.path
        main = FileText(rel, doc.uri, doc.text, doc.version)
        sent = {f.path: FileText(f.path, f.uri, f.text, f.version) for f in context.files} if context else {}
        named = frozenset(f.path for f in context.files if f.reason == NAMED) if context else frozenset()

        def resolve(name: str) -> FileText | None:
            name = name.strip().lstrip("@")
            if name in (rel, doc.path, "./" + rel) or (ws is None and name == doc.path.rsplit("/", 1)[-1]):
                return main
            if name in sent:
                return sent[name]
            if ws is None:
                raise PathRefused(name, "is not the document, which lies in no workspace folder and is "
                                        "worked on alone")
            found = ws.resolve(name, named)
            if found is not None and found.path == rel:
                return main
            return found

        return main, resolve

    def _code_result(self, result: PhaseResult, route: Route, text: str, tool_input: dict[str, Any] | None,
                     inp: PhaseInput, rng: LineRange, context: Context | None) -> None:
        main, resolve = self._resolver(inp, context)
        windows = {main.path: rng} if inp.range is not None else {}
        fmt = FORMATS[route.edit_format]
        changes = fmt.change(text=text, tool_input=tool_input, resolve=resolve, document=main, windows=windows)
        result.changes = changes
        mine = changes.get(main.path)
        result.new_text = mine.after if mine else inp.document.text
        result.edits = line_edits(inp.document.text, result.new_text) if mine else []
        result.diff = changes.diff
        result.text = fmt.summary(text, tool_input)

    async def _repair(self, result: PhaseResult, router: Router, served: Any, build: Any,
                      failed: EditFailure, check: Preflight, observer: Observer, inp: PhaseInput,
                      rng: LineRange, context: Context | None) -> None:
        """One repair round on the route that answered; raises ``EditFailure`` when it fails again,
        ``CutAtLimit`` when its answer stopped at the output limit."""
        if result.attempts and result.attempts[-1].outcome == "ok":
            result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
        f = failed.first
        observer.on_status(f"edit block {f.block} of {f.path} did not apply: asking "
                           f"{served.route.label} once more")
        tool_input = served.completion.tool_input
        previous = served.completion.text or (json.dumps(tool_input, ensure_ascii=False) if tool_input else "")
        # after the request's own blocks, so the cached prefix still holds
        repair = (f"<previous_answer>\n{previous.rstrip()}\n</previous_answer>\n"
                  f"<repair>\n{failed.repair_prompt()}\n</repair>")
        route = served.route
        only = PhaseRoute(route.phase, routes=(route,))
        try:
            again = await router.serve(only, lambda r: build(r, repair), check, observer)
        except RouteFailed as err:
            result.attempts += err.attempts
            raise failed from None
        result.attempts += again.attempts
        c = again.completion
        _account(result, route, c.usage)
        if c.cut_at_limit:  # as the first answer: edits before the cut are part of a change, none applies
            raise CutAtLimit("the repair round's edits end where the answer was cut off")
        try:
            self._code_result(result, route, c.text, c.tool_input, inp, rng, context)
        except EditFailure:
            if result.attempts and result.attempts[-1].outcome == "ok":
                result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
            raise


def stopped_at_limit(route: Route, phase: str) -> str:
    """What an answer cut at the output limit is said to be, in the problem or the note."""
    return (f"{provider_label(route.spec.name, route.provider)} stopped answering the {phase} phase "
            f"({route.model}) at its output limit of {output_budget(route)} tokens")


def _account(result: PhaseResult, route: Route, usage: Any) -> None:
    """Add one call's tokens to ``result`` and price them all (a repair round is a second call)."""
    result.input_tokens += usage.input_tokens
    result.output_tokens += usage.output_tokens
    result.cache_read_tokens += usage.cache_read_tokens
    result.cache_write_tokens += usage.cache_write_tokens
    tokens = (result.input_tokens, result.output_tokens, result.cache_read_tokens, result.cache_write_tokens)
    result.cost_usd = cost(route.info, *tokens)
    if result.cost_usd is not None:
        result.saved_usd = saving(route.info, *tokens)


def related_blocks(context: Context | None) -> str:
    """The related files and repository map of ``context``, in the prompt's ``<file>`` layout."""
    if context is None:
        return ""
    from phasewise.phases.documents import Document as _Doc

    files = [(f.path, _Doc(f.uri, "").language_id(), f.reason, f.text) for f in context.files]
    return context_blocks(files, context.repo_map)


def cancelled_result(phase: str, run_id: str, route: PhaseRoute, kind: str = "") -> PhaseResult:
    """The result of a phase the user cancelled."""
    main = route.main
    provider, model = (main.provider, main.model) if main else (None, None)
    return PhaseResult(ok=False, run_id=run_id, phase=phase, kind=kind, provider=provider, model=model,
                       error=cancelled(phase=phase, provider=provider, model=model))
