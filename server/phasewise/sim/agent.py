"""The simulated model as an agent: a careful, rule-based worker for phases that work in steps.

When a request lets the model call the tools of a phase that works in steps (``read_file``,
``list_files``, ``search_files``, ``edit_file``; ``report_findings`` for a review), each answer is
the next step, chosen from the instruction and from what the transcript's tool results said (the
simulator has no file system: it knows only what it is told):

- **code, "rename X to Y"**: ``search_files {pattern: "\\bX\\b"}``; then ``read_file`` of every file
  the search listed, in parallel in one turn; then one ``edit_file {path, search, replace}`` per
  block of lines using X (exact lines from the reads, each block unique in its file); then a text
  summary naming what applied and what did not.
- **code, anything else**: read the document's file, edit it as the single-shot answers would (a
  docstring, a comment, a new test file), summarise.
- **plan**: search for the name the instruction (or the document) is about, read up to three of the
  files found, then the plan as text.
- **review**: read the document's file, then ``report_findings`` (or, without that tool, the
  findings as a JSON block).
- **qa**: ``run_command`` for each command the tool accepts (its schema's enum), in order; then
  ``report_findings`` with ``passed`` (every command exited 0) and a finding per failure where the
  output names a file and line (``path:line: message``, as pytest prints), else on the document.
- **"run `NAME`"** in the instruction, with ``run_command`` offered (any kind): ``run_command {name}``
  for each command named so, one a turn, then a text that quotes every result as it came back; a
  code phase first makes its edits (as above), then runs them.

Results are read as the tools write them: ``read_file`` numbers each line ``<number>\\t<text>``;
``search_files`` lists hits as ``path:line:text`` (or ``path:line<TAB>text``, or a path on a line
of its own above its hits); ``list_files`` one path a line.

A ``hasty`` model renames in the document only, without searching for its callers, unless the
instruction is a fix round's (``Fix round N of M``): then it searches as the careful agent does.
Models that misbehave on purpose, by their id: ``loop`` repeats its first call forever; ``badargs``
first sends arguments that are not JSON; ``rogue`` first calls a tool it was not given; ``toolonly``
answers a request that asked for text (``tool_choice`` none) with only a call of a declared tool.
After the error result, ``badargs`` and ``rogue`` go on as the careful agent does.
Every answer is a pure function of the request.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.sim.answers import (
    RENAME_RX,
    Answer,
    Document,
    Prompt,
    ToolUse,
    answer,
    attribution,
    code_object,
    new_lines,
    plan_text,
    replace_blocks,
    review_object,
    symbols,
    text_with_json,
)
from phasewise.sim.transcript import Exchange
from phasewise.tool_names import EDIT_TOOL, FINDINGS_TOOL, RUN_COMMAND

READ_FILE, LIST_FILES, SEARCH_FILES, EDIT_FILE = "read_file", "list_files", "search_files", "edit_file"
AGENT_TOOLS = (READ_FILE, LIST_FILES, SEARCH_FILES, EDIT_FILE)
MAX_CALLS = 60  # a careful agent stops and says what it has once its transcript holds this many calls

_NUMBERED = re.compile(r"^\s*(\d+)\t(.*)$")
_HIT = re.compile(r"^(?P<path>[^\s:][^:\t\n]*?):(?P<line>\d+)(?:[:\t]|$)")
_PATH = re.compile(r"^[\w.@+-][\w./@+-]*\.\w+/?$")
_LANGUAGES = {".py": "python", ".pyi": "python", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust"}


def file_rows(result: str) -> tuple[tuple[int, str], ...]:
    """The numbered lines of a ``read_file`` result (anything else in it, a header or a note on
    lines left out, is not a line of the file)."""
    rows = []
    for line in result.split("\n"):
        m = _NUMBERED.match(line)
        if m is not None:
            rows.append((int(m.group(1)), m.group(2)))
    return tuple(rows)


def result_paths(result: str) -> list[str]:
    """The paths a ``search_files`` or ``list_files`` result names, in order, each once."""
    found: dict[str, None] = {}
    for line in result.split("\n"):
        hit = _HIT.match(line)
        if hit is not None:
            found.setdefault(hit.group("path").strip(), None)
        elif _PATH.match(line.strip()) and not line[:1].isspace() and not line.strip().endswith("/"):
            found.setdefault(line.strip(), None)
    return list(found)


@dataclass(frozen=True, slots=True)
class Session:
    """What the agent knows at this step: the request and every call made so far, with results."""

    prompt: Prompt
    history: tuple[Exchange, ...]
    callable: tuple[str, ...]
    provider: str
    model: str
    commands: tuple[str, ...] = ()  # the names run_command accepts

    def calls(self, name: str) -> list[Exchange]:
        return [e for e in self.history if e.name == name]

    def attempted(self, name: str, key: str = "path") -> set[str]:
        """The ``key`` argument of every call of ``name`` so far (answered well or not)."""
        return {str(e.input[key]) for e in self.calls(name) if e.input is not None and key in e.input}

    def read(self, path: str) -> Document | None:
        """The file as the last good ``read_file`` of ``path`` showed it."""
        for e in reversed(self.calls(READ_FILE)):
            if e.ok and e.input is not None and e.input.get("path") == path and e.result is not None:
                rows = file_rows(e.result)
                if rows:
                    language = next((v for k, v in _LANGUAGES.items() if path.endswith(k)), "")
                    return Document(path, language, rows[0][0], rows[-1][0], rows, "read with read_file")
        return None

    @property
    def document_path(self) -> str | None:
        doc = self.prompt.document
        return doc.path if doc is not None and doc.path else None

    def text(self, *lines: str) -> Answer:
        return Answer(text="\n".join((attribution(self.provider, self.model), "", *lines)) + "\n")


def _call(name: str, **arguments: Any) -> ToolUse:
    return ToolUse.of(name, arguments)


def _steps(*calls: ToolUse) -> Answer:
    return Answer(calls=calls)


def _kind(prompt: Prompt, callable: tuple[str, ...]) -> str:
    if prompt.kind in {"plan", "code", "review", "qa"}:
        return prompt.kind
    return "code" if EDIT_FILE in callable else "review" if FINDINGS_TOOL in callable else "plan"


def _target(prompt: Prompt) -> str | None:
    """The name a request is about: the one to rename, else the document's first definition."""
    m = RENAME_RX.search(prompt.instruction)
    if m is not None:
        return m.group(1)
    names = symbols(prompt.document, prompt.is_python, limit=1)
    return names[0][0] if names else None


