"""The tools a phase that works in steps calls: ``read_file``, ``list_files``, ``search_files`` and
``edit_file`` (the names users' settings and the docs use: ``tool_names``).

A ``Tool`` is a small object: its name, a description for the model, the JSON schema of its
arguments, the permission it needs (``read`` or ``edit``) and a function of (arguments, the phase's
``AgentWorkspace``) → ``ToolOutcome``: the text the model gets, whether it is an error result (the
model can act on it), and a few words for the progress line. The loop (``phases.agent``) knows
nothing of any tool: it declares ``tools_for(kind, names)`` and hands each call to ``run_call``.

Read-only by construction: a plan or review phase is never given ``edit_file``, whatever the
``tools`` setting says, and ``run_call`` answers a call to a tool that was not declared, arguments
that are not an object or that the schema refuses, with an error result and no effect; it never
raises. Every path goes through ``AgentWorkspace.path_of`` (the workspace's path gate, and credential
files only when the user's own instruction named them). Every result is bounded and says when it
was cut.
May not import: edge, router, providers.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from phasewise.gate import PathRefused
from phasewise.phases.agent_workspace import AgentWorkspace, Staged
from phasewise.phases.index import MAX_FILE_BYTES
from phasewise.phases.listing import SKIP_DIRS
from phasewise.phases.search import Found, Hit, git_grep, glob_matcher, pathspecs, scan
from phasewise.phases.workspace import sensitive
from phasewise.tool_names import EDIT_FILE, LIST_FILES, READ_FILE, SEARCH_FILES

if TYPE_CHECKING:
    from phasewise.providers.base import ToolLike

MAX_READ_LINES = 400  # lines of one read_file answer
MAX_READ_CHARS = 40_000  # characters of one read_file answer
MAX_LINE_CHARS = 2_000  # a longer line is cut (minified files)
MAX_LIST = 500  # paths of one list_files answer
MAX_MATCHES = 200  # lines of one search_files answer
MAX_SEARCH_CHARS = 40_000
SEARCH_TIMEOUT = 10.0  # seconds
MAX_SHOWN_EDIT = 30  # numbered lines edit_file shows around what it staged

Permission = Literal["read", "edit", "run"]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a call gave: ``content`` for the model, ``ok`` False for an error result (the model can
    act on it), ``summary`` a few words for the progress line."""

    content: str
    ok: bool
    summary: str


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """One tool (see the module docstring); a ``providers.base.ToolLike`` to declare in a request."""

    name: str
    description: str
    schema: dict[str, Any]
    permission: Permission
    # a function of (arguments, workspace); an async one (``run_command``) is awaited on the loop
    run: Callable[[dict[str, Any], AgentWorkspace], ToolOutcome | Awaitable[ToolOutcome]]


def _error(summary: str, content: str) -> ToolOutcome:
    return ToolOutcome(content, False, summary)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _refused(tool: str, refused: PathRefused) -> ToolOutcome:
    return _error(f"{tool} {_short(refused.path)}: refused",
                  f"{_short(refused.path, 300)} {refused.reason}; nothing was done.")


def _numbered(lines: Sequence[str], first: int) -> list[str]:
    """``<number>\\t<text>`` lines (1-based ``first``), long lines cut."""
    out = []
    for n, line in enumerate(lines, first):
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f"… (line cut at {MAX_LINE_CHARS:,} characters)"
        out.append(f"{n}\t{line}")
    return out


def _why_unreadable(path: Path, shown: str) -> str:
    if path.is_dir():
        return f"{shown} is a folder: list_files shows what is in it"
    if not path.exists():
        return f"{shown} does not exist"
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if size > MAX_FILE_BYTES:
        return (f"{shown} is larger than {MAX_FILE_BYTES:,} bytes ({size:,}), which Phasewise does not read; "
                "search_files still finds lines in it")
    return f"{shown} is not a text file (binary, or not UTF-8)"


# --------------------------------------------------------------------------- read_file


