"""Workspace-scale phases through the real SDKs against the simulator: related files as context
(named, imported, callers, repository map; open buffers over disk; secrets and git-ignored files
never sent), multi-file changes, the repair round, and the CLI writing every file or none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phasewise.cli.demo import example_project
from phasewise.cli.headless import FileSession
from phasewise.gate import PathRefused
from phasewise.phases.context import gather
from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.phases.workspace import Workspace
from phasewise.router.router import Engine, NullObserver
from phasewise.router.routes import Keyring
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers import server_env

LIB = "def find_item(items, sku):\n    for item in items:\n        if item.sku == sku:\n            return item\n"
OPEN_CALLER = "from lib import find_item\n\n\ndef a(items):\n    return find_item(items, 'A')\n"
DISK_CALLER = "from lib import find_item\n\n\ndef b(items):\n    return find_item(items, 'B')\n"
SECRET = "API_TOKEN=test-value-not-a-key-1234"
RENAME = "rename find_item to find_by_sku"


def project(root: Path, *, git: bool = True) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "lib.py").write_text(LIB, encoding="utf-8")
    (root / "pkg" / "a.py").write_text(OPEN_CALLER, encoding="utf-8")
    (root / "pkg" / "b.py").write_text(DISK_CALLER, encoding="utf-8")
    (root / ".env").write_text(SECRET + "\n", encoding="utf-8")
    (root / "ignored_build.py").write_text("from lib import find_item  # generated copy\n", encoding="utf-8")
    (root / ".gitignore").write_text("ignored_build.py\n", encoding="utf-8")
    (root / "blob.py").write_bytes(b"find_item\0\0\0binary")
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def routes(sim: SimulatorThread, model: str = "glm-sim", **code: Any) -> Any:
    return load_settings({
        "phases": {"code": {"model": f"main/{model}", **code}, "review": {"model": "main/gpt-sim"}},
        "providers": {"main": {"protocol": "openai", "baseUrl": sim.base_url("main", "openai"),
                               "apiKeyEnv": "MAIN_KEY"}},
        "retry": {"maxAttempts": 1},
    })


def service() -> PhaseService:
    return PhaseService(Engine(Keyring(environ={"MAIN_KEY": "test-key-main"})))


def chat_users(sim: SimulatorThread) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in sim.requests if r.endpoint == "chat"]


async def code(sim: SimulatorThread, root: Path, instruction: str = RENAME, model: str = "glm-sim",
               users_words: bool = True, **code_settings: Any) -> PhaseResult:
    open_uri = (root / "pkg" / "a.py").as_uri()
    # the open buffer differs from disk: the change must be computed on the buffer
    ws = Workspace([root], {open_uri: (OPEN_CALLER + "# unsaved\n", 7)})
    doc = Document((root / "lib.py").as_uri(), LIB, None, "python")
    inp = PhaseInput(doc, instruction, workspace=ws, users_words=users_words)
    return await service().run(routes(sim, model, **code_settings), "code", inp, NullObserver())


@pytest.mark.parametrize("fmt", ["search-replace", "whole", "tool", "text"])
async def test_rename_across_three_files_in_every_format(sim: SimulatorThread, tmp_path: Path, fmt: str) -> None:
    root = project(tmp_path / "ws")
    result = await code(sim, root, editFormat=fmt)
    assert result.ok, result.error
    assert result.changes is not None
    by_path = {f.path: f for f in result.changes.files}
    assert set(by_path) == {"lib.py", "pkg/a.py", "pkg/b.py"}
    assert by_path["lib.py"].after.startswith("def find_by_sku(items, sku):")
    assert by_path["pkg/a.py"].version == 7 and by_path["pkg/a.py"].after.endswith("# unsaved\n")
    assert by_path["pkg/a.py"].after.count("find_by_sku") == 2 and "find_item" not in by_path["pkg/b.py"].after
    assert by_path["pkg/b.py"].version is None and by_path["pkg/b.py"].before == DISK_CALLER
    out = result.to_json()
    assert [f["path"] for f in out["files"]] == [f.path for f in result.changes.files]
    assert all(f["diff"].startswith("--- a/") and f["created"] is False for f in out["files"])
    reasons = {c["path"]: c["reason"] for c in out["context"]}
    assert reasons["lib.py"] == "document" and reasons["pkg/a.py"].startswith("uses `find_item`")
    assert out["edits"] and "+def find_by_sku" in out["diff"] and "+++ b/pkg/b.py" in out["diff"]


async def test_secrets_ignored_and_binary_files_are_never_sent(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    result = await code(sim, root)
    assert result.ok, result.error
    sent = "\n".join(chat_users(sim))
    assert '<file path="pkg/b.py"' in sent and '<file path="pkg/a.py"' in sent
    assert SECRET not in sent and ".env" not in sent
    assert "ignored_build.py" not in sent and "blob.py" not in sent
    assert {c["path"] for c in result.to_json()["context"]} >= {"pkg/a.py", "pkg/b.py"}


async def test_progress_says_what_context_is_sent(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    statuses: list[str] = []

    class Seen(NullObserver):
        def on_status(self, message: str) -> None:
            statuses.append(message)

    ws = Workspace([root])
    doc = Document((root / "lib.py").as_uri(), LIB, None, "python")
    result = await service().run(routes(sim), "code", PhaseInput(doc, RENAME, workspace=ws), Seen())
    assert result.ok, result.error
    said = [s for s in statuses if s.startswith("context: ")]
    assert len(said) == 1 and "2 related files (pkg/a.py, pkg/b.py) + repository map" in said[0]


async def test_a_named_file_is_sent_even_if_git_ignores_it(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    result = await code(sim, root, instruction=f"{RENAME}, see @ignored_build.py and .env")
    assert result.ok, result.error
    sent = "\n".join(chat_users(sim))
    assert '<file path="ignored_build.py" language="python" reason="named in the instruction"' in sent
    assert SECRET in sent  # named by the user: sent


async def test_a_misquoted_block_is_repaired_once(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    result = await code(sim, root, model="glm-misquote-once")
    assert result.ok, result.error
    assert [a.outcome for a in result.attempts] == ["edit-failed", "ok"]
    users = chat_users(sim)
    assert len(users) == 2 and "<repair>" in users[1] and "block 1" in users[1]
    assert result.changes is not None and len(result.changes.files) == 3


async def test_a_block_that_stays_wrong_fails_and_changes_nothing(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    result = await code(sim, root, model="glm-misquote")
    assert not result.ok and result.error is not None and result.error.kind == "bad-request"
    assert "lib.py" in result.error.message and "block 1" in result.error.message
    assert "Nothing was applied" in result.error.message
    assert "def find_item" not in result.error.message  # problems never quote source
    assert result.changes is None and result.new_text is None and result.edits == []
    assert [a.outcome for a in result.attempts] == ["edit-failed", "edit-failed"]
    assert (root / "lib.py").read_text(encoding="utf-8") == LIB


def test_gather_without_git_honours_gitignore_and_budget(tmp_path: Path) -> None:
    root = project(tmp_path / "ws", git=False)
    ws = Workspace([root])
    ctx = gather(ws, document_uri=(root / "lib.py").as_uri(), document_text=LIB, instruction=RENAME,
                 budget_tokens=4000)
    paths = [f.path for f in ctx.files]
    assert set(paths) == {"pkg/a.py", "pkg/b.py"} and "ignored_build.py" not in ctx.repo_map
    assert "lib.py: find_item" in ctx.repo_map
    tiny = gather(ws, document_uri=(root / "lib.py").as_uri(), document_text=LIB, instruction=RENAME,
                  budget_tokens=20)
    assert tiny.files == () and tiny.repo_map == ""
    assert gather(ws, document_uri=(root / "lib.py").as_uri(), document_text=LIB, budget_tokens=0).files == ()


def test_outside_the_workspace_is_never_read_or_written(tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    (tmp_path / "outside.py").write_text("secret = 1\n", encoding="utf-8")
    ws = Workspace([root])
    assert "outside the workspace" in refused(ws, "../outside.py")
    assert "outside the workspace" in refused(ws, str(tmp_path / "outside.py"))
    assert "home folder" in refused(ws, "~/.bashrc") and not (root / "~").exists()
    new = ws.resolve("tests/test_new.py")
    assert new is not None and new.text is None and new.uri == (root / "tests" / "test_new.py").as_uri()
    # never written: git's own files (hooks run code), key files and .env unless the user named them
    assert "inside .git" in refused(ws, ".git/hooks/pre-commit") and "inside .git" in refused(ws, ".git/config")
    for secret in (".env", "deploy/id_rsa", "tls/site.pem", ".netrc", ".aws/credentials", "home/.ssh/config"):
        assert "credential file" in refused(ws, secret), secret
    named = ws.resolve(".env", frozenset({".env"}))
    assert named is not None and named.text == SECRET + "\n"


# ----------------------------------------------------------------------------- the command line


def cli_env(sim: SimulatorThread, tmp_path: Path) -> dict[str, str]:
    return server_env(PHASEWISE_SIM_URL=sim.url, PHASEWISE_LEDGER=str(tmp_path / "runs.jsonl"))


def demo_copy(tmp_path: Path) -> Path:
    work = tmp_path / "demo"
    work.mkdir()
    for f in example_project():
        shutil.copyfile(f, work / f.name)
    (work / "phasewise.json").write_text(json.dumps({"phases": {
        "plan": {"model": "sim-claude/claude-sim"}, "code": {"model": "sim-glm/glm-sim"},
        "review": {"model": "sim-gpt/gpt-sim"}}}), encoding="utf-8")
    return work


@pytest.mark.slow
def test_the_demo_rename_updates_the_caller_through_the_cli(sim: SimulatorThread, tmp_path: Path) -> None:
    work = demo_copy(tmp_path)
    done = subprocess.run([sys.executable, "-m", "phasewise", "run", "inventory.py", "-i",
                           "Rename find_item to find_by_sku and keep its callers working", "--json"],
                          cwd=work, env=cli_env(sim, tmp_path), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and [f["path"] for f in out["files"]] == ["inventory.py", "orders.py"]
    assert sorted(Path(p).name for p in out["writtenFiles"]) == ["inventory.py", "orders.py"]
    orders = (work / "orders.py").read_text(encoding="utf-8")
    assert "from inventory import Item, find_by_sku, restock" in orders and "find_item" not in orders
    assert "def find_by_sku(items, sku):" in (work / "inventory.py").read_text(encoding="utf-8")
    assert not [p for p in work.iterdir() if p.name.endswith(".phasewise")]
    plan_phase, code_phase = out["phases"][0], out["phases"][1]
    # the plan saw orders.py as a user of the document's symbols and named it; code took it from the plan
    assert ["orders.py", "uses `Item`, `find_item`, `restock`"] in [[c["path"], c["reason"]]
                                                                  for c in plan_phase["context"]]
    assert ["orders.py", "named in the plan"] in [[c["path"], c["reason"]] for c in code_phase["context"]]
    assert all(c["tokens"] > 0 for c in code_phase["context"])
    # review saw the other changed file and reports on it there
    review = out["phases"][2]
    assert ["orders.py", "changed by the code phase"] in [[c["path"], c["reason"]] for c in review["context"]]
    on_orders = [f for f in out["findings"] if f.get("path") == "orders.py"]
    assert [(f["startLine"], f["uri"]) for f in on_orders if "TODO" in f["message"]] == [
        (10, (work / "orders.py").as_uri())]
    assert any("path" not in f for f in out["findings"])  # and on the document itself, as before


@pytest.mark.slow
def test_dry_run_prints_every_diff_and_writes_nothing(sim: SimulatorThread, tmp_path: Path) -> None:
    work = demo_copy(tmp_path)
    before = {p.name: p.read_text(encoding="utf-8") for p in work.iterdir()}
    done = subprocess.run([sys.executable, "-m", "phasewise", "code", "inventory.py", "-i",
                           "rename find_item to find_by_sku", "--dry-run"], cwd=work, env=cli_env(sim, tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "+++ b/inventory.py" in done.stdout and "+++ b/orders.py" in done.stdout
    assert {p.name: p.read_text(encoding="utf-8") for p in work.iterdir()} == before


async def test_a_stale_file_among_several_refuses_the_whole_change(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    session = FileSession(root / "lib.py", root=root)
    doc = session.document()
    inp = PhaseInput(doc, RENAME, workspace=session.workspace())
    result = await service().run(routes(sim), "code", inp, NullObserver())
    assert result.ok and result.changes is not None and len(result.changes.files) == 3
    (root / "pkg" / "b.py").write_text(DISK_CALLER + "# edited meanwhile\n", encoding="utf-8")
    session.apply(result)
    assert not result.ok and result.error is not None and result.error.kind == "document-changed"
    assert "pkg/b.py" in result.error.message
    assert (root / "lib.py").read_text(encoding="utf-8") == LIB
    assert (root / "pkg" / "a.py").read_text(encoding="utf-8") == OPEN_CALLER


def test_write_files_rolls_back_when_a_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phasewise import gate

    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("a\n", encoding="utf-8")
    b.write_text("b\n", encoding="utf-8")
    real_replace = os.replace
    calls: list[str] = []

    def failing(src: str, dst: Any, **at: Any) -> None:
        calls.append(str(dst))
        if len(calls) == 3:  # a, then the new file c, then b fails
            raise OSError(28, "No space left on device")
        real_replace(src, dst, **at)

    monkeypatch.setattr(gate.os, "replace", failing)
    with pytest.raises(OSError):
        gate.PathGate.of([tmp_path]).write_files([(a, "A\n"), (tmp_path / "new" / "c.py", "C\n"), (b, "B\n")])
    monkeypatch.setattr(gate.os, "replace", real_replace)
    assert a.read_text(encoding="utf-8") == "a\n" and b.read_text(encoding="utf-8") == "b\n"
    assert not (tmp_path / "new" / "c.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "b.py", "new"]


@pytest.mark.parametrize("fmt", ["search-replace", "whole", "tool"])
async def test_a_new_test_file_is_created_and_written(sim: SimulatorThread, tmp_path: Path, fmt: str) -> None:
    root = project(tmp_path / "ws")
    session = FileSession(root / "lib.py", root=root)
    inp = PhaseInput(session.document(), "add a test for find_item", workspace=session.workspace())
    result = await service().run(routes(sim, editFormat=fmt), "code", inp, NullObserver())
    assert result.ok, result.error
    assert result.changes is not None and [(f.path, f.created) for f in result.changes.files] == [
        ("tests/test_lib.py", True)]
    assert result.to_json()["files"][0]["diff"].startswith("--- /dev/null\n+++ b/tests/test_lib.py")
    session.apply(result)
    assert result.applied is True
    created = (root / "tests" / "test_lib.py").read_text(encoding="utf-8")
    assert created.startswith("from lib import find_item\n") and created.endswith("assert callable(find_item)\n")
    assert (root / "lib.py").read_text(encoding="utf-8") == LIB


def test_repository_map_ranks_what_is_used_most(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "a").mkdir(parents=True)
    (root / "core.py").write_text("def popular():\n    pass\n\n\ndef lonely():\n    pass\n", encoding="utf-8")
    for i in range(5):
        (root / "a" / f"user{i}.py").write_text(f"from core import popular\n\n\ndef u{i}():\n    return popular()\n",
                                                encoding="utf-8")
    (root / "a" / "solo.py").write_text("def alone():\n    pass\n", encoding="utf-8")
    (root / "doc.md").write_text("# notes\n", encoding="utf-8")
    ctx = gather(Workspace([root]), document_uri=(root / "doc.md").as_uri(), document_text="# notes\n",
                 budget_tokens=4000)
    lines = ctx.repo_map.split("\n")
    assert lines[0] == "core.py: popular, lonely"  # most used file first, its most used symbol first
    assert lines.index("a/solo.py: alone") > 0


@pytest.mark.slow
async def test_a_small_window_gets_a_smaller_context(sim: SimulatorThread, tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    big = "from lib import find_item\n\n" + "".join(f"def f{i}(items):\n    return find_item(items, {i})\n\n"
                                                    for i in range(300))
    (root / "pkg" / "big.py").write_text(big, encoding="utf-8")  # about 3,000 tokens
    doc = Document((root / "lib.py").as_uri(), LIB, None, "python")

    def loaded(window: int | None) -> Any:
        # roomy: no window known, room for the answer renaming in all 300 functions
        model: dict[str, Any] = {"maxOutputTokens": 1000 if window else 16000}
        if window:
            model["contextWindow"] = window
        return load_settings({
            "phases": {"code": {"model": "main/small"}},
            "providers": {"main": {"protocol": "openai", "baseUrl": sim.base_url("main", "openai"),
                                   "apiKeyEnv": "MAIN_KEY", "models": {"small": model}}},
        })

    roomy = await service().run(loaded(None), "code", PhaseInput(doc, RENAME, workspace=Workspace([root])),
                                NullObserver())
    assert roomy.ok, roomy.error
    assert roomy.context is not None and "pkg/big.py" in {f.path for f in roomy.context.files}
    small = await service().run(loaded(2400), "code", PhaseInput(doc, RENAME, workspace=Workspace([root])),
                                NullObserver())
    assert small.ok, small.error
    assert small.context is not None and "pkg/big.py" not in {f.path for f in small.context.files}
    assert small.context.tokens <= (2400 - 1000) // 2


def test_listing_a_repository_never_runs_its_fsmonitor_hook(tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    marker = tmp_path / "hook-ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(root), "config", "core.fsmonitor", str(hook)], check=True)
    ctx = gather(Workspace([root]), document_uri=(root / "lib.py").as_uri(), document_text=LIB, instruction=RENAME)
    assert {f.path for f in ctx.files} == {"pkg/a.py", "pkg/b.py"} and not marker.exists()


def test_a_symbolic_link_out_of_the_workspace_is_never_read(tmp_path: Path) -> None:
    root = project(tmp_path / "ws")
    outside = tmp_path / "outside.py"
    outside.write_text("from lib import find_item\nSECRET_OUTSIDE = 1\n", encoding="utf-8")
    (root / "pkg" / "link.py").symlink_to(outside)
    ws = Workspace([root])
    ctx = gather(ws, document_uri=(root / "lib.py").as_uri(), document_text=LIB, instruction=f"{RENAME} in pkg/link.py")
    assert "pkg/link.py" not in {f.path for f in ctx.files} and "SECRET_OUTSIDE" not in ctx.repo_map
    assert ws.read("pkg/link.py") is None and "through a symbolic link" in refused(ws, "pkg/link.py")


def refused(ws: Workspace, name: str) -> str:
    """Why the workspace's gate refuses ``name`` as a change's file."""
    with pytest.raises(PathRefused) as caught:
        ws.resolve(name)
    return caught.value.reason
