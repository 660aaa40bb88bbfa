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

**Fix rounds.** When a qa-kind phase comes after a code-kind one, the code phases before it apply
nothing: their changes add up into the run's one change (``compose``), which each later phase sees
as the files' text (``Step.base``; its commands run on a scratch copy with it), and which is applied
once at the end (``apply``), previewed and stale-guarded as any code change. When the qa phase
fails and ``fixRounds`` allows, the last code phase runs again with its findings, then the qa phase
again (``Step.round``), until the checks pass or the rounds are spent; a failed last round still
offers the change, its result saying the checks fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from phasewise.phases.documents import Finding, LineRange
from phasewise.phases.edits import ChangeSet, FileChange
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
    base: ChangeSet | None = None  # the run's change so far, not applied yet (a run with a qa phase)
    defer: bool = False  # a code phase whose change waits for the run's end (the qa phase checks it first)
    round: int = 0  # a fix round: 1, 2, …


PhaseStep = Callable[[Step], Awaitable[PhaseResult]]
# Applies the run's one change at its end (a run with a qa phase): sets ``applied`` on the result.
ApplyChange = Callable[[PhaseResult], Awaitable[None]]


def compose(first: ChangeSet | None, then: ChangeSet | None) -> ChangeSet | None:
    """``then`` made on top of ``first`` (its files' ``before`` is ``first``'s ``after``), as one change
    from what ``first`` was computed on: each file's ``before``, version and creation from the first
    change that touched it, its ``after`` from the last; a file brought back to what it was drops out."""
    if not then:
        return first
    if not first:
        return then
    out: dict[str, FileChange] = {f.path: f for f in first.files}
    for f in then.files:
        was = out.get(f.path)
        out[f.path] = f if was is None else dataclasses.replace(was, after=f.after)
    kept = tuple(f for f in out.values() if f.created or f.after != f.before)
    return ChangeSet(kept) if kept else None