def _read_file(args: dict[str, Any], ws: AgentWorkspace) -> ToolOutcome:
    name = args["path"]
    try:
        rel, path = ws.path_of(name)
    except PathRefused as refused:
        return _refused(READ_FILE, refused)
    text = ws.text_of(rel) if rel else None
    if text is None:
        return _error(f"{READ_FILE} {_short(name)}: cannot read", _why_unreadable(path, rel or name) + ".")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    total = len(lines)
    if total == 0:
        return ToolOutcome(f"({rel} is empty)", True, f"{READ_FILE} {rel}: empty")
    start = args.get("startLine", 1)
    if start > total:
        return _error(f"{READ_FILE} {rel}: past the end",
                      f"startLine {start} is past the end of {rel}, which has {total} lines.")
    end = min(args.get("endLine", total), total)
    if end < start:
        return _error(f"{READ_FILE} {rel}: empty range", f"endLine {end} is before startLine {start}.")
    shown = _numbered(lines[start - 1 : min(end, start - 1 + MAX_READ_LINES)], start)
    chars = 0
    for k, line in enumerate(shown):
        chars += len(line) + 1
        if chars > MAX_READ_CHARS and k > 0:
            shown = shown[:k]
            break
    last = start + len(shown) - 1
    notes = []
    if last < end:  # cut at the bounds
        notes.append(f"(lines {start}–{last} of {total}; ask for startLine/endLine for more)")
    elif (start, last) != (1, total):
        notes.append(f"(lines {start}–{last} of {total})")
    if rel in ws.created():
        notes.append("(a new file: your staged edits create it)")
    elif rel in ws.staged():
        notes.append("(with your staged edits)")
    return ToolOutcome("\n".join(shown + notes), True, f"{READ_FILE} {rel}: lines {start}–{last} of {total}")


# --------------------------------------------------------------------------- list_files


def _folder_arg(tool: str, args: dict[str, Any], ws: AgentWorkspace) -> tuple[str, Path] | ToolOutcome:
    """``path`` as the folder (or file) to look in: ("", first folder) when absent."""
    name = args.get("path")
    if name is None:
        return "", ws.workspace.folders[0] if ws.workspace.folders else Path(".")
    try:
        return ws.path_of(name)
    except PathRefused as refused:
        return _refused(tool, refused)


def _glob_arg(tool: str, args: dict[str, Any]) -> Callable[[str, str], bool] | ToolOutcome | None:
    glob = args.get("glob")
    if not glob:
        return None
    try:
        return glob_matcher(glob)
    except re.error as err:
        return _error(f"{tool} {_short(glob)}: invalid glob", f"`glob` {glob!r} is not a usable glob: {err}.")


def _under(rel: str, base: str) -> bool:
    return not base or rel == base or rel.startswith(base + "/")


def _below(rel: str, base: str) -> str:
    return rel[len(base) + 1 :] if base and rel.startswith(base + "/") else rel


def _list_files(args: dict[str, Any], ws: AgentWorkspace) -> ToolOutcome:
    got = _folder_arg(LIST_FILES, args, ws)
    if isinstance(got, ToolOutcome):
        return got
    base, path = got
    if base and path.is_file():
        return _error(f"{LIST_FILES} {base}: a file", f"{base} is a file, not a folder: read_file reads it.")
    glob = args.get("glob")
    match = _glob_arg(LIST_FILES, args)
    if isinstance(match, ToolOutcome):
        return match
    listed = dict.fromkeys([*ws.workspace.listing(), *ws.created()])
    names = sorted(rel for rel in listed
                   if _under(rel, base) and (match is None or match(rel, _below(rel, base))))
    where = " ".join(x for x in (base, f'"{glob}"' if glob else "") if x) or "workspace"
    if not names:
        missing = base and not path.exists()
        why = (f"{base} does not exist" if missing
               else f"no file {'in ' + base if base else 'in the workspace'}{' matches ' + glob if glob else ''}")
        return ToolOutcome(f"({why}; git-ignored files are not listed)", True, f"{LIST_FILES} {where}: no files")
    shown = names[:MAX_LIST]
    notes = [f"({len(shown):,} of {len(names):,} files shown; narrow with path or glob)"] if len(names) > len(shown) \
        else []
    return ToolOutcome("\n".join(shown + notes), True,
                       f"{LIST_FILES} {where}: {len(names):,} file{'s' if len(names) != 1 else ''}")


