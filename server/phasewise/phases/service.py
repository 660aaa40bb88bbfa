"""The phases: plan, code, review (and any phase of the user's own), as plain async calls.

``PhaseService.run`` builds the prompt, asks the router, and turns the answer into a
``PhaseResult``: text for ``plan``, a validated edit set and its diff for ``code``, findings for
``review``. It applies nothing: whoever called it (the LSP edge, the CLI) applies the edits with
its own safety checks. Knows nothing of LSP.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasewise.phases.documents import (
    MAX_DOCUMENT_CHARS,
    AnswerError,
    Document,
    Finding,
    LineEdit,
    LineRange,
    apply_edits,
    parse_edits,
    parse_findings,
    structured_answer,
    unified_diff,
)
from phasewise.phases.prompts import (
    EDIT_TOOL_SPEC,
    FINDINGS_TOOL_SPEC,
    RUN_TOOLS,
    Layout,
    ToolSpec,
    document_block,
    layout,
)
from phasewise.phases.response_cache import ResponseCache, request_key, responses_dir
from phasewise.problems import Problem, ProblemKind
from phasewise.router.messages import cancelled
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
from phasewise.serial import Jsonable, json_rule
from phasewise.settings import LoadedSettings

_TOOLS: dict[str, ToolSpec] = {"code": EDIT_TOOL_SPEC, "review": FINDINGS_TOOL_SPEC}


@dataclass(slots=True)
class PhaseInput:
    document: Document
    instruction: str
    range: LineRange | None = None
    plan: str | None = None
    change: str | None = None
    run_id: str | None = None
    workspace: str | None = None  # the workspace folder (``prompt_cache_key``); unset: the document's folder


def _code_view(result: PhaseResult) -> bool:
    return result.phase == "code" or bool(result.edits)


def _review_view(result: PhaseResult) -> bool:
    return result.phase == "review" or bool(result.findings)


@dataclass(slots=True)
class PhaseResult(Jsonable):
    """The contract's phase result, plus what the caller needs to apply or publish it."""

    ok: bool
    run_id: str
    phase: str
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
    cached: bool = field(default=False, metadata=json_rule(omit="falsy"))  # answered from Phasewise's response cache
    # what the provider's prompt cache saved against list input prices
    saved_usd: float | None = field(default=None, metadata=json_rule(omit="none", round=6))
    edits: list[LineEdit] = field(default_factory=list, metadata=json_rule(when=_code_view))
    diff: str | None = field(default=None, metadata=json_rule(when=_code_view))
    applied: bool | None = field(default=None, metadata=json_rule(when=_code_view))
    findings: list[Finding] = field(default_factory=list, metadata=json_rule(when=_review_view))
    new_text: str | None = field(default=None, metadata=json_rule(skip=True))
    range: LineRange | None = field(default=None, metadata=json_rule(skip=True))
    shown_at: str | None = field(default=None, metadata=json_rule(omit="none"))  # the file a plan was shown in


