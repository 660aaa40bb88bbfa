"""Issue 21: the tools a phase that works in steps calls (``phases.tools``), on real files in a real
git work tree: each tool's answer and its refusals (the path gate, credential files), the bounds and
the notes that say a result was cut, the agent's staged edits seen by every tool, the staged change
equal to a code phase's for the same edits, and calls that must have no effect (a tool not declared,
broken arguments, a read-only phase)."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from phasewise.phases import tools as tools_module
from phasewise.phases.answers import resolver
from phasewise.phases.documents import Document
from phasewise.phases.formats import SEARCH_REPLACE
from phasewise.phases.results import PhaseInput
from phasewise.phases.search import git_grep, glob_matcher, scan
from phasewise.phases.tools import (
    MAX_LIST,
    MAX_MATCHES,
    MAX_READ_LINES,
    TOOLS,
    AgentWorkspace,
    ToolOutcome,
    run_call,
    tools_for,
)
from phasewise.phases.workspace import Workspace
from phasewise.providers.base import ChatRequest
from phasewise.tool_names import AGENT_TOOLS, EDIT_FILE, READ_ONLY_TOOLS

LIB = "def find_item(items, sku):\n    for item in items:\n        if item.sku == sku:\n            return item\n"
CALLER = "from lib import find_item\n\n\ndef a(items):\n    return find_item(items, 'A')\n"
SECRET = "API_TOKEN=canary-not-a-key-7788"
ALL = set(AGENT_TOOLS)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git work tree: a module and its caller, a CRLF file, a git-ignored file, credential files,
    a binary and a huge file, a link that stays inside and links that lead out, and a canary file
    outside the workspace."""
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "pkg").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("find_item CANARY-OUTSIDE\n", encoding="utf-8")
    (root / "lib.py").write_text(LIB, encoding="utf-8")
    (root / "pkg" / "a.py").write_text(CALLER, encoding="utf-8")
    (root / "win.py").write_bytes(b"def w():\r\n    return find_item([], 'W')\r\n")
    (root / ".env").write_text(SECRET + " find_item\n", encoding="utf-8")
    (root / ".netrc").write_text("machine x login find_item password canary\n", encoding="utf-8")
    (root / "ignored.py").write_text("find_item  # ignored\n", encoding="utf-8")
    (root / ".gitignore").write_text("ignored.py\n", encoding="utf-8")
    (root / "blob.bin").write_bytes(b"find_item\0\0\0binary")
    (root / "big.py").write_text("x = 'find_item'\n" * 20_000, encoding="utf-8")  # > 200 KB
    (root / "alias.py").symlink_to(root / "lib.py")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    git(root, "init", "-q")
    return root


def agent(root: Path, allowed: frozenset[str] = frozenset(),
          open_docs: dict[str, tuple[str, int | None]] | None = None) -> AgentWorkspace:
    docs = {(root / rel).as_uri(): opened for rel, opened in (open_docs or {}).items()}
    return AgentWorkspace(Workspace([root], docs), allowed)


def call(ws: AgentWorkspace, name: str, declared: set[str] | None = None, **args: Any) -> ToolOutcome:
    out = run_call(name, args, ALL if declared is None else declared, ws)
    assert isinstance(out, ToolOutcome) and out.summary.startswith(name), out
    return out


# ----------------------------------------------------------------------------- read_file


def test_read_file_numbers_every_line_with_a_tab(project: Path) -> None:
    out = call(agent(project), "read_file", path="lib.py")
    assert out.ok
    assert out.content == ("1\tdef find_item(items, sku):\n2\t    for item in items:\n3\t        if item.sku == sku:\n"
                           "4\t            return item")
    assert out.summary == "read_file lib.py: lines 1–4 of 4"
    part = call(agent(project), "read_file", path="./lib.py", startLine=2, endLine=3)
    assert part.content == "2\t    for item in items:\n3\t        if item.sku == sku:\n(lines 2–3 of 4)"
    assert call(agent(project), "read_file", path=str(project / "lib.py")).ok  # absolute inside the workspace
    assert call(agent(project), "read_file", path="alias.py").content.startswith("1\tdef find_item")  # link inside
    crlf = call(agent(project), "read_file", path="win.py").content
    assert crlf == "1\tdef w():\n2\t    return find_item([], 'W')"  # no \r reaches the model