# --------------------------------------------------------------------------- search_files


def _search_files(args: dict[str, Any], ws: AgentWorkspace) -> ToolOutcome:
    pattern: str = args["pattern"]
    said = f'{SEARCH_FILES} "{_short(pattern, 60)}"'
    if set(pattern) & set("\n\r\0"):
        return _error(f"{said}: a line break in the pattern",
                      "search_files matches one line at a time: `pattern` cannot hold a line break (or a NUL). "
                      "Search for one line of what you look for.")
    try:
        re.compile(pattern)
    except re.error as err:
        return _error(f"{said}: invalid pattern",
                      f"`pattern` is not a valid regular expression (Python syntax): {err}. Escape "
                      "characters such as ( [ { . * + ? with a backslash to match them as they are.")
    got = _folder_arg(SEARCH_FILES, args, ws)
    if isinstance(got, ToolOutcome):
        return got
    base, path = got
    is_file = bool(base) and path.is_file()
    if base and not is_file and not path.is_dir() and not any(_under(c, base) for c in ws.created()):
        return _error(f"{said}: no such path", f"{base} does not exist.")
    glob = args.get("glob")
    match = _glob_arg(SEARCH_FILES, args)
    if isinstance(match, ToolOutcome):
        return match
    overlaid = ws.overlaid()
    listed: set[str] | None = None

    def selected(rel: str) -> bool:
        """Searched: under ``path``, matching ``glob``, not a credential file nor in a skipped folder."""
        return (_under(rel, base) and (match is None or match(rel, _below(rel, base)))
                and not (set(rel.split("/")[:-1]) & SKIP_DIRS) and not sensitive(rel))

    def from_disk(rel: str) -> bool:
        return rel not in overlaid and selected(rel)

    deadline = time.monotonic() + SEARCH_TIMEOUT
    located = ws.workspace.locate(path) if base else None
    folders = [located[0]] if located is not None else ws.workspace.folders
    specs = pathspecs(base, glob, is_file)
    found = Found()
    for folder in folders:
        left = MAX_MATCHES - len(found.hits)
        part = git_grep(folder, pattern, specs=specs, keep=from_disk, limit=left,
                        timeout=deadline - time.monotonic())
        if part is None:
            rels = [r for r in ws.workspace.index.listing(folder) if from_disk(r)]
            part = scan(((r, ws.text_of(r)) for r in rels), pattern, limit=left, deadline=deadline)
        found.hits += part.hits
        found.more |= part.more
        found.timed_out |= part.timed_out
        if found.more or found.timed_out:
            break
    if overlaid and not found.timed_out:
        staged = set(ws.staged())
        if overlaid - staged:
            listed = {r for f in ws.workspace.folders for r in ws.workspace.index.listing(f)}
        extra = sorted(r for r in overlaid if selected(r) and (r in staged or (listed is not None and r in listed)))
        part = scan(((r, ws.text_of(r)) for r in extra), pattern, limit=MAX_MATCHES, deadline=deadline)
        found.hits += part.hits
        found.more |= part.more
    if found.timed_out:
        return _error(f"{said}: timed out",
                      f"The search stopped after {SEARCH_TIMEOUT:g} s without finishing: narrow it with `path` or "
                      "`glob`, or a more specific pattern.")
    return _search_result(said, found)


def _search_result(said: str, found: Found) -> ToolOutcome:
    hits = sorted(found.hits)
    more = found.more or len(hits) > MAX_MATCHES
    hits = hits[:MAX_MATCHES]
    lines: list[str] = []
    chars = 0
    for h in hits:
        line = f"{h.path}:{h.line}: {h.text}"
        chars += len(line) + 1
        if chars > MAX_SEARCH_CHARS:
            more = True
            break
        lines.append(line)
    files = len({h.path for h in hits[: len(lines)]})
    count = f"{len(lines)}{'+' if more else ''} match{'es' if len(lines) != 1 or more else ''} in {files} " \
            f"file{'s' if files != 1 else ''}"
    if not lines:
        return ToolOutcome("(no matches; git-ignored and credential files are not searched)", True,
                           f"{said}: no matches")
    if more:
        lines.append(f"(the first {len(lines)} matches; there are more: narrow with path or glob)")
    return ToolOutcome("\n".join(lines), True, f"{said}: {count}")


