"""plan → code → review as one run: the sequence, shared by the LSP edge and the command line.

The caller supplies ``step``: how one phase is executed and, for ``code``, applied (the edge
through ``workspace/applyEdit``, the command line by writing the file). This module only decides
what each phase is given (the plan to ``code``, the applied change to ``review``), keeps one run
id across the phases, and stops at the first phase that fails, keeping what earlier phases made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from phasewise.phases.documents import Finding, LineRange
from phasewise.phases.edits import FileChange
from phasewise.phases.service import PhaseResult, new_run_id
from phasewise.problems import Problem
from phasewise.serial import Jsonable, json_property, json_rule

RUN_PHASES = ("plan", "code", "review")


@dataclass(frozen=True, slots=True)
class Step:
    """What one phase of a run is asked to do."""

    phase: str
    run_id: str
    instruction: str
    plan: str | None = None
    change: str | None = None
    files: tuple[str, ...] = ()  # review: the workspace-relative paths the code phase changed


PhaseStep = Callable[[Step], Awaitable[PhaseResult]]


def review_instruction(instruction: str) -> str:
    return f"Review the change made for this request, and the code around it: {instruction}"


@dataclass(slots=True)
class RunOutcome(Jsonable):
    """The phases a run completed, in order; the last one is the failure if the run stopped."""

    run_id: str
    instruction: str
    results: list[PhaseResult] = field(default_factory=list, metadata=json_rule(key="phases"))

    @json_property
    def ok(self) -> bool:
        return len(self.results) == len(RUN_PHASES) and all(r.ok for r in self.results)

    @json_property
    def stopped_at(self) -> str | None:
        failed = self.failed
        return failed.phase if failed else None

    @property
    def failed(self) -> PhaseResult | None:
        return next((r for r in self.results if not r.ok), None)

    def get(self, phase: str) -> PhaseResult | None:
        return next((r for r in self.results if r.phase == phase), None)

    def _ok(self, phase: str) -> PhaseResult | None:
        found = self.get(phase)
        return found if found is not None and found.ok else None

    @json_property
    def error(self) -> Problem | None:
        failed = self.failed
        return failed.error if failed is not None else None

    @json_property(round=6)
    def cost_usd(self) -> float | None:
        costs = [r.cost_usd for r in self.results if r.cost_usd is not None]
        return sum(costs) if costs else None

    @json_property(round=1)
    def total_ms(self) -> float:
        return sum(r.total_ms for r in self.results)

    @json_property
    def plan(self) -> str | None:
        return p.text if (p := self._ok("plan")) is not None else None

    @json_property
    def diff(self) -> str | None:
        return c.diff if (c := self._ok("code")) is not None else None

    @json_property
    def findings(self) -> list[Finding] | None:
        return r.findings if (r := self._ok("review")) is not None else None

    @json_property
    def files(self) -> list[FileChange]:
        c = self._ok("code")
        return list(c.changes.files) if c is not None and c.changes else []


async def run_plan_code_review(step: PhaseStep, instruction: str, *, run_id: str | None = None) -> RunOutcome:
    """Plan, then code with the plan, then review the applied change; stop at a failure."""
    outcome = RunOutcome(run_id or new_run_id(), instruction)
    plan = await step(Step("plan", outcome.run_id, instruction))
    outcome.results.append(plan)
    if not plan.ok:
        return outcome
    code = await step(Step("code", outcome.run_id, instruction, plan=plan.text))
    outcome.results.append(code)
    if not code.ok:
        return outcome
    change = code.diff or "(the code phase changed nothing)"
    files = tuple(f.path for f in code.changes.files) if code.changes else ()
    review = await step(Step("review", outcome.run_id, review_instruction(instruction), change=change, files=files))
    outcome.results.append(review)
    return outcome


def shifted(rng: LineRange | None, before: str, after: str) -> LineRange | None:
    """``rng`` after a change that turned ``before`` into ``after`` (its end follows added lines)."""
    if rng is None:
        return None
    delta = after.count("\n") - before.count("\n")
    return LineRange(rng.start, max(rng.start, rng.end + delta))
