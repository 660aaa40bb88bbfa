"""Issue 13: results a plain LSP client can see when it cannot open documents.

ALE (Vim) declares no ``window/showDocument`` and sends ``rootUri`` without workspace folders:
the plan is still written to ``.phasewise/plans/`` under that root, and a ``window/showMessage``
names the file. A client that says it is a Phasewise plugin gets no file (it shows plans itself).
The real ALE runs in ``tests/editors/test_vim_ale.py``; this is the fast protocol-level check.
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
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, code_actions_json, message_starting, server_env

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

KEYS = {"PLAIN_KEY": "test-key-plain-9a8b7c6d"}
CART_TEXT = "def total(items):\n    # phasewise: make total skip None items\n    return sum(i.price for i in items)\n"


def _capabilities(plugin: bool) -> types.ClientCapabilities:
    capabilities = pytest_lsp.client_capabilities("visual-studio-code")
    assert capabilities.window is not None
    capabilities.window.show_document = None  # as ALE 3.3 declares: no showDocument
    capabilities.experimental = {"phasewise": {"clientCommands": []}} if plugin else None
    return capabilities


@pytest_lsp.fixture(params=["ale-like", "plugin"],
                    config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                              server_env=server_env(**KEYS, PHASEWISE_WARMUP="0")))
async def client(lsp_client: LanguageClient, request: Any) -> AsyncIterator[LanguageClient]:
    root = Path(tempfile.mkdtemp(prefix="phasewise-plain-"))
    lsp_client.root = root  # type: ignore[attr-defined]
    lsp_client.plugin = request.param == "plugin"  # type: ignore[attr-defined]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=_capabilities(lsp_client.plugin),  # type: ignore[attr-defined]
        root_uri=root.as_uri()))  # rootUri only, no workspaceFolders
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_plan_is_written_under_the_root_and_named_in_a_message(client: LanguageClient,
                                                                     sim: SimulatorThread) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    cart = root / "cart.py"
    cart.write_text(CART_TEXT)
    editor = Editor(client)
    editor.configure({"phases": {"plan": {"model": "plain/sim-fast"}},
                      "providers": {"plain": {"protocol": "openai", "baseUrl": sim.base_url("plain", "openai"),
                                              "apiKeyEnv": "PLAIN_KEY"}}})
    editor.open(cart.as_uri(), CART_TEXT)
    actions = await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=cart.as_uri()),
        range=types.Range(types.Position(2, 4), types.Position(2, 4)),
        context=types.CodeActionContext(diagnostics=[])))
    plan = next(a for a in actions if a["kind"] == "source.phasewise.plan")
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=plan["command"]["command"], arguments=plan["command"]["arguments"]))
    assert result["ok"] is True
    if not client.plugin:  # type: ignore[attr-defined]
        # answered at once (ALE would wait, issue 23); the plan is delivered when it is done
        assert result["started"] is True
        await message_starting(client, "Phasewise plan (plain/sim-fast): done", 60)
    written = root / ".phasewise" / "plans" / "cart.py-plan.md"
    said = [m.message for m in client.messages if m.message.startswith("Phasewise: wrote")]
    assert client.shown_documents == []
    if client.plugin:  # type: ignore[attr-defined]
        assert not written.exists() and said == [] and "shownAt" not in result
        return
    assert said == ["Phasewise: wrote .phasewise/plans/cart.py-plan.md"]
    text = written.read_text()
    assert "make total skip None items" in text and "plain/sim-fast" in text
    done = [m.message for m in client.messages if m.message.startswith("Phasewise plan (")]
    assert done == ["Phasewise plan (plain/sim-fast): done, in .phasewise/plans/cart.py-plan.md"]
