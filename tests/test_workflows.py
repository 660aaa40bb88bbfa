"""Issue 5 through a real LSP client: phasewise.run, compare, verify, models, completion, ledger.

Each test runs once with VS Code's and once with Neovim's declared capabilities. Every test's
run record goes to its own temp file (``ledgerPath``); the server's fallback is a temp file too.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from phasewise.providers.catalogue import builtin, known_ids
from phasewise.sim import SimulatorThread
from phasewise.workflows.discovery import model_completions
from tests.helpers import SAMPLE_DOC as DOC
from tests.helpers import SAMPLE_URI as URI
from tests.helpers import Editor, answer, make_client_fixture, server_env

KEYS = {"ALPHA_KEY": "test-key-alpha-1111", "BETA_KEY": "test-key-beta-2222", "GAMMA_KEY": "test-key-gamma-3333"}
_FALLBACK_LEDGER = Path(tempfile.mkdtemp(prefix="phasewise-test-ledger-")) / "runs.jsonl"
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0", PHASEWISE_LEDGER=str(_FALLBACK_LEDGER)))

PROVIDERS = {
    "alpha": ("anthropic", "ALPHA_KEY"),
    "beta": ("openai", "BETA_KEY"),
    "gamma": ("openai", "GAMMA_KEY"),
    "nokey": ("openai", "NOKEY_API_KEY"),
}

# Declared providers have no catalogue prices: settings give them (and cost follows them).
PRICES = {m: {"inputPricePerMtok": 2.0, "outputPricePerMtok": 10.0} for m in ("claude-sim", "glm-sim", "gpt-sim")}


def settings(sim: SimulatorThread, ledger: Path, **phases: str) -> dict[str, Any]:
    """phase="provider/model" on the simulator's declared providers; the run record in ``ledger``."""
    providers = {name: {"protocol": proto, "baseUrl": sim.base_url(name, proto), "apiKeyEnv": env,
                        "models": PRICES} for name, (proto, env) in PROVIDERS.items()}
    return {"phases": {p: {"model": ref} for p, ref in phases.items()}, "providers": providers,
            "ledgerPath": str(ledger)}


def three_providers(sim: SimulatorThread, ledger: Path) -> dict[str, Any]:
    return settings(sim, ledger, plan="alpha/claude-sim", code="beta/glm-sim", review="gamma/gpt-sim")


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


INSTRUCTION = "rename load to read_file"


@pytest.mark.slow
async def test_run_plan_code_review_each_on_its_own_provider(client: LanguageClient, sim: SimulatorThread,
                                                            tmp_path: Path) -> None:
    editor = Editor(client)
    editor.configure(three_providers(sim, tmp_path / "runs.jsonl"))
    editor.open(URI, DOC)

    run = answer(await editor.command("phasewise.run", {"uri": URI, "instruction": INSTRUCTION}))
    assert run["ok"], run
    assert run["stoppedAt"] is None and run["error"] is None
    served = [(p["phase"], p["provider"], p["model"]) for p in run["phases"]]
    assert served == [("plan", "alpha", "claude-sim"), ("code", "beta", "glm-sim"), ("review", "gamma", "gpt-sim")]
    assert {p["runId"] for p in run["phases"]} == {run["runId"]}
    for p in run["phases"]:
        usage = p["usage"]
        assert p["costUsd"] == pytest.approx((usage["inputTokens"] * 2.0 + usage["outputTokens"] * 10.0) / 1e6)
    assert run["costUsd"] == pytest.approx(sum(p["costUsd"] for p in run["phases"]))
    # the code phase's edit reached the editor, and the review saw the changed document
    assert "def read_file(path" in editor.texts[URI] and "def load(" not in editor.texts[URI]
    assert "+def read_file(path" in run["diff"]
    assert run["findings"], run
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.source == "phasewise-review" for d in ds))
    assert len([d for d in diags if d.source == "phasewise-review"]) == len(run["findings"])

    chats = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.protocol, r.phase) for r in chats] == [
        ("alpha", "anthropic", "plan"), ("beta", "openai", "code"), ("gamma", "openai", "review")]
    assert [r.api_key for r in chats] == [KEYS["ALPHA_KEY"], KEYS["BETA_KEY"], KEYS["GAMMA_KEY"]]
    code_prompt = chats[1].body["messages"][-1]["content"]
    assert "<plan>" in code_prompt and run["plan"].strip().splitlines()[-1] in code_prompt
    review_prompt = chats[2].body["messages"][-1]["content"]
    assert "<change>" in review_prompt and "+def read_file(path" in review_prompt
    assert "def read_file(path" in review_prompt.split("<document", 1)[1]
    logs = " ".join(m.message for m in client.log_messages)
    assert "plan phase starting on alpha/claude-sim" in logs and "review phase starting on gamma/gpt-sim" in logs


