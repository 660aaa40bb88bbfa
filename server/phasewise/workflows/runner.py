"""One phase runner for every front door: a phase resolved once, run, its change applied through the
caller's hook, its run recorded.

A front door (the LSP edge, the command line; later an ACP agent) is a ``Door``: how a phase is shown
while it runs (``start`` returns the observer that gets its status and streamed text, ``stop`` ends
what ``start`` began), how a code-kind phase's change is applied (``apply``: the edge sends one
``WorkspaceEdit``, the command line writes the files at once), and what is done with the outcome
(``finish``: diagnostics, a plan document, a terminal summary). The runner does the rest, the same
way for every door: resolves the phase's route (and with it the phase's kind) once, runs the phase
service, hands a successful code result to ``apply``, turns a cancel into a ``cancelled`` result where
the door asks for that, and appends the run to the run record. ``run`` does the same for each phase of
a pipeline (``workflows.runs``), the door saying what each step works on (``step_input``).

May import: phases, router, settings, providers, problems (never edge or cli).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from phasewise.phases.commands import CommandQuestion, Reply
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService, cancelled_result, new_run_id
from phasewise.problems import Problem
from phasewise.router.router import NullObserver, Observer
from phasewise.router.routes import PhaseRoute
from phasewise.settings import LoadedSettings
from phasewise.workflows.ledger import Recorder
from phasewise.workflows.runs import RunOutcome, Step, pipeline_of, run_pipeline


class Door(Protocol):
    """What a front door gives the runner."""

    source: str  # where runs come from, for the run record: "lsp", "cli"
    cancel_is_result: bool  # a cancel ends the phase with a `cancelled` result (else it propagates)

    async def ask_command(self, question: CommandQuestion) -> Reply:
        """Ask the user whether a workspace's command may run (``phases.commands``): an answer, or
        ``unanswered`` with why (the door cannot ask, no answer in time)."""
        ...

    def start(self, route: PhaseRoute, inp: PhaseInput) -> Observer:
        """The phase begins: show it; the observer gets its status and text."""
        ...

    def stop(self, observer: Observer) -> None:
        """The phase's work is over (ran, failed or was cancelled): end what ``start`` began."""
        ...

    async def apply(self, result: PhaseResult, loaded: LoadedSettings, observer: Observer) -> None:
        """Apply a successful code result's change, every file or none: set ``result.applied``, or
        make the result a problem (``ok`` false, ``error``) when it could not be applied."""
        ...

    async def finish(self, result: PhaseResult, inp: PhaseInput, loaded: LoadedSettings,
                     observer: Observer) -> None:
        """The phase is recorded: show its outcome."""
        ...

    def said(self, message: str) -> None:
        """Something the user should know that is not the phase's outcome (a run record not written)."""
        ...


# What one step of a run works on (given the results so far), or the result it ends with.
StepInputs = Callable[[Step, Sequence[PhaseResult]], PhaseInput | PhaseResult]


class PhaseRunner:
    """Runs phases for every door: route once, run, apply, record."""

    def __init__(self, service: PhaseService) -> None:
        self.service = service
        self._recorders: dict[tuple[str | None, bool, str], Recorder] = {}

    # ------------------------------------------------------------------ resolving and recording

    def route(self, loaded: LoadedSettings, phase: str) -> PhaseRoute:
        """The phase's routes, main first, and its kind: resolved once per phase run."""
        return self.service.route(loaded, phase)

    def recorder(self, loaded: LoadedSettings, source: str) -> Recorder:
        """The run record these settings write to (one per ledger, content switch and source)."""
        settings = loaded.settings
        key = (settings.ledger_path, settings.record_content, source)
        found = self._recorders.get(key)
        if found is None:
            found = self._recorders[key] = Recorder(settings.ledger_path, record_content=settings.record_content,
                                                    source=source)
        return found

    def protocol_of(self, loaded: LoadedSettings, provider: str | None) -> str | None:
        if not provider:
            return None
        spec = self.service.engine.resolver(loaded).provider(provider)
        return None if isinstance(spec, Problem) else spec.protocol

    def record(self, loaded: LoadedSettings, result: PhaseResult, door: Door, *, instruction: str,
               document: str, workflow: str | None = None) -> None:
        """Append one phase run to the run record; a record that cannot be written is said, never
        allowed to fail the phase it describes."""
        recorder = self.recorder(loaded, door.source)
        before = len(recorder.failures)
        details = [{"tool": getattr(s, "tool", None), "arguments": getattr(s, "arguments", ""),
                    "output": getattr(s, "output", "")} for s in result.steps]
        recorder.record(result.to_json(), protocol=self.protocol_of(loaded, result.provider), workflow=workflow,
                        instruction=instruction, document=document, step_details=details)
        for failure in recorder.failures[before:]:
            door.said(f"Phasewise run record: {failure}")

    # ------------------------------------------------------------------ running

    async def phase(self, loaded: LoadedSettings, phase: str, inp: PhaseInput, door: Door, *,
                    route: PhaseRoute | None = None, workflow: str | None = None, apply: bool = True) -> PhaseResult:
        """One phase through ``door``: shown, run, its change applied (unless ``apply`` is False: a run's
        code phase whose change waits for the run's end), recorded, its outcome shown (``route``: the
        phase's, when the door resolved it already)."""
        inp.run_id = run_id = inp.run_id or new_run_id()
        if inp.ask_command is None:
            inp.ask_command = door.ask_command  # a workspace's command is allowed by the door's user
        route = route or self.route(loaded, phase)
        observer = door.start(route, inp)
        try:
            result = await self.service.run(loaded, phase, inp, observer, route)
            if apply and route.kind == "code" and result.ok and not result.incomplete:  # a bound: nothing applies
                await door.apply(result, loaded, observer)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not door.cancel_is_result or task is None:
                raise
            task.uncancel()  # the door's own cancel (its Cancel button): the phase ends as `cancelled`
            result = cancelled_result(phase, run_id, route, route.kind)
        finally:
            door.stop(observer)
        self.record(loaded, result, door, instruction=inp.instruction, document=inp.document.uri, workflow=workflow)
        await door.finish(result, inp, loaded, observer)
        return result

    async def run(self, loaded: LoadedSettings, instruction: str, door: Door, step_input: StepInputs, *,
                  pipeline: Sequence[str] | None = None, workflow: str | None = "run") -> RunOutcome:
        """The pipeline (``pipeline``, else the settings') through ``door``: each phase as ``phase``
        does it, on what ``step_input`` says the step works on (or the result it ends with)."""

        done: list[PhaseResult] = []

        async def step(s: Step) -> PhaseResult:
            inp = step_input(s, done)
            if isinstance(inp, PhaseResult):
                result = inp
            else:
                inp.base = s.base  # the run's change so far, not applied yet: the phase sees the files with it
                inp.round = s.round
                result = await self.phase(loaded, s.phase, inp, door, workflow=workflow, apply=not s.defer)
            done.append(result)
            return result

        async def apply(result: PhaseResult) -> None:
            """The run's one change at its end, as a code phase's is applied (preview, stale guard)."""
            await door.apply(result, loaded, NullObserver())

        return await run_pipeline(step, instruction, pipeline_of(loaded.settings, pipeline),
                                  fix_rounds=loaded.settings.fix_rounds, apply=apply)


__all__ = ["Door", "PhaseRunner", "StepInputs"]