def test_read_file_is_bounded_and_says_where_it_was_cut(project: Path) -> None:
    (project / "long.py").write_text("".join(f"line_{i} = {i}\n" for i in range(1, 1001)), encoding="utf-8")
    out = call(agent(project), "read_file", path="long.py")
    lines = out.content.split("\n")
    assert len(lines) == MAX_READ_LINES + 1 and lines[MAX_READ_LINES - 1] == f"{MAX_READ_LINES}\tline_400 = 400"
    assert lines[-1] == "(lines 1–400 of 1000; ask for startLine/endLine for more)"
    tail = call(agent(project), "read_file", path="long.py", startLine=990, endLine=5000)
    assert tail.content.split("\n")[-1] == "(lines 990–1000 of 1000)" and tail.ok
    (project / "wide.py").write_text(("y" * 1_500 + "\n") * 100 + "z" * 9_000 + "\n", encoding="utf-8")
    wide = call(agent(project), "read_file", path="wide.py")
    assert len(wide.content) <= tools_module.MAX_READ_CHARS + 100
    assert wide.content.endswith("ask for startLine/endLine for more)")
    last = call(agent(project), "read_file", path="wide.py", startLine=101).content
    assert last.startswith("101\t" + "z" * 2_000 + "… (line cut at 2,000 characters)")


def test_read_file_errors_the_model_can_act_on(project: Path) -> None:
    ws = agent(project)
    (project / "empty.py").write_text("", encoding="utf-8")
    cases = {
        "pkg": "is a folder", "missing.py": "does not exist", "blob.bin": "not a text file",
        "big.py": "larger than 200,000 bytes",
    }
    for path, why in cases.items():
        out = call(ws, "read_file", path=path)
        assert not out.ok and why in out.content, (path, out.content)
    past = call(ws, "read_file", path="lib.py", startLine=9)
    assert not past.ok and "past the end of lib.py, which has 4 lines" in past.content
    assert not call(ws, "read_file", path="lib.py", startLine=3, endLine=2).ok
    empty = call(ws, "read_file", path="empty.py")
    assert empty.ok and empty.content == "(empty.py is empty)"


@pytest.mark.parametrize("path, why", [
    ("../outside/secret.txt", "is outside the workspace"),
    ("pkg/../../outside/secret.txt", "is outside the workspace"),
    ("/etc/passwd", "is outside the workspace"),
    ("~/.bashrc", "names a home folder"),
    ("out/secret.txt", "leads out of the workspace through a symbolic link"),
    ("leak.txt", "leads out of the workspace through a symbolic link"),
    (".git/config", "is inside .git"),
    (".env", "is a credential file"),
    (".netrc", "is a credential file"),
])
def test_every_tool_refuses_paths_outside_the_gate(project: Path, path: str, why: str) -> None:
    ws = agent(project)
    for name, args in (("read_file", {"path": path}), ("list_files", {"path": path}),
                       ("search_files", {"pattern": "find_item", "path": path}),
                       ("edit_file", {"path": path, "search": "", "replace": "x = 1\n"})):
        if name == "list_files" and why == "is a credential file":
            continue  # a credential file's name may be listed (see test_list_files_lists_credential_names)
        out = run_call(name, args, ALL, ws)
        assert not out.ok and why in out.content and "CANARY" not in out.content, (name, path, out.content)
        assert out.summary.endswith("refused")
    assert ws.staged() == [] and ws.changes().files == ()


def test_credential_files_only_when_the_users_own_words_named_them(project: Path) -> None:
    ws = agent(project, allowed=frozenset({".env"}))
    assert SECRET in call(ws, "read_file", path=".env").content
    assert not call(ws, "read_file", path=".netrc").ok  # not named
    assert call(ws, "edit_file", path=".env", search=SECRET + " find_item", replace="API_TOKEN=").ok
    assert [f.path for f in ws.changes().files] == [".env"]
    # never searched, named or not
    assert ".env" not in call(ws, "search_files", pattern="API_TOKEN|find_item").content