@pytest.mark.slow
async def test_run_leaves_three_ledger_lines(client: LanguageClient, sim: SimulatorThread, tmp_path: Path) -> None:
    ledger = tmp_path / "runs.jsonl"
    editor = Editor(client)
    editor.configure(three_providers(sim, ledger))
    editor.open(URI, DOC)
    run = answer(await editor.command("phasewise.run", {"uri": URI, "instruction": INSTRUCTION}))
    assert run["ok"], run
    lines = ledger_lines(ledger)
    assert [(x["runId"], x["phase"], x["provider"], x["model"], x["protocol"], x["result"]) for x in lines] == [
        (run["runId"], "plan", "alpha", "claude-sim", "anthropic", "ok"),
        (run["runId"], "code", "beta", "glm-sim", "openai", "ok"),
        (run["runId"], "review", "gamma", "gpt-sim", "openai", "ok"),
    ]
    for line in lines:
        assert line["source"] == "lsp" and line["inputTokens"] > 0 and line["outputTokens"] > 0
        assert line["attempts"] == [{"provider": line["provider"], "model": line["model"], "outcome": "ok",
                                     "keyEnv": line["attempts"][0]["keyEnv"],
                                     "latencyMs": line["attempts"][0]["latencyMs"]}]
        assert line["costUsd"] > 0 and line["totalMs"] > 0 and line["firstTokenMs"] is not None
    raw = ledger.read_text(encoding="utf-8")
    assert "content" not in raw and INSTRUCTION not in raw and "def load(" not in raw
    assert not any(key in raw for key in KEYS.values())


@pytest.mark.slow
async def test_run_stops_at_the_failing_phase_keeping_the_plan(client: LanguageClient, sim: SimulatorThread,
                                                               tmp_path: Path) -> None:
    editor = Editor(client)
    editor.configure(settings(sim, tmp_path / "runs.jsonl", plan="alpha/claude-sim", code="nokey/glm-sim",
                              review="gamma/gpt-sim"))
    editor.open(URI, DOC)
    run = answer(await editor.command("phasewise.run", {"uri": URI, "instruction": INSTRUCTION}))
    assert run["ok"] is False and run["stoppedAt"] == "code"
    assert run["error"]["kind"] == "missing-credentials" and run["error"]["provider"] == "nokey"
    assert [p["phase"] for p in run["phases"]] == ["plan", "code"]
    assert run["phases"][0]["ok"] and run["plan"]
    assert editor.texts[URI] == DOC and editor.applied == []
    assert [r.provider for r in sim.requests if r.endpoint == "chat"] == ["alpha"]
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "missing-credentials" for d in ds))
    assert any(d.source == "phasewise" for d in diags)


@pytest.mark.slow
async def test_compare_runs_one_phase_on_several_models_without_applying(
        client: LanguageClient, sim: SimulatorThread, tmp_path: Path) -> None:
    ledger = tmp_path / "runs.jsonl"
    editor = Editor(client)
    editor.configure(three_providers(sim, ledger))
    editor.open(URI, DOC)
    models = ["alpha/claude-sim", "beta/glm-sim", "nokey/gpt-sim"]
    report = answer(await editor.command("phasewise.compare", {
        "uri": URI, "instruction": INSTRUCTION, "phase": "code", "models": models}))
    assert report["ok"] is True and report["phase"] == "code"
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == models
    assert rows["alpha/claude-sim"]["outcome"] == "ok" and rows["beta/glm-sim"]["outcome"] == "ok"
    assert rows["nokey/gpt-sim"]["outcome"] == "missing-credentials"  # a row, not an abort
    for ok in ("alpha/claude-sim", "beta/glm-sim"):
        result = rows[ok]["result"]
        assert "+def read_file(path" in result["diff"] and result["applied"] is None
    assert editor.applied == [] and editor.texts[URI] == DOC  # compare never edits
    assert sorted(r.provider for r in sim.requests if r.endpoint == "chat") == ["alpha", "beta"]
    markdown = report["markdown"]
    assert "| alpha/claude-sim |" in markdown and "missing-credentials" in markdown and "```diff" in markdown
    written = Path(report["reportPath"])
    assert written.parent == tmp_path / "compare"
    assert read_text(written) == markdown
    lines = ledger_lines(ledger)
    assert sorted((x["provider"] or "", x["result"]) for x in lines) == [
        ("alpha", "ok"), ("beta", "ok"), ("nokey", "missing-credentials")]
    assert {x["workflow"] for x in lines} == {"compare"}


