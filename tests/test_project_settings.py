"""Issue 23, items 20, 19 and 13, for any client: the repository's ``phasewise.json`` read by the
server, problems that end when what caused them does, and a local server that is not running.

``phasewise.json`` lies beneath the editor's settings (the editor's win, key by key), is read again
when it changes, and is the repository's: its user-level fields are ignored with a warning. The
"open the settings" fix of a client without the plugin points at it. A phase taken out of the
settings takes its problem with it; a "document changed" problem ends when the document is saved.
A provider on this machine that refuses the connection is said to be not running, with how to
start the simulator.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, code_actions_json, plain, server_env
from tests.helpers.hostile import closed_port

pytestmark = pytest.mark.slow  # every test starts the language server

KEYS = {"PLANNER_KEY": "test-key-planner-proj-7878", "CODER_KEY": "test-key-coder-proj-9090"}
ROOT = Path(tempfile.mkdtemp(prefix="phasewise-project-")).resolve()
APP = ROOT / "pkg" / "app.py"
APP_TEXT = "def total(items):\n    # phasewise: make total skip None items\n    return sum(i.price for i in items)\n"
LEDGER_WANTED = ROOT / "the-repository-chose-this.jsonl"


def project(sim: SimulatorThread, **phases: Any) -> dict[str, Any]:
    return {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"}, **phases},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY"},
        },
        "ledgerPath": str(LEDGER_WANTED),  # a user-level field: not the repository's to set
    }


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                              server_env=server_env(**KEYS, PHASEWISE_WARMUP="0")))
async def client(lsp_client: LanguageClient) -> AsyncIterator[LanguageClient]:
    """Helix as it is: no plugin, settings pulled (and answered with nothing for ``phasewise``)."""
    APP.parent.mkdir(parents=True, exist_ok=True)
    APP.write_text(APP_TEXT)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=pytest_lsp.client_capabilities("visual-studio-code"), root_uri=ROOT.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=ROOT.as_uri(), name="project")]))
    yield lsp_client
    await lsp_client.shutdown_session()


async def titles(client: LanguageClient) -> list[str]:
    actions = await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=APP.as_uri()),
        range=types.Range(types.Position(1, 4), types.Position(1, 4)), context=types.CodeActionContext(diagnostics=[])))
    return [a["title"] for a in actions]


async def test_the_repositorys_phasewise_json_routes_phases_beneath_the_editors_settings(
        client: LanguageClient, sim: SimulatorThread) -> None:
    sim.reset()
    (ROOT / "phasewise.json").write_text(json.dumps(project(sim)))
    editor = Editor(client)
    editor.open(APP.as_uri(), APP_TEXT)
    offered = await titles(client)
    assert "Phasewise plan (planner/claude-sim): make total skip None items" in offered, offered
    assert "Phasewise code (coder/glm-sim): make total skip None items" in offered
    # the repository may not choose where Phasewise writes outside it: said once, the default used
    warned = [m.message for m in client.messages if "ledgerPath" in m.message]
    assert len(warned) == 1 and "ignored in" in warned[0] and "phasewise.json" in warned[0], warned
    # a phase runs on the file's route, and nothing is written where the repository asked
    plan = plain(await editor.command("phasewise.plan", {"uri": APP.as_uri(), "instruction": "x"}))
    assert (plan["ok"], plan["provider"]) == (True, "planner")
    assert not LEDGER_WANTED.exists()
    # the editor's settings lie over the file's, key by key
    editor.configure({"phases": {"code": {"model": "planner/claude-sim"}}})
    offered = await titles(client)
    assert "Phasewise code (planner/claude-sim): make total skip None items" in offered, offered
    assert "Phasewise plan (planner/claude-sim): make total skip None items" in offered
    # a change to the file is read at once
    editor.configure(None)
    (ROOT / "phasewise.json").write_text(json.dumps(project(sim, plan={"model": "coder/glm-sim"})))
    offered = await titles(client)
    assert "Phasewise plan (coder/glm-sim): make total skip None items" in offered, offered
    # the server's own "open the settings" fix opens that file, at the phase's key
    opened = plain(await editor.command("phasewise.showSettings", {"setting": "phasewise.phases.plan",
                                                                   "uri": APP.as_uri()}))
    assert opened["shown"] == str(ROOT / "phasewise.json"), opened
    # a file that cannot be read is a warning, never a crash; the editor's settings still hold
    (ROOT / "phasewise.json").write_text("{ not json")
    offered = await titles(client)
    assert "Phasewise plan (anthropic/claude-sonnet-4-5): make total skip None items" in offered, offered
    assert any("phasewise.json" in m.message and "not valid JSON" in m.message for m in client.messages)


async def test_problems_end_with_their_phase_and_a_saved_document(client: LanguageClient,
                                                                  sim: SimulatorThread) -> None:
    sim.reset()
    (ROOT / "phasewise.json").unlink(missing_ok=True)
    editor = Editor(client)
    settings = project(sim, security={"kind": "review", "model": "guard/glm-sim"})
    settings.pop("ledgerPath")
    settings["providers"]["guard"] = {"protocol": "openai", "baseUrl": sim.base_url("guard", "openai"),
                                      "apiKeyEnv": "GUARD_KEY"}
    editor.configure(settings)
    editor.open(APP.as_uri(), APP_TEXT)
    failed = plain(await editor.command("phasewise.phase", {"phase": "security", "uri": APP.as_uri()}))
    assert failed["error"]["kind"] == "missing-credentials"
    await editor.diagnostics_where(APP.as_uri(), lambda ds: any(d.code == "missing-credentials" for d in ds))
    # the phase is taken out of the settings: its problem goes (it was re-checked onto the default route)
    settings["phases"].pop("security")
    editor.configure(settings)
    await editor.diagnostics_where(APP.as_uri(), lambda ds: not any(d.source == "phasewise" for d in ds))

    # a change the editor refused because the document moved on: a problem until the document is saved
    editor._apply = lambda params: types.ApplyWorkspaceEditResult(  # type: ignore[method-assign]
        applied=False, failure_reason="the document changed")
    code = plain(await editor.command("phasewise.code", {"uri": APP.as_uri(), "instruction": "rename total to sum_of"}))
    assert code["error"]["kind"] == "document-changed", code["error"]
    await editor.diagnostics_where(APP.as_uri(), lambda ds: any(d.code == "document-changed" for d in ds))
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=APP.as_uri())))
    await editor.diagnostics_where(APP.as_uri(), lambda ds: not any(d.code == "document-changed" for d in ds))


async def test_a_provider_on_this_machine_that_is_not_running_is_said_to_be_started(
        client: LanguageClient) -> None:
    port = closed_port()
    editor = Editor(client)
    editor.configure({"phases": {"plan": {"model": "sim-openai/sim-fast"}},
                      "providers": {"sim-openai": {"protocol": "openai", "baseUrl": f"http://127.0.0.1:{port}/v1",
                                                   "apiKeyEnv": "PLANNER_KEY"}},
                      "retry": {"maxAttempts": 1}})
    editor.open(APP.as_uri(), APP_TEXT)
    result = plain(await asyncio.wait_for(editor.command("phasewise.plan", {"uri": APP.as_uri(), "instruction": "x"}),
                                          30))
    assert result["error"]["kind"] == "network", result["error"]
    message = result["error"]["message"]
    assert f"nothing answers at http://127.0.0.1:{port} on this machine" in message, message
    assert f"`phasewise sim --port {port}`" in message and "phasewise.providers.sim-openai.baseUrl" in message


async def test_compare_asks_no_instruction_of_a_review_kind_phase_of_the_users_own(
        client: LanguageClient, sim: SimulatorThread) -> None:
    """Found while fixing issue 23's Neovim items: compare wanted an instruction of every phase but
    the one named ``review``; a phase's kind decides, as it does for the phase itself."""
    sim.reset()
    (ROOT / "phasewise.json").unlink(missing_ok=True)
    editor = Editor(client)
    settings = project(sim, security={"kind": "review", "model": "coder/glm-sim"})
    settings.pop("ledgerPath")
    editor.configure(settings)
    editor.open(APP.as_uri(), APP_TEXT)
    report = plain(await editor.command("phasewise.compare", {"uri": APP.as_uri(), "phase": "security",
                                                               "models": ["coder/glm-sim", "planner/claude-sim"]}))
    outcomes = [(r["model"], r["outcome"]) for r in report["rows"]]
    assert outcomes == [("coder/glm-sim", "ok"), ("planner/claude-sim", "ok")]
