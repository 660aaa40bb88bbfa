"""Issue 3, end to end: the fault matrix, fault → kind → what the server does, through a real client.

Every documented provider failure, over both wire protocols, is played by the simulator while a
pytest-lsp client (VS Code's and Neovim's declared capabilities) runs a phase: the result's kind,
how many requests reached the wire, the diagnostic and its quick fixes are checked row by row,
and no key value may appear anywhere the client can see. Waits are kept tiny through settings
(``retry.backoffBaseSeconds``, ``timeouts.*``, ``retry-after-ms``), so nothing sleeps.
"""

from __future__ import annotations

import ast
import socket
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.conftest import make_client_fixture, make_plugin_client_fixture, server_env
from tests.lsp_helpers import Editor, field_of
from tests.test_phases import answer

KEYS = {
    "ROW_KEY": "test-key-row-9f8e7d6c5b4a",
    "MAIN_KEY": "test-key-main-1a2b3c4d5e",
    "SPARE_KEY": "test-key-spare-6f7a8b9c0d",
    "FALLBACK_KEY": "test-key-fallback-1e2f3a4b",
}
# VS Code and Neovim with Phasewise's plugin: they declare the client-side commands (issue 12)
client = make_plugin_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"))
# A client without work-done progress (Eglot's profile, progress switched off): a wait or a
# fallback has to reach the user some other way.
bare = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"), clients=["emacs/without-progress"])

DOC = "def total(items):\n    return sum(i.price for i in items)\n"
FAST = {
    "retry": {"maxAttempts": 2, "backoffBaseSeconds": 0.01, "backoffMaxSeconds": 0.05, "maxWaitSeconds": 5},
    "timeouts": {"connectSeconds": 2, "firstTokenSeconds": 1.0, "idleSeconds": 0.4},
}
ATTEMPTS = FAST["retry"]["maxAttempts"]


@dataclass(frozen=True)
class Row:
    """One fault: what the simulator does, the kind expected, requests expected on the wire
    (``None``: at least ``maxAttempts``, for a socket closed before any answer), and whether the
    plan comes back incomplete (text had streamed)."""

    fault: str | dict[str, Any]
    kind: str
    sends: int | None
    incomplete: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or (self.fault if isinstance(self.fault, str) else str(self.fault))


def transient(fault: str | dict[str, Any], kind: str, **params: Any) -> Row:
    return Row(fault, kind, ATTEMPTS, params=params)


def final(fault: str | dict[str, Any], kind: str, **params: Any) -> Row:
    return Row(fault, kind, 1, params=params)


# Faults after a 200, the same for both protocols.
STREAM_ROWS = [
    Row({"stream": "error_event", "error_type": "overloaded_error"}, "overloaded", ATTEMPTS,
        name="error event before any text"),
    Row({"stream": "error_event", "error_type": "overloaded_error"}, "overloaded", 1, True,
        {"after_chunks": 3}, "error event mid-stream"),
    Row({"stream": "cut"}, "server-error", ATTEMPTS, name="stream ends without its terminator, no text"),
    Row({"stream": "cut"}, "server-error", 1, True, {"after_chunks": 3}, "stream ends without its terminator"),
    Row({"stream": "cut", "abrupt": True}, "network", 1, True, {"after_chunks": 3}, "connection cut mid-stream"),
    Row({"stream": "stall"}, "timeout", ATTEMPTS, name="stall before the first token"),
    Row({"stream": "stall"}, "timeout", 1, True, {"after_chunks": 3}, "stall mid-stream"),
    Row({"stream": "html"}, "server-error", ATTEMPTS, name="HTML page with status 200"),
    Row({"stream": "garbage"}, "server-error", ATTEMPTS, name="garbage body with status 200"),
    Row({"stream": "empty"}, "server-error", ATTEMPTS, name="empty answer"),
    Row({"status": 502, "body": "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"},
        "server-error", ATTEMPTS, name="HTML page with status 502"),
    Row({"close": True}, "network", None, name="socket closed before any answer"),
]

