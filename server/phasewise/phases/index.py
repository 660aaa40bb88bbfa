"""What a session knows of its workspace's files, as one object it owns: no module state.

``WorkspaceIndex`` holds, for the language server's session or the command line's:

- each folder's file list (``phases.listing``: ``git ls-files``, else a walk honouring
  ``.gitignore``), reused for ``LISTING_TTL`` seconds unless git's index changed;
- each file's facts (its top-level symbols and the identifiers it uses), cached by path, size and
  mtime, so a second gathering on an unchanged tree reads nothing again;
- the facts of every listed source file (a snapshot, re-checked at most every ``LISTING_TTL``
  seconds) and, per snapshot, how much the other files use each file's symbols.

It is told what changed by method calls: ``files_changed`` (a save, a close, a change applied: the
next gathering lists the folders and checks each file again) and ``clear`` (forget everything:
tests, benchmarks). The gathering runs in a thread while the event loop may invalidate the index:
each method reads a cache entry once and swaps whole entries, so either sees a consistent one.
Symbols come from Python's ``ast`` for Python files and a small definition regex for other
languages (why not tree-sitter: ``phases.context``).
May import: phases.listing (nothing above the phases layer).
"""

from __future__ import annotations

import ast
import fnmatch
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasewise.phases.listing import LISTING_TTL, list_folder

MAX_FILE_BYTES = 200_000
GENERATED = ("*.min.js", "*.min.css", "*.lock", "package-lock.json", "*.map", "*_pb2.py", "*.pyc")
SOURCE_EXT = frozenset({".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".c", ".h", ".cpp",
                        ".hpp", ".rb", ".lua", ".el", ".sh", ".kt", ".swift", ".cs", ".php", ".scala"})
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEF = re.compile(
    r"^(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
    r"(?:def|class|function\*?|func|fn|interface|struct|enum|trait|type|const|let)\s+([A-Za-z_$][\w$]*)", re.M)


