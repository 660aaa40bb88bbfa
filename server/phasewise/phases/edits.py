"""How a code answer's edits are matched against files, and the change set they make.

The edit formats (``phases.formats``) parse an answer into SEARCH/REPLACE ``Block``s, whole files or
line edits and hand them to a ``ChangeBuilder`` (``build_change``), which keeps each file's text as
the edits change it and builds the ``ChangeSet`` only when every edit matched (all or nothing;
files keep their ``\r\n`` line ends).

Matching follows the ideas of aider's edit-block matcher: an exact match of the SEARCH lines
first, then one that ignores trailing whitespace, then one where the whole block is uniformly
indented differently (the indentation is carried over to the replacement), then the same without a
spurious leading blank line or with the prompt's line-number gutter (``  12| ``) copied in, and a
block whose SEARCH and REPLACE skip the same unchanged lines with ``...`` is matched piece by piece. A block
that matches no place, or more than one, is a ``BlockFailure`` naming its file and block; the
change set is built only when every block matched (all or nothing).
May not import: edge, router, providers.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from phasewise.gate import PathRefused
from phasewise.phases.documents import (
    AnswerError,
    LineEdit,
    LineRange,
    apply_edits,
    unified_diff,
)
from phasewise.phases.matching import has_dots, match_elided, match_lines, similar_lines
from phasewise.serial import Jsonable, json_property, json_rule


@dataclass(frozen=True, slots=True)
class FileText:
    """A file as a change is computed on it: workspace-relative path, uri, text (None: does not exist)."""

    path: str
    uri: str
    text: str | None
    version: int | None = None  # the open document's version; None for a file read from disk


@dataclass(frozen=True, slots=True)
class FileChange(Jsonable):
    """One file of a change: what it was computed on and what it becomes."""

    path: str
    uri: str
    before: str = field(metadata=json_rule(skip=True))
    after: str = field(metadata=json_rule(skip=True))
    created: bool = False
    version: int | None = field(default=None, metadata=json_rule(skip=True))

    @json_property
    def diff(self) -> str:
        if self.created:
            return "".join(difflib.unified_diff(
                [], self.after.splitlines(keepends=True), fromfile="/dev/null", tofile=f"b/{self.path}"))
        return unified_diff(self.before, self.after, self.path)


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Every file a code answer changes; applied whole or not at all."""

    files: tuple[FileChange, ...] = ()

    def get(self, path: str) -> FileChange | None:
        return next((f for f in self.files if f.path == path), None)

    def by_uri(self, uri: str) -> FileChange | None:
        return next((f for f in self.files if f.uri == uri), None)

    @property
    def diff(self) -> str:
        return "".join(f.diff for f in self.files)

    def __bool__(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True, slots=True)
class Block:
    """One SEARCH/REPLACE block (1-based ``index`` in the answer)."""

    index: int
    path: str
    search: str
    replace: str

    def head(self) -> str:
        """``block N``: what problems name (never the block's text: problems hold no source)."""
        return f"block {self.index}"

    def quote(self) -> str:
        """The block's first SEARCH line, for the repair prompt only (it goes to the model)."""
        first = next((ln.strip() for ln in self.search.split("\n") if ln.strip()), "")
        return f"Its SEARCH section starts `{first[:80]}`." if first else ""


@dataclass(frozen=True, slots=True)
class BlockFailure:
    path: str
    block: int
    reason: str
    hint: str = ""
    refused: bool = False  # the path may not be changed (the gate said no), whatever the edit

    def message(self) -> str:
        return f"{self.path}: {self.reason}"


class EditFailure(AnswerError):
    """Some blocks of an answer did not match; nothing was applied."""

    def __init__(self, failures: list[BlockFailure], blocks: list[Block] | None = None) -> None:
        self.failures = failures
        self.blocks = blocks or []
        super().__init__("; ".join(f.message() for f in failures))

    @property
    def first(self) -> BlockFailure:
        return self.failures[0]

    def repair_prompt(self) -> str:
        """What the model is told in the repair round."""
        n = len(self.failures)
        out = [f"{n} edit block{'s' if n != 1 else ''} of your answer could not be applied, so nothing was "
               "applied. Answer again with the whole corrected change (every block, in the same format)."]
        for f in self.failures:
            out.append(f"\n## {f.path}: {f.reason}")
            if f.hint:
                out.append(f.hint)
        out.append("\nEach SEARCH section must match existing lines of its file exactly once: copy them "
                   "from the file, without line numbers, and add surrounding lines until the match is unique.")
        return "\n".join(out)


Resolve = Callable[[str], FileText | None]
"""A path named by the model → the file it means (``text=None``: does not exist yet); None, or
``gate.PathRefused`` saying why, when the path may not be changed (outside the workspace, through a
link, inside ``.git``, starting with ``~``, a credential file the user did not name)."""


@dataclass(slots=True)
class _Work:
    """A file's text as the blocks change it; kept as lines between blocks (no split/join per block)."""

    file: FileText
    _text: str | None
    touched: bool = False
    _lines: list[str] | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "\n".join(self._lines or [])
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._text, self._lines = value, None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    @lines.setter
    def lines(self, value: list[str]) -> None:
        self._lines, self._text = value, None


