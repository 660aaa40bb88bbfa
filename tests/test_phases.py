"""Issue 2, end to end: per-phase routing through a real LSP client to the simulator's wire.

Each test runs once with VS Code's and once with Neovim's declared capabilities.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import SAMPLE_DOC as DOC
from tests.helpers import SAMPLE_URI as URI
from tests.helpers import (
    Editor,
    answer,
    code_actions_json,
    field_of,
    make_client_fixture,
    make_plugin_client_fixture,
    server_env,
)

# Every test starts the language server and runs phases through it: slow, all but the first, which
# stays in the one-minute run (`pytest -m "not editor and not slow"`) as its check of the LSP path.

KEYS = {
    "PLANNER_KEY": "test-key-planner-1111",
    "CODER_KEY": "test-key-coder-2222",
    "REVIEWER_KEY": "test-key-reviewer-3333",
    "OTHER_KEY": "test-key-other-4444",
    "ANTHROPIC_API_KEY": "test-key-anthropic-5555",
}
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"))
plugin = make_plugin_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"), clients=["visual-studio-code"])



def routes(sim: SimulatorThread, **phases: tuple[str, str, str, str]) -> dict[str, Any]:
    """phase=(provider, protocol, model, key env) → a ``phasewise`` section on the simulator."""
    providers: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for phase, (provider, protocol, model, env) in phases.items():
        providers[provider] = {"protocol": protocol, "baseUrl": sim.base_url(provider, protocol),
                               "apiKeyEnv": env}
        out[phase] = {"model": f"{provider}/{model}"}
    return {"phases": out, "providers": providers}


async def test_each_phase_reaches_its_own_provider(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(
        sim,
        plan=("planner", "anthropic", "claude-opus-sim", "PLANNER_KEY"),
        code=("coder", "openai", "glm-sim", "CODER_KEY"),
        review=("reviewer", "openai", "gpt-sim", "REVIEWER_KEY"),
    ))
    editor.open(URI, DOC)

    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "rename load to read_file"}))
    assert plan["ok"], plan
    assert (plan["provider"], plan["model"]) == ("planner", "claude-opus-sim")
    assert "load" in plan["text"]
    assert plan["usage"]["inputTokens"] > 0 and plan["usage"]["outputTokens"] > 0
    assert plan["latencyMs"]["firstToken"] is not None

    code = answer(await editor.command(
        "phasewise.code", {"uri": URI, "instruction": "rename load to read_file", "plan": plan["text"]}
    ))
    assert code["ok"], code
    assert (code["provider"], code["model"]) == ("coder", "glm-sim")
    assert code["applied"] is True
    assert "def read_file(path" in editor.texts[URI]
    assert "def load(" not in editor.texts[URI]

    review = answer(await editor.command("phasewise.review", {"uri": URI}))
    assert review["ok"], review
    assert review["provider"] == "reviewer"

    reqs = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.protocol, r.model) for r in reqs] == [
        ("planner", "anthropic", "claude-opus-sim"),
        ("coder", "openai", "glm-sim"),
        ("reviewer", "openai", "gpt-sim"),
    ]
    assert [r.api_key for r in reqs] == [KEYS["PLANNER_KEY"], KEYS["CODER_KEY"], KEYS["REVIEWER_KEY"]]
    assert [r.phase for r in reqs] == ["plan", "code", "review"]
    # the plan was handed to the code phase
    assert "<plan>" in reqs[1].body["messages"][-1]["content"]
    # code asked for SEARCH/REPLACE blocks (the default edit format), in plain text: no tool offered
    assert "tools" not in reqs[1].body
    assert "Edit format: search-replace." in "\n".join(m["content"] for m in reqs[1].body["messages"])
    # review still answers by tool call
    assert reqs[2].body["tool_choice"]["function"]["name"] == "report_findings"


@pytest.mark.slow
async def test_settings_reload_reroutes(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, plan=("planner", "anthropic", "claude-sim", "PLANNER_KEY")))
    editor.open(URI, DOC)
    first = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "document Store"}))
    assert first["provider"] == "planner"

    editor.configure(routes(sim, plan=("other", "openai", "gpt-sim", "OTHER_KEY")))
    second = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "document Store"}))
    assert second["ok"], second
    assert (second["provider"], second["model"]) == ("other", "gpt-sim")
    assert [r.provider for r in sim.requests if r.endpoint == "chat"] == ["planner", "other"]
    assert sim.requests[-1].api_key == KEYS["OTHER_KEY"]


@pytest.mark.slow
async def test_missing_key_fails_fast_without_a_request(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, code=("nokey", "openai", "glm-sim", "NOKEY_API_KEY")))
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "add types"}))
    assert result["ok"] is False
    error = result["error"]
    assert error["kind"] == "missing-credentials"
    assert "NOKEY_API_KEY" in error["message"]
    assert {"phase", "provider", "model"} <= set(error) and error["provider"] == "nokey"
    assert sim.requests == []
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.source == "phasewise" for d in ds))
    problem = next(d for d in diags if d.source == "phasewise")
    assert problem.code == "missing-credentials"
    assert problem.data["keyEnv"] == "NOKEY_API_KEY"
    assert editor.texts[URI] == DOC

    # the quick fixes: how to set the key, retry, open the settings
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI), range=problem.range,
        context=types.CodeActionContext(diagnostics=[problem]),
    ))
    # (the Python client library decodes a CodeAction carrying a command as a Command: both have a title)
    titles = [a.title for a in actions or []]
    assert any("NOKEY_API_KEY" in t for t in titles), titles
    assert any(t.startswith("Retry the code phase") for t in titles)
    assert any("settings" in t for t in titles)

    # the problem is cleared once the phase succeeds there
    editor.configure(routes(sim, code=("coder", "openai", "glm-sim", "CODER_KEY")))
    ok = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "add types"}))
    assert ok["ok"], ok
    await editor.diagnostics_where(URI, lambda ds: not any(d.source == "phasewise" for d in ds))


@pytest.mark.slow
async def test_stale_document_edit_is_refused(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, code=("coder", "openai", "glm-sim", "CODER_KEY")))
    editor.open(URI, DOC)
    sim.add_fault(provider="coder", delay_ms=1500)
    running = editor.start("phasewise.code", {"uri": URI, "instruction": "rename load to fetch"}, "stale-1")
    await sim.await_requests(1, provider="coder")
    edited = DOC.replace("import os", "import os\nimport sys")
    editor.change(URI, edited)
    result = answer(await running)
    assert result["ok"] is False
    assert result["error"]["kind"] == "document-changed"
    assert result["applied"] is False
    assert editor.applied == []
    assert editor.texts[URI] == edited


@pytest.mark.slow
async def test_review_publishes_findings_with_quick_fixes(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, review=("reviewer", "anthropic", "claude-sim", "REVIEWER_KEY")))
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.review", {"uri": URI, "instruction": "review"}))
    assert result["ok"], result
    assert result["findings"], result
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.source == "phasewise-review" for d in ds))
    review = [d for d in diags if d.source == "phasewise-review"]
    assert len(review) == len(result["findings"])
    bare = next(d for d in review if "except" in d.message.lower())
    lines = DOC.split("\n")
    assert lines[bare.range.start.line].strip() == "except:"
    assert bare.severity == types.DiagnosticSeverity.Warning

    # as the JSON the server sent: the Python client decodes a CodeAction with a command as a Command
    actions = await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI), range=bare.range,
        context=types.CodeActionContext(diagnostics=[bare]),
    ))
    fix = next(a for a in actions if "edit" in a)
    assert fix["kind"] == types.CodeActionKind.QuickFix
    edits = default_converter().structure(fix["edit"], types.WorkspaceEdit).changes[URI]
    from tests.helpers import apply_text_edits

    fixed = apply_text_edits(DOC, edits)
    assert "    except Exception:" in fixed.split("\n")
    assert fixed.count("\n") == DOC.count("\n")


@pytest.mark.slow
async def test_progress_names_phase_provider_and_model(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, plan=("planner", "anthropic", "claude-sim", "PLANNER_KEY")))
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "split Store"}))
    assert result["ok"]
    begins = [p for reports in client.progress_reports.values() for p in reports
              if field_of(p, "kind") == "begin"]
    assert any(field_of(b, "title") == "Phasewise plan: planner/claude-sim" for b in begins), begins
    ends = [p for reports in client.progress_reports.values() for p in reports
            if field_of(p, "kind") == "end"]
    assert ends
    # a generic client is not sent phasewise/streamText, which it would not know (the result has the text)
    assert editor.stream == []


@pytest.mark.slow
async def test_a_plugin_is_sent_the_plan_as_it_streams(plugin: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(plugin)
    editor.configure(routes(sim, plan=("planner", "anthropic", "claude-sim", "PLANNER_KEY")))
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "split Store"}))
    assert result["ok"]
    # streamed text arrives, coalesced: fewer notifications than the simulator's chunks, same text
    streamed = "".join(s["text"] for s in editor.stream if s["runId"] == result["runId"])
    assert streamed == result["text"]
    chunks = sim.requests[-1].chunks_sent
    assert 0 < len([s for s in editor.stream if s["runId"] == result["runId"]]) < chunks


@pytest.mark.slow
async def test_cancel_by_progress_token_closes_upstream(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, plan=("planner", "anthropic", "claude-sim", "PLANNER_KEY")))
    editor.open(URI, DOC)
    sim.add_fault(provider="planner", stream="stall", after_chunks=2)
    running = editor.start("phasewise.plan", {"uri": URI, "instruction": "plan it"}, "cancel-token-1")
    await sim.await_requests(1, provider="planner")

    async def token() -> Any:
        while True:
            for tok, reports in client.progress_reports.items():
                if any(field_of(p, "kind") == "begin" for p in reports):
                    return tok
            await client.wait_for_notification(types.PROGRESS)

    tok = await asyncio.wait_for(token(), 10)
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=tok))
    result = answer(await running)
    assert result["ok"] is False
    assert result["error"]["kind"] == "cancelled"
    close = await sim.await_client_close()
    assert close is not None


@pytest.mark.slow
async def test_cancel_request_closes_upstream(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(routes(sim, code=("coder", "openai", "glm-sim", "CODER_KEY")))
    editor.open(URI, DOC)
    sim.add_fault(provider="coder", stream="stall", after_chunks=1)
    running = editor.start("phasewise.code", {"uri": URI, "instruction": "rename load to get"}, "cancel-req-1")
    await sim.await_requests(1, provider="coder")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-req-1"))
    close = await sim.await_client_close()
    assert close is not None
    try:
        await running
    except Exception as exc:  # the request is answered with RequestCancelled
        assert "cancel" in str(exc).lower()
    assert editor.applied == []
    # the server keeps serving
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert [p["phase"] for p in status["phases"]][:3] == ["plan", "code", "review"]


@pytest.mark.slow
async def test_default_route_is_claude(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(None)
    editor.open(URI, DOC)
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    for view in status["phases"][:3]:
        assert (view["provider"], view["model"], view["protocol"]) == ("anthropic", "claude-sonnet-4-5", "anthropic")
        assert view["keys"] == [{"env": "ANTHROPIC_API_KEY", "present": True, "source": "environment",
                                 "masked": "…5555"}]
        assert view["problem"] is None
    assert KEYS["ANTHROPIC_API_KEY"] not in str(status)
    # initialize and status needed no SDK (the warm-up is off in this session)
    assert status["sdksImported"] == []

    # only the endpoint moved (as a proxy user would): still Claude, same key, no phase settings. The
    # catalogue binds ANTHROPIC_API_KEY to api.anthropic.com, so the user allows the proxy's origin in
    # user-level settings (what VS Code sends for the application-scoped `phasewise.security`).
    editor.configure({"providers": {"anthropic": {"baseUrl": sim.base_url("anthropic", "anthropic")}},
                      "security": {"allowedKeyOrigins": [sim.url]}})
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "plan"}))
    assert result["ok"], result
    req = sim.requests[-1]
    assert (req.provider, req.protocol, req.model) == ("anthropic", "anthropic", "claude-sonnet-4-5")
    assert req.api_key == KEYS["ANTHROPIC_API_KEY"]


@pytest.mark.slow
async def test_bad_settings_name_the_key_and_spare_the_rest(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    settings = routes(sim, plan=("planner", "anthropic", "claude-sim", "PLANNER_KEY"))
    settings["phases"]["code"] = {"model": "glm-4.7"}
    settings["phases"]["review"] = {"model": "nowhere/x"}
    settings["retry"] = {"maxAttempts": "many"}
    editor.configure(settings)
    editor.open(URI, DOC)

    code = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "x"}))
    assert code["error"]["kind"] == "config"
    assert "phasewise.phases.code.model" in code["error"]["message"]
    assert "<provider>/<model-id>" in code["error"]["message"]
    review = answer(await editor.command("phasewise.review", {"uri": URI}))
    assert review["error"]["kind"] == "config"
    assert "Unknown provider 'nowhere'" in review["error"]["message"]
    plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert plan["ok"], plan
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert any(i["path"] == "phasewise.retry.maxAttempts" for i in status["settingsIssues"])

    # settings that are not even an object, and malformed command arguments: precise errors
    editor.configure(["not", "an", "object"])  # type: ignore[arg-type]
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["settingsIssues"][0]["path"] == "phasewise"
    try:
        await editor.command("phasewise.plan", {"instruction": "no uri"})
    except Exception as exc:
        assert "`uri` is required" in str(exc)
    else:
        raise AssertionError("a command without uri must be refused")
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["version"]


@pytest.mark.slow
async def test_keys_handed_over_in_memory(client: LanguageClient, sim: SimulatorThread) -> None:
    """An editor's secret store hands a key over by notification: used, never shown."""
    editor = Editor(client)
    editor.configure(routes(sim, code=("vault", "openai", "glm-sim", "VAULT_ONLY_KEY")))
    editor.open(URI, DOC)
    missing = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to get"}))
    assert missing["error"]["kind"] == "missing-credentials"
    secret = "test-key-from-secret-storage-9876"
    client.protocol.notify("phasewise/setKeys", {"keys": {"VAULT_ONLY_KEY": secret}})
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["keysInMemory"] == ["VAULT_ONLY_KEY"]
    code_view = next(p for p in status["phases"] if p["phase"] == "code")
    assert code_view["keys"] == [{"env": "VAULT_ONLY_KEY", "present": True,
                                  "source": "editor secret storage", "masked": "…9876"}]
    result = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to get"}))
    assert result["ok"], result
    assert sim.requests[-1].api_key == secret
    seen = str(status) + str(result) + str(client.log_messages) + str(client.diagnostics)
    assert secret not in seen


warm = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="1"), clients=["visual-studio-code"])


@pytest.mark.slow
async def test_warm_up_loads_only_the_routed_sdk_and_the_other_arrives_off_the_loop(
        warm: LanguageClient, sim: SimulatorThread) -> None:
    """No settings: every phase is Claude, so the warm-up loads the Anthropic SDK only (openai's
    27 MiB stays out); a phase routed to an OpenAI-protocol provider later still runs, its SDK
    imported on first use (on a worker thread)."""
    editor = Editor(warm)
    while not any(m.message.startswith("warm-up done") for m in warm.log_messages):
        await warm.wait_for_notification(types.WINDOW_LOG_MESSAGE)
    done = next(m.message for m in warm.log_messages if m.message.startswith("warm-up done"))
    assert done.endswith(": anthropic"), done
    status = answer(await editor.command("phasewise.status", {}))
    assert status["sdksImported"] == ["anthropic"]

    editor.configure(routes(sim, plan=("coder", "openai", "glm-sim", "CODER_KEY")))
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert result["ok"] and result["provider"] == "coder", result
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["sdksImported"] == ["anthropic", "openai"]