OPENAI_ROWS = [
    final("openai.invalid_api_key", "auth"),
    final("openai.insufficient_quota", "billing"),
    transient("openai.rate_limit", "rate-limit", retry_after=None, retry_after_ms=30),
    final("openai.model_not_found", "model-not-found"),
    final("openai.context_length", "context-length"),
    final("openai.region", "permission"),
    transient("openai.server_error", "server-error"),
    transient("openai.overloaded", "overloaded"),
    final("zai.1000", "auth"),
    final("zai.1113", "billing"),
    final("zai.1211", "model-not-found"),
    final("zai.1261", "context-length"),
    final("zai.1301", "content-filter"),
    transient("zai.1302", "rate-limit"),
    transient("zai.1303", "rate-limit"),
    transient("zai.1304", "rate-limit"),
    transient("zai.1305", "overloaded"),
    final("zai.1308", "billing"),
    final("zai.1309", "billing"),
    final("zai.1310", "billing"),
    final("deepseek.insufficient_balance", "billing"),
    final("deepseek.invalid_params", "bad-request"),
    transient("deepseek.rate_limit", "rate-limit"),
    transient("deepseek.overloaded", "overloaded"),
    final("qwen.InvalidApiKey", "auth"),
    final("qwen.Arrearage", "billing"),
    final("qwen.ModelNotFound", "model-not-found"),
    final("qwen.insufficient_quota", "billing"),
    transient("qwen.Throttling.RateQuota", "rate-limit"),
    transient("minimax.1002", "rate-limit"),
    final("minimax.1004", "auth"),
    final("minimax.1008", "billing"),
    final("minimax.1026", "content-filter"),
    final("minimax.2013", "bad-request"),
    transient("minimax.1001", "timeout"),
    transient("minimax.1024", "server-error"),
    transient("moonshot.overloaded", "overloaded"),
    transient("moonshot.rate_limit", "rate-limit"),
    final("moonshot.content_filter", "content-filter"),
    final("moonshot.invalid_authentication", "auth"),
    final("openrouter.credits", "billing"),
    final("openrouter.moderation", "content-filter"),
    transient("openrouter.model_down", "server-error"),
    transient("openrouter.no_provider", "overloaded"),
    Row("openrouter.stream_error", "server-error", 1, True, {"after_chunks": 3},
        "openrouter error inside a 200 stream"),
    Row("openrouter.stream_error", "server-error", ATTEMPTS, False, {"after_chunks": 0},
        "openrouter error inside a 200 stream, before any text"),
    *STREAM_ROWS,
]

ANTHROPIC_ROWS = [
    final("anthropic.invalid_request_error", "bad-request"),
    final("anthropic.authentication_error", "auth"),
    final("anthropic.billing_error", "billing"),
    final("anthropic.permission_error", "permission"),
    final("anthropic.not_found_error", "model-not-found"),
    final("anthropic.request_too_large", "context-length"),
    transient("anthropic.rate_limit_error", "rate-limit", retry_after=0.03),
    transient("anthropic.api_error", "server-error"),
    transient("anthropic.timeout_error", "timeout"),
    transient("anthropic.overloaded_error", "overloaded"),
    *STREAM_ROWS,
]


def leaks(client: LanguageClient, editor: Editor, *results: Any) -> list[str]:
    """Key values found anywhere the client saw: results, diagnostics, logs, messages, progress."""
    seen = repr((results, client.diagnostics, client.log_messages, client.messages, client.progress_reports,
                 editor.stream))
    return [env for env, value in KEYS.items() if value in seen]


async def fixes_for(client: LanguageClient, uri: str, diag: types.Diagnostic) -> list[Any]:
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag]),
    ))
    return list(actions or [])


def command_of(action: Any) -> tuple[str, dict[str, Any]]:
    """A quick fix's command name and argument.

    The Python client decodes a CodeAction carrying a command as a ``Command`` (both have a
    title) whose ``command`` is then the nested command object, stringified as a Python repr.
    """
    inner = action.command
    if isinstance(inner, types.Command):
        return inner.command, dict(inner.arguments[0])
    if isinstance(inner, str) and inner.startswith("{"):
        inner = ast.literal_eval(inner)
    if isinstance(inner, dict):
        return inner["command"], dict(inner["arguments"][0])
    return inner, dict(action.arguments[0])