def _first_call(s: Session) -> ToolUse:
    """The call a request starts with (what ``loop`` repeats and ``badargs`` spoils)."""
    kind = _kind(s.prompt, s.callable)
    target = _target(s.prompt)
    if SEARCH_FILES in s.callable and target and kind != "review" and (kind == "plan" or RENAME_RX.search(
            s.prompt.instruction)):
        return _call(SEARCH_FILES, pattern=rf"\b{target}\b")
    if s.document_path and READ_FILE in s.callable:
        return _call(READ_FILE, path=s.document_path)
    return _call(LIST_FILES if LIST_FILES in s.callable else s.callable[0])


# --------------------------------------------------------------------------- scripts


def _code(s: Session) -> Answer:
    m = RENAME_RX.search(s.prompt.instruction)
    if m is None:
        return _code_other(s)
    old, new = m.group(1), m.group(2)
    searches = s.calls(SEARCH_FILES)
    found = [e for e in searches if e.ok]
    hasty = "hasty" in s.model and "Fix round" not in s.prompt.instruction
    if SEARCH_FILES not in s.callable or hasty:  # no search (a hasty model's first try): the document only
        paths = [s.document_path] if s.document_path else []
    elif not found:
        if len(searches) >= 2:
            return s.text(f"I could not search the workspace for `{old}` ({_first_line(searches[-1].result)}). "
                          f"Nothing was changed.")
        return _steps(_call(SEARCH_FILES, pattern=rf"\b{old}\b"))
    else:
        paths = result_paths(found[-1].result or "")
    if not paths:
        return s.text(f"No file in the workspace uses `{old}`: there is nothing to rename.")
    if unread := [p for p in paths if p not in s.attempted(READ_FILE)]:
        return _steps(*(_call(READ_FILE, path=p) for p in unread))
    edits = s.calls(EDIT_FILE)
    if not edits:
        word = re.compile(rf"\b{re.escape(old)}\b")
        calls = [_edit(path, doc, [word.sub(new, t) for _, t in doc.lines])
                 for path in paths if (doc := s.read(path)) is not None]
        flat = tuple(c for group in calls for c in group)
        if not flat:
            return s.text(f"`{old}` appears in none of the lines I could read: nothing was changed.")
        return _steps(*flat)
    return s.text(_summary(f"Renamed `{old}` to `{new}`", edits))


