"""The workspace a phase works in: its folders, the editor's open buffers over the files on disk,
and the one path gate every read and write goes through.

``Workspace`` is a phase's view: the folders (resolved) and the open buffers at the time, with the
session's ``WorkspaceIndex`` (``phases.index``) for what is known of the files. Every path goes
through ``gate.PathGate``: links resolved, inside a folder, not in ``.git``, no ``~``; credential
files (``gate.credential``) are changed only when the user's own instruction named them.
May not import: edge, router, providers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlparse

from phasewise.gate import PathGate, PathRefused, credential
from phasewise.phases.edits import ChangeSet, FileText
from phasewise.phases.index import MAX_FILE_BYTES, Facts, Ranks, WorkspaceIndex, is_source


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def sensitive(rel: str) -> bool:
    """Credential files: never sent unless the user's own instruction names them."""
    return credential(rel)


@dataclass(slots=True)
class Workspace:
    """Workspace folders plus open buffers (uri → (text, version)); open buffers win over disk. What
    is known of the files lives in ``index``, the session's (a new one when none is given)."""

    folders: Sequence[Path]
    open_docs: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    index: WorkspaceIndex = field(default_factory=WorkspaceIndex)
    _listing: dict[Path, list[str]] = field(default_factory=dict)
    _open_by_path: dict[Path, tuple[str, str, int | None]] = field(default_factory=dict)
    _open_by_rel: dict[str, tuple[str, str, int | None]] = field(default_factory=dict)
    _base: dict[str, Facts] = field(default_factory=dict)  # the snapshot the last all_facts used
    gate: PathGate = field(init=False)  # what may be read and written: every path goes through it

    def __post_init__(self) -> None:
        self.gate = PathGate.of(self.folders)
        self.folders = list(self.gate.roots)
        self._open_by_path = {uri_to_path(u).resolve(): (u, t, v) for u, (t, v) in self.open_docs.items()}
        for path, opened in self._open_by_path.items():
            found = self.locate(path)
            if found is not None:
                self._open_by_rel.setdefault(found[1], opened)

    def overlaid(self, change: ChangeSet) -> Workspace:
        """This workspace with ``change`` in it, as if its files were open with their new text (a run's
        change that is not applied yet): what reads the workspace sees them so; the session's index is
        shared. Searches of the disk (``search_files``) still see the files as they are."""
        docs = dict(self.open_docs)
        for f in change.files:
            docs[f.uri] = (f.after, docs.get(f.uri, (None, None))[1])
        return Workspace(self.folders, docs, self.index)

    # ------------------------------------------------------------------ paths

    def locate(self, path: Path) -> tuple[Path, str] | None:
        """(folder, workspace-relative path) of ``path``, links resolved, or None when outside every folder."""
        return self.gate.locate(path)

    def rel(self, uri: str) -> str | None:
        found = self.locate(uri_to_path(uri))
        return found[1] if found else None

    def absolute(self, name: str) -> Path | None:
        """The file a model or instruction names: workspace-relative (any folder) or absolute inside one."""
        name = name.strip().lstrip("@")
        if not name or "\0" in name or name.startswith("~"):
            return None
        p = Path(name)
        candidates = [p] if p.is_absolute() else [f / p for f in self.folders]
        for c in candidates:
            got = self.gate.inside(c)
            if got is not None and (got.exists() or got in self._open_by_path):
                return got
        if not p.is_absolute() and self.folders:
            return self.gate.inside(self.folders[0] / p)  # a new file, in the first folder
        return None

    # ------------------------------------------------------------------ listing

    def listing(self) -> list[str]:
        """Workspace-relative paths of the files git does not ignore (every folder); a folder's list is
        the index's (reused for ``LISTING_TTL`` seconds unless git's index changed)."""
        out: list[str] = []
        for folder in self.folders:
            if folder not in self._listing:
                self._listing[folder] = self.index.listing(folder)
            out += self._listing[folder]
        if self._open_by_rel:
            out += [r for r in self._open_by_rel if r not in set(out)]
        return out

    def file_path(self, rel: str) -> Path | None:
        for folder in self.folders:
            p = folder / rel
            if p.exists() or p.resolve() in self._open_by_path:
                return p
        return None

    def read(self, rel: str) -> FileText | None:
        """A file's text (the open buffer's when open), or None when missing, binary, huge, or (through a
        symbolic link) outside the workspace folders."""
        p = self.file_path(rel)
        if p is None or (rel not in self._open_by_rel and self.locate(p) is None):
            return None
        return self.read_path(p, rel)

    def read_path(self, p: Path, rel: str) -> FileText | None:
        opened = self._open_by_rel.get(rel) or (self._open_by_path.get(p.resolve()) if self._open_by_path else None)
        if opened is not None:
            uri, text, version = opened
            return FileText(rel, uri, text, version)
        found = self.gate.locate(p)
        if found is None:
            return None
        real = found[0] / found[1]
        raw = self.gate.read_bytes(real, MAX_FILE_BYTES)
        if raw is None or b"\0" in raw[:8192]:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return FileText(rel, real.as_uri(), text, None)

    def resolve(self, name: str, allowed: frozenset[str] = frozenset()) -> FileText | None:
        """The ``edits.Resolve`` of a change: the named file (``text=None`` when new), None when it
        cannot be read as text. ``PathRefused`` when the gate refuses it (outside the folders, through
        a link, inside ``.git``, starting with ``~``) or it is a credential file not in ``allowed``
        (the ones the user's own instruction named)."""
        name = name.strip().lstrip("@")
        p = self.absolute(name)
        if p is None:
            self.gate.check(name)  # raises, saying why
            raise PathRefused(name, "is not a file in the workspace")
        found = self.locate(p)
        if found is None:
            raise PathRefused(name, "is outside the workspace")
        rel = found[1]
        if sensitive(rel) and rel not in allowed:
            raise PathRefused(name, "is a credential file, which is changed only when your own instruction names it")
        if p.exists() or p in self._open_by_path:
            return self.read_path(p, rel)
        return FileText(rel, p.as_uri(), None, None)

    def facts(self, rel: str) -> Facts | None:
        """Top-level symbols and identifiers of a file (the open buffer's, else the index's, cached
        by path, size and mtime)."""
        opened = self._open_by_rel.get(rel)
        if opened is not None:
            return Facts.of(rel, opened[1])
        for folder in self.folders:
            full = f"{folder}/{rel}"
            got = self.index.file_facts(full, rel, partial(self._disk_text, full, rel))
            if got is not None:
                return got
        return None

    def _disk_text(self, full: str, rel: str) -> str | None:
        ft = self.read_path(Path(full), rel)
        return ft.text if ft is not None else None

    def all_facts(self, listing: Sequence[str]) -> dict[str, Facts]:
        """Facts of every listed source file: the index's snapshot of the files on disk (re-checked
        at most every ``LISTING_TTL`` seconds), with the open buffers' over it."""
        base = self.index.snapshot(self.folders, listing, self.facts,
                                   lambda rel: sensitive(rel) or rel in self._open_by_rel)
        self._base = base
        if not self._open_by_rel:
            return base
        out = dict(base)
        for rel in self._open_by_rel:
            if is_source(rel) and not sensitive(rel):
                facts = self.facts(rel)
                if facts is not None:
                    out[rel] = facts
        return out

    def references(self) -> Ranks:
        """How much the other files use each file's symbols, for the snapshot ``all_facts`` used."""
        return self.index.references(self._base)


__all__ = ["Workspace", "sensitive", "uri_to_path"]
