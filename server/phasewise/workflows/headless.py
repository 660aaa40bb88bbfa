"""Phases without an editor: a file on disk, its settings, the phase service and the run record.

``FileSession`` is the command line's stand-in for an editor: the file it runs on, in its
workspace (the git work tree around it, or its folder), whose files the phases read as context. A
code result's change set is written back atomically, every file or none: each file must still be
what the phase read (a new file must still not exist), then temporary files in the same folders
are written and renamed into place; a failure part way puts back what was already replaced. With
``dry_run`` nothing is written; the changed texts are kept in memory (as open buffers) for review.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasewise.phases.context import Workspace, uri_to_path
from phasewise.phases.documents import Document, LineRange
from phasewise.phases.edits import FileChange
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.problems import Problem, ProblemKind
from phasewise.router.router import Engine, NullObserver, Observer
from phasewise.settings import LoadedSettings
from phasewise.workflows.ledger import Recorder
from phasewise.workflows.runs import RunOutcome, Step, pipeline_of, run_pipeline, shifted


class FileSession:
    """One file as the phases see it, in its workspace; a code result's change set is written back
    atomically, every file or none."""

    def __init__(self, path: Path, *, dry_run: bool = False, root: Path | None = None) -> None:
        self.path = path.resolve()
        self.dry_run = dry_run
        self.root = (root or workspace_root(self.path)).resolve()
        self.original = self._read()
        self.text = self.original
        self.written = False
        self.overlay: dict[Path, str] = {}  # files changed in a dry run: later phases see them as open buffers
        self.written_files: list[Path] = []

    def _read(self, path: Path | None = None) -> str:
        with open(path or self.path, encoding="utf-8", newline="") as handle:
            return handle.read()

    def document(self) -> Document:
        return Document(self.path.as_uri(), self.text, None, None)

    def workspace(self) -> Workspace:
        """The workspace the phases read: the root folder, with this file's (and any dry-run) text over disk."""
        open_docs = {p.as_uri(): (t, None) for p, t in self.overlay.items()}
        open_docs[self.path.as_uri()] = (self.text, None)
        return Workspace([self.root], open_docs)

    def _problem(self, result: PhaseResult, message: str) -> None:
        result.ok, result.applied = False, False
        result.error = Problem(ProblemKind.DOCUMENT_CHANGED, message, phase="code",
                               provider=result.provider, model=result.model)

    def apply(self, result: PhaseResult) -> None:
        """Write a successful code result (every file of its change set, or none), or turn it into a
        ``document-changed`` problem when any file moved on since the phase read it."""
        if not result.ok or result.new_text is None:
            return
        files = list(result.changes.files) if result.changes else []
        if not files and result.new_text != self.text:  # a result without a change set: this file only
            files = [FileChange(self.path.name, self.path.as_uri(), self.text, result.new_text)]
        targets = [(uri_to_path(f.uri), f) for f in files]
        if self.dry_run:
            for target, f in targets:
                self.overlay[target] = f.after
            self.text = self.overlay.get(self.path, result.new_text)
            result.applied = False
            return
        for target, f in targets:
            try:
                on_disk: str | None = self._read(target)
            except FileNotFoundError:
                on_disk = None
            except OSError:
                on_disk = "\0unreadable"
            expected = None if f.created else f.before
            if on_disk != expected:
                what = "appeared" if f.created else "changed on disk"
                self._problem(result, f"{f.path} {what} while the code phase ({result.provider}/{result.model}) "
                                      "was running, so its change was not written (no file was changed). "
                                      "Run it again.")
                return
        try:
            write_all([(target, f.after) for target, f in targets])
        except OSError as exc:
            self._problem(result, f"Writing the change failed ({exc.strerror or exc}); every file was put back "
                                  "as it was.")
            return
        self.written = bool(targets)
        self.written_files = [t for t, _ in targets]
        self.text = next((f.after for t, f in targets if t == self.path), self.text)
        result.applied = True


def workspace_root(path: Path) -> Path:
    """The folder a file's workspace is: its git work tree, else the file's own folder."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / ".git").exists():
            return folder
    return path.parent


def write_all(files: list[tuple[Path, str]]) -> None:
    """Write every file or none: temporary files first (same folders), then renames; a failure
    part way puts back the files already replaced and removes the ones created."""
    staged: list[tuple[Path, str, str | None, int | None]] = []  # (target, tmp, old text, old mode)
    try:
        for target, text in files:
            old = None
            mode = None
            if target.exists():
                mode = stat.S_IMODE(target.stat().st_mode)
                with open(target, encoding="utf-8", newline="") as handle:
                    old = handle.read()
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.append((target, _staged(target, text, mode), old, mode))
    except BaseException:
        for _, tmp, _, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    done: list[tuple[Path, str | None]] = []
    try:
        for target, tmp, old, _ in staged:
            os.replace(tmp, target)
            done.append((target, old))
    except BaseException:
        for target, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is None:
                    os.unlink(target)
                else:
                    atomic_write(target, old)
        for _, tmp, _, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def _staged(path: Path, text: str, mode: int | None) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".phasewise", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the new one."""
    tmp = _staged(path, text, stat.S_IMODE(path.stat().st_mode))
    try:
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
                    plan: str | None = None, change: str | None = None, run_id: str | None = None,
                    files: tuple[str, ...] = ()) -> PhaseResult:
        observer = self.observer_for(phase, self.label(phase)) if self.observer_for else NullObserver()
        doc = session.document()
        inp = PhaseInput(doc, instruction, rng, plan, change, run_id, workspace=session.workspace(),
                         changed_files=files)
        result = await self.service.run(self.loaded, phase, inp, observer)
        if result.kind == "code":
            session.apply(result)
        self.recorder.record(result.to_json(), protocol=self.protocol_of(result.provider), workflow=self.workflow,
                             instruction=instruction, document=str(session.path))
        return result

    async def run(self, session: FileSession, instruction: str, *, rng: LineRange | None = None,
                  pipeline: Sequence[str] | None = None) -> RunOutcome:
        """The pipeline (``pipeline``, else the settings') on ``session``; a phase after a code-kind
        one sees the applied (or dry-run) text."""
        before = session.text

        async def step(s: Step) -> PhaseResult:
            use = shifted(rng, before, session.text) if session.text != before else rng
            return await self.phase(session, s.phase, s.instruction, rng=use, plan=s.plan, change=s.change,
                                    run_id=s.run_id, files=s.files)

        return await run_pipeline(step, instruction, pipeline_of(self.loaded.settings, pipeline))
