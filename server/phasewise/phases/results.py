"""What a phase is given and what it gives back: ``PhaseInput`` and ``PhaseResult`` (the contract's
phase result, written to JSON by ``serial``, plus what the caller needs to apply or publish it).

A result adds up every call the phase made (a repair round is a second call) and prices them with
the model's prices (``providers.pricing``). Plain values: no I/O, nothing of LSP.
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phasewise.phases.context import Context, Workspace
from phasewise.phases.documents import Document, Finding, LineEdit, LineRange
from phasewise.phases.edits import ChangeSet
from phasewise.problems import Problem
from phasewise.providers.base import Usage
from phasewise.providers.catalogue import ModelInfo
from phasewise.providers.pricing import cost, saving
from phasewise.router.messages import cancelled
from phasewise.router.router import Attempt
from phasewise.router.routes import PhaseRoute
from phasewise.serial import Jsonable, json_property, json_rule

if TYPE_CHECKING:
    from phasewise.phases.commands import AskCommand


@dataclass(slots=True)
class PhaseInput:
    """What one phase call is given: the document (and range), the instruction, what earlier phases
    handed over (plan, change) and the workspace around the document."""

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
    # How the front door asks the user to allow a workspace's command (None: it cannot ask).
    ask_command: AskCommand | None = None
    # A run's change so far, not applied yet (its code phases wait for its qa phase): the phase sees
    # the files as that change leaves them, and its commands run on a scratch copy with it.
    base: ChangeSet | None = None
    round: int = 0  # a run's fix round (1, 2, …), for the progress and the result


def _code_view(result: PhaseResult) -> bool:
    return (result.kind or result.phase) == "code" or bool(result.edits)


def _review_view(result: PhaseResult) -> bool:
    return (result.kind or result.phase) in ("review", "qa") or bool(result.findings)


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
    # a qa-kind phase: whether its checks passed, and each command it ran [{name, ran, ok, exitCode, seconds}]
    passed: bool | None = field(default=None, metadata=json_rule(omit="none"))
    round: int = field(default=0, metadata=json_rule(omit="falsy"))  # a run's fix round (1, 2, …)
    # what the change's confirmation says besides who made it (a run's change whose checks still fail)
    caveat: str | None = field(default=None, metadata=json_rule(skip=True))
    checks: list[dict[str, Any]] = field(default_factory=list, metadata=json_rule(omit="empty"))
    # a phase that worked in steps: each tool call, [{step, tool, summary, ok, ms, tokens}]
    steps: Sequence[Jsonable] = field(default_factory=list, metadata=json_rule(omit="empty"))
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

    def add_usage(self, usage: Usage, info: ModelInfo) -> None:
        """Add one call's tokens, its cost and what the prompt cache saved on it, each priced with
        ``info``, the model that made the call (a repair round, a loop's steps, a fallback's step)."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        tokens = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
        price = cost(info, *tokens)
        if price is None:
            return
        self.cost_usd = (self.cost_usd or 0.0) + price
        if (saved := saving(info, *tokens)) is not None:
            self.saved_usd = (self.saved_usd or 0.0) + saved


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def cancelled_result(phase: str, run_id: str, route: PhaseRoute, kind: str = "") -> PhaseResult:
    """The result of a phase the user cancelled."""
    main = route.main
    provider, model = (main.provider, main.model) if main else (None, None)
    return PhaseResult(ok=False, run_id=run_id, phase=phase, kind=kind, provider=provider, model=model,
                       error=cancelled(phase=phase, provider=provider, model=model))
