"""What the simulated model says: deterministic, plausible answers derived from the prompt.

Reads the Phasewise prompt wire format (``phasewise.phases.prompts``) back out of a request and
answers each phase the way a careful model would, but by rule: a numbered plan naming real
functions, valid edits (a rename across the document and every related ``<file>`` of the prompt, a
docstring, a comment) in the edit format the system prompt names (SEARCH/REPLACE blocks, whole
files, or line edits by tool call or JSON block), and review findings computed from the document.
A model whose id contains ``misquote`` answers SEARCH blocks that quote a line wrongly (as models
do): ``misquote-once`` gets it right when the prompt carries a ``<repair>`` block, any other
``misquote`` model never does. Protocol neutral: ``wire`` turns an ``Answer`` into OpenAI or Anthropic bytes.
Nothing here does I/O, so every answer is a pure function of the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phasewise.tool_names import EDIT_TOOL, FINDINGS_TOOL

# "Phasewise phase: plan." or, for a phase of the user's own, "Phasewise phase: test (a code phase)."
_PHASE_RX = re.compile(r"Phasewise phase:\s*([\w-]+)(?: \(an? (plan|code|review|qa) phase\))?")
_FORMAT_RX = re.compile(r"Edit format:\s*(search-replace|whole|tool|text)\b", re.I)
_FILE_OPEN_RX = re.compile(
    r'^<file path="(?P<path>[^"]*)" language="(?P<language>[^"]*)" reason="(?P<reason>[^"]*)" '
    r'first_line="(?P<first>\d+)" last_line="(?P<last>\d+)">\n', re.M
)
_DOC_OPEN_RX = re.compile(  # at a line's start: a numbered row of a file cannot look like it
    r'^<document path="(?P<path>[^"]*)" language="(?P<language>[^"]*)" '
    r'first_line="(?P<first>\d+)" last_line="(?P<last>\d+)">\n', re.M
)
_ROW_RX = re.compile(r"^\s*(\d+)\|(.*)$")
RENAME_RX = re.compile(
    r"\brename\s+[`'\"]?([A-Za-z_]\w*)[`'\"]?\s+(?:to|as|->|into)\s+[`'\"]?([A-Za-z_]\w*)", re.I
)
_PY_DEF_RX = re.compile(r"^(?P<indent>\s*)(?:async\s+)?(?P<kind>def|class)\s+(?P<name>[A-Za-z_]\w*)")
_ANY_DEF_RX = re.compile(
    r"^(?P<indent>\s*)(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
    r"(?:def|class|function\*?|func|fn|interface|struct|enum|trait|impl|type)\s+(?P<name>[A-Za-z_$][\w$]*)"
)
_C_FUNC_RX = re.compile(
    r"^(?P<indent>\s*)(?P<lead>(?:[A-Za-z_][\w<>,:*&\[\]]*\s+)+)\**(?P<name>[A-Za-z_]\w*)\s*\([^;()]*\)\s*"
    r"(?:const\s*)?(?:->\s*[\w:<>*&]+\s*)?\{?\s*$"
)
_C_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "else", "catch", "do", "sizeof", "new", "throw",
                         "case", "await", "yield", "delete", "goto", "typeof", "not", "and", "or", "in", "is"})
_DOCSTRING_START = re.compile(r"^\s*[rRbBuU]{0,2}(\"\"\"|''')")

LONG_LINE = 100


@dataclass(frozen=True, slots=True)
class Document:
    """The numbered ``<document>`` block of a prompt, with real line numbers."""

    path: str
    language: str
    first_line: int
    last_line: int
    lines: tuple[tuple[int, str], ...]
    reason: str = ""  # a related <file>: why it was sent

    def text_of(self, number: int) -> str | None:
        index = number - self.first_line
        if 0 <= index < len(self.lines) and self.lines[index][0] == number:
            return self.lines[index][1]
        return next((t for n, t in self.lines if n == number), None)


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a Phasewise request asked, parsed back out of its system and user messages."""

    phase: str  # the phase's name ("test", a phase of the user's own)
    edit_format: str | None
    instruction: str
    plan: str | None
    change: str | None
    document: Document | None
    offered_tools: tuple[str, ...] = ()
    files: tuple[Document, ...] = ()  # the related files of the prompt, whole
    repair: bool = False  # the prompt asks to repair an answer whose blocks did not apply
    kind: str = ""  # what it is answered as (plan, code, review); "": as its name says

    @property
    def is_python(self) -> bool:
        doc = self.document
        return doc is not None and (doc.language.lower() == "python" or doc.path.endswith((".py", ".pyi")))


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool call of a reply: the tool's name and the arguments as sent (an agent that
    misbehaves sends text that is not JSON)."""

    name: str
    arguments: str

    @classmethod
    def of(cls, name: str, obj: Mapping[str, Any]) -> ToolUse:
        return cls(name, json.dumps(obj, ensure_ascii=False))


@dataclass(slots=True)
class Answer:
    """One simulated reply: prose, a call to one tool with a JSON object as input, or (an agent's
    step) prose and any number of calls, ``calls``, in one turn."""

    text: str = ""
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    stop: str = "stop"  # "stop" or "length"; wire maps it to each protocol's word
    calls: tuple[ToolUse, ...] = ()

    @property
    def tool_json(self) -> str:
        return json.dumps(self.tool_input or {}, ensure_ascii=False)

    def tool_uses(self) -> tuple[ToolUse, ...]:
        """Every tool call of the reply, in order."""
        return self.calls or ((ToolUse(self.tool_name, self.tool_json),) if self.tool_name else ())

    def output_chars(self) -> int:
        return len(self.text) + sum(len(u.arguments) for u in self.tool_uses())


def _block(user: str, tag: str) -> str | None:
    opening = f"<{tag}>\n"
    start = 0 if user.startswith(opening) else user.find(f"\n{opening}")
    if start < 0:
        return None
    start += len(tag) + 3 + (0 if user.startswith(opening) else 1)
    end = user.find(f"\n</{tag}>", start)
    return user[start:] if end < 0 else user[start:end]


def _document_span(text: str) -> tuple[re.Match[str], int, int] | None:
    """The ``<document>`` block of ``text``: its opening match, where its body ends and where the
    block ends. In the cache layout the phase block follows the document; otherwise (the older
    layout, document last) the last closing tag wins, since the text may contain one."""
    match = _DOC_OPEN_RX.search(text)
    if match is None:
        return None
    body_end = text.find("\n</document>\n<phase name=", match.end())
    if body_end < 0:
        body_end = text.rfind("\n</document>")
    if body_end < match.end() - 1:
        return match, len(text), len(text)
    return match, body_end, body_end + len("\n</document>")


def parse_document(user: str) -> Document | None:
    span = _document_span(user)
    if span is None:
        return None
    match, body_end, _ = span
    body = user[match.end():body_end]
    rows: list[tuple[int, str]] = []
    for row in body.split("\n"):
        m = _ROW_RX.match(row)
        if m is None:
            continue
        text = m.group(2)
        # number_lines writes exactly one space after the bar; the rest is the line itself.
        rows.append((int(m.group(1)), text[1:] if text.startswith(" ") else text))
    first = int(match.group("first"))
    last = int(match.group("last"))
    return Document(match.group("path"), match.group("language"), first, last, tuple(rows))


def numbered_rows(body: str) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    for row in body.split("\n"):
        m = _ROW_RX.match(row)
        if m is not None:
            text = m.group(2)
            rows.append((int(m.group(1)), text[1:] if text.startswith(" ") else text))
    return rows


def parse_files(user: str) -> tuple[Document, ...]:
    """The related ``<file>`` blocks of a prompt."""
    out: list[Document] = []
    head = user  # anywhere in the message (the layout may move them); rows are numbered, so a
    # file's own text never starts a line with "<file " or "</file>"
    for m in _FILE_OPEN_RX.finditer(head):
        end = head.find("\n</file>", m.end())
        body = head[m.end():] if end < 0 else head[m.end():end]
        out.append(Document(m.group("path"), m.group("language"), int(m.group("first")), int(m.group("last")),
                            tuple(numbered_rows(body)), m.group("reason")))
    return tuple(out)


def parse_prompt(system: str, user: str, offered_tools: tuple[str, ...] = ()) -> Prompt:
    """Either layout: the cache layout (document at the end of the system text or at the start
    of the user message, then ``<phase>``, plan, change, instruction) or the older one (phase in
    the system text, document last in the user message). The phase, format and blocks are read
    outside the document, so a document quoting them cannot mislead."""
    full = f"{system}\n{user}" if system else user
    span = _document_span(full)
    rest = full if span is None else full[:span[0].start()] + full[span[2]:]
    phase_m = _PHASE_RX.search(rest)
    format_m = _FORMAT_RX.search(rest)
    instruction = _block(rest, "instruction")
    return Prompt(
        phase=phase_m.group(1).lower() if phase_m else "chat",
        kind=(phase_m.group(2) or phase_m.group(1)).lower() if phase_m else "chat",  # a phase of yours: its kind
        edit_format=format_m.group(1).lower() if format_m else None,
        instruction=(instruction if instruction is not None else user).strip(),
        plan=_block(rest, "plan"),
        change=_block(rest, "change"),
        document=parse_document(full),
        offered_tools=offered_tools,
        files=parse_files(full),  # the related files sit in the cached prefix: system text or user message
        repair=_block(user, "repair") is not None,
    )


# --------------------------------------------------------------------------- plan


def _c_function(text: str) -> re.Match[str] | None:
    """A C-family function definition line, not a call or a control statement."""
    m = _C_FUNC_RX.match(text)
    if m is None or m.group("name") in _C_KEYWORDS or set(m.group("lead").split()) & _C_KEYWORDS:
        return None
    return m


def _definition(text: str, python: bool) -> re.Match[str] | None:
    if python:
        return _PY_DEF_RX.match(text)
    return _ANY_DEF_RX.match(text) or _c_function(text)


def symbols(doc: Document | None, python: bool, limit: int = 3) -> list[tuple[str, int]]:
    if doc is None:
        return []
    found: list[tuple[str, int]] = []
    for number, text in doc.lines:
        m = _definition(text, python)
        name = m.group("name") if m else None
        if name and all(name != n for n, _ in found):
            found.append((name, number))
            if len(found) >= limit:
                break
    return found


def attribution(provider: str, model: str) -> str:
    return f'_(simulated by sim provider "{provider}", model {model})_'


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def plan_text(prompt: Prompt, provider: str, model: str) -> str:
    doc = prompt.document
    instruction = _one_line(prompt.instruction or "no instruction given")
    where = f"`{doc.path}`" if doc and doc.path else "the document"
    span = f" (lines {doc.first_line}–{doc.last_line})" if doc else ""
    names = symbols(doc, prompt.is_python)
    title = "Plan" if prompt.phase in {"plan", "chat"} else f"{prompt.phase.capitalize()} notes"
    out = [attribution(provider, model), "", f"**{title} for {where}:** {instruction}", ""]
    if names:
        main, main_line = names[0]
        listed = ", ".join(f"`{n}` (line {ln})" for n, ln in names)
        out += [
            f"1. Read {where}{span}, starting with {listed}, to see where the change belongs.",
            f"2. Make the change in `{main}` (line {main_line}): {instruction}",
        ]
        if len(names) > 1:
            other, other_line = names[1]
            out.append(f"3. Update `{other}` (line {other_line}) and any callers so the names stay consistent.")
        else:
            out.append(f"3. Update the callers of `{main}` so they keep working.")
        users = [f"`{f.path}`" for f in prompt.files]
        if users:
            out[-1] = out[-1].rstrip(".") + f", in {where} and in {', '.join(users[:4])}."
    else:
        out += [
            f"1. Read {where}{span} and find the code the instruction is about.",
            f"2. Make the smallest change that does this: {instruction}",
            "3. Keep the surrounding code and its public names unchanged.",
        ]
    out.append("4. Check the result: run the existing tests and add one for the new behaviour.")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- code


def _comment_prefix(prompt: Prompt) -> tuple[str, str]:
    doc = prompt.document
    lang = (doc.language if doc else "").lower()
    path = doc.path.lower() if doc else ""
    if prompt.is_python or lang in {"ruby", "shellscript", "shell", "bash", "sh", "yaml", "toml", "perl", "r",
                                    "makefile", "dockerfile", "elixir", "nim", "julia", "powershell"} \
            or path.endswith((".sh", ".rb", ".yml", ".yaml", ".toml", ".pl", ".r")):
        return "# ", ""
    if lang in {"lua", "sql", "haskell", "elm", "ada"}:
        return "-- ", ""
    if lang in {"html", "xml", "markdown", "vue", "svelte"}:
        return "<!-- ", " -->"
    if lang in {"css", "scss", "less"}:
        return "/* ", " */"
    return "// ", ""


def _signature_end(doc: Document, start_index: int) -> int | None:
    """Index of the row ending a Python ``def``/``class`` header (the one ending with ``:``)."""
    depth = 0
    for index in range(start_index, len(doc.lines)):
        code = doc.lines[index][1].split("#", 1)[0].rstrip()
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0:
            return index if code.endswith(":") else None
    return None


def _humanise(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").split()
    if not words:
        return name
    sentence = " ".join(w.lower() if w[1:].islower() or len(w) == 1 else w for w in words)
    return sentence[:1].upper() + sentence[1:]


def _docstring_edit(prompt: Prompt) -> tuple[dict[str, Any], str] | None:
    doc = prompt.document
    if doc is None or not prompt.is_python:
        return None
    for index, (_number, text) in enumerate(doc.lines):
        m = _PY_DEF_RX.match(text)
        if m is None:
            continue
        end = _signature_end(doc, index)
        if end is None or end + 1 >= len(doc.lines):
            continue  # a one-line def, or its body lies outside the document slice
        body_index = next((i for i in range(end + 1, len(doc.lines)) if doc.lines[i][1].strip()), None)
        if body_index is None:
            continue
        body = doc.lines[body_index][1]
        if _DOCSTRING_START.match(body):
            continue
        def_indent = m.group("indent")
        body_indent = body[: len(body) - len(body.lstrip())]
        if len(body_indent) <= len(def_indent):
            body_indent = def_indent + "    "
        kind, name = m.group("kind"), m.group("name")
        sentence = _humanise(name) if kind == "def" else f"The {_humanise(name).lower()}"
        insert_at = doc.lines[end][0] + 1
        edit = {"start_line": insert_at, "end_line": insert_at - 1, "new_text": f'{body_indent}"""{sentence}."""'}
        return edit, f"Added a docstring to `{name}` (line {doc.lines[index][0]})."
    return None


def _comment_edit(prompt: Prompt) -> tuple[dict[str, Any], str] | None:
    doc = prompt.document
    if doc is None or not doc.lines:
        return None
    opener, closer = _comment_prefix(prompt)
    note = _one_line(prompt.instruction or "change requested", 100)
    for number, text in doc.lines:
        m = _definition(text, prompt.is_python)
        if m is None:
            continue
        indent = m.group("indent")
        edit = {"start_line": number, "end_line": number - 1, "new_text": f"{indent}{opener}{note}{closer}"}
        return edit, f"Added a comment above `{m.group('name')}` (line {number}) recording the instruction."
    first = doc.lines[0][0]
    edit = {"start_line": first, "end_line": first - 1, "new_text": f"{opener}{note}{closer}"}
    return edit, f"Added a comment at line {first} recording the instruction."


def _rename_in(doc: Document, old: str, new: str) -> list[dict[str, Any]]:
    word = re.compile(rf"\b{re.escape(old)}\b")
    return [{"start_line": n, "end_line": n, "new_text": word.sub(new, text)} for n, text in doc.lines
            if word.search(text)]


def _rename_edits(prompt: Prompt) -> tuple[list[dict[str, Any]], str] | None:
    doc = prompt.document
    m = RENAME_RX.search(prompt.instruction)
    if doc is None or m is None:
        return None
    edits = _rename_in(doc, m.group(1), m.group(2))
    if not edits:
        return None
    lines = "line" if len(edits) == 1 else "lines"
    return edits, f"Renamed `{m.group(1)}` to `{m.group(2)}` on {len(edits)} {lines}."


_ADD_TEST_RX = re.compile(r"\b(?:add|write|create)\b[^.]*\btests?\b", re.I)


def _new_test(prompt: Prompt) -> tuple[dict[str, Any], str] | None:
    """A new test file for the document's first function (an insertion at line 1 of a new path)."""
    doc = prompt.document
    if doc is None or not prompt.is_python or not _ADD_TEST_RX.search(prompt.instruction):
        return None
    names = [n for n, _ in symbols(doc, True, limit=10) if not n[:1].isupper()]
    if not names:
        return None
    stem = doc.path.rsplit("/", 1)[-1].removesuffix(".py")
    module = doc.path.removesuffix(".py").lstrip("/").replace("/", ".") if not doc.path.startswith("/") else stem
    path = f"tests/test_{stem}.py"
    if any(f.path == path for f in prompt.files):
        return None
    body = (f"from {module} import {names[0]}\n\n\ndef test_{names[0]}_is_callable():\n"
            f"    assert callable({names[0]})")
    return ({"path": path, "start_line": 1, "end_line": 0, "new_text": body},
            f"Added {path} with a first test of `{names[0]}`.")


