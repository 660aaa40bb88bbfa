"""Phases without an editor: a file on disk, its settings, the phase service and the run record.

``FileSession`` is the command line's stand-in for an editor: the file it runs on, in its
workspace, whose files the phases read as context. The workspace is ``--workspace``, else the git
work tree around the file, else the file's folder, but never the home folder or a folder above it:
then the file is worked on alone (no other file is read or changed). A code result's change set
goes through the workspace's path gate (``phasewise.gate``) and is written back atomically, every
file or none: each file must still be what the phase read (a new file must still not exist), then
temporary files in the same folders are written and renamed into place, never through a link; a
failure part way puts back what was already replaced. New files get the user's usual mode. With
``dry_run`` nothing is written; the changed texts are kept in memory (as open buffers) for review.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phasewise.gate import PathGate, PathRefused
from phasewise.phases.commands import CommandQuestion, Reply
from phasewise.phases.documents import Document, LineRange
from phasewise.phases.edits import FileChange
from phasewise.phases.index import WorkspaceIndex
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.phases.workspace import Workspace, uri_to_path
from phasewise.problems import Problem, ProblemKind
from phasewise.router.router import Engine, NullObserver, Observer
from phasewise.router.routes import PhaseRoute
from phasewise.settings import LoadedSettings
from phasewise.workflows.ledger import Recorder
from phasewise.workflows.runner import PhaseRunner
from phasewise.workflows.runs import RunOutcome, Step, shifted


class FileSession:
    """One file as the phases see it, in its workspace; a code result's change set is written back
    atomically, every file or none."""

    def __init__(self, path: Path, *, dry_run: bool = False, root: Path | None = None) -> None:
        self.path = path.resolve()
        self.dry_run = dry_run
        # None: the file alone (its workspace would have been the home folder or one above it)
        self.root, self.root_note = choose_workspace(self.path, root)
        self.original = self._read()
        self.text = self.original
        self.written = False
        self.overlay: dict[Path, str] = {}  # files changed in a dry run: later phases see them as open buffers
        self.written_files: list[Path] = []
        self.index = WorkspaceIndex()  # what the command knows of the workspace's files, for every phase

    def _read(self, path: Path | None = None) -> str:
        with open(path or self.path, encoding="utf-8", newline="") as handle:
            return handle.read()

    def document(self) -> Document:
        return Document(self.path.as_uri(), self.text, None, None)

    def workspace(self) -> Workspace | None:
        """The workspace the phases read: the root folder, with this file's (and any dry-run) text over
        disk; None when the file is worked on alone."""
        if self.root is None:
            return None
        open_docs = {p.as_uri(): (t, None) for p, t in self.overlay.items()}
        open_docs[self.path.as_uri()] = (self.text, None)
        return Workspace([self.root], open_docs, self.index)

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
        gate = PathGate.of([self.root or self.path.parent])
        targets: list[tuple[Path, FileChange]] = []
        for f in files:
            try:
                target = gate.check(uri_to_path(f.uri))
                if self.root is None and target != self.path:
                    raise PathRefused(f.path, f"is not {self.path.name}, the one file that may change "
                                              f"({self.root_note})")
            except PathRefused as refused:
                self._problem(result, f"The change was not written (no file was changed): {refused}.")
                return
            targets.append((target, f))
        if self.dry_run:
            for target, f in targets:
                self.overlay[target] = f.after
            self.text = self.overlay.get(self.path, result.new_text)
            result.applied = False
            return
        for target, f in targets:
            on_disk: str | None = None  # no such file
            if target.exists():
                raw = gate.read_bytes(target)
                try:
                    on_disk = raw.decode("utf-8") if raw is not None else "\0unreadable"
                except UnicodeDecodeError:
                    on_disk = "\0unreadable"
            expected = None if f.created else f.before
            if on_disk != expected:
                what = "appeared" if f.created else "changed on disk"
                self._problem(result, f"{f.path} {what} while the code phase ({result.provider}/{result.model}) "
                                      "was running, so its change was not written (no file was changed). "
                                      "Run it again.")
                return
        try:
            gate.write_files([(target, f.after) for target, f in targets])
        except PathRefused as refused:
            self._problem(result, f"The change was not written (no file was changed): {refused}.")
            return
        except OSError as exc:
            self._problem(result, f"Writing the change failed ({exc.strerror or exc}); every file was put back "
                                  "as it was.")
            return
        self.written = bool(targets)
        self.index.files_changed()  # the next phase sees the files as written
        self.written_files = [t for t, _ in targets]
        self.text = next((f.after for t, f in targets if t == self.path), self.text)
        result.applied = True


def workspace_root(path: Path) -> Path:
    """The folder a file's workspace would be: its git work tree, else the file's own folder."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / ".git").exists():
            return folder
    return path.parent


