"""The phases: plan, code, review (and any phase of the user's own), as plain async calls.

``PhaseService.run`` builds the prompt, asks the router, and turns the answer into a
``PhaseResult``: text for ``plan``, a validated edit set and its diff for ``code``, findings for
``review``. It applies nothing: whoever called it (the LSP edge, the CLI) applies the edits with
its own safety checks. Knows nothing of LSP.
May not import: edge.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
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
    ToolSpec,
    system_prompt,
    user_prompt,
)
from phasewise.problems import Problem, ProblemKind
from phasewise.router.messages import cancelled, provider_label
from phasewise.router.router import (
    Attempt,
    Engine,
    Observer,
    Preflight,
    RouteFailed,
    Router,
    output_budget,
    phase_request,
)
from phasewise.router.routes import PhaseRoute, Route
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
        if self.phase == "review" or self.findings:
            out["findings"] = [f.to_json() for f in self.findings]
        if not self.sent:
            out["sent"] = False  # nothing reached a provider: no time or tokens to speak of
        return out

    @property
    def sent(self) -> bool:
        """Whether any request reached a provider (False: settings, preflight or a cooldown stopped it)."""
        return any(a.sent for a in self.attempts)


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

    def prepare(self, phase: str, inp: PhaseInput) -> tuple[str, str, ToolSpec | None, LineRange]:
        doc = inp.document
        rng = doc.clamp(inp.range)
        tool = _TOOLS.get(phase)
        return (
            phase,
            user_prompt(
                instruction=inp.instruction or "Review this code.",
                path=doc.path, language=doc.language_id(), text=doc.excerpt(rng),
                first_line=rng.start + 1, plan=inp.plan, change=inp.change,
            ),
            tool,
            rng,
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
        _, user, tool, rng = self.prepare(phase, inp)
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

        def build(route: Route) -> Any:
            use_tools = tool is not None and route.edit_format == "tool"
            return phase_request(route, system=system_prompt(phase, tool=tool, use_tools=use_tools),
                                 user=user, tool=tool)

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
                f"{provider_label(served.route.spec.name, served.route.provider)} answered the {phase} phase "
                f"({served.route.model}) in a shape Phasewise cannot use: {err}. Nothing was applied; "
                f"retry, or set `phasewise.phases.{phase}.editFormat`.",
                phase=phase, provider=served.route.provider, model=served.route.model,
            )
            result.edits, result.new_text, result.diff = [], None, None
            result.total_ms = (time.perf_counter() - started) * 1000
            return result
        result.ok = True
        result.total_ms = (time.perf_counter() - started) * 1000
        return result


def cancelled_result(phase: str, run_id: str, route: PhaseRoute) -> PhaseResult:
    """The result of a phase the user cancelled."""
    main = route.main
    provider, model = (main.provider, main.model) if main else (None, None)
    return PhaseResult(ok=False, run_id=run_id, phase=phase, provider=provider, model=model,
                       error=cancelled(phase=phase, provider=provider, model=model))
