"""Issue 22, item 4: the scratch copy a code phase's commands run in (``phases.scratch``).

Units on a real git work tree: the copy holds HEAD's files as the working tree has them (modified,
untracked, deleted), ignored environment folders linked, unsaved buffers over them, then the staged
change, rewritten as it grows and narrows; the user's repository, ``.git`` included, is byte for
byte what it was, and no worktree is registered in it. Outside git, a plain copy, bounded. Leftovers
older than a day go on the next create; ``close`` removes the copy and never follows a link.
Then once through the language server: a code agent phase renames a function and runs a user-level
command that reads the edited files: the command saw the staged edit and the unsaved buffer, the
user's file on disk still held the old name while it ran, and no copy is left once the phase ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.cli.demo import example_project
from phasewise.gate import PathRefused
from phasewise.phases.commands import AllowedCommands, CommandTrust, PhaseCommands
from phasewise.phases.scratch import LEFTOVER_SECONDS, Place, ScratchCopy, ScratchPlace, ScratchRefused
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers import PLUGIN_EXPERIMENTAL, Editor, answer, field_of, make_client_fixture, server_env

GIT_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def listing(folder: Path) -> list[str] | None:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else None


def fingerprint(folder: Path) -> dict[str, Any]:
    """Every entry under ``folder`` (``.git`` included, links not followed): its kind, mode, mtime and
    bytes' hash; and the worktrees git knows."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else (
                os.readlink(p) if p.is_symlink() else "")
            out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_mtime_ns, digest)
    out["(worktrees)"] = git(folder, "worktree", "list", "--porcelain")
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree with every kind of file the copy must get right, its last change committed."""
    root = tmp_path / "shop"
    write(root / "app.py", "def total(items):\n    return sum(items)\n")
    write(root / "keep.py", "KEEP = 1\n")
    write(root / "gone.py", "GONE = 1\n")
    write(root / "run.sh", "#!/bin/sh\necho ran\n").chmod(0o755)
    write(root / ".gitignore", ".venv/\nnode_modules/\nbuild/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    write(root / "app.py", "def total(items):\n    return sum(items)  # changed, not committed\n")
    (root / "gone.py").unlink()
    write(root / "new.py", "NEW = 1\n")  # untracked, not ignored
    write(root / ".venv" / "pyvenv.cfg", "home = /usr/bin\n")
    write(root / ".venv" / "bin" / "tool", "the user's environment\n")
    write(root / "web" / "node_modules" / "pkg" / "index.js", "module.exports = 1\n")
    write(root / "build" / "out.txt", "a build output\n")  # ignored, not an environment: absent
    git(root, "status", "--short")  # git's own refresh of the index happens here, before any fingerprint
    return root


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "scratch"


def test_the_copy_is_the_working_tree_as_the_user_has_it_with_environments_linked(repo: Path, cache: Path) -> None:
    before = fingerprint(repo)
    copy = ScratchCopy.create(repo, base=cache)
    root = copy.root
    assert root.parent == cache and repo not in root.parents and copy.git
    assert (root / "app.py").read_text(encoding="utf-8").endswith("# changed, not committed\n")
    assert (root / "new.py").read_text(encoding="utf-8") == "NEW = 1\n" and (root / "keep.py").is_file()
    assert not (root / "gone.py").exists() and not (root / "build").exists() and not (root / ".git").exists()
    assert os.access(root / "run.sh", os.X_OK)
    # the environments: links to the user's folders, not copies
    assert (root / ".venv").is_symlink() and os.readlink(root / ".venv") == str(repo / ".venv")
    assert (root / "web" / "node_modules").is_symlink() and (root / "web" / "node_modules" / "pkg").is_dir()
    assert set(copy.linked) == {".venv", "web/node_modules"}
    assert copy.environment()["GIT_CEILING_DIRECTORIES"] == str(cache)
    copy.close()
    assert not root.exists() and (repo / ".venv" / "bin" / "tool").read_text(encoding="utf-8")
    assert fingerprint(repo) == before  # not a byte, mode or time changed, .git included; no worktree added


def test_unsaved_buffers_then_the_staged_change_as_it_grows_and_narrows(repo: Path, cache: Path) -> None:
    before = fingerprint(repo)
    overlays = {repo / "keep.py": "KEEP = 2  # unsaved\n", repo / ".venv" / "bin" / "tool": "through the link",
                repo.parent / "elsewhere.py": "outside"}
    with ScratchCopy.create(repo, overlays=overlays, base=cache) as copy:
        root = copy.root
        assert (root / "keep.py").read_text(encoding="utf-8") == "KEEP = 2  # unsaved\n"
        assert sorted(copy.skipped) == sorted([str(repo / ".venv" / "bin" / "tool"), str(repo.parent / "elsewhere.py")])
        # the change so far: one file changed, one created; then it grows
        assert copy.write({"app.py": "A1\n", "pkg/mod.py": "M1\n"}) == ["app.py", "pkg/mod.py"]
        assert copy.write({"app.py": "A1\n", "pkg/mod.py": "M1\n", "keep.py": None}) == ["keep.py"]  # only what changed
        assert not (root / "keep.py").exists() and (root / "pkg" / "mod.py").read_text(encoding="utf-8") == "M1\n"
        # narrower: what left the change is put back as it was (the unsaved buffer), the new file goes
        assert copy.write({"app.py": "A2\n"}) == ["app.py", "keep.py", "pkg/mod.py"]
        assert (root / "app.py").read_text(encoding="utf-8") == "A2\n"
        assert (root / "keep.py").read_text(encoding="utf-8") == "KEEP = 2  # unsaved\n"
        assert not (root / "pkg" / "mod.py").exists()
        copy.write({})
        assert (root / "app.py").read_text(encoding="utf-8").endswith("# changed, not committed\n")
        assert os.access(root / "run.sh", os.X_OK)
        # never through a link, never out of the copy
        for bad in (".venv/bin/tool", "../escape.py", ".git/config"):
            with pytest.raises(PathRefused):
                copy.write({bad: "no"})
        assert copy.path_of(repo / "app.py") == root / "app.py" and copy.path_of("pkg/x.py") == root / "pkg" / "x.py"
        with pytest.raises(PathRefused):
            copy.path_of(repo / ".venv" / "bin" / "tool")
    assert not root.exists()
    assert (repo / ".venv" / "bin" / "tool").read_text(encoding="utf-8") == "the user's environment\n"
    assert fingerprint(repo) == before


async def test_a_scratch_place_is_made_on_first_use_synced_each_time_and_closed(repo: Path, cache: Path) -> None:
    change: dict[str, str | None] = {}
    place = ScratchPlace(repo, overlays={repo / "keep.py": "KEEP = 3\n"}, staged=lambda: change, base=cache)
    assert place.copy is None and listing(cache) is None  # nothing made until a command runs
    first = await place()
    assert "no change staged yet" in first.note and read(first.folder / "keep.py") == "KEEP = 3\n"
    change["app.py"] = "STAGED\n"
    second = await place()
    assert second.folder == first.folder and "the 1 file changed so far" in second.note
    assert read(second.folder / "app.py") == "STAGED\n" and "GIT_CEILING_DIRECTORIES" in second.env
    await place.close()
    assert listing(cache) == []


def test_outside_git_a_plain_copy_bounded(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "notes"
    write(folder / "a.txt", "a\n")
    write(folder / "sub" / "b.txt", "b\n")
    write(folder / "venv" / "pyvenv.cfg", "home = /usr/bin\n")
    write(folder / "tools" / "node_modules" / "x.js", "x\n")
    os.symlink("a.txt", folder / "link.txt")
    os.mkfifo(folder / "pipe")  # neither copied nor waited on
    async_ok = ScratchCopy.create(folder, base=cache)
    with async_ok as copy:
        assert not copy.git and set(copy.linked) == {"venv", "tools/node_modules"}
        assert (copy.root / "sub" / "b.txt").read_text(encoding="utf-8") == "b\n"
        assert (copy.root / "venv").is_symlink() and os.readlink(copy.root / "link.txt") == "a.txt"
        assert not (copy.root / "pipe").exists()
    with pytest.raises(ScratchRefused, match="more than the 2 files a scratch copy is made of"):
        ScratchCopy.create(folder, base=cache, max_files=2)
    with pytest.raises(ScratchRefused, match="more than the"):
        ScratchCopy.create(folder, base=cache, max_bytes=3)
    assert list(cache.iterdir()) == []  # a refused copy leaves nothing


def test_a_scratch_folder_inside_the_workspace_is_refused(repo: Path) -> None:
    with pytest.raises(ScratchRefused, match="lies inside it"):
        ScratchCopy.create(repo, base=repo / ".cache")
    assert not (repo / ".cache").exists()


def test_leftovers_older_than_a_day_go_on_the_next_create(repo: Path, cache: Path) -> None:
    old, recent = cache / "shop-crashed", cache / "shop-running"
    write(old / "a.py", "old\n")
    os.symlink(repo / ".venv", old / ".venv")
    write(recent / "a.py", "recent\n")
    aged = time.time() - LEFTOVER_SECONDS - 60
    os.utime(old, (aged, aged))
    with ScratchCopy.create(repo, base=cache) as copy:
        assert sorted(p.name for p in cache.iterdir()) == sorted([copy.root.name, "shop-running"])
    assert (repo / ".venv" / "bin" / "tool").exists()  # the leftover's link was removed, not followed


def test_an_editable_install_in_a_linked_environment_finds_the_copy_first(repo: Path, cache: Path) -> None:
    site = repo / ".venv" / "lib" / "python3.11" / "site-packages"
    write(site / "__editable__.shop-1.0.pth", f"{repo / 'src'}\n")
    write(site / "__editable___tools_1_0_finder.py", f"import sys\nMAPPING = {{'tools': '{repo / 'lib' / 'tools'}'}}\n")
    write(site / "other.pth", "import os\n/usr/lib/elsewhere\n")  # code, and a folder outside: left alone
    with ScratchCopy.create(repo, base=cache) as copy:
        env = copy.environment({"PYTHONPATH": "/mine"})
        assert env["PYTHONPATH"].split(os.pathsep) == [str(copy.root / "src"), str(copy.root / "lib"), "/mine"]


async def test_a_command_with_a_place_runs_in_the_copy_its_cwd_inside_it(repo: Path, cache: Path) -> None:
    # `rev`: the output names the copy's folder in a form the copy-to-workspace rewrite of paths leaves alone
    where = {"run": "pwd | rev", "cwd": "web"}
    loaded = load_settings({"commands": {"where": where, "env": "true"}}, user_commands={"where": where, "env": "true"})
    trust = CommandTrust(AllowedCommands(cache.parent / "allowed.json"), None)
    place = ScratchPlace(repo, staged=lambda: {"app.py": "STAGED\n"}, base=cache)
    commands = PhaseCommands("code", ("where", "env"), loaded, repo, trust, frozenset(), check_path=lambda p: p,
                             place=place)
    ran = await commands.run("where")
    assert ran.ok and "(command `where`, in web/ of a scratch copy of the workspace with the 1 file changed so far" \
        in ran.content
    assert place.copy is not None and ran.content.endswith("\n" + f"{place.copy.root}/web"[::-1])
    await place.close()

    async def refused() -> Place:
        raise ScratchRefused(repo, "it holds more than the 2 files a scratch copy is made of")

    commands.place = refused
    not_run = await commands.run("env")
    assert not not_run.ok and "could not be made ready" in not_run.content and "Nothing ran." in not_run.content
    assert not_run.summary == "run_command env: no scratch copy"


async def test_the_async_door(repo: Path, cache: Path) -> None:
    async with await ScratchCopy.open(repo, base=cache) as copy:
        assert await copy.sync({"app.py": "X\n"}) == ["app.py"]
        assert read(copy.root / "app.py") == "X\n"
    assert listing(cache) == []


# --------------------------------------------------------------------------- through the language server

BASE = Path(tempfile.mkdtemp(prefix="phasewise-scratch-")).resolve()
ROOT = BASE / "shop"
CACHE = BASE / "cache"  # XDG_CACHE_HOME: where the scratch copy is made
USER_SETTINGS = BASE / "user-settings.json"
KEYS = {"SCRATCH_O_KEY": "test-key-scratch-openai-41"}
ENV = {k: v for k, v in server_env(**KEYS, PHASEWISE_WARMUP="0", XDG_CACHE_HOME=str(CACHE),
                                   PHASEWISE_USER_SETTINGS=str(USER_SETTINGS)).items() if k != "PHASEWISE_CACHE_DIR"}
client = make_client_fixture(ENV, clients=["visual-studio-code"], experimental=PLUGIN_EXPERIMENTAL, root=ROOT)
# what the copy holds against what the user's disk holds, while the command runs
CHECK = (f"pwd | rev; echo copy: $(grep -c find_by_sku orders.py); echo user: $(grep -c find_by_sku {ROOT}/orders.py); "
         "grep -c find_by_sku inventory.py > /dev/stderr; cat inventory.py")


@pytest.mark.slow
async def test_a_code_agent_runs_its_command_on_a_scratch_copy_with_its_staged_edit(
        client: LanguageClient, sim: SimulatorThread) -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    shutil.rmtree(CACHE, ignore_errors=True)
    ROOT.mkdir(parents=True)
    for f in example_project():
        shutil.copyfile(f, ROOT / f.name)
    git(ROOT, "init", "-q")
    git(ROOT, "add", "-A")
    git(ROOT, "commit", "-qm", "base")
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"check": CHECK}}}), encoding="utf-8")
    editor = Editor(client)
    editor.configure({
        "phases": {"code": {"model": "scratch-o/glm-sim", "agent": {"commands": ["check"], "maxSteps": 10}}},
        "providers": {"scratch-o": {"protocol": "openai", "baseUrl": sim.base_url("scratch-o", "openai"),
                                    "apiKeyEnv": "SCRATCH_O_KEY", "models": {"glm-sim": {"toolCalling": True}}}},
    })
    inventory = (ROOT / "inventory.py").as_uri()
    unsaved = "# an unsaved line\n" + (read(ROOT / "inventory.py") or "")
    editor.open(inventory, unsaved)
    orders_before = read(ROOT / "orders.py") or ""
    assert "find_item" in orders_before
    result = answer(await editor.command("phasewise.code", {
        "uri": inventory, "instruction": "rename find_item to find_by_sku, then run `check`"}))
    assert result["ok"] is True, result.get("error")
    tools = [s["tool"] for s in result["steps"]]
    assert tools.index("run_command") > tools.index("edit_file")  # the edits first, then the command
    ran = next(s for s in result["steps"] if s["tool"] == "run_command")
    assert ran["ok"] is True and ran["summary"].startswith("run_command check → exit 0"), ran
    said = result["text"]
    # it ran in the copy, under the cache directory, and the model was told so
    assert f"{CACHE}/phasewise/scratch/shop-"[::-1] in said  # reversed: the rewrite of the copy's paths misses it
    assert "in a scratch copy of the workspace with the 2 files changed so far; the user's files are unchanged" in said
    # the copy held the staged edit and the unsaved buffer; the user's file on disk did not, while it ran
    renamed_lines = sum("find_item" in line for line in orders_before.splitlines())
    assert f"copy: {renamed_lines}\nuser: 0\n" in said, said
    assert "# an unsaved line" in said and "def find_by_sku(" in said and "\n2\n# an unsaved line" in said
    # then the change was applied as one edit, by the editor: only now does the disk change
    assert len(editor.applied) == 1
    uris = {field_of(c, "text_document").uri for c in editor.applied[0].edit.document_changes or ()
            if hasattr(c, "text_document")}
    assert uris == {inventory, (ROOT / "orders.py").as_uri()}
    assert "find_by_sku" in (read(ROOT / "orders.py") or "")
    # and no copy is left once the phase ended
    assert listing(CACHE / "phasewise" / "scratch") == []
