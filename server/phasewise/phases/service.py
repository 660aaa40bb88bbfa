"""The phases: plan, code, review (and any phase of the user's own), as plain async calls.

``PhaseService.run`` gathers the phase's context from the workspace (``phases.context``, in a
thread), builds the prompt (``prompts.layout``: what is stable first, for the providers' prompt
caches; the edit format's instructions from ``phases.formats``), asks the router, and hands the
answer to its kind (``phases.answers``: text for ``plan``, a ``ChangeSet`` for ``code`` with one
repair round, findings for ``review``), which fills the ``PhaseResult`` (``phases.results``). An
identical request may be answered from the response cache (``cache.responses``). It applies
nothing itself: whoever called it (the LSP edge, the CLI) applies the change with its own safety
checks. Knows nothing of LSP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phasewise.phases.agent import AGENT_TEXT, AgentLoop, apply_outcome
from phasewise.phases.answers import ANSWERS, CutAtLimit, answer_tool, cut_note, unusable
from phasewise.phases.commands import AllowedCommands, CommandTrust, PhaseCommands, command_tool, key_variables
from phasewise.phases.context import NAMED, Context, gather, sensitive
from phasewise.phases.documents import MAX_DOCUMENT_CHARS, AnswerError, LineRange, structured_answer
from phasewise.phases.formats import FORMATS, TOOL_CALL, EditFormat
from phasewise.phases.prompts import (
    FINDINGS_TOOL_SPEC,
    RUN_TOOLS,
    Layout,
    ToolSpec,
    context_blocks,
    document_block,
    layout,
)
from phasewise.phases.qa import QA_TOOL_SPEC, take_verdict
from phasewise.phases.response_cache import ResponseCache, request_key, responses_dir
from phasewise.phases.results import PhaseInput, PhaseResult, cancelled_result, new_run_id
from phasewise.phases.scratch import ScratchPlace
from phasewise.phases.tools import AgentWorkspace, tools_for
from phasewise.phases.workspace import uri_to_path
from phasewise.problems import Problem, ProblemKind
from phasewise.providers.base import ChatRequest
from phasewise.providers.catalogue import KEY_ORIGINS
from phasewise.providers.turns import Turn
from phasewise.router.router import (
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
from phasewise.settings import DEFAULT_CONTEXT_TOKENS, AgentSettings, LoadedSettings
from phasewise.tokens import estimate_tokens

_MAX_INSTRUCTIONS = 100_000  # characters of an instructions file that are sent


def cache_key(workspace: str, route: Route) -> str:
    """``prompt_cache_key``: stable per workspace and route, naming neither."""
    digest = hashlib.sha256(f"{workspace}\0{route.label}".encode()).hexdigest()
    return f"phasewise-{digest[:24]}"


class PhaseService:
    """Runs phases for one engine; stateless between calls apart from the engine's shared state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The response cache's clock and directory (tests inject both; None: the user's cache dir).
        self.clock: Callable[[], float] = time.time
        self.cache_dir: Path | None = None
        self.allowed_commands: AllowedCommands | None = None  # None: the user's state directory, read each time

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
        return phase, "\n".join(b for b in blocks if b), answer_tool(kind or phase), rng

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
        fmt = FORMATS.of(main) if main else FORMATS.answer(None, kind)
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

    async def gather(self, loaded: LoadedSettings, phase: str, inp: PhaseInput,
                     phase_route: PhaseRoute | None = None) -> Context | None:
        """The phase's related files (off the event loop), or None without a workspace."""
        if inp.workspace is None:
            return None
        ps = loaded.settings.phases.get(phase)
        budget = ps.context_tokens if ps else DEFAULT_CONTEXT_TOKENS
        doc = inp.document
        rng = doc.clamp(inp.range) if inp.range is not None else None
        phase_route = phase_route or self.route(loaded, phase)
        main = phase_route.main
        window = main.info.context_window if main else None
        if main is not None and window:  # related files never crowd out the document and the answer
            sent = estimate_tokens(doc.excerpt(rng) if rng else doc.text)
            budget = min(budget, max(0, (window - output_budget(main)) // 2 - sent))
        return await asyncio.to_thread(
            gather, inp.workspace, document_uri=doc.uri, document_text=doc.text,
            range_text=doc.excerpt(rng) if rng else None, instruction=inp.instruction,
            plan=inp.plan if phase_route.kind == "code" else None, budget_tokens=budget,
            changed=inp.changed_files, users_words=inp.users_words,
        )

    def preflight(self, loaded: LoadedSettings, phase: str, inp: PhaseInput) -> Problem | None:
        """Offline checks of one phase: settings, key, model, tool calling, context window."""
        phase_route = self.route(loaded, phase)
        kind = phase_route.kind
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
        fmt = FORMATS.of(route)
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
                  observer: Observer, phase_route: PhaseRoute | None = None) -> PhaseResult:
        """One phase: its context, its request on its routes (``phase_route``, as the runner resolved
        it once; else resolved here), its answer handled by its kind."""
        run_id = inp.run_id or new_run_id()
        started = time.perf_counter()
        if inp.base:  # a run's change not applied yet: seen as the files' text, the document's included
            if inp.workspace is not None:
                inp.workspace = inp.workspace.overlaid(inp.base)
            if (mine := inp.base.by_uri(inp.document.uri)) is not None:
                inp.document = dataclasses.replace(inp.document, text=mine.after)
        phase_route = phase_route or self.route(loaded, phase)
        main = phase_route.main
        kind = phase_route.kind
        result = PhaseResult(ok=False, run_id=run_id, phase=phase, kind=kind,
                             provider=main.provider if main else None, model=main.model if main else None,
                             round=inp.round)
        instructions = self.instructions(loaded, phase, inp)
        if isinstance(instructions, Problem):
            result.error = instructions
            return result
        context = await self.gather(loaded, phase, inp, phase_route)
        result.context = context
        if context is not None and (context.files or context.repo_map):
            names = ", ".join(f.path for f in context.files[:3]) + (" …" if len(context.files) > 3 else "")
            observer.on_status(f"context: {len(context.files)} related file{'s' if len(context.files) != 1 else ''}"
                               f"{f' ({names})' if names else ''}"
                               f"{' + repository map' if context.repo_map else ''}, {context.tokens:,} tokens")
        _, context_text, tool, rng = self.prepare(phase, inp, context, kind)
        result.range = rng
        if tool is not None and main is not None and FORMATS.of(main) is not FORMATS.answer(main.edit_format, kind):
            observer.on_status(f"{main.spec.name} ignores a tool_choice that names a tool: the {phase} phase's "
                               f"answer comes in a fenced JSON block instead of a {tool.name} call")
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
        own = loaded.settings.phases.get(phase)
        agent = own.agent if own is not None else None
        if kind == "qa":  # a qa phase always works in steps: it runs its commands
            agent = agent or AgentSettings()
            if (unfit := self._qa_unfit(loaded, phase, inp, agent, result)) is not None:
                result.error = unfit
                return result
        if agent is not None and inp.workspace is not None and main is not None:
            await self._in_steps(loaded, phase, inp, observer, phase_route, agent, context, context_text,
                                 instructions, result, rng)
            result.total_ms = (time.perf_counter() - started) * 1000
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
        result.add_usage(c.usage, served.route.info)

        async def ask_again(route: Route, repair: str) -> Served:
            only = PhaseRoute(route.phase, routes=(route,), kind=route.kind)
            return await router.serve(only, lambda r: build(r, repair), check, observer)

        repaired = False
        try:
            repaired = await ANSWERS[kind].take(result, served, inp, rng, context, ask_again, observer)
        except AnswerError as err:
            result.error = unusable(err, result, served, phase)
            result.edits, result.new_text, result.diff, result.changes = [], None, None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        if c.cut_at_limit:  # a code answer cut off never gets here; a plan or a review is still worth reading
            result.incomplete = True
            result.note = cut_note(served.route, phase, kind)
        elif own is not None and own.agent is not None:  # set to work in steps, but there was no workspace
            result.note = (f"The {phase} phase works in steps (`phasewise.phases.{phase}.agent`) only in a "
                           f"workspace folder; this document lies in none, so it was one request and one answer.")
        result.ok = True
        result.total_ms = (time.perf_counter() - started) * 1000
        if responses is not None and key is not None and not (result.cached or served.fallback_used or repaired):
            responses.put(key, c)
        return result

    async def _in_steps(self, loaded: LoadedSettings, phase: str, inp: PhaseInput, observer: Observer,
                        phase_route: PhaseRoute, agent: AgentSettings, context: Context | None, context_text: str,
                        instructions: str | None, result: PhaseResult, rng: LineRange) -> None:
        """The phase as a bounded agent (``phases.agent``): its loop, then its answer by its kind."""
        kind = phase_route.kind
        assert inp.workspace is not None
        allowed = frozenset(f.path for f in context.files if f.reason == NAMED) if context else frozenset()
        commands = self.commands_of(loaded, phase, inp, agent)
        ws = AgentWorkspace(inp.workspace, allowed, commands)
        tools = tools_for(kind, agent.tools)
        if commands is not None:
            tools = (*tools, command_tool(commands.described()))
        finish = FINDINGS_TOOL_SPEC if kind == "review" else QA_TOOL_SPEC if kind == "qa" else None
        declared = (*tools, *((finish,) if finish is not None else ()))
        caching = loaded.settings.prompt_caching
        text = layout(phase, instruction=inp.instruction or "Review this code.", context=[context_text],
                      answer=AGENT_TEXT.get(kind, AGENT_TEXT["plan"]), plan=inp.plan, change=inp.change, kind=kind,
                      instructions=instructions)
        folder = str(inp.workspace.folders[0]) if inp.workspace.folders else os.path.dirname(inp.document.path)

        def build(route: Route, turns: tuple[Turn, ...]) -> ChatRequest:
            return phase_request(route, system=text.system, context=text.context, user=text.user, tool=None,
                                 tools=declared, caching=caching, cache_key=cache_key(folder, route),
                                 turns=turns, may_call_tools=True)

        check = Preflight(tool_use=None, prompt_chars=text.chars() + 2000,
                          output_tokens=output_budget(phase_route.main) if phase_route.main else 0, agent=True)
        scratch = None
        # a code phase's commands run on its staged change, and any phase's in a run on the run's change so far
        # (``inp.base``, in the overlaid workspace's open documents): never on the user's files
        if commands is not None and (kind == "code" or inp.base):
            at = commands.folder
            scratch = ScratchPlace(at, overlays={uri_to_path(u): t for u, (t, _) in inp.workspace.open_docs.items()},
                                   staged=lambda: ws.staged_files(at))
            commands.place = scratch
        loop = AgentLoop(phase=phase, kind=kind, settings=agent, tools=tools, finish=finish, ws=ws,
                         router=Router(self.engine, loaded), phase_route=phase_route, build=build, check=check,
                         observer=observer)
        try:
            out = await loop.run()
        except RouteFailed as failed:  # a step no route could serve: what came before is kept, nothing applies
            apply_outcome(result, loop.out, ws, inp)
            result.changes, result.new_text, result.edits = None, None, []
            result.attempts = [*loop.out.attempts, *failed.attempts]
            result.error = failed.problem
            return
        finally:
            if scratch is not None:  # the copy goes with the phase, however it ended
                await scratch.close()
        apply_outcome(result, out, ws, inp)
        served = out.served
        assert served is not None  # the loop made at least one call, or raised
        result.text = served.completion.text
        if kind == "qa":
            runs = commands.runs if commands is not None else []
            if out.bound is not None:  # no verdict: not passed, and the note names the bound
                result.passed, result.checks = False, [r.to_json() for r in runs]
                result.ok = True
                return
            c = served.completion
            try:
                take_verdict(result, structured_answer(c.tool_input, c.text), inp, ws, runs,
                             commands.names if commands is not None else ())
            except AnswerError as err:
                result.error = unusable(err, result, served, phase)
                return
            result.ok = True
            return
        if kind == "code" or out.bound is not None:
            result.ok = True
            return
        try:
            await ANSWERS[kind].take(result, served, inp, rng, context, None, observer)
        except AnswerError as err:
            result.error = unusable(err, result, served, phase)
            return
        result.ok = True

    @staticmethod
    def _qa_unfit(loaded: LoadedSettings, phase: str, inp: PhaseInput, agent: AgentSettings,
                  result: PhaseResult) -> Problem | None:
        """Why a qa phase cannot run here: no command to run, or no workspace to run it in."""
        setting = f"phasewise.phases.{phase}.agent.commands"
        names = [n for n in agent.commands if n in loaded.settings.commands]
        if not names:
            unknown = [n for n in agent.commands if n not in loaded.settings.commands]
            said = (f"names {', '.join(f'`{n}`' for n in unknown)}, which `phasewise.commands` does not define"
                    if unknown else "is empty")
            return Problem(ProblemKind.CONFIG,
                           f"The {phase} phase is a qa phase, which runs the project's commands, but `{setting}` "
                           f"{said}: define them under `phasewise.commands` (e.g. `{{\"test\": \"pytest -q\"}}`) and "
                           f"list them there. Nothing was sent.",
                           phase=phase, provider=result.provider, model=result.model)
        if inp.workspace is None or not inp.workspace.folders:
            return Problem(ProblemKind.CONFIG,
                           f"The {phase} phase is a qa phase: it runs commands in a workspace folder, and "
                           f"{inp.document.path or inp.document.uri} lies in none. Open the project's folder. "
                           f"Nothing was sent.", phase=phase, provider=result.provider, model=result.model)
        return None

    def commands_of(self, loaded: LoadedSettings, phase: str, inp: PhaseInput,
                    agent: AgentSettings) -> PhaseCommands | None:
        """The named commands ``phase`` may run (``agent.commands``), asked for the workspace folder of
        its document, through the one trust check; None when it runs none. They run in that folder,
        or, for a code phase, in a scratch copy of it (``_in_steps`` gives them the place)."""
        names = tuple(n for n in agent.commands if n in loaded.settings.commands)
        ws = inp.workspace
        if not names or ws is None or not ws.folders:
            return None
        located = ws.locate(Path(inp.document.path)) if inp.document.path else None
        folder = located[0] if located is not None else ws.folders[0]
        trust = CommandTrust(self.allowed_commands or AllowedCommands(), inp.ask_command)
        return PhaseCommands(phase, names, loaded, folder, trust, key_variables(loaded, KEY_ORIGINS),
                             check_path=ws.gate.check)

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


def related_blocks(context: Context | None) -> str:
    """The related files and repository map of ``context``, in the prompt's ``<file>`` layout."""
    if context is None:
        return ""
    from phasewise.phases.documents import Document as _Doc

    files = [(f.path, _Doc(f.uri, "").language_id(), f.reason, f.text) for f in context.files]
    return context_blocks(files, context.repo_map)


# What callers import from here; the values live in ``results`` and ``answers``.
__all__ = ["CutAtLimit", "PhaseInput", "PhaseResult", "PhaseService", "cache_key", "cancelled_result", "new_run_id",
           "related_blocks"]