async def run_matrix(client: LanguageClient, sim: SimulatorThread, protocol: str, rows: list[Row]) -> None:
    editor = Editor(client)
    wrong: list[str] = []
    results = []
    for number, row in enumerate(rows):
        provider = f"{protocol[:3]}{number}"
        uri = f"file:///work/faults/{provider}.py"
        editor.configure({
            "phases": {"plan": {"model": f"{provider}/sim-fast"}},
            "providers": {provider: {"protocol": protocol, "baseUrl": sim.base_url(provider, protocol),
                                     "apiKeyEnv": "ROW_KEY"}},
            **FAST,
        })
        editor.open(uri, DOC)
        sim.add_fault(row.fault, provider=provider, times=-1, **row.params)
        result = answer(await editor.command("phasewise.plan", {"uri": uri, "instruction": "add a discount"}))
        results.append(result)
        error = result.get("error") or {}
        sent = len([r for r in sim.requests if r.provider == provider and r.endpoint == "chat"])
        problems = []
        if result["ok"] or error.get("kind") != row.kind:
            problems.append(f"kind {error.get('kind')!r} (ok={result['ok']})")
        if (row.sends is not None and sent != row.sends) or (row.sends is None and sent < ATTEMPTS):
            problems.append(f"{sent} requests sent")
        if bool(result.get("incomplete")) != row.incomplete or (row.incomplete and not result["text"]):
            problems.append(f"incomplete={result.get('incomplete')} text={len(result['text'])} chars")
        if not {"phase", "provider", "model", "message"} <= set(error) or provider not in error.get("message", ""):
            problems.append(f"problem shape {sorted(error)}")
        diags = await editor.diagnostics_where(uri, lambda ds: any(d.source == "phasewise" for d in ds))
        diag = next(d for d in diags if d.source == "phasewise")
        if (diag.code, diag.data.get("kind"), diag.severity) != (row.kind, row.kind, types.DiagnosticSeverity.Warning):
            problems.append(f"diagnostic {diag.code} {diag.severity}")
        titles = [a.title for a in await fixes_for(client, uri, diag)]
        expected = ["Retry the plan phase", "Open the plan phase's settings"]
        if row.kind == "auth":
            expected.append("Set ROW_KEY")
        if row.kind == "rate-limit":
            said = "retry_after_ms" in row.params or "retry_after" in row.params
            expected.append("once the limit lifts (" if said else "did not say when the limit lifts")
            if said and not error.get("retryAt"):
                problems.append("no retryAt")
        if row.kind in {"rate-limit", "overloaded", "server-error", "network", "timeout", "billing"}:
            expected.append("Add a fallback model for the plan phase")
        problems += [f"no fix {t!r} in {titles}" for t in expected if not any(t in title for title in titles)]
        if problems:
            wrong.append(f"{protocol} {row.label}: " + "; ".join(problems))
    # the server is still serving, and no key reached anything the client saw
    status = answer(await editor.command("phasewise.status", {}))
    assert status["phases"], status
    assert not wrong, "\n".join(wrong)
    assert leaks(client, editor, results) == []


async def test_openai_protocol_fault_matrix(client: LanguageClient, sim: SimulatorThread) -> None:
    await run_matrix(client, sim, "openai", OPENAI_ROWS)


async def test_anthropic_protocol_fault_matrix(client: LanguageClient, sim: SimulatorThread) -> None:
    await run_matrix(client, sim, "anthropic", ANTHROPIC_ROWS)


# ---------------------------------------------------------------------- the rows that need more


def routes(sim: SimulatorThread, phases: dict[str, Any], providers: dict[str, tuple[str, Any]],
           **extra: Any) -> dict[str, Any]:
    return {
        "phases": phases,
        "providers": {name: {"protocol": protocol, "baseUrl": sim.base_url(name, protocol), "apiKeyEnv": key}
                      for name, (protocol, key) in providers.items()},
        **{**FAST, **extra},
    }


URI = "file:///work/faults/cart.py"


async def test_rate_limit_over_max_wait_fails_at_once_and_says_when(client: LanguageClient,
                                                                    sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, {"plan": {"model": "limited/sim-fast"}, "code": {"model": "limited/sim-fast"}},
                            {"limited": ("anthropic", "MAIN_KEY")}))
    editor.open(URI, DOC)
    sim.add_fault("anthropic.rate_limit_error", provider="limited", retry_after=600)
    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    error = plan["error"]
    assert error["kind"] == "rate-limit" and error["retryAfterSeconds"] == 600
    at = error["retryAt"][11:19]  # HH:MM:SS of the local ISO time
    assert at in error["message"] and "10 min" in error["message"] and "maxWaitSeconds" in error["message"]
    assert len(sim.requests) == 1
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "rate-limit" for d in ds))
    diag = next(d for d in diags if d.code == "rate-limit")
    assert at in diag.message
    titles = [a.title for a in await fixes_for(client, URI, diag)]
    assert any(at in t and "600 s" in t for t in titles), titles

    # the code phase on the same provider and key does not send: the provider said when
    code = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "x"}))
    assert code["error"]["kind"] == "rate-limit" and 590 < code["error"]["retryAfterSeconds"] <= 600
    assert code["attempts"] == [{"provider": "limited", "model": "sim-fast", "outcome": "rate-limit",
                                 "keyEnv": "MAIN_KEY", "waitSeconds": code["attempts"][0]["waitSeconds"],
                                 "sent": False}]
    assert len(sim.requests) == 1 and editor.applied == []
    assert leaks(client, editor, plan, code) == []


