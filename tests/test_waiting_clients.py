"""Issue 23, items 1–5: clients that wait for a command's answer, and clients that answer oddly.

lsp-mode (and a bare Eglot) runs a code action's command as a synchronous request: the editor is
frozen until the answer, and cancels it after 10 s. Here a generic client (no Phasewise plugin)
gives each command 3 s: a phase answers "started" at once and delivers afterwards, cancellable
through its progress token; an empty settings answer (``[{}]``) is no answer; every quick fix
works for a phase of the user's own; the way out of a missing key names only what the client has.
Then every request the server sends is answered with nulls, errors, odd shapes or silence
(hypothesis): no phase hangs, the server keeps serving. ``tests/editors/test_emacs.py`` runs the
same in the real lsp-mode.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.problems import ProblemKind
from phasewise.sim import SimulatorThread
from tests.helpers import PLUGIN_EXPERIMENTAL, Editor, code_actions_json, message_starting, plain, server_env
from tests.helpers.hostile import FULL, RawServer, size

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

KEYS = {"PLANNER_KEY": "test-key-planner-wait-1212", "CODER_KEY": "test-key-coder-wait-3434"}
LATE_KEY = "test-key-late-wait-5656"
ROOT = Path(tempfile.mkdtemp(prefix="phasewise-waiting-")).resolve()
CART = ROOT / "cart.py"
CART_TEXT = "def total(items):\n    # phasewise: make total skip None items\n    return sum(i.price for i in items)\n"
COMMAND_SECONDS = 3.0  # what a waiting client gives a command here (lsp-mode: 10 s, then it cancels)


def routes(sim: SimulatorThread) -> dict[str, Any]:
    return {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"},
                   "security": {"kind": "review", "model": "guard/glm-sim",
                                "instructions": "Find security problems in this code."}},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY"},
            "guard": {"protocol": "openai", "baseUrl": sim.base_url("guard", "openai"), "apiKeyEnv": "GUARD_KEY"},
        },
        "retry": {"maxAttempts": 1, "maxWaitSeconds": 0.05},
    }


def _capabilities(experimental: Any) -> types.ClientCapabilities:
    capabilities = pytest_lsp.client_capabilities("visual-studio-code")
    capabilities.experimental = experimental
    return capabilities


@pytest_lsp.fixture(params=["lsp-mode-like", "plugin"],
                    config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                              server_env=server_env(**KEYS, PHASEWISE_WARMUP="0")))
async def client(lsp_client: LanguageClient, request: Any, sim: SimulatorThread) -> AsyncIterator[LanguageClient]:
    """A client that answers the settings pull with ``[{}]`` (as lsp-mode does for a section nobody
    registered) and gives its settings in ``initializationOptions``: a generic one, or a plugin
    that names its own set-key command."""
    CART.write_text(CART_TEXT)
    shutil.rmtree(ROOT / ".phasewise", ignore_errors=True)  # plans of the tests before
    plugin = request.param == "plugin"
    experimental = {"phasewise": {**PLUGIN_EXPERIMENTAL["phasewise"], "setKeyCommand": ":Phasewise key"}}
    lsp_client.plugin = plugin  # type: ignore[attr-defined]
    lsp_client.set_configuration({}, section="phasewise")
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=_capabilities(experimental if plugin else None), root_uri=ROOT.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=ROOT.as_uri(), name="waiting")],
        initialization_options={"phasewise": routes(sim)}))
    yield lsp_client
    await lsp_client.shutdown_session()


async def said(client: LanguageClient, start: str, timeout: float = 60.0) -> str:
    return await message_starting(client, start, timeout)


async def action_for(client: LanguageClient, kind: str, line: int = 1) -> dict[str, Any]:
    actions = await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=CART.as_uri()),
        range=types.Range(types.Position(line, 4), types.Position(line, 4)),
        context=types.CodeActionContext(diagnostics=[])))
    return next(a for a in actions if a["kind"] == kind)


async def quick_fixes(client: LanguageClient, diag: types.Diagnostic) -> list[dict[str, Any]]:
    return await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=CART.as_uri()), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag], only=[types.CodeActionKind.QuickFix])))


async def execute_as_sent(client: LanguageClient, command: dict[str, Any]) -> dict[str, Any]:
    """A command exactly as the server offered it, answered within ``COMMAND_SECONDS``."""
    answer = await asyncio.wait_for(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=command["command"], arguments=command.get("arguments"))), COMMAND_SECONDS)
    result = plain(answer)
    assert isinstance(result, dict), result
    return result


async def test_a_code_action_is_answered_at_once_and_the_phase_delivers_afterwards(
        client: LanguageClient, sim: SimulatorThread) -> None:
    sim.reset()
    sim.configure("planner", first_token_ms=COMMAND_SECONDS * 1000 + 500)  # longer than the client waits
    editor = Editor(client)
    editor.open(CART.as_uri(), CART_TEXT)
    plan = await action_for(client, "source.phasewise.plan")
    # the routes given at start hold: the [{}] settings answer was taken as no answer
    assert plan["title"] == "Phasewise plan (planner/claude-sim): make total skip None items"
    if client.plugin:  # type: ignore[attr-defined]
        # a plugin waits for the whole result, as before
        result = plain(await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=plan["command"]["command"], arguments=plan["command"]["arguments"])))
        assert result["ok"] is True and result["text"] and "started" not in result
        return
    result = await execute_as_sent(client, plan["command"])
    assert result["started"] is True and result["ok"] is True and result["phase"] == "plan", result
    assert result["runId"] and "text" not in result
    done = await said(client, "Phasewise plan (planner/claude-sim): done")
    written = ROOT / ".phasewise" / "plans" / "cart.py-plan.md"
    assert done == "Phasewise plan (planner/claude-sim): done, in .phasewise/plans/cart.py-plan.md"
    assert result["runId"] in written.read_text()  # the run it said it started is the one delivered
    assert [d.uri for d in client.shown_documents] == [written.as_uri()]


async def test_a_phase_running_on_is_cancelled_through_its_progress_token(client: LanguageClient,
                                                                         sim: SimulatorThread) -> None:
    if client.plugin:  # type: ignore[attr-defined]
        pytest.skip("a plugin's phase is its request: cancelled with $/cancelRequest (tests/test_phases.py)")
    sim.reset()
    sim.configure("planner", first_token_ms=20_000)
    Editor(client).open(CART.as_uri(), CART_TEXT)
    plan = await action_for(client, "source.phasewise.plan")
    await execute_as_sent(client, plan["command"])

    async def token() -> str:
        while True:
            for t, reports in client.progress_reports.items():
                if any((getattr(r, "title", None) or "").startswith("Phasewise plan") for r in reports):
                    return str(t)
            await client.wait_for_notification("$/progress")

    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(
        token=await asyncio.wait_for(token(), 10)))
    message = await said(client, "Phasewise plan (planner/claude-sim): ", timeout=10)
    assert "cancel" in message.lower(), message
    assert not (ROOT / ".phasewise" / "plans" / "cart.py-plan.md").exists()


async def test_every_quick_fix_works_for_a_phase_of_the_users_own(client: LanguageClient,
                                                                  sim: SimulatorThread) -> None:
    """Item 3 ("Retry the security phase" was refused with -32602) and item 4 (the way out of a
    missing key names only what the client has)."""
    sim.reset()
    editor = Editor(client)
    editor.open(CART.as_uri(), CART_TEXT)
    failed = plain(await editor.command("phasewise.phase", {"phase": "security", "uri": CART.as_uri()}))
    assert failed["error"]["kind"] == "missing-credentials"
    message = failed["error"]["message"]
    if client.plugin:  # type: ignore[attr-defined]
        assert "or use `:Phasewise key` in the editor" in message, message
    else:
        assert "GUARD_KEY" in message and "phasewise auth set guard" in message
        assert "Set API Key" not in message and "in the editor" not in message, message
    diags = await editor.diagnostics_where(CART.as_uri(), lambda ds: any(d.code == "missing-credentials" for d in ds))
    problem = next(d for d in diags if d.code == "missing-credentials")
    actions = await quick_fixes(client, problem)
    titles = [a["title"] for a in actions]
    key_fix = "Set GUARD_KEY (:Phasewise key)" if client.plugin else "Set GUARD_KEY: show where the key goes"  # type: ignore[attr-defined]
    assert key_fix in titles and "Retry the security phase now" in titles, titles
    # the key arrives; every fix offered runs, exactly as offered
    client.protocol.notify("phasewise/setKeys", {"keys": {"GUARD_KEY": LATE_KEY}})
    for fix in actions:
        if fix["command"]["command"] not in ("phasewise.setApiKey", "phasewise.openSettings"):  # the plugin's own
            await execute_as_sent(client, fix["command"])
    if not client.plugin:  # type: ignore[attr-defined]
        ended = await said(client, "Phasewise security (guard/glm-sim): ")
        assert "finding" in ended, ended
    await editor.diagnostics_where(CART.as_uri(), lambda ds: not any(d.code == "missing-credentials" for d in ds))
    guarded = [r for r in sim.requests if r.endpoint == "chat" and r.provider == "guard"]
    assert len(guarded) == 1 and guarded[0].api_key == LATE_KEY


async def test_a_rate_limited_phase_of_the_users_own_is_retried_once_the_limit_lifts(
        client: LanguageClient, sim: SimulatorThread) -> None:
    sim.reset()
    editor = Editor(client)
    editor.open(CART.as_uri(), CART_TEXT)
    client.protocol.notify("phasewise/setKeys", {"keys": {"GUARD_KEY": LATE_KEY}})
    sim.add_fault("openai.rate_limit", provider="guard", retry_after=None, retry_after_ms=1200)
    failed = plain(await editor.command("phasewise.phase", {"phase": "security", "uri": CART.as_uri()}))
    assert failed["error"]["kind"] == "rate-limit", failed["error"]
    diags = await editor.diagnostics_where(CART.as_uri(), lambda ds: any(d.code == "rate-limit" for d in ds))
    limited = next(d for d in diags if d.code == "rate-limit")
    actions = await quick_fixes(client, limited)
    retry = next(a for a in actions if a["title"].startswith("Retry the security phase"))
    result = await execute_as_sent(client, retry["command"]) if not client.plugin else plain(  # type: ignore[attr-defined]
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=retry["command"]["command"], arguments=retry["command"]["arguments"])))
    if not client.plugin:  # type: ignore[attr-defined]
        assert result["started"] is True
        await said(client, "Phasewise security (guard/glm-sim): ")
    else:
        assert result["ok"] is True, result
    await editor.diagnostics_where(CART.as_uri(), lambda ds: not any(d.code == "rate-limit" for d in ds))
    assert len([r for r in sim.requests if r.provider == "guard"]) == 2


# ------------------------------------------------------------------ 5: replies the server does not expect

SERVER_REQUESTS = ("workspace/configuration", "window/showDocument", "workspace/applyEdit",
                   "window/workDoneProgress/create")
FUZZ = settings(deadline=None, database=None, derandomize=not FULL, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["success", "applied", "failureReason", "title",
                                                                  "phases", "x"]), inner, max_size=3)),
    max_leaves=6)
# how the client answers: a value, an error, nothing at all, or a response without a result
reply_shape = st.one_of(
    st.builds(lambda v: ("result", v), json_value),
    st.just(("error", None)), st.just(("silence", None)), st.just(("no-result", None)))


class RawClient:
    """``phasewise serve`` spoken to in raw JSON-RPC from a loop of its own (hypothesis drives it
    synchronously): every request the server sends is answered by ``answer``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ids: Iterator[int] = itertools.count(1)
        self.server: RawServer = self.call(RawServer.start(env))

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def request(self, method: str, params: Any, answer: Callable[[dict[str, Any]], dict[str, Any] | None],
                      ) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.server.write(self.server.request(msg_id, method, params))
        while True:
            message = await self.server.read_message()
            if "method" in message and "id" in message:  # the server asks the client something
                reply = answer(message)
                if reply is not None:
                    self.server.write(self.server.frame(reply))
            elif "method" not in message and message.get("id") == msg_id:
                self.server.seen.clear()
                return message

    def notify(self, method: str, params: Any) -> None:
        self.server.write(self.server.frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def close(self) -> None:
        self.server.proc.kill()
        self.call(self.server.proc.wait())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def usual_answer(settings_json: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    def answer(message: dict[str, Any]) -> dict[str, Any]:
        result: Any = {"workspace/configuration": [settings_json], "window/showDocument": {"success": True},
                       "workspace/applyEdit": {"applied": True}}.get(message["method"])
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return answer


@pytest.fixture(scope="module")
def raw(sim_module: SimulatorThread) -> Iterator[tuple[RawClient, dict[str, Any]]]:
    client = RawClient(server_env(**KEYS, PHASEWISE_WARMUP="0", PHASEWISE_REPLY_SECONDS="1"))
    wanted = routes(sim_module)
    capabilities = {"workspace": {"configuration": True, "applyEdit": True,
                                  "workspaceEdit": {"documentChanges": True}},
                    "window": {"workDoneProgress": True, "showDocument": {"support": True}}}
    init = client.call(client.request("initialize", {"processId": None, "rootUri": ROOT.as_uri(),
                                                     "capabilities": capabilities,
                                                     "initializationOptions": {"phasewise": wanted}},
                                      usual_answer(wanted)))
    assert "capabilities" in init["result"]
    client.notify("initialized", {})
    CART.write_text(CART_TEXT)
    client.notify("textDocument/didOpen", {"textDocument": {"uri": CART.as_uri(), "languageId": "python",
                                                            "version": 1, "text": CART_TEXT}})
    yield client, wanted
    client.close()


@pytest.fixture(scope="module")
def sim_module() -> Iterator[SimulatorThread]:
    with SimulatorThread() as sim:
        yield sim


def test_a_client_that_answers_show_document_with_null_still_gets_its_plan(
        raw: tuple[RawClient, dict[str, Any]]) -> None:
    client, wanted = raw
    usual = usual_answer(wanted)

    def null_show(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["method"] == "window/showDocument":
            return {"jsonrpc": "2.0", "id": message["id"], "result": None}
        return usual(message)

    reply = client.call(asyncio.wait_for(client.request("workspace/executeCommand", {
        "command": "phasewise.plan", "arguments": [{"uri": CART.as_uri(), "instruction": "x", "wait": True}]},
        null_show), 10))
    assert reply["result"]["ok"] is True and reply["result"]["shownAt"].endswith("cart.py-plan.md"), reply


@settings(FUZZ, max_examples=size(40, 800))
@given(method=st.sampled_from(SERVER_REQUESTS), shape=reply_shape, phase=st.sampled_from(["plan", "code"]))
def test_every_request_to_the_client_tolerates_any_reply_and_silence(
        raw: tuple[RawClient, dict[str, Any]], method: str, shape: tuple[str, Any], phase: str) -> None:
    client, wanted = raw
    usual = usual_answer(wanted)
    how, value = shape

    def odd(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["method"] != method:
            return usual(message)
        base = {"jsonrpc": "2.0", "id": message["id"]}
        if how == "silence":
            return None
        if how == "error":
            return {**base, "error": {"code": -32603, "message": "the client fell over"}}
        if how == "no-result":
            return base
        return {**base, "result": value}

    client.notify("workspace/didChangeConfiguration", {"settings": None})  # the next phase pulls again
    reply = client.call(asyncio.wait_for(client.request("workspace/executeCommand", {
        "command": f"phasewise.{phase}",
        "arguments": [{"uri": CART.as_uri(), "instruction": "make total skip None items", "wait": True}]}, odd), 20),
        timeout=30)
    assert "result" in reply, reply  # a result, never an internal error
    result = reply["result"]
    # settings answered with something else are settings all the same (their issues, the defaults' routes)
    expected = {str(k) for k in ProblemKind} if method == "workspace/configuration" else {"document-changed"}
    assert result["ok"] is True or result["error"]["kind"] in expected, result
    if method == "workspace/applyEdit" and phase == "code" and how != "result":
        assert result["ok"] is False and result["applied"] is False, result  # not answered: not applied
    status = client.call(client.request("workspace/executeCommand", {"command": "phasewise.status", "arguments": []},
                                        usual))
    assert status["result"]["phases"], status
