"""The workspace a phase that works in steps sees through its tools: the phase's ``Workspace`` plus
the edits the agent has staged.

``AgentWorkspace`` answers three questions for the tools (``phases.tools``):

- ``path_of``: where a path the model names is, through the workspace's ``PathGate`` (inside a
  folder, links resolved, not in ``.git``, no ``~``) and the credential rule: a credential file
  (``gate.credential``: ``.env*``, keys, ``.netrc``, ``.ssh/``…) only when it is in ``allowed``, the
  ones the user's own instruction named. ``PathRefused`` says why not.
- ``text_of``: a file as the agent sees it: its staged text, else the editor's open buffer, else the
  file on disk; always with ``\\n`` line ends.
- ``stage``: one edit (``search`` → ``replace``) matched exactly as a code phase matches a
  SEARCH/REPLACE block (``phases.edits.ChangeBuilder``); a miss or an ambiguous match is a
  ``BlockFailure`` and stages nothing.

``changes`` replays the staged edits, in order, through ``edits.build_change``, the code phase's own
path for a SEARCH/REPLACE answer: the ``ChangeSet`` it returns is the one that answer would have made
(before and after per file, ``created`` for new files, open buffers' versions, ``\\r\\n`` kept).
Each file's text is taken once, when it is first staged, so the replay sees what the edits saw.
``staged_files`` gives the same change as ``{folder-relative path: text}``, what a scratch copy
(``phases.scratch``) writes before a command runs. Nothing is written here: the phase's front door
applies the change.
May not import: edge, router, providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phasewise.gate import PathRefused
from phasewise.phases.edits import Block, BlockFailure, ChangeBuilder, ChangeSet, FileText, build_change
from phasewise.phases.workspace import Workspace, sensitive, uri_to_path

if TYPE_CHECKING:
    from phasewise.phases.commands import PhaseCommands

CREDENTIAL_REFUSED = ("is a credential file (keys, tokens, .env): it is read or changed only when the user's "
                      "own instruction names it")


@dataclass(frozen=True, slots=True)
class Staged:
    """What one staged edit did to its file: the text before and after (``\\n`` line ends)."""

    path: str
    before: str | None  # None: the edit created the file
    after: str


class AgentWorkspace:
    """A phase's ``Workspace`` with the agent's staged edits; see the module docstring."""

    def __init__(self, workspace: Workspace, allowed: frozenset[str] = frozenset(),
                 commands: PhaseCommands | None = None) -> None:
        self.workspace = workspace
        self.allowed = allowed  # credential files the user's own instruction named
        self.commands = commands  # the named commands the phase may run (``run_command``), if any
        self._taken: dict[str, FileText | None] = {}  # path → the file as first staged (None: not text)
        self._builder = ChangeBuilder(self._normalised)  # the staged texts, as a code answer's blocks make them
        self._blocks: list[Block] = []  # every edit staged, in order

    # ------------------------------------------------------------------ paths

    def path_of(self, name: str) -> tuple[str, Path]:
        """(workspace-relative path, resolved path) of a path the model names, relative to a workspace
        folder or absolute inside one; ``""`` for a folder itself. ``PathRefused`` says why not."""
        ws = self.workspace
        text = name.strip()
        if text in ("", ".", "./") and ws.folders:
            return "", ws.folders[0]
        try:
            p = ws.absolute(text)
        except OSError as err:  # a name the file system refuses (too long, say)
            raise PathRefused(text[:200], f"cannot be used as a path: {err.strerror or err}") from None
        if p is None:
            ws.gate.check(text.lstrip("@"))  # raises, saying why
            raise PathRefused(text, "is not a path in the workspace")
        found = ws.locate(p)
        if found is None:
            raise PathRefused(text, "is outside the workspace")
        rel = "" if found[1] == "." else found[1]
        if rel and sensitive(rel) and rel not in self.allowed:
            raise PathRefused(text, CREDENTIAL_REFUSED)
        return rel, p

    # ------------------------------------------------------------------ texts

    def original(self, rel: str) -> FileText | None:
        """The file before the agent's edits: the open buffer, else the file on disk (``text`` None: it
        does not exist). None when it cannot be read as text (binary, huge, not UTF-8, a folder) or
        its path leads out of the workspace."""
        ws = self.workspace
        path = ws.absolute(rel)
        if path is None:
            return None
        found = ws.read_path(path, rel)
        if found is not None:
            return found
        if not path.exists() and not path.is_symlink():
            return FileText(rel, path.as_uri(), None, None)
        return None

    def text_of(self, rel: str) -> str | None:
        """The file as the agent sees it (staged, else open buffer, else disk), ``\\n`` line ends; None
        when it does not exist or cannot be read as text."""
        work = self._builder.work.get(rel)
        if work is not None and work.touched:
            return work.text
        found = self.original(rel)
        if found is None or found.text is None:
            return None
        return found.text.replace("\r\n", "\n")

    def staged(self) -> list[str]:
        """The paths the agent has staged edits to, first staged first."""
        return [rel for rel, w in self._builder.work.items() if w.touched]

    def created(self) -> list[str]:
        """The paths the agent's edits create."""
        return [rel for rel, w in self._builder.work.items() if w.touched and w.file.text is None]

    def overlaid(self) -> set[str]:
        """Paths whose text the agent sees differs from (or is not) the file on disk: staged files
        and the editor's open buffers."""
        ws = self.workspace
        out = set(self.staged())
        for uri in ws.open_docs:
            rel = ws.rel(uri)
            if rel is not None:
                out.add(rel)
        return out

    # ------------------------------------------------------------------ staging

    def _take(self, rel: str) -> FileText | None:
        """The file as first staged: taken once, so ``changes`` replays on what the edits saw."""
        if rel not in self._taken:
            self._taken[rel] = self.original(rel)
        return self._taken[rel]

    def _normalised(self, rel: str) -> FileText | None:
        found = self._take(rel)
        if found is None or found.text is None or "\r\n" not in found.text:
            return found
        return FileText(found.path, found.uri, found.text.replace("\r\n", "\n"), found.version)

    def stage(self, rel: str, search: str, replace: str) -> Staged | BlockFailure:
        """Stage one edit of ``rel`` (a path ``path_of`` returned): ``search`` matched as a SEARCH
        section is; an empty ``search`` creates the file, and is refused on one that exists (the
        model must see a file before it changes it). A ``BlockFailure`` (why, and a hint) stages
        nothing."""
        builder = self._builder
        index = len(self._blocks) + 1
        before = self.text_of(rel)
        if not search.strip() and before is not None:
            return BlockFailure(rel, index, "`search` is empty, which creates a file, but this file exists: "
                                "read_file it, then copy the lines to replace into `search`")
        earlier = builder.work.get(rel)
        touched = earlier is not None and earlier.touched
        block = Block(index, rel, search, replace)
        builder.block(block)
        if builder.failures:
            failure = builder.failures[0]
            builder.failures.clear()
            return failure
        self._blocks.append(block)
        work = builder.work[rel]
        created = work.file.text is None and not touched
        return Staged(rel, None if created else before, work.text)

    def changes(self) -> ChangeSet:
        """The staged edits as a code phase's change (see the module docstring)."""
        blocks = list(self._blocks)

        def fill(builder: ChangeBuilder) -> list[Block]:
            for b in blocks:
                builder.block(b)
            return blocks

        return build_change(self._take, {}, fill)

    def staged_files(self, folder: Path | None = None) -> dict[str, str | None]:
        """The staged change as ``{path relative to its workspace folder: text after it}`` (``\\r\\n``
        kept as in ``changes``), for the files in ``folder`` only when it is given. A value of None
        (a deleted file) is allowed by the shape; no tool deletes a file yet."""
        out: dict[str, str | None] = {}
        for f in self.changes().files:
            found = self.workspace.locate(uri_to_path(f.uri))
            if found is not None and (folder is None or found[0] == folder):
                out[found[1]] = f.after
        return out


__all__ = ["CREDENTIAL_REFUSED", "AgentWorkspace", "Staged"]