_STRAY_RX = re.compile(r"\bwrite (?:to )?`([^`\n]+)`")


def _stray_write(prompt: Prompt) -> tuple[dict[str, Any], str] | None:
    """A confused (or prompt-injected) model: told to write `PATH`, it answers a new file at PATH,
    whatever PATH is (``~/.bashrc``, ``../x``, an absolute path): what Phasewise must refuse."""
    m = _STRAY_RX.search(prompt.instruction)
    if m is None:
        return None
    body = "echo written-by-a-confused-model"
    return {"path": m.group(1), "start_line": 1, "end_line": 0, "new_text": body}, f"Wrote {m.group(1)}."


def code_object(prompt: Prompt) -> dict[str, Any]:
    """The ``apply_edits`` input: always valid against the document (and the related files, each
    edit of one naming its ``path``; a new file is an insertion at line 1 of a new path), deterministic
    (but for a model told to write a given path: ``_stray_write``)."""
    if prompt.document is None:
        return {"summary": "No document was given, so there is nothing to edit.", "edits": []}
    stray = _stray_write(prompt)
    if stray is not None:
        return {"summary": stray[1], "edits": [stray[0]]}
    created = _new_test(prompt)
    if created is not None:
        return {"summary": created[1], "edits": [created[0]]}
    renamed = _rename_edits(prompt)
    if renamed is not None:
        edits, summary = renamed
        m = RENAME_RX.search(prompt.instruction)
        assert m is not None
        others = 0
        for f in prompt.files:
            more = _rename_in(f, m.group(1), m.group(2))
            if more:
                others += 1
                edits = edits + [{"path": f.path, **e} for e in more]
        if others:
            summary = summary.rstrip(".") + f", and in {others} other file{'s' if others != 1 else ''}."
        return {"summary": summary, "edits": edits}
    single = _docstring_edit(prompt) or _comment_edit(prompt)
    if single is None:
        return {"summary": "The document is empty; nothing to edit.", "edits": []}
    return {"summary": single[1], "edits": [single[0]]}