# --------------------------------------------------------------------------- edit_file


def _as_lines(text: str) -> str:
    """``search`` or ``replace`` as a SEARCH/REPLACE block's section: lines, the last one's newline
    dropped (a model writes ``"x\\n"`` for the line ``x``: kept, it would ask for a blank line after)."""
    return text.replace("\r\n", "\n").removesuffix("\n")


def _edit_file(args: dict[str, Any], ws: AgentWorkspace) -> ToolOutcome:
    name, search, replace = args["path"], _as_lines(args["search"]), _as_lines(args["replace"])
    try:
        rel, path = ws.path_of(name)
    except PathRefused as refused:
        return _refused(EDIT_FILE, refused)
    if not rel or path.is_dir():
        return _error(f"{EDIT_FILE} {_short(name)}: a folder", f"{rel or name} is a folder, not a file.")
    text = ws.text_of(rel)
    if text is None and (path.exists() or path.is_symlink()):
        return _error(f"{EDIT_FILE} {rel}: cannot edit", _why_unreadable(path, rel) + ".")
    if text is None and search.strip():
        return _error(f"{EDIT_FILE} {rel}: no such file",
                      f"{rel} does not exist: give an empty `search` to create it, or list_files to find the "
                      "file you mean.")
    if text is None:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return _error(f"{EDIT_FILE} {rel}: cannot create",
                          f"{rel} cannot be created: {blocker.name} on its way is a file, not a folder.")
    if search == replace:
        return _error(f"{EDIT_FILE} {rel}: no change", "`search` and `replace` are the same: nothing to change.")
    got = ws.stage(rel, search, replace)
    if not isinstance(got, Staged):
        return _error(f"{EDIT_FILE} {rel}: not staged", _failure_text(rel, got.reason, got.hint))
    return _staged(got)


def _failure_text(rel: str, reason: str, hint: str) -> str:
    """The repair round's failure text (``edits.BlockFailure``), in the tool's words."""
    def words(s: str) -> str:
        s = re.sub(r"^block \d+: ", "", s)
        return s.replace("its SEARCH section", "`search`").replace("SEARCH section", "`search`") \
            .replace("REPLACE lines", "`replace` lines")
    hint = "\n".join(x for x in hint.split("\n") if not x.startswith("Its SEARCH section starts"))
    out = [f"{rel}: {words(reason)}; nothing was staged."]
    if hint.strip():
        out.append(words(hint.strip()))
    out.append("Copy `search` from read_file's output exactly (the text after each line's number and tab, never "
               "the number) and add neighbouring lines until it matches exactly one place.")
    return "\n".join(out)


def _staged(s: Staged) -> ToolOutcome:
    after = s.after.split("\n")
    if after and after[-1] == "":
        after.pop()
    if s.before is None:
        shown = _numbered(after[:MAX_SHOWN_EDIT], 1)
        more = [f"(lines 1–{MAX_SHOWN_EDIT} of {len(after)})"] if len(after) > MAX_SHOWN_EDIT else []
        return ToolOutcome("\n".join([f"staged: {s.path} (created, {len(after)} lines)", *shown, *more]), True,
                           f"{EDIT_FILE} {s.path}: created, {len(after)} lines")
    before = s.before.split("\n")
    if before and before[-1] == "":
        before.pop()
    top = 0
    while top < min(len(before), len(after)) and before[top] == after[top]:
        top += 1
    tail = 0
    while tail < min(len(before), len(after)) - top and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    removed, added = len(before) - top - tail, len(after) - top - tail
    first = max(top - 2, 0)
    last = min(len(after), len(after) - tail + 2, first + MAX_SHOWN_EDIT)
    head = f"staged: {s.path} (+{added} −{removed} lines)"
    return ToolOutcome("\n".join([head, *_numbered(after[first:last], first + 1)]), True,
                       f"{EDIT_FILE} {s.path}: +{added} −{removed} lines")


