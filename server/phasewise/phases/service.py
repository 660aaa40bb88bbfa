"""The phases: plan, code, review (and any phase of the user's own), as plain async calls.

``PhaseService.run`` gathers the phase's context from the workspace (``phases.context``, in a
thread), builds the prompt, asks the router, and turns the answer into a ``PhaseResult``: text for
``plan``, a ``ChangeSet`` (every file the change touches, each with its diff) for ``code``,
findings for ``review``. A code answer whose blocks do not match gets one repair round (the model
is told which block failed and why); if that fails too, the phase fails and nothing is applied.
It applies nothing itself: whoever called it (the LSP edge, the CLI) applies the change with its
own safety checks. Knows nothing of LSP.
May not import: edge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from phasewise.phases.context import CHANGED, NAMED, Context, Workspace, gather
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
from phasewise.phases.edits import ChangeSet, EditFailure, FileText, change_from_answer, line_edits
from phasewise.phases.prompts import (
    EDIT_TOOL_SPEC,
    FINDINGS_TOOL_SPEC,
    ToolSpec,
    context_blocks,
    system_prompt,
    user_prompt,
)
from phasewise.problems import Problem, ProblemKind
from phasewise.router.messages import cancelled
from phasewise.router.router import (
    Attempt,
    Engine,
    Observer,
    Preflight,
    RouteFailed,
    Router,
    output_budget,
    phase_request,
    uses_tool,
)
from phasewise.router.routes import PhaseRoute, Route
from phasewise.settings import DEFAULT_CONTEXT_TOKENS, LoadedSettings

_TOOLS: dict[str, ToolSpec] = {"code": EDIT_TOOL_SPEC, "review": FINDINGS_TOOL_SPEC}


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



@dataclass(slots=True)
class PhaseResult:
    """The contract's phase result, plus what the caller needs to apply or publish it."""

    ok: bool
    run_id: str
    phase: str
    provider: str | None = None
    model: str | None = None
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    error: Problem | None = None
    edits: list[LineEdit] = field(default_factory=list)
    new_text: str | None = None
    diff: str | None = None
    findings: list[Finding] = field(default_factory=list)
    incomplete: bool = False
    fallback_used: bool = False
    cost_usd: float | None = None
    applied: bool | None = None
    range: LineRange | None = None
    changes: ChangeSet | None = None
    context: Context | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok, "runId": self.run_id, "phase": self.phase,
            "provider": self.provider, "model": self.model, "text": self.text,
            "usage": {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens},
            "latencyMs": {
                "firstToken": round(self.first_token_ms, 1) if self.first_token_ms is not None else None,
                "total": round(self.total_ms, 1),
            },
            "attempts": [a.to_json() for a in self.attempts],
            "error": self.error.to_json() if self.error else None,
            "costUsd": round(self.cost_usd, 6) if self.cost_usd is not None else None,
            "fallbackUsed": self.fallback_used,
        }
        if self.incomplete:
            out["incomplete"] = True
        if self.phase == "code" or self.edits:
            out["edits"] = [
                {"startLine": e.start, "endLine": e.end, "newText": e.new_text} for e in self.edits
            ]
            out["diff"] = self.diff
            out["applied"] = self.applied
            out["files"] = self.changes.to_json() if self.changes else []
        if self.phase == "review" or self.findings:
            out["findings"] = [f.to_json() for f in self.findings]
        if self.context is not None:
            out["context"] = self.context.to_json()
        return out