def cost(route: Route, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
         cache_write_tokens: int = 0) -> float | None:
    """The price of one call: uncached input at the input price, cache reads and writes at their
    own prices (unknown: the input price), output at the output price. ``input_tokens`` counts
    every prompt token, cached ones included (``Usage``)."""
    info = route.info
    if info.input_price_per_mtok is None or info.output_price_per_mtok is None:
        return None
    price_in = info.input_price_per_mtok
    read = min(max(0, cache_read_tokens), input_tokens)
    write = min(max(0, cache_write_tokens), input_tokens - read)
    read_price = info.cache_read_price_per_mtok if info.cache_read_price_per_mtok is not None else price_in
    write_price = info.cache_write_price_per_mtok if info.cache_write_price_per_mtok is not None else price_in
    billed_in = (input_tokens - read - write) * price_in + read * read_price + write * write_price
    return (billed_in + output_tokens * info.output_price_per_mtok) / 1e6


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

    def prepare(self, phase: str, inp: PhaseInput) -> tuple[str, str, ToolSpec | None, LineRange]:
        """The phase, its documents' text (what ``MAX_DOCUMENT_CHARS`` bounds), its tool, its range."""
        doc = inp.document
        rng = doc.clamp(inp.range)
        context = document_block(path=doc.path, language=doc.language_id(), text=doc.excerpt(rng),
                                 first_line=rng.start + 1)
        return phase, context, _TOOLS.get(phase), rng

    @staticmethod
    def layout(phase: str, inp: PhaseInput, context: str, tool: ToolSpec | None, use_tools: bool) -> Layout:
        return layout(phase, instruction=inp.instruction or "Review this code.", context=[context],
                      tool=tool, use_tools=use_tools, plan=inp.plan, change=inp.change)

    def preflight(self, loaded: LoadedSettings, phase: str, inp: PhaseInput) -> Problem | None:
        """Offline checks of one phase: settings, key, model, tool calling, context window."""
        phase_route = self.route(loaded, phase)
        _, context, tool, _ = self.prepare(phase, inp)
        main = phase_route.main
        check = Preflight(
            needs_tool=tool is not None,
            prompt_chars=self.layout(phase, inp, context, tool, tool is not None).chars() + 2000,
            output_tokens=output_budget(main) if main else 0,
        )
        return Router(self.engine, loaded).check(phase_route, check)

    def request(self, loaded: LoadedSettings, phase: str, inp: PhaseInput, route: Route,
                context: str, tool: ToolSpec | None) -> Any:
        """The ``ChatRequest`` of ``phase`` on ``route``, laid out for the provider's prompt cache
        unless ``promptCaching`` is off: every phase in tool format declares the same tools (the
        plan phase, which requires none, only on a model known to call tools at a provider that
        takes tools without requiring one)."""
        caching = loaded.settings.prompt_caching
        tool_format = route.edit_format == "tool"
        use_tools = tool is not None and tool_format
        tools: tuple[ToolSpec, ...] = ()
        plan_may = route.info.tool_calling is True and route.spec.tool_choice_none
        if caching and tool_format and (use_tools or plan_may):
            tools = RUN_TOOLS
        text = self.layout(phase, inp, context, tool, use_tools)
        workspace = inp.workspace or os.path.dirname(inp.document.path)
        return phase_request(route, system=text.system, context=text.context, user=text.user, tool=tool,
                             tools=tools, caching=caching, cache_key=cache_key(workspace, route))

    async def run(self, loaded: LoadedSettings, phase: str, inp: PhaseInput,
                  observer: Observer) -> PhaseResult:
        run_id = inp.run_id or new_run_id()
        started = time.perf_counter()
        phase_route = self.route(loaded, phase)
        main = phase_route.main
        result = PhaseResult(ok=False, run_id=run_id, phase=phase,
                             provider=main.provider if main else None, model=main.model if main else None)
        _, context, tool, rng = self.prepare(phase, inp)
        result.range = rng
        if len(context) > MAX_DOCUMENT_CHARS:  # what would be sent: the range, or the whole document
            who = f" ({main.provider}/{main.model})" if main else ""
            what = "the selected range" if inp.range is not None else "the document"
            result.error = Problem(
                ProblemKind.CONTEXT_LENGTH,
                f"The {phase} phase{who} would send {len(context):,} characters of {what}, over the "
                f"{MAX_DOCUMENT_CHARS:,} Phasewise sends at once: select a smaller range and run it again. "
                f"Nothing was sent.",
                phase=phase, provider=result.provider, model=result.model,
            )
            return result
        router = Router(self.engine, loaded)
        check = Preflight(needs_tool=tool is not None,
                          prompt_chars=self.layout(phase, inp, context, tool, tool is not None).chars() + 2000,
                          output_tokens=output_budget(main) if main else 0)

        def build(route: Route) -> Any:
            return self.request(loaded, phase, inp, route, context, tool)

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
        u = c.usage
        result.input_tokens, result.output_tokens = u.input_tokens, u.output_tokens
        result.cache_read_tokens, result.cache_write_tokens = u.cache_read_tokens, u.cache_write_tokens
        result.first_token_ms = c.first_token_ms
        result.cost_usd = cost(served.route, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                               u.cache_write_tokens)
        if result.cost_usd is not None and (u.cache_read_tokens or u.cache_write_tokens):
            uncached = cost(served.route, u.input_tokens, u.output_tokens)
            result.saved_usd = uncached - result.cost_usd if uncached is not None else None
        try:
            if phase == "code":
                answer = structured_answer(c.tool_input, c.text)
                result.edits = parse_edits(answer, inp.document, rng)
                result.new_text = apply_edits(inp.document.text, result.edits)
                result.diff = unified_diff(inp.document.text, result.new_text, inp.document.path)
                result.text = str(answer.get("summary") or c.text or "")
            elif phase == "review":
                answer = structured_answer(c.tool_input, c.text)
                result.findings = parse_findings(answer, inp.document, rng)
                result.text = str(answer.get("summary") or c.text or "")
        except AnswerError as err:
            result.error = Problem(
                ProblemKind.BAD_REQUEST,
                f"{served.route.spec.name} ({served.route.provider}) answered the {phase} phase "
                f"({served.route.model}) in a shape Phasewise cannot use: {err}. Nothing was applied; "
                f"retry, or set `phasewise.phases.{phase}.editFormat`.",
                phase=phase, provider=served.route.provider, model=served.route.model,
            )
            result.edits, result.new_text, result.diff = [], None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        result.ok = True
        result.total_ms = (time.perf_counter() - started) * 1000
        if responses is not None and key is not None and not result.cached and not served.fallback_used:
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


def cancelled_result(phase: str, run_id: str, route: PhaseRoute) -> PhaseResult:
    """The result of a phase the user cancelled."""
    main = route.main
    provider, model = (main.provider, main.model) if main else (None, None)
    return PhaseResult(ok=False, run_id=run_id, phase=phase, provider=provider, model=model,
                       error=cancelled(phase=phase, provider=provider, model=model))