# ----------------------------------------------------------------------------- list_files


def test_list_files_honours_gitignore_and_narrows(project: Path) -> None:
    ws = agent(project)
    whole = call(ws, "list_files").content.split("\n")
    assert "lib.py" in whole and "pkg/a.py" in whole and "ignored.py" not in whole
    assert whole == sorted(whole) and not any(p.startswith(".git/") for p in whole)
    assert call(ws, "list_files", path="pkg").content == "pkg/a.py"
    assert call(ws, "list_files", glob="*.py").content.split("\n") == ["alias.py", "big.py", "lib.py", "pkg/a.py",
                                                                       "win.py"]
    assert call(ws, "list_files", glob="pkg/**").content == "pkg/a.py"
    assert call(ws, "list_files", path="pkg", glob="a.{py,ts}").content == "pkg/a.py"
    nothing = call(ws, "list_files", glob="*.rs")
    assert nothing.ok and "no file in the workspace matches *.rs" in nothing.content
    assert "does not exist" in call(ws, "list_files", path="nowhere").content
    for name, args in (("list_files", {"glob": "[z-a].py"}), ("search_files", {"pattern": "x", "glob": "[z-a]"})):
        out = run_call(name, args, ALL, ws)
        assert not out.ok and "is not a usable glob" in out.content
    file = call(ws, "list_files", path="lib.py")
    assert not file.ok and "is a file" in file.content


def test_list_files_lists_credential_names(project: Path) -> None:
    """Listing a name is harmless (peers list them too); reading one is refused."""
    assert ".env" in call(agent(project), "list_files").content.split("\n")


def test_list_files_is_bounded(project: Path) -> None:
    (project / "many").mkdir()
    for i in range(MAX_LIST + 100):
        (project / "many" / f"m{i:04}.py").write_text("", encoding="utf-8")
    out = call(agent(project), "list_files", path="many")
    lines = out.content.split("\n")
    assert len(lines) == MAX_LIST + 1 and lines[-1] == "(500 of 600 files shown; narrow with path or glob)"
    assert out.summary == "list_files many: 600 files"


def test_globs() -> None:
    cases = [("*.py", "a/b/c.py", True), ("*.py", "c.pyi", False), ("src/**/*.ts", "src/x/y/z.ts", True),
             ("src/**/*.ts", "src/z.ts", True), ("src/*.ts", "src/x/z.ts", False), ("*.{ts,tsx}", "a/b.tsx", True),
             ("test_?.py", "tests/test_1.py", True), ("[!a]*.py", "b.py", True), ("[!a]*.py", "a.py", False)]
    for glob, path, want in cases:
        assert glob_matcher(glob)(path, path) is want, (glob, path)


# ----------------------------------------------------------------------------- search_files


def test_search_files_answers_path_line_text(project: Path) -> None:
    out = call(agent(project), "search_files", pattern=r"find_item\(")
    assert out.ok
    assert out.content.split("\n") == ["lib.py:1: def find_item(items, sku):",
                                       "pkg/a.py:5:     return find_item(items, 'A')",
                                       "win.py:2:     return find_item([], 'W')"]
    assert out.summary == 'search_files "find_item\\(": 3 matches in 3 files'
    every = call(agent(project), "search_files", pattern="find_item").content
    for never in ("ignored.py", ".env", ".netrc", "blob.bin", "CANARY", "leak.txt", "out/"):
        assert never not in every  # git-ignored, credential, binary, outside through a link
    assert "big.py:1: x = 'find_item'" in every and "(the first 200 matches; there are more" in every


