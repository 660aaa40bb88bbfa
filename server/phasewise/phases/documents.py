"""Documents as the phases see them, and the structured answers they get back.

``Document`` is a plain snapshot (uri, text, version). ``parse_edits`` / ``parse_findings`` turn a
model's answer (tool input or a fenced JSON block) into validated values: an edit set that
overlaps itself or leaves the range is refused whole, so nothing is ever half applied.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from phasewise.phases.prompts import SEVERITIES
from phasewise.problems import PhasewiseError
from phasewise.serial import Jsonable, json_rule

MAX_DOCUMENT_CHARS = 2_000_000
_LANGS = {
    ".py": "python", ".ts": "typescript", ".tsx": "typescriptreact", ".js": "javascript",
    ".lua": "lua", ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c",
    ".cpp": "cpp", ".rb": "ruby", ".md": "markdown", ".el": "emacs-lisp", ".sh": "shellscript",
}


_DRIVE = re.compile(r"^/[A-Za-z]:")


def uri_path(uri: str) -> str:
    """A ``file:`` URI as the file's path, percent-escapes decoded (``my%20m%C3%B3dulo.py`` is
    ``my módulo.py``; ``/c%3A/x`` is ``c:/x``; a host gives ``//host/share``); any other URI as it is."""
    if not uri.startswith("file:"):
        return uri
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if _DRIVE.match(path):
        path = path[1:]
    return f"//{parts.netloc}{path}" if parts.netloc and parts.netloc != "localhost" else path


class AnswerError(PhasewiseError, ValueError):
    """The model's structured answer cannot be used as it is (and nothing was applied)."""


@dataclass(frozen=True, slots=True)
class LineRange:
    """Lines ``start..end``, 0-based and inclusive."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Document:
    uri: str
    text: str
    version: int | None = None
    language: str | None = None

    @property
    def path(self) -> str:
        return uri_path(self.uri)

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    def language_id(self) -> str:
        if self.language:
            return self.language
        for ext, lang in _LANGS.items():
            if self.uri.endswith(ext):
                return lang
        return "plaintext"

    def clamp(self, rng: LineRange | None) -> LineRange:
        last = len(self.lines) - 1
        if rng is None:
            return LineRange(0, last)
        start = min(max(rng.start, 0), last)
        return LineRange(start, min(max(rng.end, start), last))

    def excerpt(self, rng: LineRange) -> str:
        return "\n".join(self.lines[rng.start : rng.end + 1])


@dataclass(frozen=True, slots=True)
class LineEdit(Jsonable):
    """Replace lines ``start..end`` (0-based, inclusive; ``end = start - 1`` inserts)."""

    start: int = field(metadata=json_rule(key="startLine"))
    end: int = field(metadata=json_rule(key="endLine"))
    new_text: str


@dataclass(frozen=True, slots=True)
class Finding(Jsonable):
    start: int = field(metadata=json_rule(key="startLine"))
    end: int = field(metadata=json_rule(key="endLine"))
    severity: str
    message: str
    suggestion: str | None = field(default=None, metadata=json_rule(omit="none"))
    # another file of the change (workspace-relative); None: the document
    path: str | None = field(default=None, metadata=json_rule(omit="none"))
    uri: str | None = field(default=None, metadata=json_rule(when=lambda f: f.path is not None))


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.S)


def structured_answer(tool_input: dict[str, Any] | None, text: str) -> dict[str, Any]:
    """The answer object: the tool call's input, else the last fenced JSON block of the text."""
    if tool_input is not None:
        return tool_input
    for block in reversed(_FENCE.findall(text)):
        try:
            value = json.loads(block)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise AnswerError("the model's answer holds no structured result (no tool call, no JSON block)")


def _int(item: dict[str, Any], name: str, where: str) -> int:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError(f"{where}: {name} must be a whole number, got {value!r}")
    return value


def parse_edits(answer: dict[str, Any], doc: Document, rng: LineRange) -> list[LineEdit]:
    """Validated edits (1-based in the answer, 0-based here), sorted; all or nothing."""
    raw = answer.get("edits")
    if not isinstance(raw, list):
        raise AnswerError("the answer has no `edits` list")
    edits: list[LineEdit] = []
    for i, item in enumerate(raw):
        where = f"edit {i + 1}"
        if not isinstance(item, dict):
            raise AnswerError(f"{where} is not an object")
        start, end = _int(item, "start_line", where) - 1, _int(item, "end_line", where) - 1
        new_text = item.get("new_text", "")
        if not isinstance(new_text, str):
            raise AnswerError(f"{where}: new_text must be text")
        if start < rng.start or end > rng.end or end < start - 1 or start > rng.end + 1:
            raise AnswerError(
                f"{where} covers lines {start + 1}-{end + 1}, outside lines "
                f"{rng.start + 1}-{rng.end + 1} it may change"
            )
        edits.append(LineEdit(start, end, new_text))
    edits.sort(key=lambda e: (e.start, e.end))
    for a, b in itertools.pairwise(edits):
        if b.start <= a.end:
            raise AnswerError(f"edits overlap at line {b.start + 1}")
    return edits


def apply_edits(text: str, edits: list[LineEdit]) -> str:
    lines = text.split("\n")
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        replacement = e.new_text.split("\n") if e.new_text != "" else []
        lines[e.start : e.end + 1] = replacement
    return "\n".join(lines)


def unified_diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"a/{path.lstrip('/')}", tofile=f"b/{path.lstrip('/')}",
        )
    )


def parse_findings(answer: dict[str, Any], doc: Document, rng: LineRange,
                   others: dict[str, Document] | None = None) -> list[Finding]:
    """Findings kept within the range; malformed single findings are dropped, not fatal. A finding
    whose ``path`` names one of ``others`` (the other files of a change) is kept on that file."""
    raw = answer.get("findings")
    if not isinstance(raw, list):
        raise AnswerError("the answer has no `findings` list")
    out: list[Finding] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        try:
            start = _int(item, "start_line", "finding") - 1
            end = _int(item, "end_line", "finding") - 1
        except AnswerError:
            continue
        path = item.get("path")
        other = (others or {}).get(path) if isinstance(path, str) else None
        bounds = LineRange(0, len(other.lines) - 1) if other is not None else rng
        start = min(max(start, bounds.start), bounds.end)
        end = min(max(end, start), bounds.end)
        severity = str(item.get("severity", "warning")).lower()
        if severity not in SEVERITIES:
            severity = "warning"
        message = str(item.get("message") or "").strip()
        if not message:
            continue
        suggestion = item.get("suggestion")
        out.append(Finding(start, end, severity, message, suggestion if isinstance(suggestion, str) else None,
                           path if other is not None else None, other.uri if other is not None else None))
    return out