def _code_other(s: Session) -> Answer:
    path = s.document_path or _listed(s)
    if path is None:
        return _steps(_call(LIST_FILES)) if not s.calls(LIST_FILES) else s.text("I found no file to change.")
    if path not in s.attempted(READ_FILE):
        return _steps(_call(READ_FILE, path=path))
    doc = s.read(path)
    if doc is None:
        return s.text(f"I could not read `{path}`, so nothing was changed.")
    obj = code_object(dataclasses.replace(s.prompt, document=doc, files=()))
    edits = s.calls(EDIT_FILE)
    if edits:
        return s.text(_summary(str(obj["summary"]).rstrip("."), edits))
    mine = [e for e in obj["edits"] if e.get("path", path) == path]
    calls = list(_edit(path, doc, new_lines(doc, mine))) if mine else []
    calls += [_call(EDIT_FILE, path=e["path"], search="", replace=e["new_text"])
              for e in obj["edits"] if e.get("path", path) != path]  # a new file: nothing to search for
    return _steps(*calls) if calls else s.text(str(obj["summary"]))


def _plan(s: Session) -> Answer:
    target = _target(s.prompt)
    if target and SEARCH_FILES in s.callable:
        searches = s.calls(SEARCH_FILES)
        if not searches:
            return _steps(_call(SEARCH_FILES, pattern=rf"\b{target}\b"))
        found = [e for e in searches if e.ok]
        paths = result_paths(found[-1].result or "")[:3] if found else []
    else:
        path = s.document_path or _listed(s)
        if path is None and not s.calls(LIST_FILES) and LIST_FILES in s.callable:
            return _steps(_call(LIST_FILES))
        paths = [path] if path else []
    if (unread := [p for p in paths if p not in s.attempted(READ_FILE)]) and READ_FILE in s.callable:
        return _steps(*(_call(READ_FILE, path=p) for p in unread))
    read = [d for p in paths if (d := s.read(p)) is not None]
    prompt = s.prompt if s.prompt.document is not None or not read else dataclasses.replace(
        s.prompt, document=read[0])
    others = tuple(d for d in read if prompt.document is None or d.path != prompt.document.path)
    text = plan_text(dataclasses.replace(prompt, files=others), s.provider, s.model)
    if read:
        text += "\nRead with tools: " + ", ".join(f"`{d.path}` ({len(d.lines)} lines)" for d in read) + ".\n"
    return Answer(text=text)


def _review(s: Session) -> Answer:
    path = s.document_path or _listed(s)
    if path is None and not s.calls(LIST_FILES) and LIST_FILES in s.callable:
        return _steps(_call(LIST_FILES))
    if path is not None and path not in s.attempted(READ_FILE) and READ_FILE in s.callable:
        return _steps(_call(READ_FILE, path=path))
    doc = (s.read(path) if path else None) or s.prompt.document
    obj = review_object(dataclasses.replace(s.prompt, document=doc, files=()))
    if s.calls(FINDINGS_TOOL):
        return s.text(str(obj["summary"]))
    if FINDINGS_TOOL in s.callable:
        return _steps(_call(FINDINGS_TOOL, **obj))
    return Answer(text=text_with_json(str(obj["summary"]), obj, s.provider, s.model))