def test_search_files_path_glob_and_python_syntax(project: Path) -> None:
    ws = agent(project)
    assert call(ws, "search_files", pattern="find_item", path="pkg").content.startswith("pkg/a.py:1:")
    only = call(ws, "search_files", pattern="find_item", path="lib.py").content
    assert only == "lib.py:1: def find_item(items, sku):"
    assert "big.py" not in call(ws, "search_files", pattern="find_item", glob="[!b]*.py").content
    named = call(ws, "search_files", pattern=r"(?P<verb>find)_item\b\(items, (?:sku|'A')\)")
    assert named.content.split("\n") == ["lib.py:1: def find_item(items, sku):",
                                         "pkg/a.py:5:     return find_item(items, 'A')"]
    assert call(ws, "search_files", pattern=r"(?i)DEF FIND_ITEM").content == "lib.py:1: def find_item(items, sku):"
    bad = call(ws, "search_files", pattern="find_item(")
    assert not bad.ok and "not a valid regular expression" in bad.content
    for broken in ("def find_item\n    for", "a\0b"):
        out = call(ws, "search_files", pattern=broken)
        assert not out.ok and "one line at a time" in out.content
    none = call(ws, "search_files", pattern="no_such_name_anywhere")
    assert none.ok and none.content.startswith("(no matches")


def test_search_files_is_bounded(project: Path) -> None:
    (project / "wide.py").write_text("find_item " + "w" * 1_000 + "\n", encoding="utf-8")
    out = call(agent(project), "search_files", pattern="find_item", glob="*.py")
    lines = out.content.split("\n")
    assert len(lines) == MAX_MATCHES + 1 and lines[-1].startswith("(the first 200 matches; there are more")
    assert out.summary.endswith("200+ matches in 1 file")  # big.py, first in order
    wide = call(agent(project), "search_files", pattern="find_item w+", path="wide.py").content
    assert wide.endswith("w…") and len(wide) < 300


