"""Edit formats of the code phase, how their answers are matched against files, and the change set.

Three formats a model may answer in (``phases.<p>.editFormat``):

``search-replace`` (the default)
    SEARCH/REPLACE blocks, each headed by its file's workspace-relative path on the line before
    (optionally all inside a fenced block)::

        server/app.py
        <<<<<<< SEARCH
        exact existing lines
        =======
        replacement lines
        >>>>>>> REPLACE

    An empty SEARCH section with a path that does not exist creates that file; an empty SEARCH on
    an existing file appends to it.
``whole``
    Every changed file back whole: its path alone on a line, then a fenced block with its content.
``tool`` / ``text``
    Line-range edits (``start_line``, ``end_line``, ``new_text`` and, for files other than the
    document, ``path``) inside a tool call (``tool``) or a fenced JSON block (``text``).

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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from phasewise.gate import PathRefused
from phasewise.phases.documents import (
    AnswerError,
    Document,
    LineEdit,
    LineRange,
    apply_edits,
    parse_edits,
    unified_diff,
)
from phasewise.phases.matching import has_dots, match_elided, match_lines, similar_lines
from phasewise.serial import Jsonable, json_property, json_rule

EDIT_FORMATS: Final = ("search-replace", "whole", "tool", "text")
DEFAULT_EDIT_FORMAT: Final = "search-replace"

_HEAD = re.compile(r"^\s*<{5,9} SEARCH>?\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_UPDATED = re.compile(r"^\s*>{5,9} REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_GUTTER = re.compile(r"^\s*\d+\| ?")


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


# --------------------------------------------------------------------------- parsing


def _strip_path(line: str) -> str:
    s = line.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(2).strip()
        s = s.split()[-1] if s else ""
        return s if ("." in s or "/" in s) else ""
    s = s.rstrip(":").lstrip("#").strip().strip("`*").strip()
    if s.lower().startswith(("file:", "path:")):
        s = s.split(":", 1)[1].strip().strip("`*")
    return s


def _path_before(lines: list[str], i: int) -> str:
    """The path on the (up to three) lines before line ``i``, looking past fences."""
    for j in range(i - 1, max(-1, i - 4), -1):
        line = lines[j]
        name = _strip_path(line)
        if name and " " not in name and len(name) < 300:
            return name
        if not _FENCE.match(line):
            return ""
    return ""


def parse_search_replace(text: str) -> list[Block]:
    """The blocks of an answer in ``search-replace`` format, in order. Malformed blocks raise."""
    lines = text.split("\n")
    blocks: list[Block] = []
    current = ""
    i = 0
    while i < len(lines):
        if not _HEAD.match(lines[i]):
            i += 1
            continue
        index = len(blocks) + 1
        path = _path_before(lines, i) or current
        if not path:
            raise AnswerError(f"SEARCH/REPLACE block {index} has no file path on the line before it")
        current = path
        i += 1
        search: list[str] = []
        while i < len(lines) and not _DIVIDER.match(lines[i]):
            if _HEAD.match(lines[i]) or _UPDATED.match(lines[i]):
                raise AnswerError(f"SEARCH/REPLACE block {index} ({path}) has no ======= line")
            search.append(lines[i])
            i += 1
        if i >= len(lines):
            raise AnswerError(f"SEARCH/REPLACE block {index} ({path}) has no ======= line")
        i += 1
        replace: list[str] = []
        while i < len(lines) and not _UPDATED.match(lines[i]):
            if _HEAD.match(lines[i]):
                break
            replace.append(lines[i])
            i += 1
        if i >= len(lines) or not _UPDATED.match(lines[i]):
            raise AnswerError(f"SEARCH/REPLACE block {index} ({path}) has no >>>>>>> REPLACE line")
        blocks.append(Block(index, path, "\n".join(search), "\n".join(replace)))
        i += 1
    return blocks


def parse_whole(text: str) -> list[tuple[str, str]]:
    """``(path, content)`` of each file of an answer in ``whole`` format."""
    lines = text.split("\n")
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m.group(1)
        info = m.group(2).strip().split()
        path = info[-1] if info and ("." in info[-1] or "/" in info[-1]) and len(info) > 1 else ""
        if not path and i > 0:
            path = _strip_path(lines[i - 1])
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if j >= len(lines):
            raise AnswerError(f"the block of {path or 'a file'} has no closing {fence}")
        if path and " " not in path:
            body = "\n".join(lines[i + 1 : j])
            out.append((path, body + "\n" if body else ""))
        i = j + 1
    if not out:
        raise AnswerError("the answer holds no file (a path alone on a line, then its content in a fenced block)")
    return out



# --------------------------------------------------------------------------- change sets


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


def change_from_answer(fmt: str, *, text: str, tool_input: dict[str, Any] | None, resolve: Resolve,
                       document: FileText, windows: Mapping[str, LineRange] | None = None) -> ChangeSet:
    """The change an answer in format ``fmt`` makes; raises ``AnswerError`` (``EditFailure`` for
    blocks that did not match) and then nothing is applied."""
    originals: dict[str, str] = {}

    def remember(path: str) -> FileText | None:
        f = resolve(path)
        if f is not None and f.text is not None:
            originals[f.path] = f.text
        return f

    norm, crlf = _normalised(remember)
    builder = ChangeBuilder(norm, windows or {})
    blocks: list[Block] = []
    if fmt == "search-replace":
        blocks = parse_search_replace(text)
        if not blocks:
            if _has_code(text):
                raise AnswerError("the answer holds code but no SEARCH/REPLACE block")
            return ChangeSet()  # prose only: the model saw nothing to change
        for b in blocks:
            builder.block(b)
    elif fmt == "whole":
        if not _has_code(text):
            return ChangeSet()  # prose only: the model saw nothing to change
        for n, (path, content) in enumerate(parse_whole(text), 1):
            builder.whole(path, content, n)
    else:
        from phasewise.phases.documents import structured_answer

        answer = structured_answer(tool_input, text)
        raw = answer.get("edits")
        if not isinstance(raw, list):
            raise AnswerError("the answer has no `edits` list")
        groups: dict[str, list[Any]] = {}
        for n, item in enumerate(raw, 1):
            named = item.get("path") if isinstance(item, dict) else None
            path = named if isinstance(named, str) and named.strip() else document.path
            w = builder.file(path, n)
            if w is not None:
                groups.setdefault(w.file.path, []).append(item)
        if builder.failures:
            raise EditFailure(builder.failures)
        for path, items in groups.items():
            w = builder.work[path]
            doc = Document(w.file.uri, w.text)
            lines = len(doc.lines)
            rng = (windows or {}).get(path) or LineRange(0, max(lines - 1, 0))
            try:
                edits = parse_edits({"edits": items}, doc, rng)
            except AnswerError as err:
                builder.failures.append(BlockFailure(path, 0, str(err)))
                continue
            builder.lines(path, edits)
    cs = builder.build(blocks)
    return _restore_crlf(cs, crlf, originals)


def _has_code(text: str) -> bool:
    """Whether an answer holds code of some shape (a fence, a diff hunk), not only prose."""
    return "```" in text or "~~~" in text or "\n+++ " in text or "\n@@ " in text


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