def fix_instruction(instruction: str, findings: Sequence[Finding], note: str | None, round_: int, rounds: int) -> str:
    """What a code phase is told in a fix round: the request, then what the checks said."""
    said = [f"- {f.path or 'the document'}:{f.start + 1}: {f.message}" for f in findings[:30]]
    return (f"{instruction}\n\nFix round {round_} of {rounds}: the project's checks failed on the change made so "
            f"far (you see the files as it leaves them).{(' ' + note) if note else ''}\n"
            + ("\n".join(said) if said else "(no finding located the failure)")
            + "\nChange the code so that the checks pass; keep what the change already does.")


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
    rounds: int = field(default=0, metadata=json_rule(omit="falsy"))  # fix rounds run
    # the run's one change when its code phases waited for the qa phase (applied at its end)
    change: ChangeSet | None = field(default=None, metadata=json_rule(skip=True))

    @json_property
    def ok(self) -> bool:
        return len(self.results) == len(self.pipeline) + 2 * self.rounds and all(r.ok for r in self.results)

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
        """Every code-kind phase's change, in order (the run's one change, when it waited)."""
        if self.change is not None:
            return self.change.diff
        codes = self._ok("code")
        return "".join(c.diff or "" for c in codes) if codes else None

    @json_property
    def files(self) -> list[FileChange]:
        if self.change is not None:
            return list(self.change.files)
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
                       run_id: str | None = None, fix_rounds: int = 0, apply: ApplyChange | None = None) -> RunOutcome:
    """Each ``(phase, kind)`` of ``pipeline`` (default: plan, code, review) in order, each given
    what came before; stop at the first failure. With a qa-kind phase after a code-kind one, the
    code changes wait and add up, fix rounds follow a failed check, and ``apply`` applies the one
    change at the end (see the module docstring)."""
    phases = list(pipeline) if pipeline is not None else [(p, p) for p in RUN_PHASES]
    outcome = RunOutcome(run_id or new_run_id(), instruction, pipeline=tuple(name for name, _ in phases))
    kinds = [kind for _, kind in phases]
    checked = next((i for i, k in enumerate(kinds) if k == "qa" and "code" in kinds[:i]), None)
    deferring = checked is not None and apply is not None
    diffs: list[str] = []
    files: list[str] = []
    base: ChangeSet | None = None  # the run's change so far, when it waits for the end

    def step_for(name: str, kind: str, *, said: str | None = None, round_: int = 0) -> Step:
        change = (base.diff if deferring and base else "".join(diffs)) or None
        if kind in ("review", "qa"):
            said = said or (review_instruction(instruction) if kind == "review" else check_instruction(instruction))
            return Step(name, outcome.run_id, said, change=change or NO_CHANGE, files=tuple(files), kind=kind,
                        base=base if deferring else None, round=round_)
        if kind == "code":
            return Step(name, outcome.run_id, said or instruction, plan=_plans(outcome.results), change=change,
                        files=tuple(files), kind=kind, base=base if deferring else None, round=round_,
                        defer=deferring)
        return Step(name, outcome.run_id, instruction, plan=_plans(outcome.results), kind=kind)

    def took(result: PhaseResult, kind: str) -> None:
        nonlocal base
        outcome.results.append(result)
        if result.ok and kind == "code":
            diffs.append(result.diff or "")
            for f in result.changes.files if result.changes else ():
                if f.path not in files:
                    files.append(f.path)
            if deferring:
                base = compose(base, result.changes)

    for i, (name, kind) in enumerate(phases):
        result = await step(step_for(name, kind))
        took(result, kind)
        if not result.ok:
            break
        if i == checked and deferring:
            coder = next(n for n, k in reversed(phases[:i]) if k == "code")
            round_ = 0
            while result.ok and result.passed is False and round_ < fix_rounds:
                round_ += 1
                fix = await step(step_for(coder, "code", round_=round_, said=fix_instruction(
                    instruction, result.findings, result.note, round_, fix_rounds)))
                took(fix, "code")
                if not fix.ok:
                    result = fix
                    break
                result = await step(step_for(name, kind, round_=round_))
                took(result, kind)
            outcome.rounds = round_
            if not result.ok:
                break
            await _apply_at_end(outcome, base, apply)
    return outcome


async def _apply_at_end(outcome: RunOutcome, base: ChangeSet | None, apply: ApplyChange | None) -> None:
    """The run's one change, applied through ``apply`` as the last code result's (that result keeps its
    own round's change and says whether the whole was applied); said to be failing when the last
    checks failed."""
    last = next((r for r in reversed(outcome.results) if (r.kind or r.phase) == "code" and r.ok), None)
    outcome.change = base
    if last is None or apply is None or not base:
        return
    whole = dataclasses.replace(last, changes=base, diff=base.diff)  # the round's own change stays in ``last``
    if outcome.passed is False:
        said = (f"The checks still fail after {outcome.rounds} fix round{'s' if outcome.rounds != 1 else ''}"
                if outcome.rounds else "The checks fail on this change")
        whole.note = last.note = f"{said}: the run's change is offered anyway, so you can see it and decide."
        whole.caveat = "the checks fail"
    await apply(whole)
    last.applied, last.ok, last.error = whole.applied, whole.ok, whole.error


async def run_plan_code_review(step: PhaseStep, instruction: str, *, run_id: str | None = None) -> RunOutcome:
    """Plan, then code with the plan, then review the applied change; stop at a failure."""
    return await run_pipeline(step, instruction, run_id=run_id)


def shifted(rng: LineRange | None, before: str, after: str) -> LineRange | None:
    """``rng`` after a change that turned ``before`` into ``after`` (its end follows added lines)."""
    if rng is None:
        return None
    delta = after.count("\n") - before.count("\n")
    return LineRange(rng.start, max(rng.start, rng.end + delta))