def test_search_files_timeout_is_an_error_result(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(2_000):  # more than git reads in a millisecond (starting it takes longer)
        (project / "pkg" / f"m{i}.py").write_text("x = 1\n", encoding="utf-8")
    killed = git_grep(project, "no_such_text", specs=[], keep=lambda rel: True, limit=10, timeout=0.001)
    assert killed is not None and killed.timed_out and not killed.hits
    assert scan([("a.py", "find_item")], "find_item", limit=10, deadline=time.monotonic() - 1).timed_out
    monkeypatch.setattr(tools_module, "SEARCH_TIMEOUT", 0.0)
    out = call(agent(project), "search_files", pattern="find_item")
    assert not out.ok and "stopped after 0 s" in out.content and "narrow it" in out.content


def test_search_files_outside_git_scans_in_python(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "build").mkdir(parents=True)
    (root / "lib.py").write_text(LIB, encoding="utf-8")
    (root / "build" / "gen.py").write_text(LIB, encoding="utf-8")
    (root / ".gitignore").write_text("build/\n", encoding="utf-8")
    (root / ".env").write_text("find_item=1\n", encoding="utf-8")
    out = call(agent(root), "search_files", pattern=r"def find_\w+")
    assert out.content == "lib.py:1: def find_item(items, sku):"


def test_search_never_follows_a_link_even_one_git_tracks(project: Path) -> None:
    git(project, "add", "leak.txt", "lib.py")
    git(project, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "links")
    out = call(agent(project), "search_files", pattern="CANARY|secret")
    assert out.ok and out.content.startswith("(no matches")


def test_search_runs_no_hook_and_ignores_the_repositorys_grep_settings(project: Path) -> None:
    marker = project.parent / "hook-ran"
    hook = project.parent / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    hook.chmod(0o755)
    for key, value in (("core.fsmonitor", str(hook)), ("grep.fullName", "true"), ("grep.column", "true"),
                       ("grep.patternType", "fixed"), ("grep.lineNumber", "false"), ("color.grep", "always")):
        git(project, "config", key, value)
    nested = project / "pkg"
    ws = AgentWorkspace(Workspace([nested]))  # a folder inside the repository: paths stay the folder's
    assert call(ws, "search_files", pattern=r"find_item\(").content == "a.py:5:     return find_item(items, 'A')"
    assert not marker.exists()


def test_search_files_sees_open_buffers_and_staged_edits(project: Path) -> None:
    ws = agent(project, open_docs={"pkg/a.py": (CALLER.replace("'A'", "'OPEN'"), 3)})
    assert "pkg/a.py:5:     return find_item(items, 'OPEN')" in call(ws, "search_files", pattern="OPEN").content
    assert call(ws, "edit_file", path="lib.py", search="def find_item(items, sku):",
                replace="def find_by_sku(items, sku):").ok
    assert call(ws, "edit_file", path="new/mod.py", search="", replace="from lib import find_by_sku\n").ok
    found = call(ws, "search_files", pattern=r"find_(item|by_sku)\b", glob="[!b]*").content.split("\n")
    assert "lib.py:1: def find_by_sku(items, sku):" in found and "new/mod.py:1: from lib import find_by_sku" in found
    assert not any(line.startswith("lib.py:1: def find_item") for line in found)
    assert call(ws, "search_files", pattern="find_by_sku", path="new").content == \
        "new/mod.py:1: from lib import find_by_sku"
    assert (project / "lib.py").read_text(encoding="utf-8") == LIB and not (project / "new").exists()


# ----------------------------------------------------------------------------- edit_file


def test_edit_file_stages_and_every_tool_sees_it(project: Path) -> None:
    ws = agent(project)
    out = call(ws, "edit_file", path="lib.py", search="        if item.sku == sku:\n            return item",
               replace="        if item.sku == sku:\n            return item\n    return None\n")
    assert out.ok and out.summary == "edit_file lib.py: +1 −0 lines"  # the final newline ends a line
    assert out.content == ("staged: lib.py (+1 −0 lines)\n3\t        if item.sku == sku:\n4\t            return item\n"
                           "5\t    return None")
    read = call(ws, "read_file", path="lib.py").content
    assert "5\t    return None" in read and read.endswith("(with your staged edits)")
    created = call(ws, "edit_file", path="tests/test_lib.py", search="", replace="def test_it():\n    assert True")
    assert created.ok and created.content.startswith("staged: tests/test_lib.py (created, 2 lines)\n1\tdef test_it():")
    assert "tests/test_lib.py" in call(ws, "list_files").content.split("\n")
    assert call(ws, "read_file", path="tests/test_lib.py").content == \
        "1\tdef test_it():\n2\t    assert True\n(a new file: your staged edits create it)"
    again = call(ws, "edit_file", path="tests/test_lib.py", search="    assert True", replace="    assert 1")
    assert again.ok
    assert ws.staged() == ["lib.py", "tests/test_lib.py"] and ws.created() == ["tests/test_lib.py"]
    assert (project / "lib.py").read_text(encoding="utf-8") == LIB and not (project / "tests").exists()


def test_edit_file_matches_as_search_replace_blocks_do(project: Path) -> None:
    ws = agent(project)
    drifted = "for item in items:\n    if item.sku == sku:"  # the file has it indented by four
    assert call(ws, "edit_file", path="lib.py", search=drifted,
                replace="for item in items or []:\n    if item.sku == sku:").ok
    assert "2\t    for item in items or []:" in call(ws, "read_file", path="lib.py").content
    gutter = "3\t        if item.sku == sku:"  # copied from read_file with its number
    assert call(ws, "edit_file", path="lib.py", search=gutter, replace="        if item.sku == sku.upper():").ok
    assert "3\t        if item.sku == sku.upper():" in call(ws, "read_file", path="lib.py").content


def test_edit_file_misses_and_ambiguities_are_error_results(project: Path) -> None:
    (project / "twice.py").write_text("x = 1\ny = 2\nx = 1\n", encoding="utf-8")
    ws = agent(project)
    missed = call(ws, "edit_file", path="lib.py", search="def find_item(items, skus):\n    for item in items:",
                  replace="def f():")
    assert not missed.ok and missed.summary == "edit_file lib.py: not staged"
    assert missed.content.startswith("lib.py: `search` matches no lines of the file; nothing was staged.")
    assert "Did you mean these lines of lib.py?\n```\ndef find_item(items, sku):\n    for item in items:" in \
        missed.content
    twice = call(ws, "edit_file", path="twice.py", search="x = 1", replace="x = 3")
    assert not twice.ok and "`search` matches 2 places (lines 1, 3); include more lines" in twice.content
    already = call(ws, "edit_file", path="lib.py", search="def nothing():", replace="    for item in items:")
    assert "The `replace` lines are already in lib.py." in already.content
    errors = {
        "exists: read_file it": dict(path="lib.py", search="", replace="x = 1"),
        "does not exist: give an empty `search`": dict(path="nope.py", search="x", replace="y"),
        "are the same": dict(path="lib.py", search="    for item in items:", replace="    for item in items:"),
        "is a folder": dict(path="pkg", search="", replace="x"),
        "not a text file": dict(path="blob.bin", search="find_item", replace="x"),
        "lib.py on its way is a file": dict(path="lib.py/inner.py", search="", replace="x"),
    }
    for why, args in errors.items():
        out = call(ws, "edit_file", **args)
        assert not out.ok and why in out.content, (why, out.content)
    assert ws.staged() == [] and not ws.changes()


def test_the_staged_change_is_the_code_phases_change_for_the_same_edits(project: Path) -> None:
    """``changes()`` beside a code phase's SEARCH/REPLACE answer making the same edits, through the
    code phase's own resolver: an open buffer (its version), a CRLF file, a file created, two
    edits of one file."""
    doc_text = CALLER.replace("'A'", "'B'")  # the open buffer differs from the disk
    ws = Workspace([project], {(project / "pkg" / "a.py").as_uri(): (doc_text, 7)})
    edits = [("lib.py", "def find_item(items, sku):", "def find_by_sku(items, sku):"),
             ("pkg/a.py", "from lib import find_item", "from lib import find_by_sku"),
             ("pkg/a.py", "    return find_item(items, 'B')", "    return find_by_sku(items, 'B')"),
             ("win.py", "    return find_item([], 'W')", "    return find_by_sku([], 'W')"),
             ("tests/test_lib.py", "", "from lib import find_by_sku\n")]
    agent_ws = AgentWorkspace(ws)
    for path, search, replace in edits:
        assert call(agent_ws, "edit_file", path=path, search=search, replace=replace).ok
    answer = "\n".join(f"{p}\n<<<<<<< SEARCH\n{s}\n=======\n{r}\n>>>>>>> REPLACE\n" for p, s, r in edits)
    doc = Document((project / "pkg" / "a.py").as_uri(), doc_text, 7)
    main, resolve = resolver(PhaseInput(doc, "rename", workspace=ws), None)
    code_phase = SEARCH_REPLACE.change(text=answer, tool_input=None, resolve=resolve, document=main)
    staged = agent_ws.changes()
    assert staged == code_phase
    assert [f.path for f in staged.files] == ["lib.py", "pkg/a.py", "win.py", "tests/test_lib.py"]
    win = staged.get("win.py")
    assert win is not None and win.after == "def w():\r\n    return find_by_sku([], 'W')\r\n"
    opened = staged.get("pkg/a.py")
    assert opened is not None and opened.version == 7 and opened.before == doc_text
    assert staged.files[-1].created


def test_staged_texts_are_taken_once(project: Path) -> None:
    """The change replays on the text the edits saw, even when the file changes on disk meanwhile."""
    ws = agent(project)
    assert call(ws, "edit_file", path="lib.py", search="            return item", replace="            return 1").ok
    (project / "lib.py").write_text("something else\n", encoding="utf-8")
    change = ws.changes().get("lib.py")
    assert change is not None and change.before == LIB and change.after == LIB.replace("return item", "return 1")


# ----------------------------------------------------------------------------- declaring and calling


def test_tools_are_declared_as_they_are() -> None:
    assert [t.name for t in TOOLS] == list(AGENT_TOOLS)
    for t in TOOLS:
        assert t.schema["type"] == "object" and t.schema["additionalProperties"] is False
        assert set(t.schema["required"]) <= set(t.schema["properties"]) and t.description
        assert t.permission == ("edit" if t.name == EDIT_FILE else "read")
    request = ChatRequest(model="m", system="s", user="u", max_tokens=10, tools=tools_for("code"))
    assert [t.name for t in request.declared_tools()] == list(AGENT_TOOLS)


def test_plan_and_review_are_read_only_by_construction() -> None:
    for kind in ("plan", "review", "something-else"):
        assert [t.name for t in tools_for(kind)] == list(READ_ONLY_TOOLS)
        assert [t.name for t in tools_for(kind, [EDIT_FILE, "read_file"])] == ["read_file"]
    assert [t.name for t in tools_for("code")] == list(AGENT_TOOLS)
    assert [t.name for t in tools_for("code", ["edit_file", "search_files"])] == ["search_files", "edit_file"]
    assert tools_for("code", []) == ()


def test_a_call_to_a_tool_not_declared_has_no_effect(project: Path) -> None:
    ws = agent(project)
    read_only = {t.name for t in tools_for("review")}
    out = run_call("edit_file", {"path": "lib.py", "search": "", "replace": "x"}, read_only, ws)
    assert not out.ok and "no tool named 'edit_file' in this phase" in out.content
    assert "read_file, list_files, search_files" in out.content
    created = run_call("edit_file", {"path": "new.py", "search": "", "replace": "x"}, read_only, ws)
    assert not created.ok and ws.staged() == [] and not ws.changes() and not (project / "new.py").exists()
    assert not run_call("report_findings", {}, read_only | {"report_findings"}, ws).ok  # not one of these tools
    assert not run_call("shell", {"command": "rm -rf /"}, ALL, ws).ok


@pytest.mark.parametrize("args, said", [
    (None, "must be a JSON object"),
    ([], "must be a JSON object"),
    ({}, "`path` is required (a string)"),
    ({"path": 3}, "`path` must be a string, not 3"),
    ({"path": "lib.py", "startLine": "2"}, "`startLine` must be an integer, not '2'"),
    ({"path": "lib.py", "startLine": True}, "`startLine` must be an integer"),
    ({"path": "lib.py", "startLine": 0}, "`startLine` must be at least 1, not 0"),
    ({"path": "lib.py", "line": 2}, "`line` is not an argument (the arguments are path, startLine, endLine)"),
    ({"path": None}, "`path` must be a string, not None"),
])
def test_broken_arguments_are_error_results(project: Path, args: Any, said: str) -> None:
    out = run_call("read_file", args, ALL, agent(project))
    assert not out.ok and said in out.content and "othing was done" in out.content


def test_an_integral_number_is_an_integer_and_the_callers_object_is_kept(project: Path) -> None:
    args = {"path": "lib.py", "startLine": 2.0, "endLine": 2}
    out = run_call("read_file", args, ALL, agent(project))
    assert out.ok and out.content.startswith("2\t") and args["startLine"] == 2.0


def test_edit_file_arguments_are_all_required(project: Path) -> None:
    ws = agent(project)
    out = run_call("edit_file", {"path": "new.py", "replace": "x"}, ALL, ws)
    assert not out.ok and "`search` is required" in out.content and ws.staged() == []


def test_a_path_the_file_system_refuses_and_a_tool_that_fails_give_error_results(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = agent(project)
    for name, args in (("read_file", {"path": "a" * 5_000}), ("list_files", {"path": "a/" * 3_000}),
                       ("search_files", {"pattern": "x", "path": "a" * 5_000}),
                       ("edit_file", {"path": "a" * 5_000, "search": "", "replace": "x"})):
        out = run_call(name, args, ALL, ws)
        assert not out.ok and "cannot be used as a path: File name too long" in out.content, out.content[:300]
        assert len(out.content) < 500 and len(out.summary) < 120

    def broken(args: dict[str, Any], ws: AgentWorkspace) -> ToolOutcome:
        raise RuntimeError("boom")

    monkeypatch.setitem(tools_module._BY_NAME, "read_file", dataclasses.replace(TOOLS[0], run=broken))
    out = run_call("read_file", {"path": "lib.py"}, ALL, ws)
    assert not out.ok and out.content == "read_file failed: RuntimeError: boom. Nothing was done."