# --------------------------------------------------------------------------- the tools


def _schema(properties: dict[str, dict[str, Any]], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_PATH = {"type": "string", "description": "Workspace-relative path, e.g. src/app.py."}

READ_FILE_TOOL: Final = Tool(
    READ_FILE,
    "Read a text file of the workspace. Each line comes back as its number, a tab, then its text. At most "
    f"{MAX_READ_LINES} lines a call: use startLine/endLine for the rest. Shows your staged edits and the "
    "editor's unsaved text.",
    _schema({"path": _PATH,
             "startLine": {"type": "integer", "minimum": 1, "description": "First line to read (1-based)."},
             "endLine": {"type": "integer", "minimum": 1, "description": "Last line to read (inclusive)."}},
            ["path"]),
    "read", _read_file)
LIST_FILES_TOOL: Final = Tool(
    LIST_FILES,
    "List the workspace's files (git-ignored ones left out), one path a line, with the files you created. "
    f"At most {MAX_LIST} a call.",
    _schema({"path": {"type": "string", "description": "A folder to list (default: the whole workspace)."},
             "glob": {"type": "string", "description": "Only files matching this glob, e.g. *.py or src/**/*.ts "
                      "(without /, it matches file names)."}},
            []),
    "read", _list_files)
SEARCH_FILES_TOOL: Final = Tool(
    SEARCH_FILES,
    "Search the workspace's files for a regular expression (Python syntax; (?i) for any case), line by line. "
    f"Answers path:line: text, at most {MAX_MATCHES} matches. Git-ignored and credential files are not "
    "searched; your staged edits are.",
    _schema({"pattern": {"type": "string", "description": "A regular expression, e.g. def find_item\\b."},
             "path": {"type": "string", "description": "A folder or file to search (default: the whole workspace)."},
             "glob": {"type": "string", "description": "Only files matching this glob, e.g. *.py."}},
            ["pattern"]),
    "read", _search_files)
EDIT_FILE_TOOL: Final = Tool(
    EDIT_FILE,
    "Stage a change to one file: `search` is the exact lines to replace (copied from read_file, without the "
    "line numbers; enough lines to match one place only), `replace` the new lines. An empty `search` on a path "
    "that does not exist creates the file with `replace`. Staged edits are shown to the user as one change when "
    "you finish.",
    _schema({"path": _PATH,
             "search": {"type": "string", "description": "The existing lines to replace, exactly; empty to "
                        "create a new file."},
             "replace": {"type": "string", "description": "The new lines."}},
            ["path", "search", "replace"]),
    "edit", _edit_file)

TOOLS: Final = (READ_FILE_TOOL, LIST_FILES_TOOL, SEARCH_FILES_TOOL, EDIT_FILE_TOOL)
_BY_NAME: Final = {t.name: t for t in TOOLS}

if TYPE_CHECKING:
    _declarable: ToolLike = READ_FILE_TOOL  # a tool is declared in a ChatRequest as it is


def tools_for(kind: str, names: Collection[str] | None = None) -> tuple[Tool, ...]:
    """The tools a phase of ``kind`` is given, in a fixed order: a code phase all four, any other
    kind the read-only ones only (never ``edit_file``, whatever ``names`` says); ``names`` (the
    phase's ``tools`` setting) narrows them."""
    return tuple(t for t in TOOLS
                 if (t.permission == "read" or kind == "code") and (names is None or t.name in names))


def tool_named(name: str) -> Tool | None:
    return _BY_NAME.get(name)


def _checked(name: str, args: dict[str, Any] | None,
             tools: Sequence[Tool]) -> tuple[Tool, dict[str, Any]] | ToolOutcome:
    """The tool ``name`` among ``tools`` and its checked arguments, or the error result."""
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        offered = ", ".join(t.name for t in tools) or "none"
        return _error(f"{_short(name)}: not a tool of this phase",
                      f"There is no tool named {_short(name)!r} in this phase; nothing was done. The tools you "
                      f"may call: {offered}.")
    if not isinstance(args, dict):
        return _error(f"{name}: arguments not an object",
                      f"The arguments of {name} must be a JSON object (properties: "
                      f"{', '.join(tool.schema['properties'])}); nothing was done.")
    args = dict(args)  # check_arguments may make 3.0 an int: the caller's object stays as the model sent it
    problems = check_arguments(tool.schema, args)
    if problems:
        return _error(f"{name}: bad arguments", f"{name}: {'; '.join(problems)}. Nothing was done.")
    return tool, args


def _failed(name: str, err: Exception) -> ToolOutcome:
    return _error(f"{name}: failed", f"{name} failed: {type(err).__name__}: {_short(str(err), 300)}. "
                  "Nothing was done.")


def run_call(name: str, args: dict[str, Any] | None, declared: Collection[str], ws: AgentWorkspace) -> ToolOutcome:
    """One call of a built-in tool: its outcome, an error result (and no effect) for a tool that was
    not declared (``declared``: the names of the tools the request declared), arguments that are
    not an object, or ones the tool's schema refuses. Never raises."""
    got = _checked(name, args, [t for n, t in _BY_NAME.items() if n in declared])
    if isinstance(got, ToolOutcome):
        return got
    tool, checked = got
    try:
        outcome = tool.run(checked, ws)
    except Exception as err:  # an error result the loop sends back, never a crashed phase
        return _failed(name, err)
    assert isinstance(outcome, ToolOutcome)
    return outcome


async def call_tool(name: str, args: dict[str, Any] | None, tools: Sequence[Tool], ws: AgentWorkspace) -> ToolOutcome:
    """One tool call of the model against the tools the request declared (``tools``), as ``run_call``
    answers it: a file tool in a thread, an async tool (``run_command``) on the loop. Never raises
    (a cancel propagates)."""
    got = _checked(name, args, tools)
    if isinstance(got, ToolOutcome):
        return got
    tool, checked = got
    try:
        if inspect.iscoroutinefunction(tool.run):
            outcome = await tool.run(checked, ws)
        else:
            outcome = await asyncio.to_thread(tool.run, checked, ws)
    except Exception as err:  # an error result the loop sends back, never a crashed phase
        return _failed(name, err)
    assert isinstance(outcome, ToolOutcome)
    return outcome


_JSON_TYPES: Final = {"string": "a string", "integer": "an integer", "boolean": "true or false",
                      "number": "a number", "object": "an object", "array": "an array"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def check_arguments(schema: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """What is wrong with ``args`` for ``schema`` (a flat object schema: required properties,
    ``additionalProperties: false``, types, ``minimum``), one phrase each; an integral float counts
    as an integer, and is made one."""
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    problems = [f"`{k}` is required ({_JSON_TYPES.get(props[k].get('type', ''), 'a value')})"
                for k in schema.get("required", []) if k not in args]
    for key in list(args):
        spec = props.get(key)
        if spec is None:
            problems.append(f"`{key}` is not an argument (the arguments are {', '.join(props)})")
            continue
        want, got = spec.get("type"), _json_type(args[key])
        if want is not None and got != want and not (want == "number" and got == "integer"):
            problems.append(f"`{key}` must be {_JSON_TYPES.get(want, want)}, not {repr(args[key])[:40]}")
            continue
        if got == "integer" and isinstance(args[key], float):
            args[key] = int(args[key])
        minimum = spec.get("minimum")
        if minimum is not None and got in ("integer", "number") and args[key] < minimum:
            problems.append(f"`{key}` must be at least {minimum}, not {args[key]}")
    return problems


__all__ = ["EDIT_FILE_TOOL", "LIST_FILES_TOOL", "MAX_LIST", "MAX_MATCHES", "MAX_READ_CHARS", "MAX_READ_LINES",
           "READ_FILE_TOOL", "SEARCH_FILES_TOOL", "SEARCH_TIMEOUT", "TOOLS", "AgentWorkspace", "Hit", "Permission",
           "Tool", "ToolOutcome", "call_tool", "check_arguments", "run_call", "tool_named", "tools_for"]