def new_lines(doc: Document, edits: list[dict[str, Any]]) -> list[str]:
    lines = [t for _, t in doc.lines]
    for e in sorted(edits, key=lambda e: e["start_line"], reverse=True):
        a, b = e["start_line"] - doc.first_line, e["end_line"] - doc.first_line
        lines[a : b + 1] = e["new_text"].split("\n") if e["new_text"] != "" else []
    return lines


def _count(hay: list[str], needle: list[str]) -> int:
    n = len(needle)
    return sum(1 for i in range(len(hay) - n + 1) if hay[i : i + n] == needle)


def replace_blocks(old: list[str], new: list[str]) -> list[tuple[list[str], list[str]]]:
    """SEARCH/REPLACE pairs turning ``old`` into ``new``, each SEARCH unique in ``old``."""
    import difflib

    hunks: list[list[int]] = []  # [i1, i2, j1, j2]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new).get_opcodes():
        if tag != "equal":
            hunks.append([i1, i2, j1, j2])
    for h in hunks:
        if h[0] == h[1]:  # pure insertion: anchor it on a neighbouring line
            if h[0] < len(old):
                h[1] += 1
                h[3] += 1
            elif h[0] > 0:
                h[0] -= 1
                h[2] -= 1
        while _count(old, old[h[0] : h[1]]) != 1 and (h[0] > 0 or h[1] < len(old)):
            if h[0] > 0:
                h[0] -= 1
                h[2] -= 1
            if _count(old, old[h[0] : h[1]]) != 1 and h[1] < len(old):
                h[1] += 1
                h[3] += 1
    merged: list[list[int]] = []
    for h in hunks:
        if merged and h[0] < merged[-1][1]:
            merged[-1][1], merged[-1][3] = max(merged[-1][1], h[1]), max(merged[-1][3], h[3])
        else:
            merged.append(h)
    return [(old[i1:i2], new[j1:j2]) for i1, i2, j1, j2 in merged]