def choose_workspace(path: Path, explicit: Path | None = None) -> tuple[Path | None, str]:
    """The workspace for ``path`` and how it was chosen: ``explicit`` (``--workspace``), else the git
    work tree, else the file's folder. Never the home folder or a folder above it (a repository of
    dotfiles, a file in ``~``): then None, the file alone."""
    root = (explicit or workspace_root(path)).resolve()
    how = "--workspace" if explicit else "git work tree" if (root / ".git").exists() else "the file's folder"
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):
        home = None
    if home is not None and (root == home or root in home.parents):
        where = "your home folder" if root == home else "a folder above your home folder"
        return None, f"{root} ({how}) is {where}: only {path.name} may change, and no other file is read"
    return root, f"{root} ({how})"


ObserverFactory = Callable[[str, str], Observer]  # (phase, "provider/model") → observer


class FileDoor:
    """The command line as the phase runner's door: a terminal observer per phase, a code change
    written to the session's files (every file or none), a Ctrl-C that stops the command."""

    source = "cli"
    cancel_is_result = False

    def __init__(self, headless: Headless, session: FileSession) -> None:
        self.headless, self.session = headless, session

    def start(self, route: PhaseRoute, inp: PhaseInput) -> Observer:
        factory = self.headless.observer_for
        main = route.main
        return factory(route.phase, main.label if main else "unrouted") if factory else NullObserver()

    def stop(self, observer: Observer) -> None:
        pass

    async def ask_command(self, question: CommandQuestion) -> Reply:
        """``--allow-commands``: allowed (this run only); else a prompt on a terminal; else refused."""
        if self.headless.allow_commands:
            return Reply("once")
        if not self.headless.interactive():
            return Reply("unanswered", "not asked: the command line is not on a terminal (pass --allow-commands to "
                                       "let a workspace's commands run in a script)")
        return await asyncio.to_thread(_prompt, question)

    async def apply(self, result: PhaseResult, loaded: LoadedSettings, observer: Observer) -> None:
        self.session.apply(result)

    async def finish(self, result: PhaseResult, inp: PhaseInput, loaded: LoadedSettings,
                     observer: Observer) -> None:
        pass  # the command prints the outcome once the phases are done

    def said(self, message: str) -> None:
        self.headless.said.append(message)


def _prompt(question: CommandQuestion) -> Reply:
    """The question on the terminal: [o]nce, [a]lways for this workspace, anything else is no."""
    # on stderr: stdout is the command's output (--json)
    print(f"\nphasewise: {question.text}\nAllow it? [o]nce / [a]lways for this workspace / [N]o: ", end="",
          file=sys.stderr, flush=True)
    try:
        said = sys.stdin.readline().strip().lower()
    except (OSError, KeyboardInterrupt):
        return Reply("unanswered", "no answer on the terminal")
    return Reply("once" if said in ("o", "once", "y", "yes") else "always" if said in ("a", "always") else "deny")


@dataclass(slots=True)
class Headless:
    """Runs phases on files for the command line through the one phase runner, recording each one."""

    engine: Engine
    loaded: LoadedSettings
    observer_for: ObserverFactory | None = None
    workflow: str | None = None
    runner: PhaseRunner = field(init=False)
    said: list[str] = field(default_factory=list)  # what the user should hear besides the outcome
    allow_commands: bool = False  # --allow-commands: a workspace's commands run without asking (this run)
    interactive: Callable[[], bool] = field(default=lambda: sys.stdin.isatty())  # a person can answer a prompt

    def __post_init__(self) -> None:
        self.runner = PhaseRunner(PhaseService(self.engine))

    @property
    def service(self) -> PhaseService:
        return self.runner.service

    @property
    def recorder(self) -> Recorder:
        return self.runner.recorder(self.loaded, FileDoor.source)

    def protocol_of(self, provider: str | None) -> str | None:
        return self.runner.protocol_of(self.loaded, provider)

    def door(self, session: FileSession) -> FileDoor:
        return FileDoor(self, session)

    def _input(self, session: FileSession, instruction: str, rng: LineRange | None = None, plan: str | None = None,
               change: str | None = None, run_id: str | None = None, files: tuple[str, ...] = ()) -> PhaseInput:
        # the command line's instruction is the user's own (typed: `-i`)
        return PhaseInput(session.document(), instruction, rng, plan, change, run_id, workspace=session.workspace(),
                          changed_files=files, users_words=True)

    async def phase(self, session: FileSession, phase: str, instruction: str, *, rng: LineRange | None = None,
                    plan: str | None = None) -> PhaseResult:
        inp = self._input(session, instruction, rng, plan)
        return await self.runner.phase(self.loaded, phase, inp, self.door(session), workflow=self.workflow)

    async def run(self, session: FileSession, instruction: str, *, rng: LineRange | None = None,
                  pipeline: Sequence[str] | None = None) -> RunOutcome:
        """The pipeline (``pipeline``, else the settings') on ``session``; a phase after a code-kind
        one sees the applied (or dry-run) text."""
        before = session.text

        def step_input(s: Step, done: Sequence[PhaseResult]) -> PhaseInput:
            use = shifted(rng, before, session.text) if session.text != before else rng
            return self._input(session, s.instruction, use, s.plan, s.change, s.run_id, s.files)

        return await self.runner.run(self.loaded, instruction, self.door(session), step_input, pipeline=pipeline,
                                     workflow=self.workflow)
