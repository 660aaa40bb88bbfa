"""The fault matrix: every documented provider failure, played by the simulator while a client runs
a phase, and what must follow (the kind, how many requests reached the wire, the quick fixes),
shared by the fault tests (``tests/test_faults.py``) and the soak (``tests/test_soak.py``)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, answer

KEYS = {
    "ROW_KEY": "test-key-row-9f8e7d6c5b4a",
    "MAIN_KEY": "test-key-main-1a2b3c4d5e",
    "SPARE_KEY": "test-key-spare-6f7a8b9c0d",
    "FALLBACK_KEY": "test-key-fallback-1e2f3a4b",
}

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
    says_when: bool = False  # the answer's words say when the limit lifts ("try again after 1 seconds")

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
    Row("moonshot.rate_limit", "rate-limit", ATTEMPTS, says_when=True),
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
    final("anthropic.credit_balance", "billing"),
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
        expected = ["Open the plan phase's settings"]
        if row.kind == "billing":
            # the same account is refused again until it is topped up: no retry is offered
            problems += [f"a retry offered for billing: {t!r}" for t in titles if t.startswith("Retry the plan phase")]
        else:
            expected.append("Retry the plan phase")
        if row.kind == "auth":
            expected.append("Set ROW_KEY")
        if row.kind == "rate-limit":
            said = "retry_after_ms" in row.params or "retry_after" in row.params or row.says_when
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