def _misquoted(search: list[str]) -> list[str]:
    return [search[0].rstrip() + "  # as it was", *search[1:]] if search else search


def code_text(prompt: Prompt, fmt: str, model: str) -> str:
    """A code answer as text: SEARCH/REPLACE blocks, whole files, or (``text``) a JSON block."""
    obj = code_object(prompt)
    doc = prompt.document
    if doc is None or not obj["edits"]:
        return str(obj["summary"])
    by_path: dict[str, tuple[Document, list[dict[str, Any]]]] = {doc.path: (doc, [])}
    for f in prompt.files:
        by_path.setdefault(f.path, (f, []))
    for e in obj["edits"]:
        path = e.get("path", doc.path)
        if path not in by_path:  # a new file
            by_path[path] = (Document(path, "", 1, 0, ()), [])
        by_path[path][1].append({k: v for k, v in e.items() if k != "path"})
    wrong = "misquote" in model and not ("misquote-once" in model and prompt.repair)
    out = [str(obj["summary"]), ""]
    for path, (d, edits) in by_path.items():
        if not edits:
            continue
        old, new = [t for _, t in d.lines], new_lines(d, edits)
        if not d.lines:  # a new file: an empty SEARCH section creates it
            out += [path, "```", *new, "```", ""] if fmt == "whole" else [
                path, "```", "<<<<<<< SEARCH", "=======", *new, ">>>>>>> REPLACE", "```", ""]
            continue
        if fmt == "whole":
            out += [path, "```", *new, "```", ""]
            continue
        for search, replace in replace_blocks(old, new):
            if wrong:
                search, wrong = _misquoted(search), False  # the first block only
            out += [path, "```", "<<<<<<< SEARCH", *search, "=======", *replace, ">>>>>>> REPLACE", "```", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- review

_PRINT_RX = re.compile(r"(?<![\w.])print\(")
_BARE_EXCEPT_RX = re.compile(r"^(?P<indent>\s*)except\s*:(?P<rest>.*)$")
_TODO_RX = re.compile(r"\b(TODO|FIXME)\b")
_EQ_NONE_RX = re.compile(r"(!=|==)\s*None\b")
_MUTABLE_DEFAULT_RX = re.compile(r"(?P<arg>\b[A-Za-z_]\w*\s*(?::[^=,()]*)?=\s*(?:\[\s*\]|\{\s*\}))")


def _def_header_rows(doc: Document) -> set[int]:
    rows: set[int] = set()
    for index, (_n, text) in enumerate(doc.lines):
        if _PY_DEF_RX.match(text) and text.lstrip().startswith(("def", "async")):
            end = _signature_end(doc, index)
            stop = end if end is not None else index
            rows.update(range(index, stop + 1))
    return rows


def review_findings(prompt: Prompt) -> list[dict[str, Any]]:
    """Findings on the document, then on each other file of the change (those carry ``path``)."""
    out = _findings_of(prompt.document, prompt.is_python)
    for f in prompt.files:
        if f.reason == "changed by the code phase":
            python = f.language.lower() == "python" or f.path.endswith((".py", ".pyi"))
            out += [{"path": f.path, **x} for x in _findings_of(f, python)]
    return out


def _findings_of(doc: Document | None, python: bool) -> list[dict[str, Any]]:
    if doc is None:
        return []
    headers = _def_header_rows(doc) if python else set()
    findings: list[dict[str, Any]] = []

    def add(n: int, severity: str, message: str, suggestion: str | None = None) -> None:
        item: dict[str, Any] = {"start_line": n, "end_line": n, "severity": severity, "message": message}
        if suggestion is not None:
            item["suggestion"] = suggestion
        findings.append(item)

    for index, (n, text) in enumerate(doc.lines):
        if index in headers:
            for m in _MUTABLE_DEFAULT_RX.finditer(text):
                arg = " ".join(m.group("arg").split())
                add(n, "error", f"Mutable default argument `{arg}` is shared between calls; "
                                "default to None and create it inside the function.")
        if len(text) > LONG_LINE:
            add(n, "information", f"Line is {len(text)} characters long (over {LONG_LINE}).")
        if _PRINT_RX.search(text):
            if python:
                add(n, "warning", "`print(` left in the code; use logging (or remove it).",
                    _PRINT_RX.sub("logging.info(", text))
            else:
                add(n, "warning", "`print(` left in the code; remove it or use the project's logger.")
        bare = _BARE_EXCEPT_RX.match(text)
        if bare is not None and python:
            add(n, "warning", "Bare `except:` also catches KeyboardInterrupt and SystemExit.",
                f"{bare.group('indent')}except Exception:{bare.group('rest')}")
        todo = _TODO_RX.search(text)
        if todo is not None:
            add(n, "information", f"`{todo.group(1)}` left in the code.")
        if _EQ_NONE_RX.search(text):
            fixed = _EQ_NONE_RX.sub(lambda m: "is not None" if m.group(1) == "!=" else "is None", text)
            add(n, "warning", "Compare with None using `is` / `is not`, not `==` / `!=`.", fixed)
    return findings


def review_object(prompt: Prompt) -> dict[str, Any]:
    findings = review_findings(prompt)
    where = f"`{prompt.document.path}`" if prompt.document and prompt.document.path else "the document"
    if not findings:
        return {"summary": f"Reviewed {where}: no problems found.", "findings": []}
    counts: dict[str, int] = {}
    for f in findings:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    order = ("error", "warning", "information", "hint")
    parts = [f"{counts[s]} {s}" + ("s" if counts[s] != 1 and s != "information" else "") for s in order if s in counts]
    total = len(findings)
    noun = "finding" if total == 1 else "findings"
    return {"summary": f"Reviewed {where}: {total} {noun} ({', '.join(parts)}).", "findings": findings}


# --------------------------------------------------------------------------- dispatch


def text_with_json(lead: str, obj: Mapping[str, Any], provider: str, model: str) -> str:
    body = json.dumps(obj, indent=2, ensure_ascii=False)
    return f"{attribution(provider, model)}\n\n{lead}\n\n```json\n{body}\n```"


def answer(prompt: Prompt, provider: str, model: str) -> Answer:
    """The simulated reply to one parsed prompt."""
    if (prompt.kind or prompt.phase) == "code":
        if prompt.edit_format in ("search-replace", "whole") and EDIT_TOOL not in prompt.offered_tools:
            return Answer(text=f"{attribution(provider, model)}\n\n{code_text(prompt, prompt.edit_format, model)}")
        obj = code_object(prompt)
        if EDIT_TOOL in prompt.offered_tools:
            return Answer(tool_name=EDIT_TOOL, tool_input=obj)
        return Answer(text=text_with_json(str(obj["summary"]), obj, provider, model))
    if (prompt.kind or prompt.phase) == "review":
        obj = review_object(prompt)
        if FINDINGS_TOOL in prompt.offered_tools:
            return Answer(tool_name=FINDINGS_TOOL, tool_input=obj)
        return Answer(text=text_with_json(str(obj["summary"]), obj, provider, model))
    return Answer(text=plan_text(prompt, provider, model))


def chunk_text(text: str, words: int = 3) -> list[str]:
    """Split text into stream deltas of a few words; joining them gives the text back exactly."""
    pieces = re.findall(r"\s+|\S+\s*", text)
    if pieces and pieces[0].isspace() and len(pieces) > 1:
        pieces[1] = pieces[0] + pieces[1]
        pieces = pieces[1:]
    step = max(1, words)
    return ["".join(pieces[i : i + step]) for i in range(0, len(pieces), step)]


def chunk_json(raw: str, parts: int = 4, min_size: int = 8) -> list[str]:
    """Split tool-call arguments into several pieces, as providers stream them."""
    if not raw:
        return [""]
    size = max(min_size, -(-len(raw) // max(1, parts)))
    size = min(size, 64)
    return [raw[i : i + size] for i in range(0, len(raw), size)]