_FAILED_AT = re.compile(r"^(?P<path>[\w./-]+\.\w+):(?P<line>\d+): (?P<message>.+)$", re.M)
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)', re.M)  # a Python traceback's frame


def _qa(s: Session) -> Answer:
    """Every command run once, in order; then the verdict with a finding per failure."""
    runs = s.calls(RUN_COMMAND)
    ran = {str((e.input or {}).get("name")) for e in runs}
    if RUN_COMMAND in s.callable and (left := [n for n in s.commands if n not in ran]):
        return _steps(ToolUse.of(RUN_COMMAND, {"name": left[0]}))
    failed = [e for e in runs if not e.ok]
    findings: list[dict[str, Any]] = []
    for e in failed:
        name = (e.input or {}).get("name")
        where = list(_FAILED_AT.finditer(e.result or ""))
        for m in where:
            line = int(m.group("line"))
            findings.append({"path": m.group("path"), "start_line": line, "end_line": line, "severity": "error",
                             "message": f"`{name}` failed here: {m.group('message').strip()}"})
        frames = [] if where else [m for m in _FRAME.finditer(e.result or "") if "/lib/python" not in m.group("path")]
        for m in frames:  # a traceback: each frame in the project, with the error it ends with
            line = int(m.group("line"))
            findings.append({"path": m.group("path"), "start_line": line, "end_line": line, "severity": "error",
                             "message": f"`{name}` failed here: {_error_line(e.result)}"})
        where += frames
        if not where:
            findings.append({"start_line": 1, "end_line": 1, "severity": "error",
                             "message": f"`{name}` failed: {_last_line(e.result)}"})
    passed = bool(runs) and not failed
    summary = (f"All {len(runs)} command{'s' if len(runs) != 1 else ''} passed." if passed else
               f"{len(failed)} of {len(runs)} command{'s' if len(runs) != 1 else ''} failed." if runs else
               "No command was run.")
    if s.calls(FINDINGS_TOOL) or FINDINGS_TOOL not in s.callable:
        return s.text(summary)
    return _steps(_call(FINDINGS_TOOL, summary=summary, passed=passed, findings=findings))


def _error_line(text: str | None) -> str:
    """The last ``SomethingError: …`` line of a traceback, else its last line."""
    found = re.findall(r"^(\w*(?:Error|Exception)\b.*)$", text or "", re.M)
    return found[-1][:200] if found else _last_line(text)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().split("\n") if line.strip()]
    return lines[-1][:200] if lines else "no output"


_SCRIPTS: dict[str, Callable[[Session], Answer]] = {"code": _code, "plan": _plan, "review": _review, "qa": _qa}


def _edit(path: str, doc: Document, new: list[str]) -> tuple[ToolUse, ...]:
    """One ``edit_file`` per block of changed lines, each block's text unique in the file."""
    old = [t for _, t in doc.lines]
    return tuple(_call(EDIT_FILE, path=path, search="\n".join(a), replace="\n".join(b))
                 for a, b in replace_blocks(old, new))


def _listed(s: Session) -> str | None:
    """The first file a ``list_files`` result named."""
    for e in s.calls(LIST_FILES):
        if e.ok and (paths := result_paths(e.result or "")):
            return paths[0]
    return None


def _first_line(text: str | None) -> str:
    return (text or "no result").strip().split("\n", 1)[0][:200]


def _summary(lead: str, edits: list[Exchange]) -> str:
    applied = [e for e in edits if e.ok]
    failed = [e for e in edits if not e.ok]
    files = list(dict.fromkeys(str((e.input or {}).get("path")) for e in applied))
    out = f"{lead}: {len(applied)} edit{'s' if len(applied) != 1 else ''} in {len(files)} " \
          f"file{'s' if len(files) != 1 else ''}" + (f" ({', '.join(f'`{f}`' for f in files)})." if files else ".")
    if failed:
        out += f" {len(failed)} edit{'s' if len(failed) != 1 else ''} did not apply: " + "; ".join(
            f"{(e.input or {}).get('path', '?')}: {_first_line(e.result)}" for e in failed) + "."
    return out


