"""Phases without an editor: a file on disk, its settings, the phase service and the run record.

``FileSession`` is the command line's stand-in for an editor buffer: it reads the file once,
and a code result is written back atomically (a temporary file in the same folder, then a
rename), all or nothing, and only if the file on disk is still what the phase saw. With
``dry_run`` nothing is written; the changed text is kept in memory for the review phase.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phasewise.phases.documents import Document, LineRange
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.problems import Problem, ProblemKind
from phasewise.router.router import Engine, NullObserver, Observer
from phasewise.settings import LoadedSettings
from phasewise.workflows.ledger import Recorder
from phasewise.workflows.runs import RunOutcome, Step, run_plan_code_review, shifted


class FileSession:
    """One file as the phases see it; code results are written back atomically."""

    def __init__(self, path: Path, *, dry_run: bool = False) -> None:
        self.path = path.resolve()
        self.dry_run = dry_run
        self.original = self._read()
        self.text = self.original
        self.written = False

    def _read(self) -> str:
        with open(self.path, encoding="utf-8", newline="") as handle:
            return handle.read()

    def document(self) -> Document:
        return Document(self.path.as_uri(), self.text, None, None)

    def apply(self, result: PhaseResult) -> None:
        """Write a successful code result, or turn it into a ``document-changed`` problem."""
        if not result.ok or result.new_text is None:
            return
        if self.dry_run:
            self.text = result.new_text
            result.applied = False
            return
        try:
            on_disk = self._read()
        except OSError:
            on_disk = None
        if on_disk != self.text:
            result.ok, result.applied = False, False
            result.error = Problem(
                ProblemKind.DOCUMENT_CHANGED,
                f"{self.path} changed on disk while the code phase ({result.provider}/{result.model}) "
                f"was running, so its edit was not written (nothing was changed). Run it again.",
                phase="code", provider=result.provider, model=result.model,
            )
            return
        if result.new_text != self.text:
            atomic_write(self.path, result.new_text)
            self.written = True
        self.text = result.new_text
        result.applied = True


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the new one."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".phasewise", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


ObserverFactory = Callable[[str, str], Observer]  # (phase, "provider/model") → observer


@dataclass(slots=True)
class Headless:
    """Runs phases on files for the command line, recording each one in the ledger."""

    engine: Engine
    loaded: LoadedSettings
    recorder: Recorder
    observer_for: ObserverFactory | None = None
    workflow: str | None = None

    @property
    def service(self) -> PhaseService:
        return PhaseService(self.engine)

    def protocol_of(self, provider: str | None) -> str | None:
        if not provider:
            return None
        spec = self.engine.resolver(self.loaded).provider(provider)
        return None if isinstance(spec, Problem) else spec.protocol

    def label(self, phase: str) -> str:
        main = self.service.route(self.loaded, phase).main
        return main.label if main else "unrouted"

    async def phase(self, session: FileSession, phase: str, instruction: str, *, rng: LineRange | None = None,
                    plan: str | None = None, change: str | None = None, run_id: str | None = None) -> PhaseResult:
        observer = self.observer_for(phase, self.label(phase)) if self.observer_for else NullObserver()
        doc = session.document()
        inp = PhaseInput(doc, instruction, rng, plan, change, run_id)
        result = await self.service.run(self.loaded, phase, inp, observer)
        if phase == "code":
            session.apply(result)
        self.recorder.record(result.to_json(), protocol=self.protocol_of(result.provider), workflow=self.workflow,
                             instruction=instruction, document=str(session.path))
        return result

    async def run(self, session: FileSession, instruction: str, *, rng: LineRange | None = None) -> RunOutcome:
        """plan → code → review on ``session``; the review sees the applied (or dry-run) text."""
        before = session.text

        async def step(s: Step) -> PhaseResult:
            use = shifted(rng, before, session.text) if s.phase == "review" else rng
            return await self.phase(session, s.phase, s.instruction, rng=use, plan=s.plan, change=s.change,
                                    run_id=s.run_id)

        return await run_plan_code_review(step, instruction)
