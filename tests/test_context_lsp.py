"""Project context through a real LSP client: what a phase reads of the workspace follows what the
editor and the previous change did to it (the file list and each file's symbols are cached for a
few seconds, so a change applied, a save or a close must make the next phase look again)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, make_plugin_client_fixture, plain, server_env

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

WORKSPACE = Path(tempfile.mkdtemp(prefix="phasewise-context-ws-"))
LIB = "def find_item(items, sku):\n    for item in items:\n        if item.sku == sku:\n            return item\n"
CALLER = "from lib import find_item\n\n\ndef b(items):\n    return find_item(items, 'B')\n"

(WORKSPACE / "pkg").mkdir()
(WORKSPACE / "lib.py").write_text(LIB, encoding="utf-8")
(WORKSPACE / "pkg" / "b.py").write_text(CALLER, encoding="utf-8")
subprocess.run(["git", "init", "-q", str(WORKSPACE)], check=True)

client = make_plugin_client_fixture(server_env(CODER_KEY="test-key-coder-3333", PHASEWISE_WARMUP="0"),
                                    clients=["visual-studio-code"], root=WORKSPACE)


def settings(sim: SimulatorThread) -> dict[str, Any]:
    return {"phases": {"code": {"model": "coder/glm-sim", "confirm": False}},
            "providers": {"coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"),
                                    "apiKeyEnv": "CODER_KEY"}},
            "retry": {"maxAttempts": 1}}


async def test_the_next_phase_sees_the_change_just_applied(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(settings(sim))
    uri = (WORKSPACE / "lib.py").as_uri()
    editor.open(uri, LIB)

    async def rename(old: str, new: str) -> dict[str, Any]:
        result: dict[str, Any] = plain(await editor.command("phasewise.code", {
            "uri": uri, "instruction": f"Rename {old} to {new} and keep its callers working"}))
        assert result["ok"] and result["applied"] is True, result
        return result

    first = await rename("find_item", "find_by_sku")
    assert [f["path"] for f in first["files"]] == ["lib.py", "pkg/b.py"]
    assert "find_by_sku(items, 'B')" in (WORKSPACE / "pkg" / "b.py").read_text(encoding="utf-8")
    # at once (well inside the caches' few seconds): the caller, changed on disk, is found again
    second = await rename("find_by_sku", "lookup_sku")
    assert [f["path"] for f in second["files"]] == ["lib.py", "pkg/b.py"], second["context"]
    assert "lookup_sku(items, 'B')" in (WORKSPACE / "pkg" / "b.py").read_text(encoding="utf-8")