# --------------------------------------------------------------------------- dispatch


def _tool_only(prompt: Prompt, declared: tuple[str, ...]) -> Answer:
    """A call of the first declared tool where text was asked (a server that ignores ``tool_choice``)."""
    name = declared[0]
    doc = prompt.document
    obj = (code_object(prompt) if name == EDIT_TOOL else review_object(prompt) if name == FINDINGS_TOOL
           else {"path": doc.path} if doc is not None and name == READ_FILE else {})
    return Answer(calls=(ToolUse.of(name, obj),))


def reply(prompt: Prompt, history: tuple[Exchange, ...], declared: tuple[str, ...], callable: tuple[str, ...],
          provider: str, model: str, commands: tuple[str, ...] = ()) -> Answer:
    """The simulated reply to a request: an agent's next step when the request lets the model call
    an agent's tools (``callable``), the misbehaving models' answers, else the single-shot answer."""
    if "toolonly" in model and declared and not callable:
        return _tool_only(prompt, declared)
    if not any(name in (*AGENT_TOOLS, RUN_COMMAND) for name in callable):
        return answer(prompt, provider, model)
    s = Session(prompt, history, callable, provider, model, commands)
    if "loop" in model:
        return _steps(_first_call(s))
    if not history and "badargs" in model:
        first = _first_call(s)
        return _steps(ToolUse(first.name, first.arguments[:-1]))  # the closing brace left out
    if not history and "rogue" in model:
        name = EDIT_FILE if EDIT_FILE not in callable else "run_command"
        return _steps(_call(name, path=s.document_path or "README.md", search="a", replace="b"))
    if len(history) >= MAX_CALLS:
        return s.text(f"I stop here after {len(history)} tool calls; the work is not finished.")
    if _kind(prompt, callable) == "qa":
        return _qa(s)
    if RUN_COMMAND in callable and (names := _RUN_RX.findall(prompt.instruction)):
        if EDIT_FILE in callable and _kind(prompt, callable) == "code" and (edits := _code(s)).calls:
            return edits  # the edits first, then the commands run on them
        return _run(s, names)
    if (stray := _STRAY_RX.search(prompt.instruction)) is not None:
        return _stray(s, stray.group(1), stray.group(2))
    return _SCRIPTS[_kind(prompt, callable)](s)


# "read `PATH`" / "write `PATH`": a confused (or prompt-injected) agent goes for PATH, whatever it is
_STRAY_RX = re.compile(r"\b(read|write) (?:to )?`([^`\n]+)`")


_RUN_RX = re.compile(r"\brun `([^`\n]+)`")


def _run(s: Session, names: list[str]) -> Answer:
    """``run_command`` for each name not run yet, then every result quoted."""
    done = s.calls(RUN_COMMAND)
    ran = {str((e.input or {}).get("name")) for e in done}
    left = [n for n in dict.fromkeys(names) if n not in ran]
    if left:
        return _steps(ToolUse.of(RUN_COMMAND, {"name": left[0]}))
    return s.text(*(f"run_command `{(e.input or {}).get('name')}` ({'ok' if e.ok else 'error'}):\n{e.result or ''}"
                    for e in done))


def _stray(s: Session, verb: str, path: str) -> Answer:
    """One call on ``path`` (read it, or create it with one line), then a text saying what came back."""
    name = READ_FILE if verb == "read" else EDIT_FILE
    if name not in s.callable:
        return s.text(f"I was asked to {verb} `{path}` but have no {name} tool.")
    done = s.calls(name)
    if not done:
        if name == READ_FILE:
            return _steps(_call(READ_FILE, path=path))
        return _steps(_call(EDIT_FILE, path=path, search="", replace="echo written-by-a-confused-model"))
    last = done[-1]
    return s.text(f"{name} `{path}`: {'done' if last.ok else 'refused'}: {_first_line(last.result)}")


__all__ = ["AGENT_TOOLS", "MAX_CALLS", "file_rows", "reply", "result_paths"]
