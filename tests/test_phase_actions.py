"""Issue 13: every phase reachable from any LSP client through code actions, results shown as documents.

The client here is a plain pytest-lsp client with VS Code's declared capabilities and no Phasewise
``experimental`` capability: what Helix, Vim, Kate or Sublime have. It asks for code actions at a
cursor, executes the one it picks, and sees the plan as a Markdown file opened with
``window/showDocument`` (the reply of ``executeCommand`` is not read).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, code_actions_json, message_starting, server_env

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

WORKSPACE = Path(tempfile.mkdtemp(prefix="phasewise-actions-"))
CART = WORKSPACE / "cart.py"
CART_TEXT = """def total(items):
    # phasewise: make total skip None items
    return sum(i.price for i in items)


def count(items):
    return len(items)
"""
KEYS = {"ACTIONS_KEY": "test-key-actions-5e6f7a8b"}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                              server_env=server_env(**KEYS, PHASEWISE_WARMUP="0")))
async def plain(lsp_client: LanguageClient) -> AsyncIterator[LanguageClient]:
    capabilities = pytest_lsp.client_capabilities("visual-studio-code")
    assert capabilities.experimental is None  # no Phasewise plugin here
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=WORKSPACE.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=WORKSPACE.as_uri(), name="shop")]))
    yield lsp_client
    await lsp_client.shutdown_session()


def settings(sim: SimulatorThread) -> dict[str, Any]:
    provider = {"protocol": "openai", "baseUrl": sim.base_url("acts", "openai"), "apiKeyEnv": "ACTIONS_KEY"}
    return {"phases": {"plan": {"model": "acts/sim-fast"}, "code": {"model": "acts/sim-coder"},
                       "review": {"model": "acts/sim-reviewer"},
                       "docs": {"kind": "plan", "model": "acts/sim-smart",
                                "instructions": "Write the docstrings this code lacks."}},
            "providers": {"acts": provider}}


async def actions_at(client: LanguageClient, line: int, only: list[str] | None = None) -> list[dict[str, Any]]:
    return await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=CART.as_uri()),
        range=types.Range(types.Position(line, 4), types.Position(line, 4)),
        context=types.CodeActionContext(diagnostics=[], only=only)))


async def test_every_phase_is_a_code_action_with_its_route_and_instruction(plain: LanguageClient,
                                                                          sim: SimulatorThread) -> None:
    editor = Editor(plain)
    editor.configure(settings(sim))
    CART.write_text(CART_TEXT)
    editor.open(CART.as_uri(), CART_TEXT)
    # on the line under a `phasewise:` comment: that instruction, for every phase, with its route
    actions = await actions_at(plain, 2)
    titles = {a["kind"]: a["title"] for a in actions}
    assert titles == {
        "source.phasewise.plan": "Phasewise plan (acts/sim-fast): make total skip None items",
        "refactor.rewrite.phasewise.code": "Phasewise code (acts/sim-coder): make total skip None items",
        "source.phasewise.review": "Phasewise review (acts/sim-reviewer): make total skip None items",
        "source.phasewise.docs": "Phasewise docs (acts/sim-smart): make total skip None items",
    }, titles
    for action in actions:
        assert action["command"]["command"] == "phasewise.phase"
    # without a comment nearby: each phase's own default (a phase of yours: its instructions)
    bare = {a["kind"]: a["title"] for a in await actions_at(plain, 6)}
    assert bare["source.phasewise.review"] == "Phasewise review (acts/sim-reviewer): Review this code"
    assert bare["source.phasewise.docs"] == "Phasewise docs (acts/sim-smart): Write the docstrings this code lacks"
    # clients filter by kind: only refactorings, or only quick fixes
    refactorings = await actions_at(plain, 2, only=["refactor.rewrite"])
    assert [a["kind"] for a in refactorings] == ["refactor.rewrite.phasewise.code"]
    assert await actions_at(plain, 2, only=[types.CodeActionKind.QuickFix]) == []
    assert [r for r in sim.requests if r.endpoint == "chat"] == []  # offering them sent nothing


async def test_a_plan_action_run_from_a_plain_client_is_shown_as_a_document(plain: LanguageClient,
                                                                           sim: SimulatorThread) -> None:
    editor = Editor(plain)
    editor.configure(settings(sim))
    CART.write_text(CART_TEXT)
    editor.open(CART.as_uri(), CART_TEXT)
    plan = next(a for a in await actions_at(plain, 2) if a["kind"] == "source.phasewise.plan")
    started = await plain.workspace_execute_command_async(types.ExecuteCommandParams(
        command=plan["command"]["command"], arguments=plan["command"]["arguments"]))
    assert started["started"] is True  # a client without the plugin is answered at once (issue 23)
    await message_starting(plain, "Phasewise plan (acts/sim-fast): done", 60)
    assert plain.shown_documents, "the plan was not shown"
    shown = plain.shown_documents[-1]
    path = Path(to_fs_path(shown.uri) or "")
    assert path == WORKSPACE / ".phasewise" / "plans" / "cart.py-plan.md"
    text = path.read_text()  # noqa: ASYNC240 (a small file, read once)
    assert "make total skip None items" in text and "acts/sim-fast" in text
    assert shown.uri == from_fs_path(str(path))
    request = [r for r in sim.requests if r.endpoint == "chat"][-1]
    assert "make total skip None items" in str(request.body)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_plan_cut_at_the_output_limit_says_so_in_the_result_and_the_document(
        plain: LanguageClient, sim: SimulatorThread, protocol: str) -> None:
    """A plan that stopped at ``maxOutputTokens`` is still a plan (ok), marked incomplete, and says so where
    it is shown: a ``note`` in the result naming the limit and the setting, the plan document, the progress."""
    editor = Editor(plain)
    raw = settings(sim)
    raw["providers"]["acts"] = {**raw["providers"]["acts"], "protocol": protocol,
                                "baseUrl": sim.base_url("acts", protocol)}
    raw["phases"]["plan"]["maxOutputTokens"] = 30
    editor.configure(raw)
    CART.write_text(CART_TEXT)
    editor.open(CART.as_uri(), CART_TEXT)
    result = await plain.workspace_execute_command_async(types.ExecuteCommandParams(
        command="phasewise.plan",
        arguments=[{"uri": CART.as_uri(), "instruction": "make total skip None items", "wait": True}]))
    request = [r for r in sim.requests if r.endpoint == "chat"][-1].body
    assert request.get("max_completion_tokens", request.get("max_tokens")) == 30
    assert result["ok"] is True and result["incomplete"] is True and result["error"] is None
    assert 0 < len(result["text"]) <= 30 * 4  # what arrived, cut where the simulator stopped
    note = result["note"]
    assert "stopped answering the plan phase (sim-fast) at its output limit of 30 tokens" in note, note
    assert "the plan ends where the answer was cut off" in note
    assert "`phasewise.phases.plan.maxOutputTokens`" in note
    shown = Path(to_fs_path(plain.shown_documents[-1].uri) or "").read_text()  # noqa: ASYNC240 (small, once)
    assert f"> {note}\n" in shown and result["text"].rstrip() in shown
    ends = [getattr(r, "message", None) or "" for reports in plain.progress_reports.values() for r in reports
            if getattr(r, "kind", None) == "end"]
    assert any(m.startswith("plan ok, cut at the output limit") for m in ends), ends
    # with room to finish: no note, not incomplete
    raw["phases"]["plan"]["maxOutputTokens"] = 4000
    editor.configure(raw)
    whole = await plain.workspace_execute_command_async(types.ExecuteCommandParams(
        command="phasewise.plan",
        arguments=[{"uri": CART.as_uri(), "instruction": "make total skip None items", "wait": True}]))
    assert whole["ok"] is True and "note" not in whole and "incomplete" not in whole
    assert whole["text"].startswith(result["text"]) and len(whole["text"]) > len(result["text"])


@pytest.mark.parametrize("line", [0, 2])
async def test_unknown_phase_by_name_is_a_precise_error(plain: LanguageClient, line: int) -> None:
    from pygls.exceptions import JsonRpcException

    editor = Editor(plain)
    CART.write_text(CART_TEXT)
    editor.open(CART.as_uri(), CART_TEXT)
    with pytest.raises(JsonRpcException) as err:
        await editor.command("phasewise.phase", {"phase": "nope", "uri": CART.as_uri(), "instruction": "x",
                                                 "range": {"start": {"line": line, "character": 0},
                                                           "end": {"line": line, "character": 0}}})
    assert "unknown phase 'nope'" in err.value.message and "phasewise.phases.nope" in err.value.message