def _one_pattern(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_GENERATED_RX = _one_pattern(GENERATED)


def generated(rel: str, head: str = "") -> bool:
    return _GENERATED_RX.match(rel[rel.rfind("/") + 1 :]) is not None or "@generated" in head or "DO NOT EDIT" in head


def is_source(rel: str) -> bool:
    dot = rel.rfind(".")
    return dot > rel.rfind("/") and rel[dot:] in SOURCE_EXT


def symbols_of(path: str, text: str) -> tuple[str, ...]:
    """Top-level definitions of a file (``ast`` for Python, a definition regex otherwise)."""
    if path.endswith((".py", ".pyi")):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            pass
        else:
            names: list[str] = []
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.append(node.name)
                elif isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            return tuple(names)
    return tuple(dict.fromkeys(m.group(1) for m in _DEF.finditer(text)))


@dataclass(slots=True)
class Facts:
    """A file's top-level symbols and the identifiers it uses."""

    symbols: tuple[str, ...]
    idents: frozenset[str]

    @classmethod
    def of(cls, rel: str, text: str) -> Facts:
        return cls(symbols_of(rel, text), frozenset(IDENT.findall(text)))


NO_FACTS = Facts((), frozenset())
Ranks = Mapping[str, tuple[float, tuple[str, ...]]]


class WorkspaceIndex:
    """File lists, per-file facts and their references, for one session; see the module docstring."""

    def __init__(self, ttl: float = LISTING_TTL) -> None:
        self.ttl = ttl  # seconds a file list and a facts snapshot are reused
        self._lock = threading.Lock()
        self._listings: dict[Path, tuple[float, float, list[str]]] = {}  # folder → (when, git index mtime, files)
        self._facts: dict[tuple[str, int, int], Facts] = {}  # (path, size, mtime) → facts
        # (folders, how many files) → (when, the listings it was made of, facts by path)
        self._snapshots: dict[tuple[tuple[Path, ...], int], tuple[float, tuple[int, ...], dict[str, Facts]]] = {}
        self._refs: dict[int, tuple[dict[str, Facts], dict[str, tuple[float, tuple[str, ...]]]]] = {}

    # ------------------------------------------------------------------ told what changed

    def files_changed(self) -> None:
        """Files on disk changed (saved, closed, a change applied): the next gathering lists the
        folders and checks each file again. Facts stay cached by path, size and mtime."""
        self._listings = {}
        self._snapshots = {}

    def clear(self) -> None:
        """Forget every file list and file fact."""
        with self._lock:
            self._facts = {}
        self._listings = {}
        self._snapshots = {}
        self._refs = {}

    # ------------------------------------------------------------------ file lists

    def listing(self, folder: Path) -> list[str]:
        """Workspace-relative paths of the files git does not ignore in ``folder``, reused for
        ``LISTING_TTL`` seconds unless git's index changed."""
        try:
            index = (folder / ".git" / "index").stat().st_mtime
        except OSError:
            index = 0.0
        now = time.monotonic()
        got = self._listings.get(folder)
        if got is not None and now - got[0] < self.ttl and got[1] == index:
            return got[2]
        names = list_folder(folder)
        self._listings[folder] = (now, index, names)
        return names

    # ------------------------------------------------------------------ facts

    def file_facts(self, full: str, rel: str, read: Callable[[], str | None]) -> Facts | None:
        """The facts of the file at ``full`` (None: no such file), read with ``read`` only when not
        cached by path, size and mtime. A symbolic link is not followed (it may lead out of the
        workspace); huge and generated files have none."""
        try:
            st = os.lstat(full)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return NO_FACTS
        key = (full, st.st_size, st.st_mtime_ns)
        got = self._facts.get(key)
        if got is not None:
            return got
        facts = NO_FACTS
        if st.st_size <= MAX_FILE_BYTES:
            text = read()
            if text is not None and not generated(rel, text[:400]):
                facts = Facts.of(rel, text)
        with self._lock:
            self._facts[key] = facts
        return facts

    def snapshot(self, folders: Sequence[Path], listing: Sequence[str],
                 facts_of: Callable[[str], Facts | None], skip: Callable[[str], bool]) -> dict[str, Facts]:
        """Facts of every listed source file not ``skip``-ped; files on disk are re-checked (one
        ``stat`` each) at most every ``LISTING_TTL`` seconds, like the file lists."""
        key = (tuple(folders), len(listing))
        got = self._snapshots.get(key)
        now = time.monotonic()
        # the lists it was made of (one lookup each: files_changed may swap the dict from the loop meanwhile)
        listings = self._listings
        stamp = tuple(id(listed[2]) if (listed := listings.get(f)) is not None else 0 for f in folders)
        if got is not None and now - got[0] < self.ttl and got[1] == stamp:
            return got[2]
        base: dict[str, Facts] = {}
        for rel in listing:
            if is_source(rel) and not skip(rel):
                facts = facts_of(rel)
                if facts is not None:
                    base[rel] = facts
        self._snapshots[key] = (now, stamp, base)
        return base

    def references(self, all_facts: dict[str, Facts]) -> dict[str, tuple[float, tuple[str, ...]]]:
        """Per file: log(1 + how many other files mention its top-level symbols), and its symbols
        most referenced first (aider's map ranks by references too); once per snapshot."""
        got = self._refs.get(id(all_facts))
        if got is not None and got[0] is all_facts:
            return got[1]
        defined = {sym for f in all_facts.values() for sym in f.symbols}
        counts: dict[str, int] = dict.fromkeys(defined, 0)
        for f in all_facts.values():
            for ident in (f.idents & defined) if len(f.idents) < len(defined) else (defined & f.idents):
                counts[ident] += 1
        ranks: dict[str, tuple[float, tuple[str, ...]]] = {}
        for rel, f in all_facts.items():
            if f.symbols:
                used_by = sum(counts[x] for x in f.symbols) - len(f.symbols)  # other files
                ranks[rel] = (math.log1p(max(used_by, 0)), tuple(sorted(f.symbols, key=lambda x: -counts[x])))
        refs = self._refs if len(self._refs) <= 8 else {}
        refs[id(all_facts)] = (all_facts, ranks)
        self._refs = refs
        return ranks


__all__ = ["GENERATED", "IDENT", "MAX_FILE_BYTES", "NO_FACTS", "SOURCE_EXT", "Facts", "Ranks", "WorkspaceIndex",
           "generated", "is_source", "symbols_of"]
