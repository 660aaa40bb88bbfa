"""Issue 7, item 5: hostile input never crashes the server.

Property-based fuzzing (hypothesis) of the settings, in process and through one real LSP session,
and of the arguments of every command the server registers (plus the notifications it handles);
raw JSON-RPC garbage on the server's stdin; a 10 MB document; invalid and foreign URIs. Every
case must be answered: a result, a classified problem, or a JSON-RPC error with a precise
message, and the server must answer ``phasewise.status`` afterwards. Routes point at the
simulator or at a closed loopback port: nothing leaves the machine.

Sizes: ``PHASEWISE_FULL=1`` for the full run (over 10,000 cases), short otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from phasewise.problems import ProblemKind
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers import Editor, answer, make_client_fixture, server_env
from tests.helpers.hostile import (
    FULL,
    BackgroundClient,
    RawServer,
    closed_port,
    offline_overrides,
    sandbox_env,
    size,
)

KINDS = {str(k) for k in ProblemKind}
INVALID_PARAMS, INTERNAL_ERROR = -32602, -32603
TALLY: Counter[str] = Counter()  # cases tried, by suite (printed at the end of the module)

FUZZ = settings(
    deadline=None, database=None, derandomize=not FULL, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------------------- strategies

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
model_ref_text = st.one_of(
    st.sampled_from(["fz/sim-fast", "anthropic/claude-opus-4-5", "openai/gpt-5-mini", "zai/glm-4.7",
                     "openrouter/anthropic/claude-sonnet-4.5", "nope/x", "/", "a/", "/b", "", "  ", "fz/",
                     "fz//sim-fast", "sim-gpt/sim-fast", "ollama/llama3", "fz/sim-fast\n", "ünï/cödé"]),
    st.text(max_size=30),
    st.builds(lambda a, b: f"{a}/{b}", st.text(max_size=10), st.text(max_size=20)),
)
model_ref = st.one_of(model_ref_text, st.fixed_dictionaries({}, optional={
    "provider": st.one_of(st.text(max_size=10), json_leaf), "model": st.one_of(st.text(max_size=10), json_leaf)}),
    json_value)
number = st.one_of(st.integers(min_value=-10**12, max_value=10**12), st.floats(), st.text(max_size=6), st.none())
url = st.one_of(st.sampled_from(["http://127.0.0.1:9/v1", "https://", "ftp://x", "not a url", "", "http://[::1",
                                 "http://user:sk-secret@h/", "javascript:alert(1)"]), st.text(max_size=30))
env_name = st.one_of(st.sampled_from(["FUZZ_KEY", "PATH", "", "OPENAI_API_KEY", "A B", "sk-looks-like-a-key"]),
                     st.text(max_size=15), st.lists(st.text(max_size=10), max_size=3))
phase_settings = st.fixed_dictionaries({}, optional={
    "model": model_ref, "fallbacks": st.one_of(st.lists(model_ref, max_size=3), json_value),
    "fallbackOn": st.one_of(st.lists(st.sampled_from([*sorted(KINDS), "nope"]), max_size=4), json_value),
    "temperature": number, "maxOutputTokens": number,
    "editFormat": st.one_of(st.sampled_from(["tool", "text", "diff"]), json_value), "extra": json_value,
})
model_settings = st.fixed_dictionaries({}, optional={
    "toolCalling": json_leaf, "contextWindow": number, "maxOutputTokens": number, "vision": json_leaf,
    "inputPricePerMtok": number, "outputPricePerMtok": number})
provider_settings = st.fixed_dictionaries({}, optional={
    "protocol": st.one_of(st.sampled_from(["openai", "anthropic", "grpc"]), json_value), "baseUrl": url,
    "apiKeyEnv": env_name, "authTokenEnv": env_name, "requiresKey": json_leaf,
    "headers": st.one_of(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3), json_value),
    "models": st.one_of(st.dictionaries(st.text(max_size=10), model_settings, max_size=3), json_value),
    "apiKey": st.text(max_size=20),
})
phase_name = st.one_of(st.sampled_from(["plan", "code", "review", "test", ""]), st.text(max_size=10))
# paths a hostile repository (or a typo) may give: unexpandable, escaping, linking, odd
path_text = st.one_of(st.sampled_from(["~0", "~0/x", "~nosuchuser/runs.jsonl", "$PHASEWISE_UNSET/x", "${}", "~",
                                       "../../etc/passwd", "/etc/passwd", "relative/r.jsonl", "", " ", "\0",
                                       "~/.bashrc", ".git/hooks/pre-commit", "C:\\x", "a" * 300]),
                      st.text(max_size=20))
provider_name = st.one_of(st.sampled_from(["fz", "openai", "anthropic", "zai", "ollama", "sim-glm", ""]),
                          st.text(max_size=10))
settings_object = st.fixed_dictionaries({}, optional={
    "phases": st.one_of(st.dictionaries(phase_name, st.one_of(phase_settings, json_value), max_size=4), json_value),
    "providers": st.one_of(st.dictionaries(provider_name, st.one_of(provider_settings, json_value), max_size=3),
                           json_value),
    "retry": st.one_of(st.fixed_dictionaries({}, optional={
        "maxAttempts": number, "maxWaitSeconds": number, "backoffBaseSeconds": number,
        "backoffMaxSeconds": number}), json_value),
    "timeouts": st.one_of(st.fixed_dictionaries({}, optional={
        "connectSeconds": number, "firstTokenSeconds": number, "idleSeconds": number}), json_value),
    "defaultModel": model_ref, "ledgerPath": st.one_of(path_text, json_leaf),
    "plansDirectory": st.one_of(path_text, json_leaf),
    "recordContent": json_leaf, "security": json_value,
    "network": st.one_of(st.fixed_dictionaries({}, optional={"caBundle": st.one_of(path_text, json_leaf)}),
                         json_value),
    "unknownSetting": json_value,
})
any_settings = st.one_of(settings_object, settings_object, json_value)


def check_issues(issues: list[tuple[str, str]]) -> None:
    """Every settings issue names a key path under ``phasewise`` and says what was expected."""
    for path, message in issues:
        assert isinstance(path, str) and path.startswith("phasewise"), (path, message)
        assert isinstance(message, str) and message.strip(), (path, message)


# ------------------------------------------------------------------------------- settings, in process


@pytest.mark.slow
@settings(FUZZ, max_examples=size(300, 4000))
@given(raw=any_settings)
def test_settings_model_never_raises(raw: Any) -> None:
    TALLY["settings (in process)"] += 1
    loaded = load_settings(raw)
    check_issues([(i.path, i.message) for i in loaded.issues])
    from phasewise.router.router import Engine

    resolver = Engine().resolver(loaded)
    for phase in resolver.phase_names():
        route = resolver.phase(phase)
        resolver.describe(route)
        if route.problem is not None:
            assert str(route.problem.kind) in KINDS and route.problem.message



# ------------------------------------------------------------------------------- one server for the fuzz run

OPEN_URI = "file:///fuzz/open.py"
UNTITLED_URI = "untitled:Untitled-1"
DOC = "def total(items):\n    return sum(i.price for i in items)\n"


@pytest.fixture(scope="module")
def fuzz_server(sim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundClient]:
    base = tmp_path_factory.mktemp("fuzz")
    disk = base / "on_disk.py"
    disk.write_text(DOC)
    env = sandbox_env(base, FUZZ_KEY="fuzz-key-0c1d2e3f4a5b6c7d", PHASEWISE_WARMUP="1")
    bg = BackgroundClient([sys.executable, "-m", "phasewise", "serve"], env)
    bg.disk_uri = disk.as_uri()  # type: ignore[attr-defined]
    bg.port = closed_port()  # type: ignore[attr-defined]
    for uri, text in ((OPEN_URI, DOC), (UNTITLED_URI, DOC)):
        bg.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    yield bg
    bg.close()


def fixed_settings(sim: SimulatorThread, port: int) -> dict[str, Any]:
    return {
        "phases": {p: {"model": "fz/sim-fast"} for p in ("plan", "code", "review")},
        "providers": {**offline_overrides(port),
                      "fz": {"protocol": "openai", "baseUrl": sim.base_url("fz", "openai"), "apiKeyEnv": "FUZZ_KEY"},
                      "fa": {"protocol": "anthropic", "baseUrl": sim.base_url("fa", "anthropic"),
                             "apiKeyEnv": "FUZZ_KEY"}},
        "retry": {"maxAttempts": 2, "backoffBaseSeconds": 0.01, "backoffMaxSeconds": 0.02, "maxWaitSeconds": 1},
        "timeouts": {"connectSeconds": 2, "firstTokenSeconds": 2, "idleSeconds": 1},
    }


async def _configure(client: LanguageClient, raw: Any, pushed: Any = None) -> None:
    client.set_configuration(raw, section="phasewise")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=pushed))


async def _execute(client: LanguageClient, command: str, arguments: list[Any]) -> Any:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=command,
                                                                                   arguments=arguments))


def status_of(bg: BackgroundClient, uri: str | None = OPEN_URI) -> dict[str, Any]:
    result = answer(bg.call(_execute(bg.client, "phasewise.status", [{"uri": uri}] if uri else []), timeout=60))
    assert isinstance(result.get("phases"), list), result
    return result


@pytest.fixture
def fuzz(fuzz_server: BackgroundClient, sim: SimulatorThread) -> BackgroundClient:
    sim.configure("fz", first_token_ms=0, chunk_interval_ms=0)
    sim.configure("fa", first_token_ms=0, chunk_interval_ms=0)
    bg = fuzz_server
    bg.call(_configure(bg.client, fixed_settings(sim, bg.port)))  # type: ignore[attr-defined]
    return bg


# ------------------------------------------------------------------------------- settings through LSP


@pytest.mark.slow
@settings(FUZZ, max_examples=size(120, 3000))
@given(raw=any_settings, push=st.booleans())
def test_fuzzed_settings_through_lsp(fuzz: BackgroundClient, raw: Any, push: bool) -> None:
    TALLY["settings (through LSP)"] += 1
    fuzz.call(_configure(fuzz.client, raw, {"phasewise": raw} if push else None))
    status = status_of(fuzz)
    check_issues([(i.get("path"), i.get("message")) for i in status["settingsIssues"]])
    for view in status["phases"]:
        problem = view.get("problem")
        if problem:
            assert problem.get("kind") in KINDS and problem.get("message"), problem



# ------------------------------------------------------------------------------- command arguments

range_value = st.one_of(
    st.fixed_dictionaries({"start": st.fixed_dictionaries({"line": number, "character": number}),
                           "end": st.fixed_dictionaries({"line": number, "character": number})}),
    json_value,
)


def uri_values(bg: BackgroundClient) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([OPEN_URI, OPEN_URI, UNTITLED_URI, bg.disk_uri,  # type: ignore[attr-defined]
                         "untitled:never-opened", "http://example.com/x.py", "https://h/a.py", "file:///nope/x.py",
                         "file://", "file:", "", "::::", "file:///fuzz/%00", "file:///fuzz/open.py#frag",
                         "file:///dev/null", "file:///", "vscode-notebook-cell:/x#1", "data:text/plain,hi"]),
        st.text(max_size=30), json_leaf,
    )


def argument_object(bg: BackgroundClient) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "uri": uri_values(bg),
        "instruction": st.one_of(st.sampled_from(["add a discount", "", "   "]), st.text(max_size=60), json_leaf),
        "range": range_value,
        "plan": st.one_of(st.text(max_size=60), json_value),
        "model": st.one_of(model_ref_text, json_value),
        "phase": st.one_of(phase_name, json_value),
        "models": st.one_of(st.lists(model_ref_text, max_size=3), st.text(max_size=30), json_value),
        "providers": st.one_of(st.lists(provider_name, max_size=3), json_value),
        "provider": st.one_of(provider_name, json_value),
        "env": st.one_of(env_name, json_value),
        "setting": st.one_of(st.text(max_size=20), json_value),
        "keys": st.one_of(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=2), json_value),
        "extra": json_value,
    })


def arguments(bg: BackgroundClient) -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        st.builds(lambda a: [a], argument_object(bg)),
        st.builds(lambda a: [a], argument_object(bg)),
        st.builds(lambda a: [a], argument_object(bg)),
        st.lists(json_value, max_size=3),
        st.builds(lambda a, b: [a, b], argument_object(bg), json_value),
    )


NOTIFICATIONS = ["phasewise/setKeys", types.WINDOW_WORK_DONE_PROGRESS_CANCEL, "$/cancelRequest",
                 types.TEXT_DOCUMENT_DID_CLOSE, types.TEXT_DOCUMENT_DID_CHANGE, "phasewise/unknown",
                 types.WORKSPACE_DID_CHANGE_CONFIGURATION, "$/setTrace"]


def check_answer(command: str, outcome: Any) -> str:
    """What the server answered, classified; fails on a crash (internal error) or a vague answer."""
    if isinstance(outcome, JsonRpcException):
        assert outcome.code == INVALID_PARAMS, f"{command}: {outcome.code} {outcome.message}"
        detail = outcome.message.split(":", 1)[-1].strip()
        assert len(detail) > 8, f"{command}: vague error {outcome.message!r}"
        return "invalid-params"
    if isinstance(outcome, BaseException):
        raise outcome
    result = answer(outcome)
    assert isinstance(result, dict), (command, result)
    if "ok" in result and result["ok"] is False and result.get("error") is not None:
        error = result["error"]
        assert error.get("kind") in KINDS and error.get("message"), (command, error)
        return f"problem:{error['kind']}"
    return "result"


@pytest.mark.slow
@settings(FUZZ, max_examples=size(150, 3500))
@given(data=st.data())
def test_fuzzed_command_arguments(fuzz: BackgroundClient, data: st.DataObject) -> None:
    """Every registered command, and the notifications the server handles, with fuzzed arguments."""
    commands = [c for c in fuzz.commands]
    assert {"phasewise.plan", "phasewise.code", "phasewise.review", "phasewise.run", "phasewise.status",
            "phasewise.verify", "phasewise.compare", "phasewise.models", "phasewise.retry"} <= set(commands)
    if data.draw(st.integers(0, 9), label="notification?") == 0:
        method = data.draw(st.sampled_from(NOTIFICATIONS), label="method")
        params = data.draw(st.one_of(json_value, st.builds(lambda a: {"keys": a}, json_value),
                                     st.builds(lambda t: {"token": t}, json_leaf),
                                     st.builds(lambda i: {"id": i}, json_leaf)), label="params")
        TALLY["notifications"] += 1
        # sent as raw JSON: the client library would refuse to type these params
        payload = {"jsonrpc": "2.0", "method": method, "params": params}
        fuzz.loop.call_soon_threadsafe(fuzz.client.protocol._send_data, payload)
        status_of(fuzz)
        return
    command = data.draw(st.sampled_from(commands), label="command")
    args = data.draw(arguments(fuzz), label="arguments")
    TALLY["command arguments"] += 1

    async def run() -> Any:
        try:
            return await asyncio.wait_for(_execute(fuzz.client, command, args), 60)
        except JsonRpcException as exc:
            return exc

    outcome = fuzz.call(run(), timeout=90)
    TALLY[f"answer {check_answer(command, outcome)}"] += 1


@pytest.mark.slow
def test_notifications_with_params_of_every_shape(fuzz: BackgroundClient) -> None:
    """Every handled notification with params of each JSON shape (found by the full fuzz run:
    ``phasewise/setKeys`` with an array crashed its handler). The summary below fails on any
    "Error in server" the server reported."""
    for method in NOTIFICATIONS:
        for params in ([], [{"keys": {"A_KEY": "x" * 20}}], "keys", 7, None, {"keys": []}, {}):
            payload = {"jsonrpc": "2.0", "method": method, "params": params}
            fuzz.loop.call_soon_threadsafe(fuzz.client.protocol._send_data, payload)
            TALLY["notifications"] += 1
        assert status_of(fuzz)["phases"]


@pytest.mark.slow
def test_fuzz_server_still_serves_and_summary(fuzz: BackgroundClient) -> None:
    """After the fuzz run: the same server answers, never reported an internal error, and the
    tally of cases is printed (figures for bench/RESULTS.md)."""
    status = status_of(fuzz)
    assert status["phases"]
    errors = [m.message for m in fuzz.client.messages if "Error in server" in m.message]
    assert errors == [], errors[:3]
    assert fuzz.client.error is None
    cases = sum(v for k, v in TALLY.items() if not k.startswith("answer"))
    print(f"\nfuzz: {cases} cases ({'full' if FULL else 'short'}): " + ", ".join(f"{k} {v}" for k, v in
                                                                               sorted(TALLY.items())))


# ------------------------------------------------------------------------------- raw JSON-RPC garbage


STATUS = {"command": "phasewise.status", "arguments": []}


@pytest.mark.slow
async def test_raw_json_rpc_garbage_gets_precise_errors_and_the_server_keeps_serving() -> None:
    server = await RawServer.start(server_env(PHASEWISE_WARMUP="0"))
    probe = iter(range(1000, 2000))

    async def still_serving() -> dict[str, Any]:
        msg_id = next(probe)
        server.write(server.request(msg_id, "workspace/executeCommand", STATUS))
        reply = await server.response_to(msg_id)
        assert "result" in reply and reply["result"]["phases"], reply
        return reply

    server.write(server.request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}}))
    assert "capabilities" in (await server.response_to(1))["result"]
    server.write(server.frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    await still_serving()

    def expect(code: int, msg_id: Any) -> None:
        found = [m for m in server.errors(code) if m.get("id") == msg_id]
        assert found, f"no {code} for id {msg_id!r} in {server.seen[-5:]}"
        assert len(found[-1]["error"]["message"]) > 12, found[-1]
        server.seen.clear()

    # a body that is not JSON: parse error, id null
    for body in (b"not json!", b"{\"jsonrpc\": \"2.0\", \"id\": 5, ", b"\xff\xfe\x00garbage", b"[" * 200_000):
        server.write(server.frame(body))
        await still_serving()
        expect(-32700, None)
    # JSON that is not a JSON-RPC message: invalid request (with the id when it can be read)
    for body, msg_id in (({"hello": "world"}, None), ([], None), ([1, 2], None), ('"text"', None), (42, None),
                         (None, None), ({"jsonrpc": "1.0", "id": 7, "method": "shutdown"}, 7),
                         ({"jsonrpc": "2.0", "id": 8, "method": 17}, 8),
                         ({"jsonrpc": "2.0", "id": 9, "method": "workspace/executeCommand", "params": "x"}, 9),
                         ({"jsonrpc": "2.0", "id": True, "method": "shutdown"}, None),
                         ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "shutdown"}, None),
                         ({"jsonrpc": "2.0", "id": 10}, 10)):
        server.write(server.frame(body))
        await still_serving()
        expect(-32600, msg_id)
    # unknown methods: method not found for a request, silence for a notification
    server.write(server.request(11, "phasewise/noSuchMethod", {}))
    server.write(server.frame({"jsonrpc": "2.0", "method": "phasewise/noSuchNotification", "params": {}}))
    await still_serving()
    expect(-32601, 11)
    # params that do not fit the method's LSP type: invalid params
    server.write(server.request(12, "workspace/executeCommand", {"command": 5, "arguments": "x"}))
    await still_serving()
    expect(-32602, 12)
    # a response to a request the server never sent, a cancel of nothing: ignored
    server.write(server.frame({"jsonrpc": "2.0", "id": 999, "result": None}))
    server.write(server.frame({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": {"x": 1}}}))
    await still_serving()
    # framing: an unreadable Content-Length, other headers, a length over the limit, a header line of 2 MB
    server.write(b"Content-Length: abc\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 13, \"method\": \"shutdown\"}")
    await still_serving()
    valid = json.dumps({"jsonrpc": "2.0", "id": 14, "method": "workspace/executeCommand", "params": STATUS})
    server.write(b"X-Whatever: 1\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
                 + b"Content-Length: %d\r\n\r\n" % len(valid) + valid.encode())
    assert "result" in await server.response_to(14)
    server.write(b"Content-Length: 99999999999\r\n\r\n")
    await still_serving()
    expect(-32700, None)
    server.write(b"X" * (2 * 1024 * 1024) + b"\r\n")
    await still_serving()
    # a length too short: the rest of the body is garbage before the next header, which is found again
    whole = json.dumps({"jsonrpc": "2.0", "id": 15, "method": "workspace/executeCommand", "params": STATUS})
    server.write(b"Content-Length: 10\r\n\r\n" + whole.encode())
    await still_serving()
    expect(-32700, None)
    # a length too long: it swallows the next message whole (lost), and the one after is answered
    lost = server.request(16, "workspace/executeCommand", STATUS)
    server.write(b"Content-Length: %d\r\n\r\n{\"partial\": " % (12 + len(lost)) + lost)
    await still_serving()
    assert not [m for m in server.seen if m.get("id") == 16]
    # a clean end: shutdown, exit, exit code 0
    server.write(server.request(17, "shutdown"))
    assert (await server.response_to(17)).get("error") is None
    server.write(server.frame({"jsonrpc": "2.0", "method": "exit"}))
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert await asyncio.wait_for(server.proc.wait(), 30) == 0
    assert server.proc.stderr is not None
    stderr = (await server.proc.stderr.read()).decode(errors="replace")
    assert "phasewise ERROR" not in stderr.replace("phasewise ERROR pygls", ""), stderr[-2000:]


# ------------------------------------------------------------------------------- 10 MB document, URIs

client = make_client_fixture(server_env(PHASEWISE_WARMUP="0", BIG_KEY="big-key-5a6b7c8d9e0f1a2b"),
                             clients=["visual-studio-code"])
BIG_URI = "file:///hostile/big.py"


def big_document(megabytes: int = 10) -> str:
    line = "def f{n}(x):\n    return x * {n}  # padding padding padding padding padding\n"
    parts, total, n = [], 0, 0
    while total < megabytes * 1024 * 1024:
        chunk = line.format(n=n)
        parts.append(chunk)
        total += len(chunk)
        n += 1
    return "".join(parts)


@pytest.mark.slow
async def test_ten_megabyte_document(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    sim.configure("big", first_token_ms=0, chunk_interval_ms=0)
    editor.configure({
        "phases": {"plan": {"model": "big/sim-fast"}, "code": {"model": "big/sim-fast"},
                   "review": {"model": "big/sim-unknown"}},
        "providers": {"big": {"protocol": "openai", "baseUrl": sim.base_url("big", "openai"), "apiKeyEnv": "BIG_KEY",
                              "models": {"sim-fast": {"toolCalling": True, "contextWindow": 200_000}}}},
        "retry": {"maxAttempts": 1}, "timeouts": {"firstTokenSeconds": 60, "idleSeconds": 30},
    })
    text = big_document()
    assert len(text) >= 10 * 1024 * 1024
    editor.open(BIG_URI, text)
    # a model whose window is known: refused before anything is sent, saying by how much
    for command in ("phasewise.plan", "phasewise.code"):
        result = answer(await editor.command(command, {"uri": BIG_URI, "instruction": "rename f1"}))
        assert result["ok"] is False and result["error"]["kind"] == "context-length", result["error"]
        assert "big/sim-fast" in result["error"]["message"] and "select a smaller range" in result["error"]["message"]
    assert [r for r in sim.requests if r.endpoint == "chat"] == []
    diags = await editor.diagnostics_where(BIG_URI, lambda ds: any(d.code == "context-length" for d in ds))
    assert diags
    # a model of unknown window: the provider decides; a result or a classified problem either way
    review = answer(await editor.command("phasewise.review", {"uri": BIG_URI}))
    assert review["ok"] or review["error"]["kind"] in KINDS, review
    # a range inside the big document is small enough to go
    small = answer(await editor.command("phasewise.plan", {
        "uri": BIG_URI, "instruction": "explain", "range": {"start": {"line": 2, "character": 0},
                                                          "end": {"line": 3, "character": 0}}}))
    assert small["ok"] or small["error"]["kind"] in KINDS, small
    editor.change(BIG_URI, text + "# one more line\n")
    status = answer(await editor.command("phasewise.status", {"uri": BIG_URI}))
    assert status["phases"]


FOREIGN_URIS = [
    ("untitled:Untitled-9", "is not open and is not a file"),
    ("http://example.com/app.py", "is not open and is not a file"),
    ("https://example.com/app.py?x=1#y", "is not open and is not a file"),
    ("file:///no/such/dir/app.py", "no such file exists"),
    ("file:///dev/null", "no such file exists"),
    ("file:///", "no such file exists"),
    ("::not a uri::", "is not open and is not a file"),
    ("", "`uri` is required"),
]


@pytest.mark.slow
async def test_invalid_and_foreign_uris_get_precise_problems(client: LanguageClient) -> None:
    editor = Editor(client)
    for uri, expected in FOREIGN_URIS:
        for command in ("phasewise.plan", "phasewise.code", "phasewise.review", "phasewise.run",
                        "phasewise.compare"):
            arg = {"uri": uri, "instruction": "x", "phase": "plan", "models": ["anthropic/claude-opus-4-5"]}
            with pytest.raises(JsonRpcException) as err:
                await editor.command(command, arg)
            assert err.value.code == INVALID_PARAMS
            assert command in err.value.message and expected in err.value.message, err.value.message
            if uri:
                assert repr(uri) in err.value.message, err.value.message
        status = answer(await editor.command("phasewise.status", {"uri": uri}))
        assert status["phases"]


@pytest.mark.slow
async def test_an_open_untitled_document_works_like_any_other(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    sim.configure("unt", first_token_ms=0, chunk_interval_ms=0)
    editor.configure({"phases": {"plan": {"model": "unt/sim-fast"}},
                      "providers": {"unt": {"protocol": "anthropic", "baseUrl": sim.base_url("unt", "anthropic"),
                                            "apiKeyEnv": "BIG_KEY"}}})
    editor.open("untitled:Untitled-2", DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": "untitled:Untitled-2", "instruction": "x"}))
    assert result["ok"], result


@pytest.mark.slow
async def test_unknown_command_is_a_precise_error(client: LanguageClient) -> None:
    editor = Editor(client)
    with pytest.raises(JsonRpcException) as err:
        await editor.command("phasewise.noSuchCommand", {"uri": OPEN_URI})
    assert err.value.code == INVALID_PARAMS and "phasewise.noSuchCommand" in err.value.message
    assert answer(await editor.command("phasewise.status", {}))["phases"]


def test_fuzz_sizes_are_documented() -> None:
    """docs/hostile-input.md names the flag; bench/RESULTS.md keeps the figures of the full run."""
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "hostile-input.md").read_text()
    results = (root / "bench" / "RESULTS.md").read_text()
    assert "PHASEWISE_FULL=1" in doc and "Hostile input and soak" in doc
    assert "PHASEWISE_FULL=1" in results and "| fuzz, full |" in results and "| soak, full |" in results
