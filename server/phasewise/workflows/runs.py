"""A run: the phases of the ``pipeline`` in order (plan → code → review unless the settings say
otherwise), the sequence shared by the LSP edge and the command line.

The caller supplies ``step``: how one phase is executed and, for a code-kind phase, applied (the
edge through ``workspace/applyEdit``, the command line by writing the files). This module only
decides what each phase is given, keeps one run id across the phases, and stops at the first phase
that fails, keeping what earlier phases made:

- a plan-kind phase gets the plans written before it (a spec before the plan, say);
- a code-kind phase gets those plans and the change made so far (a test phase after the code);
- a review-kind phase gets the change made so far and the files it touched;
- a qa-kind phase (it runs the project's commands) gets the same, and says whether they passed: the
  run's ``passed`` is the last qa phase's verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from phasewise.phases.documents import Finding, LineRange
from phasewise.phases.edits import FileChange
from phasewise.phases.service import PhaseResult, new_run_id
from phasewise.problems import Problem
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.settings import BUILTIN_PHASES, Settings, phase_kind

RUN_PHASES = BUILTIN_PHASES
NO_CHANGE = "(the code phase changed nothing)"


@dataclass(frozen=True, slots=True)
class Step:
    """What one phase of a run is asked to do."""

    phase: str
    run_id: str
    instruction: str
    plan: str | None = None
    change: str | None = None
    files: tuple[str, ...] = ()  # the workspace-relative paths the change so far touched
    kind: str = "plan"


PhaseStep = Callable[[Step], Awaitable[PhaseResult]]


def review_instruction(instruction: str) -> str:
    return f"Review the change made for this request, and the code around it: {instruction}"


def check_instruction(instruction: str) -> str:
    return f"Check the change made for this request by running the project's commands: {instruction}"


def pipeline_of(settings: Settings, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(phase, kind)`` of every phase a run runs: ``names`` (``--pipeline``), else the settings'."""
    return [(name, phase_kind(settings, name)) for name in (names or settings.pipeline)]


@dataclass(slots=True)
class RunOutcome(Jsonable):
    """The phases a run completed, in order; the last one is the failure if the run stopped."""

    run_id: str
    instruction: str
    results: list[PhaseResult] = field(default_factory=list, metadata=json_rule(key="phases"))
    pipeline: tuple[str, ...] = RUN_PHASES

    @json_property
    def ok(self) -> bool:
        return len(self.results) == len(self.pipeline) and all(r.ok for r in self.results)

    @json_property
    def stopped_at(self) -> str | None:
        failed = self.failed
        return failed.phase if failed else None

    @property
    def failed(self) -> PhaseResult | None:
        return next((r for r in self.results if not r.ok), None)

    def get(self, phase: str) -> PhaseResult | None:
        return next((r for r in self.results if r.phase == phase), None)

    def _ok(self, kind: str) -> list[PhaseResult]:
        return [r for r in self.results if r.ok and (r.kind or r.phase) == kind]

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
        """The last plan written (the ``plan`` phase's, in the default pipeline)."""
        plans = self._ok("plan")
        return plans[-1].text if plans else None

    @json_property
    def diff(self) -> str | None:
        """Every code-kind phase's change, in order."""
        codes = self._ok("code")
        return "".join(c.diff or "" for c in codes) if codes else None

    @json_property
    def files(self) -> list[FileChange]:
        return [f for c in self._ok("code") if c.changes for f in c.changes.files]

    @json_property
    def findings(self) -> list[Finding] | None:
        reviews = self._ok("review")
        return [f for r in reviews for f in r.findings] if reviews else None

    @json_property(omit="none")
    def passed(self) -> bool | None:
        """The last qa phase's verdict (None: the run has none)."""
        checks = self._ok("qa")
        return checks[-1].passed if checks else None


def _plans(results: list[PhaseResult]) -> str | None:
    """The plans written so far, for the next phase: one as it is, several each under its phase."""
    plans = [r for r in results if r.ok and (r.kind or r.phase) == "plan" and r.text.strip()]
    if len(plans) == 1:
        return plans[0].text
    return "\n\n".join(f"## {r.phase}\n\n{r.text.strip()}" for r in plans) or None


async def run_pipeline(step: PhaseStep, instruction: str, pipeline: Sequence[tuple[str, str]] | None = None, *,
                       run_id: str | None = None) -> RunOutcome:
    """Each ``(phase, kind)`` of ``pipeline`` (default: plan, code, review) in order, each given
    what came before; stop at the first failure."""
    phases = list(pipeline) if pipeline is not None else [(p, p) for p in RUN_PHASES]
    outcome = RunOutcome(run_id or new_run_id(), instruction, pipeline=tuple(name for name, _ in phases))
    diffs: list[str] = []
    files: list[str] = []
    for name, kind in phases:
        change = "".join(diffs) or None
        if kind in ("review", "qa"):
            said = review_instruction(instruction) if kind == "review" else check_instruction(instruction)
            s = Step(name, outcome.run_id, said, change=change or NO_CHANGE, files=tuple(files), kind=kind)
        elif kind == "code":
            s = Step(name, outcome.run_id, instruction, plan=_plans(outcome.results), change=change,
                     files=tuple(files), kind=kind)
        else:
            s = Step(name, outcome.run_id, instruction, plan=_plans(outcome.results), kind=kind)
        result = await step(s)
        outcome.results.append(result)
        if not result.ok:
            break
        if kind == "code":
            diffs.append(result.diff or "")
            files += [f.path for f in result.changes.files if f.path not in files] if result.changes else []
    return outcome


async def run_plan_code_review(step: PhaseStep, instruction: str, *, run_id: str | None = None) -> RunOutcome:
    """Plan, then code with the plan, then review the applied change; stop at a failure."""
    return await run_pipeline(step, instruction, run_id=run_id)


def shifted(rng: LineRange | None, before: str, after: str) -> LineRange | None:
    """``rng`` after a change that turned ``before`` into ``after`` (its end follows added lines)."""
    if rng is None:
        return None
    delta = after.count("\n") - before.count("\n")
    return LineRange(rng.start, max(rng.start, rng.end + delta))
