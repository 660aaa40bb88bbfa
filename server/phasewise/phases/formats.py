"""Edit formats: one class per way a phase's model may answer (``phases.<p>.editFormat``), each
defined once, after aider's ``coders/``.

A format holds, in one place: its ``name``; ``prompt``, the instructions the model gets after the
phase's own (byte-identical from run to run: providers' prompt caches and the simulator read them);
``by_tool``, whether its answer comes in a tool call; its parser, ``change`` (an answer's text or
tool input → the ``ChangeSet``, matched against the files by ``phases.edits``); and ``summary``,
what the answer says of its change. The four:

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

``tool`` and ``text`` are ``structured``: they carry the object of any phase's tool, a review's
findings too. The other two write code only, so a review whose edit format is one of them answers
by tool call (``Formats.answer``).

The names and the default are the settings' (``settings.EditFormatName``, ``EDIT_FORMATS``,
``DEFAULT_EDIT_FORMAT``: the ``Literal`` that validates ``editFormat`` and generates its schema);
``FORMATS`` holds one object per name, refuses to load without one, and tells the router, which
names no format, on which routes a phase answers by tool call (it is a ``router.ToolUse``).
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from phasewise.phases.documents import AnswerError, Document, LineRange, parse_edits, structured_answer
from phasewise.phases.edits import (
    Block,
    BlockFailure,
    ChangeBuilder,
    ChangeSet,
    EditFailure,
    FileText,
    Resolve,
    build_change,
)
from phasewise.phases.prompts import ToolSpec
from phasewise.router.routes import Route
from phasewise.settings import DEFAULT_EDIT_FORMAT, EDIT_FORMATS, EditFormatName

_HEAD = re.compile(r"^\s*<{5,9} SEARCH>?\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_UPDATED = re.compile(r"^\s*>{5,9} REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


class EditFormat:
    """One edit format (see the module docstring); a subclass sets the class attributes and ``fill``."""

    name: ClassVar[EditFormatName]
    by_tool: ClassVar[bool] = False  # the answer comes in a tool call, not in the text
    structured: ClassVar[bool] = False  # carries any tool's object (a review's findings too), not code only
    instructions: ClassVar[str]  # the prompt text, after the phase's own

    def prompt(self, tool: ToolSpec) -> str:
        """What the model is told about answering in this format (``tool``: the phase's tool)."""
        return self.instructions

    def change(self, *, text: str, tool_input: dict[str, Any] | None, resolve: Resolve, document: FileText,
               windows: Mapping[str, LineRange] | None = None) -> ChangeSet:
        """The change an answer in this format makes; raises ``AnswerError`` (``EditFailure`` for
        blocks that did not match), and then nothing is applied."""
        return build_change(resolve, windows or {},
                            lambda builder: self.fill(builder, text, tool_input, document, windows or {}))

    def fill(self, builder: ChangeBuilder, text: str, tool_input: dict[str, Any] | None, document: FileText,
             windows: Mapping[str, LineRange]) -> list[Block] | None:
        """Hand the answer's edits to ``builder``: the blocks they came in (named when they fail), or
        None for an answer of prose only (the model saw nothing to change)."""
        raise NotImplementedError

    def summary(self, text: str, tool_input: dict[str, Any] | None) -> str:
        """What the answer says of its change, the code result's text."""
        return text or ""


class SearchReplace(EditFormat):
    name = "search-replace"
    instructions = """Edit format: search-replace.
Answer with SEARCH/REPLACE blocks only, one per change. Put each file's workspace-relative path alone on \
the line before its block. The SEARCH section must copy existing lines of that file exactly (without \
the line-number gutter) and match exactly one place; keep it short but unique. To create a file, give \
its new path and leave SEARCH empty. Example:

src/app.py
```python
<<<<<<< SEARCH
def old_name(x):
=======
def new_name(x):
>>>>>>> REPLACE
```"""

    @staticmethod
    def parse(text: str) -> list[Block]:
        """The blocks of an answer, in order. Malformed blocks raise."""
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

    def fill(self, builder: ChangeBuilder, text: str, tool_input: dict[str, Any] | None, document: FileText,
             windows: Mapping[str, LineRange]) -> list[Block] | None:
        blocks = self.parse(text)
        if not blocks:
            if _has_code(text):
                raise AnswerError("the answer holds code but no SEARCH/REPLACE block")
            return None
        for b in blocks:
            builder.block(b)
        return blocks


class Whole(EditFormat):
    name = "whole"
    instructions = """Edit format: whole.
Answer with every file you change, whole: its workspace-relative path alone on a line, then its complete \
new content in a fenced block. Leave out files you do not change. When only some lines of the document \
are shown (first_line/last_line), give back those lines only, whole. Example:

src/app.py
```python
the complete new content of src/app.py
```"""

    @staticmethod
    def parse(text: str) -> list[tuple[str, str]]:
        """``(path, content)`` of each file of an answer."""
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

    def fill(self, builder: ChangeBuilder, text: str, tool_input: dict[str, Any] | None, document: FileText,
             windows: Mapping[str, LineRange]) -> list[Block] | None:
        if not _has_code(text):
            return None
        for n, (path, content) in enumerate(self.parse(text), 1):
            builder.whole(path, content, n)
        return []


class _LineEdits(EditFormat):
    """Line-range edits in the phase tool's object (``prompts.EDIT_SCHEMA``), wherever it comes."""

    structured = True

    def fill(self, builder: ChangeBuilder, text: str, tool_input: dict[str, Any] | None, document: FileText,
             windows: Mapping[str, LineRange]) -> list[Block] | None:
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
            rng = windows.get(path) or LineRange(0, max(lines - 1, 0))
            try:
                edits = parse_edits({"edits": items}, doc, rng)
            except AnswerError as err:
                builder.failures.append(BlockFailure(path, 0, str(err)))
                continue
            builder.lines(path, edits)
        return []

    def summary(self, text: str, tool_input: dict[str, Any] | None) -> str:
        try:
            said = str(structured_answer(tool_input, text).get("summary") or "")
        except AnswerError:
            said = ""
        return said or text or ""


class ToolCall(_LineEdits):
    name = "tool"
    by_tool = True
    instructions = "Edit format: tool. Answer by calling the {tool} tool exactly once."

    def prompt(self, tool: ToolSpec) -> str:
        return self.instructions.format(tool=tool.name)


class JsonBlock(_LineEdits):
    name = "text"
    instructions = (
        "Edit format: text. Answer with one fenced ```json block holding an object of this JSON "
        "schema, and nothing after it:\n{schema}"
    )

    def prompt(self, tool: ToolSpec) -> str:
        return self.instructions.format(schema=json.dumps(tool.schema))


SEARCH_REPLACE: Final = SearchReplace()
WHOLE: Final = Whole()
TOOL_CALL: Final = ToolCall()
JSON_BLOCK: Final = JsonBlock()


class Formats:
    """The edit formats by name, one object each; also what the router asks of a phase's answer on
    a route (``router.ToolUse``)."""

    def __init__(self, *formats: EditFormat) -> None:
        self._by_name: dict[str, EditFormat] = {f.name: f for f in formats}
        if tuple(self._by_name) != EDIT_FORMATS:  # the settings' names, in their order, one object each
            raise RuntimeError(f"edit formats {tuple(self._by_name)} are not the settings' {EDIT_FORMATS}")

    def __getitem__(self, name: str) -> EditFormat:
        return self._by_name[name]

    def __iter__(self) -> Iterator[EditFormat]:
        return iter(self._by_name.values())

    def answer(self, name: str | None, kind: str, *, named_tool_choice: bool = True) -> EditFormat:
        """The format a phase of ``kind`` whose edit format is ``name`` (None: the default) answers
        in: a code phase in that format; a review's findings in it when it is structured, else by
        tool call (search-replace and whole write code only). At a provider that does not honour a
        ``tool_choice`` naming the tool (``named_tool_choice`` False: llama.cpp), a fenced JSON block
        instead of a tool call, since the call could not be required."""
        fmt = self[name or DEFAULT_EDIT_FORMAT]
        fmt = fmt if kind == "code" or fmt.structured else TOOL_CALL
        return JSON_BLOCK if fmt.by_tool and not named_tool_choice else fmt

    def of(self, route: Route) -> EditFormat:
        """The format the phase of ``route`` answers in there."""
        return self.answer(route.edit_format, route.kind, named_tool_choice=route.spec.tool_choice_named)

    def by_tool(self, route: Route) -> bool:
        """Whether the phase of ``route`` answers by tool call there."""
        return self.of(route).by_tool

    def without_tools(self, route: Route) -> str:
        """The ``editFormat`` values to suggest for a model without tool calling: the default when
        it writes this kind's answer in text, and ``text``, which writes any."""
        if not self.answer(DEFAULT_EDIT_FORMAT, route.kind).by_tool:
            return f'"{DEFAULT_EDIT_FORMAT}" (or "{JSON_BLOCK.name}")'
        return f'"{JSON_BLOCK.name}"'


FORMATS: Final = Formats(SEARCH_REPLACE, WHOLE, TOOL_CALL, JSON_BLOCK)


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


def _has_code(text: str) -> bool:
    """Whether an answer holds code of some shape (a fence, a diff hunk), not only prose."""
    return "```" in text or "~~~" in text or "\n+++ " in text or "\n@@ " in text


__all__ = ["FORMATS", "JSON_BLOCK", "SEARCH_REPLACE", "TOOL_CALL", "WHOLE", "EditFormat", "Formats", "JsonBlock",
           "SearchReplace", "ToolCall", "Whole"]