async def test_cooldown_shared_between_phases_then_fallback_and_its_note(client: LanguageClient,
                                                                         sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(
        sim,
        {"plan": {"model": "shared/sim-fast"},
         "review": {"model": "shared/sim-fast", "fallbacks": ["backup/sim-fast"]}},
        {"shared": ("openai", "MAIN_KEY"), "backup": ("anthropic", "FALLBACK_KEY")},
    ))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="shared", retry_after=120)
    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert plan["error"]["kind"] == "rate-limit"
    review = answer(await editor.command("phasewise.review", {"uri": URI}))
    assert review["ok"] and review["fallbackUsed"] and review["provider"] == "backup"
    assert [(a["provider"], a["outcome"], a.get("sent", True)) for a in review["attempts"]] == [
        ("shared", "rate-limit", False), ("backup", "ok", True)]
    assert [r.provider for r in sim.requests if r.endpoint == "chat"] == ["shared", "backup"]
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "fallback" for d in ds))
    note = next(d for d in diags if d.code == "fallback")
    assert note.severity == types.DiagnosticSeverity.Information
    assert "backup/sim-fast" in note.message and "shared/sim-fast" in note.message
    assert "rate-limit" in note.message


async def test_key_rotation_before_fallback_names_only_env_vars(client: LanguageClient,
                                                                sim: SimulatorThread) -> None:
    editor = Editor(client)
    settings = routes(sim, {"plan": {"model": "multi/sim-fast", "fallbacks": ["backup/sim-fast"]}},
                      {"multi": ("openai", ["MAIN_KEY", "SPARE_KEY"]), "backup": ("openai", "FALLBACK_KEY")})
    editor.configure(settings)
    editor.open(URI, DOC)
    sim.add_fault("zai.1113", provider="multi")  # billing on the first key only
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert result["ok"] and not result["fallbackUsed"], result
    assert [(a["keyEnv"], a["outcome"]) for a in result["attempts"]] == [("MAIN_KEY", "billing"),
                                                                        ("SPARE_KEY", "ok")]
    sent = [r for r in sim.requests if r.endpoint == "chat"]
    assert [r.api_key for r in sent] == [KEYS["MAIN_KEY"], KEYS["SPARE_KEY"]]
    # both keys rate-limited: then the fallback
    sim.add_fault("deepseek.rate_limit", provider="multi", times=-1)
    again = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "y"}))
    assert again["ok"] and again["provider"] == "backup", again
    assert [a["provider"] for a in again["attempts"]][-1] == "backup"
    assert {a.get("keyEnv") for a in again["attempts"]} == {"SPARE_KEY", "MAIN_KEY", "FALLBACK_KEY"}
    assert leaks(client, editor, result, again) == []


async def test_missing_and_rejected_keys_offer_to_set_them(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    echoed = KEYS["MAIN_KEY"]
    editor.configure(routes(sim, {"plan": {"model": "strict/sim-fast"},
                                  "code": {"model": "nokey/sim-fast", "fallbacks": ["strict/sim-fast"]}},
                            {"strict": ("openai", "MAIN_KEY"), "nokey": ("anthropic", "ABSENT_KEY")}))
    editor.open(URI, DOC)
    # a provider that echoes the key back in its error: redacted everywhere
    sim.add_fault({"status": 401, "body": {"error": {"message": f"Incorrect API key provided: {echoed}",
                                                     "type": "invalid_request_error", "code": "invalid_api_key"}}},
                  provider="strict")
    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert plan["error"]["kind"] == "auth" and plan["error"]["keyEnv"] == "MAIN_KEY"
    assert "[redacted]" in plan["error"]["message"]
    code = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "x"}))
    assert code["error"]["kind"] == "missing-credentials" and "ABSENT_KEY" in code["error"]["message"]
    assert len(sim.requests) == 1  # missing key: nothing sent, and no silent fallback
    diags = await editor.diagnostics_where(URI, lambda ds: len([d for d in ds if d.source == "phasewise"]) == 2)
    by_kind = {d.code: d for d in diags if d.source == "phasewise"}
    for kind, env in (("auth", "MAIN_KEY"), ("missing-credentials", "ABSENT_KEY")):
        actions = await fixes_for(client, URI, by_kind[kind])
        set_key = next(command_of(a) for a in actions if a.title.startswith(f"Set {env}"))
        assert set_key[0] == "phasewise.setApiKey" and set_key[1]["env"] == env
        commands = {command_of(a)[0] for a in actions}
        assert {"phasewise.retry", "phasewise.openSettings"} <= commands
        opened = [command_of(a)[1] for a in actions if a.title == "Open the code phase's settings"
                  or a.title == "Open the plan phase's settings"]
        assert opened and opened[0]["setting"].startswith("phasewise.phases.")
    fallback = next(command_of(a) for a in await fixes_for(client, URI, by_kind["missing-credentials"])
                    if a.title == "Retry the code phase on strict/sim-fast")
    assert fallback == ("phasewise.retry", {"uri": URI, "phase": "code", "model": "strict/sim-fast"})
    assert leaks(client, editor, plan, code) == []