def cost(route: Route, input_tokens: int, output_tokens: int) -> float | None:
    info = route.info
    if info.input_price_per_mtok is None or info.output_price_per_mtok is None:
        return None
    return (input_tokens * info.input_price_per_mtok + output_tokens * info.output_price_per_mtok) / 1e6


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class PhaseService:
    """Runs phases for one engine; stateless between calls apart from the engine's shared state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def route(self, loaded: LoadedSettings, phase: str) -> PhaseRoute:
        return self.engine.resolver(loaded).phase(phase)

    def prepare(self, phase: str, inp: PhaseInput,
                context: Context | None = None) -> tuple[str, str, ToolSpec | None, LineRange]:
        doc = inp.document
        rng = doc.clamp(inp.range)
        tool = _TOOLS.get(phase)
        ws = inp.workspace
        path = (ws.rel(doc.uri) if ws else None) or doc.path
        return (
            phase,
            user_prompt(
                instruction=inp.instruction or "Review this code.",
                path=path, language=doc.language_id(), text=doc.excerpt(rng),
                first_line=rng.start + 1, plan=inp.plan, change=inp.change,
                context=related_blocks(context),
            ),
            tool,
            rng,
        )

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
            sent = len(doc.excerpt(rng) if rng else doc.text) // 4
            budget = min(budget, max(0, (window - output_budget(main)) // 2 - sent))
        return await asyncio.to_thread(
            gather, inp.workspace, document_uri=doc.uri, document_text=doc.text,
            range_text=doc.excerpt(rng) if rng else None, instruction=inp.instruction,
            plan=inp.plan if phase == "code" else None, budget_tokens=budget, changed=inp.changed_files,
        )

    def preflight(self, loaded: LoadedSettings, phase: str, inp: PhaseInput) -> Problem | None:
        """Offline checks of one phase: settings, key, model, tool calling, context window."""
        phase_route = self.route(loaded, phase)
        _, user, tool, _ = self.prepare(phase, inp)
        main = phase_route.main
        check = Preflight(
            needs_tool=tool is not None,
            prompt_chars=len(user) + 2000,
            output_tokens=output_budget(main) if main else 0,
        )
        return Router(self.engine, loaded).check(phase_route, check)

    async def run(self, loaded: LoadedSettings, phase: str, inp: PhaseInput,
                  observer: Observer) -> PhaseResult:
        run_id = inp.run_id or new_run_id()
        started = time.perf_counter()
        phase_route = self.route(loaded, phase)
        main = phase_route.main
        result = PhaseResult(ok=False, run_id=run_id, phase=phase,
                             provider=main.provider if main else None, model=main.model if main else None)
        context = await self.gather(loaded, phase, inp)
        result.context = context
        if context is not None and (context.files or context.repo_map):
            names = ", ".join(f.path for f in context.files[:3]) + (" …" if len(context.files) > 3 else "")
            observer.on_status(f"context: {len(context.files)} related file{'s' if len(context.files) != 1 else ''}"
                               f"{f' ({names})' if names else ''}"
                               f"{' + repository map' if context.repo_map else ''}, {context.tokens:,} tokens")
        _, user, tool, rng = self.prepare(phase, inp, context)
        result.range = rng
        if len(user) > MAX_DOCUMENT_CHARS:  # what would be sent: the range, or the whole document
            who = f" ({main.provider}/{main.model})" if main else ""
            what = "the selected range" if inp.range is not None else "the document"
            result.error = Problem(
                ProblemKind.CONTEXT_LENGTH,
                f"The {phase} phase{who} would send {len(user):,} characters of {what}, over the "
                f"{MAX_DOCUMENT_CHARS:,} Phasewise sends at once: select a smaller range and run it again. "
                f"Nothing was sent.",
                phase=phase, provider=result.provider, model=result.model,
            )
            return result
        router = Router(self.engine, loaded)
        check = Preflight(needs_tool=tool is not None, prompt_chars=len(user) + 2000,
                          output_tokens=output_budget(main) if main else 0)

        def build(route: Route, text: str = user) -> Any:
            use_tools = tool is not None and uses_tool(route)
            system = system_prompt(phase, tool=tool, use_tools=use_tools, edit_format=route.edit_format)
            return phase_request(route, system=system, user=text, tool=tool)

        try:
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
        result.input_tokens, result.output_tokens = c.usage.input_tokens, c.usage.output_tokens
        result.first_token_ms = c.first_token_ms
        result.cost_usd = cost(served.route, result.input_tokens, result.output_tokens)
        try:
            if phase == "code":
                try:
                    self._code_result(result, served.route, c.text, c.tool_input, inp, rng, context)
                except EditFailure as failed:
                    await self._repair(result, router, served, build, user, failed, check, observer,
                                       inp, rng, context)
            elif phase == "review":
                answer = structured_answer(c.tool_input, c.text)
                changed = {f.path: Document(f.uri, f.text) for f in context.files
                           if f.reason == CHANGED} if context else {}
                result.findings = parse_findings(answer, inp.document, rng, changed)
                result.text = str(answer.get("summary") or c.text or "")
        except EditFailure as err:
            f = err.first
            result.error = Problem(
                ProblemKind.BAD_REQUEST,
                f"{result.provider}/{result.model} answered the code phase with edits that do not apply, "
                f"even after being told why: {f.path}, {f.reason}"
                + (f" (and {len(err.failures) - 1} more)" if len(err.failures) > 1 else "")
                + ". Nothing was applied; retry, or set `phasewise.phases.code.editFormat` (e.g. \"whole\").",
                phase=phase, provider=result.provider, model=result.model,
            )
            result.edits, result.new_text, result.diff, result.changes = [], None, None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        except AnswerError as err:
            result.error = Problem(
                ProblemKind.BAD_REQUEST,
                f"{served.route.spec.name} ({served.route.provider}) answered the {phase} phase "
                f"({served.route.model}) in a shape Phasewise cannot use: {err}. Nothing was applied; "
                f"retry, or set `phasewise.phases.{phase}.editFormat`.",
                phase=phase, provider=served.route.provider, model=served.route.model,
            )
            result.edits, result.new_text, result.diff, result.changes = [], None, None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        result.ok = True
        result.total_ms = (time.perf_counter() - started) * 1000
        return result


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
                return None
            found = ws.resolve(name, named)
            if found is not None and found.path == rel:
                return main
            return found

        return main, resolve

    def _code_result(self, result: PhaseResult, route: Route, text: str, tool_input: dict[str, Any] | None,
                     inp: PhaseInput, rng: LineRange, context: Context | None) -> None:
        main, resolve = self._resolver(inp, context)
        windows = {main.path: rng} if inp.range is not None else {}
        changes = change_from_answer(route.edit_format, text=text, tool_input=tool_input, resolve=resolve,
                                     document=main, windows=windows)
        result.changes = changes
        mine = changes.get(main.path)
        result.new_text = mine.after if mine else inp.document.text
        result.edits = line_edits(inp.document.text, result.new_text) if mine else []
        result.diff = changes.diff
        summary = ""
        if route.edit_format in ("tool", "text"):
            try:
                summary = str(structured_answer(tool_input, text).get("summary") or "")
            except AnswerError:
                summary = ""
        result.text = summary or text or ""

    async def _repair(self, result: PhaseResult, router: Router, served: Any, build: Any, user: str,
                      failed: EditFailure, check: Preflight, observer: Observer, inp: PhaseInput,
                      rng: LineRange, context: Context | None) -> None:
        """One repair round on the route that answered; raises ``EditFailure`` when it fails again."""
        if result.attempts and result.attempts[-1].outcome == "ok":
            result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
        f = failed.first
        observer.on_status(f"edit block {f.block} of {f.path} did not apply: asking "
                           f"{served.route.label} once more")
        tool_input = served.completion.tool_input
        previous = served.completion.text or (json.dumps(tool_input, ensure_ascii=False) if tool_input else "")
        repair_user = (f"{user}\n<previous_answer>\n{previous.rstrip()}\n</previous_answer>\n"
                       f"<repair>\n{failed.repair_prompt()}\n</repair>")
        route = served.route
        only = PhaseRoute(route.phase, routes=(route,))
        try:
            again = await router.serve(only, lambda r: build(r, repair_user), check, observer)
        except RouteFailed as err:
            result.attempts += err.attempts
            raise failed from None
        result.attempts += again.attempts
        c = again.completion
        result.input_tokens += c.usage.input_tokens
        result.output_tokens += c.usage.output_tokens
        result.cost_usd = cost(route, result.input_tokens, result.output_tokens)
        try:
            self._code_result(result, route, c.text, c.tool_input, inp, rng, context)
        except EditFailure:
            if result.attempts and result.attempts[-1].outcome == "ok":
                result.attempts[-1] = dataclasses.replace(result.attempts[-1], outcome="edit-failed")
            raise


def related_blocks(context: Context | None) -> str:
    """The related files and repository map of ``context``, in the prompt's ``<file>`` layout."""
    if context is None:
        return ""
    from phasewise.phases.documents import Document as _Doc

    files = [(f.path, _Doc(f.uri, "").language_id(), f.reason, f.text) for f in context.files]
    return context_blocks(files, context.repo_map)


def cancelled_result(phase: str, run_id: str, route: PhaseRoute) -> PhaseResult:
    """The result of a phase the user cancelled."""
    main = route.main
    provider, model = (main.provider, main.model) if main else (None, None)
    return PhaseResult(ok=False, run_id=run_id, phase=phase, provider=provider, model=model,
                       error=cancelled(phase=phase, provider=provider, model=model))