@pytest.mark.slow
async def test_verify_checks_live_and_discovery_feeds_preflight(client: LanguageClient, sim: SimulatorThread,
                                                                 tmp_path: Path) -> None:
    sim.configure("beta", models=["glm-sim"])
    sim.configure("gamma", models=["gpt-sim"])
    editor = Editor(client)
    editor.configure(settings(sim, tmp_path / "runs.jsonl", plan="alpha/claude-sim", code="beta/glm-sim",
                              review="gamma/gpt-9-missing"))
    editor.open(URI, DOC)
    report = answer(await editor.command("phasewise.verify", {"uri": URI}))
    assert report["ok"] is False
    providers = {p["provider"]: p for p in report["providers"]}
    assert set(providers) == {"alpha", "beta", "gamma"}
    assert providers["beta"]["ok"] and providers["beta"]["keyAccepted"] is True
    assert providers["beta"]["models"][0]["how"] == "listed"
    assert providers["alpha"]["models"][0]["how"] == "answered"  # not in the default list, but it answers
    assert providers["gamma"]["models"][0]["ok"] is False
    assert providers["gamma"]["models"][0]["problem"]["kind"] == "model-not-found"
    assert not any(k in json.dumps(report) for k in KEYS.values())
    phases = {p["phase"]: p for p in report["phases"]}
    assert phases["plan"]["status"] == "ok" and phases["code"]["status"] == "ok"
    assert phases["review"]["status"] == "fail" and phases["review"]["problem"]["kind"] == "model-not-found"
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "model-not-found" for d in ds))
    assert [d.data["phase"] for d in diags if d.code == "model-not-found"] == ["review"]

    # The server now knows gamma's models: the review phase fails before any chat request.
    before = len([r for r in sim.requests if r.endpoint == "chat"])
    review = answer(await editor.command("phasewise.review", {"uri": URI}))
    assert review["ok"] is False and review["error"]["kind"] == "model-not-found"
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == before


@pytest.mark.slow
async def test_models_command_and_settings_completion(client: LanguageClient, sim: SimulatorThread,
                                                      tmp_path: Path) -> None:
    sim.configure("beta", models=["glm-sim", "glm-sim-large"])
    editor = Editor(client)
    editor.configure(three_providers(sim, tmp_path / "runs.jsonl"))
    listed = answer(await editor.command("phasewise.models", {"provider": "beta"}))
    assert listed["ok"] and [m["id"] for m in listed["models"]] == ["glm-sim", "glm-sim-large"]

    settings_uri = "file:///work/example/.vscode/settings.json"
    text = '{\n  "phasewise.phases": {\n    "code": { "model": "beta/glm' + '" }\n  }\n}\n'
    editor.open(settings_uri, text, language="jsonc")
    line = 2
    character = text.split("\n")[line].index('beta/glm') + len("beta/glm")
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=settings_uri),
        position=types.Position(line=line, character=character)))
    assert result is not None
    items = result.items if isinstance(result, types.CompletionList) else result
    labels = [i.label for i in items]
    assert "beta/glm-sim-large" in labels
    large = next(i for i in items if i.label == "beta/glm-sim-large")
    assert large.detail and "discovered" in large.detail
    assert isinstance(large.text_edit, types.TextEdit) and large.text_edit.new_text == "beta/glm-sim-large"
    assert large.text_edit.range.start.character == character - len("beta/glm")

    # not a settings file, or not a model value: nothing offered
    editor.open(URI, DOC)
    none = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=0, character=3)))
    assert none is None or not (none.items if isinstance(none, types.CompletionList) else none)


def test_model_completions_only_inside_model_values() -> None:
    providers = {i: s for i in known_ids() if (s := builtin(i)) is not None}
    known = {"zai": {"glm-5"}}
    labels = lambda before: [c.label for c in model_completions(before, providers, known)]  # noqa: E731
    assert labels('{"plan": {"model": "anth') == ["anthropic/"]
    assert "zai/glm-5" in labels('{"plan": {"model": "zai/') and "zai/glm-4.7" in labels('{"model": "zai/')
    assert "deepseek/" in labels('"fallbacks": [\n  "zai/glm-4.7",\n  "deep')
    assert labels('"model": "x", "temperature": "') == []
    assert labels('"mod') == []
    assert labels('{"phasewise.defaultModel": "sim-c') == ["sim-claude/"]