async def plan_through_one_wait(client: LanguageClient, sim: SimulatorThread) -> None:
    """A plan whose first answer is a rate limit asking for a 1.2 s wait; served on the retry."""
    editor = Editor(client)
    editor.configure(routes(sim, {"plan": {"model": "slow/sim-fast"}}, {"slow": ("openai", "MAIN_KEY")}))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="slow", retry_after=None, retry_after_ms=1200)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert result["ok"] and [a["outcome"] for a in result["attempts"]] == ["rate-limit", "ok"]


async def test_waiting_shows_a_countdown_in_progress(client: LanguageClient, sim: SimulatorThread) -> None:
    await plan_through_one_wait(client, sim)
    reports = [field_of(p, "message") or "" for ps in client.progress_reports.values() for p in ps]
    countdown = [m for m in reports if "retrying in" in m]
    assert any("2 s" in m or "1 s" in m for m in countdown), reports
    assert any("retrying now" in m for m in reports), reports


async def test_without_progress_the_wait_is_logged(bare: LanguageClient, sim: SimulatorThread) -> None:
    await plan_through_one_wait(bare, sim)
    assert bare.progress_reports == {}
    logged = [m.message for m in bare.log_messages if " plan: " in m.message]
    waits = [m for m in logged if "retrying in" in m]
    assert len(waits) == 1 and ("2 s" in waits[0] or "1 s" in waits[0]), logged
    assert any("retrying now" in m for m in logged), logged


async def test_mid_stream_failures_keep_the_plan_and_apply_no_code(client: LanguageClient,
                                                                   sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, {"plan": {"model": "flaky/sim-fast"},
                                  "code": {"model": "flaky/sim-fast", "editFormat": "text"}},
                            {"flaky": ("anthropic", "MAIN_KEY")}))
    editor.open(URI, DOC)
    sim.add_fault({"stream": "error_event", "error_type": "api_error"}, provider="flaky", after_chunks=4, times=2)
    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a discount"}))
    assert plan["ok"] is False and plan["incomplete"] is True and plan["text"]
    assert plan["text"] == "".join(s["text"] for s in editor.stream if s["runId"] == plan["runId"])
    code = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "add a discount"}))
    assert code["ok"] is False and code["error"]["kind"] == "server-error"
    assert code["applied"] is None and code["edits"] == [] and "incomplete" not in code
    assert editor.applied == [] and editor.texts[URI] == DOC
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 2  # streamed: never retried


async def test_refused_connection_is_network_and_the_server_keeps_serving(client: LanguageClient,
                                                                          sim: SimulatorThread) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    editor = Editor(client)
    editor.configure({"phases": {"plan": {"model": "gone/sim-fast"}},
                      "providers": {"gone": {"protocol": "openai", "baseUrl": f"http://127.0.0.1:{port}/v1",
                                             "apiKeyEnv": "MAIN_KEY"}}, **FAST})
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert result["error"]["kind"] == "network" and f"127.0.0.1:{port}" not in result["error"]["message"]
    assert [a["outcome"] for a in result["attempts"]] == ["network"] * ATTEMPTS
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "network" for d in ds))
    titles = [a.title for a in await fixes_for(client, URI, next(d for d in diags if d.code == "network"))]
    assert "Retry the plan phase now" in titles and "Add a fallback model for the plan phase" in titles
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["phases"][0]["provider"] == "gone"