@dataclass(slots=True)
class ChangeBuilder:
    """Accumulates new texts per file; ``build`` refuses if any block failed."""

    resolve: Resolve
    windows: Mapping[str, LineRange] = field(default_factory=dict)
    work: dict[str, _Work] = field(default_factory=dict)
    failures: list[BlockFailure] = field(default_factory=list)
    resolved: dict[str, FileText | None] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # why the gate refused a path

    def file(self, path: str, block: int) -> _Work | None:
        if path not in self.resolved:
            try:
                self.resolved[path] = self.resolve(path)
            except PathRefused as refused:
                self.resolved[path] = None
                self.refused[path] = f"this path may not be changed: it {refused.reason}"
        found = self.resolved[path]
        if found is None:
            self.failures.append(BlockFailure(path, block, self.refused.get(path) or (
                "this path may not be changed: it is outside the workspace folders, inside .git, or a "
                "credential file the instruction did not name"), refused=True))
            return None
        if found.path not in self.work:
            self.work[found.path] = _Work(found, found.text if found.text is not None else "")
        return self.work[found.path]

    def block(self, b: Block) -> None:
        w = self.file(b.path, b.index)
        if w is None:
            return
        if not b.search.strip():
            body = b.replace + ("\n" if b.replace and not b.replace.endswith("\n") else "")
            if w.file.text is None and not w.touched:
                w.text = body
            else:
                w.text = w.text + ("" if not w.text or w.text.endswith("\n") else "\n") + body
            w.touched = True
            return
        if w.file.text is None and not w.touched:
            self.failures.append(BlockFailure(w.file.path, b.index, f"{b.head()}: the file does not exist "
                                              "(an empty SEARCH section creates it)", b.quote()))
            return
        window = self.windows.get(w.file.path) if not w.touched else None
        result = match_lines(w.lines, b.search, b.replace, window)
        if isinstance(result, str) and has_dots(b.search):
            result = match_elided(w.lines, b.search, b.replace, window) or result
        if isinstance(result, str):
            hint = ""
            near = similar_lines(b.search, w.text)
            if near:
                hint = f"Did you mean these lines of {w.file.path}?\n```\n{near}\n```"
            if b.replace.strip() and b.replace in w.text:
                hint += f"\nThe REPLACE lines are already in {w.file.path}."
            self.failures.append(BlockFailure(w.file.path, b.index, f"{b.head()}: {result}",
                                              f"{b.quote()}\n{hint}".strip()))
            return
        w.lines = result
        w.touched = True

    def whole(self, path: str, content: str, index: int) -> None:
        w = self.file(path, index)
        if w is None:
            return
        window = self.windows.get(w.file.path)
        if window is not None and w.file.text is not None:
            # only part of the document was shown: the answer is that part, whole
            lines = w.file.text.split("\n")
            part = content.rstrip("\n").split("\n") if content.strip() else []
            w.lines, w.touched = lines[: window.start] + part + lines[window.end + 1 :], True
            return
        # the file keeps its own ending (one final newline, or none): models add or drop blank last lines
        ends = w.file.text is None or w.file.text.endswith("\n")
        content = content.rstrip("\n") + ("\n" if ends and content.strip() else "")
        w.text, w.touched = content, True

    def lines(self, path: str, edits: list[LineEdit]) -> None:
        w = self.work[path]
        w.text, w.touched = apply_edits(w.text, edits), True

    def build(self, blocks: list[Block] | None = None) -> ChangeSet:
        if self.failures:
            raise EditFailure(self.failures, blocks)
        files = []
        for w in self.work.values():
            if not w.touched:
                continue
            created = w.file.text is None
            before = w.file.text or ""
            if not created and w.text == before:
                continue
            files.append(FileChange(w.file.path, w.file.uri, before, w.text, created, w.file.version))
        return ChangeSet(tuple(files))


def _crlf(text: str | None) -> bool:
    return text is not None and "\r\n" in text


def _normalised(resolve: Resolve) -> tuple[Resolve, set[str]]:
    """A resolver that hands out ``\\n`` texts, and the paths whose files use ``\\r\\n``."""
    crlf: set[str] = set()

    def inner(path: str) -> FileText | None:
        f = resolve(path)
        if f is not None and _crlf(f.text):
            crlf.add(f.path)
            return FileText(f.path, f.uri, (f.text or "").replace("\r\n", "\n"), f.version)
        return f

    return inner, crlf


def _restore_crlf(cs: ChangeSet, crlf: set[str], originals: Mapping[str, str]) -> ChangeSet:
    if not crlf:
        return cs
    files = tuple(
        FileChange(f.path, f.uri, originals[f.path], f.after.replace("\r\n", "\n").replace("\n", "\r\n"),
                   f.created, f.version) if f.path in crlf else f
        for f in cs.files
    )
    return ChangeSet(files)


def build_change(resolve: Resolve, windows: Mapping[str, LineRange],
                 fill: Callable[[ChangeBuilder], list[Block] | None]) -> ChangeSet:
    """The change ``fill`` (an edit format's parser) hands to a builder: every file's edits matched
    or ``EditFailure`` naming those that did not; an empty change when ``fill`` says the answer is
    prose only (None). Files are matched with ``\n`` line ends and keep their own."""
    originals: dict[str, str] = {}

    def remember(path: str) -> FileText | None:
        f = resolve(path)
        if f is not None and f.text is not None:
            originals[f.path] = f.text
        return f

    norm, crlf = _normalised(remember)
    builder = ChangeBuilder(norm, windows)
    blocks = fill(builder)
    if blocks is None:
        return ChangeSet()  # prose only: the model saw nothing to change
    return _restore_crlf(builder.build(blocks), crlf, originals)


def line_edits(before: str, after: str) -> list[LineEdit]:
    """Line edits turning ``before`` into ``after`` (for the single-document ``edits`` field)."""
    a, b = before.split("\n"), after.split("\n")
    out: list[LineEdit] = []
    # autojunk on: with it off, a file of many alike lines (a 40 KB module) took seconds, quadratic
    # in the repeated lines; the edits stay exact, at most a line wider
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if tag == "equal":
            continue
        out.append(LineEdit(i1, i2 - 1, "\n".join(b[j1:j2])))
    return out
