"""Issue 12, the server's side: what the user meets on top of the machinery.

Through pytest-lsp clients with VS Code's and Neovim's declared capabilities, and a generic
client (Vim's yegappan/lsp stands for every client without Phasewise's plugin: it declares no
``experimental.phasewise`` capability). The simulator plays the providers at the wire.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient

from phasewise import cli
from phasewise.providers.classify import classify
from phasewise.sim import SimulatorThread
from tests.helpers import (
    PLUGIN_EXPERIMENTAL,
    ROOT,
    Editor,
    action_command,
    code_actions_for,
    code_actions_json,
    make_client_fixture,
    make_plugin_client_fixture,
    plain,
    server_env,
)

KEYS = {
    "ACME_O_KEY": "test-key-acme-o-0a1b2c3d4e",
    "ACME_A_KEY": "test-key-acme-a-5f6a7b8c9d",
    "ACME_M_KEY": "test-key-acme-m-0e1f2a3b4c",
}
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"))

# A workspace folder with a VS Code settings file holding the phasewise section (point 3).
WORKSPACE = Path(tempfile.mkdtemp(prefix="phasewise-editor-ws-"))
SETTINGS_FILE = WORKSPACE / ".vscode" / "settings.json"
SETTINGS_FILE.parent.mkdir()
SETTINGS_FILE.write_text(json.dumps({
    "editor.tabSize": 4,
    "phasewise": {"phases": {"plan": {"model": "acme-o/m-plan"}},
                  "providers": {"acme-o": {"protocol": "openai", "apiKeyEnv": "NOPE_KEY"}}},
}, indent=2) + "\n")
WS_URI = (WORKSPACE / "src" / "cart.py").as_uri()
# A generic client (Vim's yegappan/lsp stands for it): the editors' profiles, no Phasewise capability.
generic = make_plugin_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"), experimental=None, root=WORKSPACE)
# VS Code and Neovim with Phasewise's plugins, which declare their client-side commands.
plugin = make_plugin_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"), root=WORKSPACE)

DOC = "def total(items):\n    return sum(i.price for i in items)\n\n\ndef count(items):\n    return len(items)\n"
URI = "file:///work/editor/cart.py"
FAST = {
    "retry": {"maxAttempts": 2, "backoffBaseSeconds": 0.01, "backoffMaxSeconds": 0.05, "maxWaitSeconds": 5},
    "timeouts": {"connectSeconds": 2, "firstTokenSeconds": 1.0, "idleSeconds": 0.4},
}


def acme(sim: SimulatorThread, phases: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The issue's set-up: acme-o (OpenAI protocol), acme-a (Anthropic), acme-m (Moonshot-like)."""
    providers = {
        "acme-o": ("openai", "ACME_O_KEY"), "acme-a": ("anthropic", "ACME_A_KEY"), "acme-m": ("openai", "ACME_M_KEY"),
    }
    return {
        "phases": phases,
        "providers": {name: {"protocol": proto, "baseUrl": sim.base_url(name, proto), "apiKeyEnv": env}
                      for name, (proto, env) in providers.items()},
        **{**FAST, **extra},
    }


def chat(sim: SimulatorThread) -> list[tuple[str, str | None]]:
    return [(r.provider, r.model) for r in sim.requests if r.endpoint == "chat"]


async def run(editor: Editor, command: str, arg: dict[str, Any]) -> dict[str, Any]:
    result = plain(await editor.command(command, arg))
    assert isinstance(result, dict), result
    return result


# ------------------------------------------------------------------ 9: cooldown scope


@pytest.mark.slow
async def test_a_long_limit_on_one_model_blocks_neither_its_siblings_nor_the_fallback(
        client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {
        "plan": {"model": "acme-o/fault-ratelong"},
        "code": {"model": "acme-o/m-plan", "editFormat": "text"},
        "review": {"model": "acme-o/fault-ratelong", "fallbacks": ["acme-a/m-plan"]},
    }))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="acme-o", model="fault-ratelong", retry_after=3600)
    sim.add_fault("anthropic.rate_limit_error", provider="acme-a", model="m-other", retry_after=3600)
    plan = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "add a discount"})
    assert plan["error"]["kind"] == "rate-limit" and plan["error"]["retryAfterSeconds"] == 3600
    # an unrelated Anthropic model's long limit (the other provider of the fallback)
    other = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x", "model": "acme-a/m-other"})
    assert other["error"]["kind"] == "rate-limit"
    assert chat(sim) == [("acme-o", "fault-ratelong"), ("acme-a", "m-other")]

    # another model of the same provider and key is sent, and served
    code = await run(editor, "phasewise.code", {"uri": URI, "instruction": "add a discount"})
    assert code["attempts"][0]["outcome"] != "rate-limit" and code["provider"] == "acme-o", code
    assert chat(sim)[-1] == ("acme-o", "m-plan")
    # the limited model itself sends nothing; the phase's fallback on another model is served
    review = await run(editor, "phasewise.review", {"uri": URI})
    assert review["ok"] and review["fallbackUsed"] and (review["provider"], review["model"]) == ("acme-a", "m-plan")
    assert [(a["provider"], a["model"], a["outcome"], a.get("sent", True)) for a in review["attempts"]] == [
        ("acme-o", "fault-ratelong", "rate-limit", False), ("acme-a", "m-plan", "ok", True)]
    assert chat(sim)[-1] == ("acme-a", "m-plan") and len(chat(sim)) == 4


@pytest.mark.slow
async def test_a_limit_the_provider_calls_account_wide_holds_every_model(client: LanguageClient,
                                                                         sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {"plan": {"model": "acme-m/kimi-a"}, "code": {"model": "acme-m/kimi-b"}}))
    editor.open(URI, DOC)
    sim.add_fault({"status": 429, "headers": {"retry-after": "3600"}, "body": {"error": {
        "message": "Your account org-sim<ak-sim> request reached organization max RPM: 3, "
                   "please try again after 3600 seconds",
        "type": "rate_limit_reached_error"}}}, provider="acme-m")
    plan = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert plan["error"]["kind"] == "rate-limit"
    code = await run(editor, "phasewise.code", {"uri": URI, "instruction": "x"})
    assert code["error"]["kind"] == "rate-limit" and code["attempts"][0]["sent"] is False
    assert chat(sim) == [("acme-m", "kimi-a")]


def test_only_the_providers_own_words_make_a_limit_account_wide() -> None:
    openai = classify(429, {"error": {"message": "Rate limit reached for gpt-4o in organization org-x on "
                                                  "requests per min (RPM): Limit 500, Used 500, Requested 1.",
                                      "type": "requests", "code": "rate_limit_exceeded"}},
                      {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    anthropic = classify(429, {"type": "error", "error": {"type": "rate_limit_error", "message":
                               "This request would exceed the rate limit for your organization (o) of 50 "
                               "requests per minute."}}, {"retry-after": "30"})
    moonshot = classify(429, {"error": {"type": "rate_limit_reached_error", "message":
                                        "Your account reached max request rate: 3, please try again after 1 seconds"}})
    billing = classify(429, {"error": {"code": "insufficient_quota", "message": "Your account reached its quota."}})
    assert (openai.account_wide, anthropic.account_wide, moonshot.account_wide) == (False, False, True)
    assert billing.kind.value == "billing" and billing.account_wide is False


# ------------------------------------------------------------------ 1: provider problems are Warnings


def overlapping(diags: list[types.Diagnostic], start: int, end: int) -> list[types.Diagnostic]:
    """What an editor sends as the code-action context for lines ``start..end``."""
    return [d for d in diags if d.range.start.line <= end and d.range.end.line >= start]


def titles(actions: list[Any]) -> list[str]:
    return [a.title for a in actions]


@pytest.mark.slow
async def test_provider_problems_are_warnings_one_per_phase_at_the_commands_range(
        client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    settings = acme(sim, {"plan": {"model": "acme-o/m-plan"}, "code": {"model": "acme-o/m-code"}})
    settings["providers"]["acme-o"]["apiKeyEnv"] = "NOPE_KEY"
    editor.configure(settings)
    editor.open(URI, DOC)
    lines = DOC.split("\n")
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    plan = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x", "range": whole})
    part = {"start": {"line": 4, "character": 3}, "end": {"line": 5, "character": 0}}
    code = await run(editor, "phasewise.code", {"uri": URI, "instruction": "x", "range": part})
    assert plan["error"]["kind"] == code["error"]["kind"] == "missing-credentials"
    diags = await editor.diagnostics_where(URI, lambda ds: len(ds) == 2)
    by_phase = {d.data["phase"]: d for d in diags}
    for phase, (start, end) in (("plan", (0, 1)), ("code", (4, 5))):
        d = by_phase[phase]
        assert d.severity == types.DiagnosticSeverity.Warning, d
        assert d.message.startswith(f"{phase}: No key for") and "`" not in d.message, d.message
        assert (d.range.start.line, d.range.start.character) == (start, 0)
        assert (d.range.end.line, d.range.end.character) == (end, len(lines[end]))
    assert sim.requests == []

    # the code problem's fixes, asked for where it is, are only the code phase's
    context = overlapping(diags, 4, 5)
    actions = await code_actions_for(client, URI, context)
    assert actions and not any("plan" in t for t in titles(actions)), titles(actions)
    assert {arg.get("phase", "code") for _, arg in map(action_command, actions)} == {"code"}

    # a new plan problem replaces the old one: one per phase and document, on line 1 without a range
    old_plan = by_phase["plan"]
    await run(editor, "phasewise.plan", {"uri": URI, "instruction": "again", "model": "acme-o/m-other"})
    diags = await editor.diagnostics_where(
        URI, lambda ds: [d.range.start.line for d in ds if d.data["phase"] == "plan"] == [0]
        and next(d for d in ds if d.data["phase"] == "plan").range.end.line == 0)
    assert sorted(d.data["phase"] for d in diags) == ["code", "plan"]
    # the replaced diagnostic, sent back by a client that has not caught up, offers nothing
    assert await code_actions_for(client, URI, [old_plan]) == []


# ------------------------------------------------------------------ 3: quick fixes in every client


async def missing_key_fixes(client: LanguageClient) -> tuple[Editor, types.Diagnostic, list[Any]]:
    editor = Editor(client)
    editor.configure({"phases": {"plan": {"model": "acme-o/m-plan"}},
                      "providers": {"acme-o": {"protocol": "openai", "baseUrl": "http://127.0.0.1:9/v1",
                                               "apiKeyEnv": "NOPE_KEY"}}})
    editor.open(WS_URI, DOC)
    result = await run(editor, "phasewise.plan", {"uri": WS_URI, "instruction": "x"})
    assert result["error"]["kind"] == "missing-credentials"
    diags = await editor.diagnostics_where(WS_URI, lambda ds: any(d.code == "missing-credentials" for d in ds))
    diag = next(d for d in diags if d.code == "missing-credentials")
    return editor, diag, await code_actions_for(client, WS_URI, [diag])


@pytest.mark.slow
async def test_a_generic_client_gets_fixes_the_server_carries_out(generic: LanguageClient) -> None:
    editor, _, actions = await missing_key_fixes(generic)
    commands = [action_command(a) for a in actions]
    names = {name for name, _ in commands}
    assert not names & {"phasewise.setApiKey", "phasewise.openSettings"}, names
    assert commands[0][0] == "phasewise.showKeyHelp"
    assert actions[0].title.startswith("Set NOPE_KEY")
    # every fix runs on the server: none is "not defined"
    for name, arg in commands:
        if name == "phasewise.retry":
            continue
        await editor.command(name, arg)
    help_text = next(m.message for m in generic.messages if "NOPE_KEY" in m.message)
    assert "export NOPE_KEY=" in help_text and "phasewise auth set acme-o" in help_text
    assert "`" not in help_text

    # the key path's own setting opens the settings file at its line
    key_setting = next(arg for name, arg in commands if name == "phasewise.showSettings"
                       and arg["setting"] == "phasewise.providers.acme-o.apiKeyEnv")
    generic.shown_documents.clear()
    shown = plain(await editor.command("phasewise.showSettings", key_setting))
    file_lines = SETTINGS_FILE.read_text().split("\n")
    line = next(i for i, text in enumerate(file_lines) if '"apiKeyEnv"' in text)
    window = generic.capabilities.window
    if window is not None and window.show_document is not None and window.show_document.support:
        doc = generic.shown_documents[-1]
        assert doc.uri == SETTINGS_FILE.as_uri() and doc.selection.start.line == line
    else:
        assert f"line {line + 1}" in shown["message"]
    assert shown["shown"] == str(SETTINGS_FILE) and shown["line"] == line + 1


@pytest.mark.slow
async def test_the_plugins_declare_their_commands_and_get_them(plugin: LanguageClient) -> None:
    _, _, actions = await missing_key_fixes(plugin)
    commands = [action_command(a) for a in actions]
    assert commands[0] == ("phasewise.setApiKey", {"env": "NOPE_KEY", "provider": "acme-o"})
    assert "phasewise.openSettings" in {name for name, _ in commands}
    assert "phasewise.showSettings" not in {name for name, _ in commands}


@pytest.mark.slow
async def test_the_set_key_fix_names_the_action_as_the_palette_does(plugin: LanguageClient) -> None:
    """Issue 12 point 14: the quick fix and the message name VS Code's palette command, word for word
    (issue 23: as the extension declares it, ``experimental.phasewise.setKeyCommand``)."""
    contributes = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text(encoding="utf-8"))
    palette = next(f"{c['category']}: {c['title']}" for c in contributes["contributes"]["commands"]
                   if c["command"] == "phasewise.setApiKey")
    assert palette == "Phasewise: Set API Key…" == PLUGIN_EXPERIMENTAL["phasewise"]["setKeyCommand"]
    declared = (ROOT / "editors" / "vscode" / "src" / "common" / "server.ts").read_text(encoding="utf-8")
    assert f'setKeyCommand: "{palette}"' in declared
    _, diag, actions = await missing_key_fixes(plugin)
    assert actions[0].title == f"Set NOPE_KEY ({palette})"
    assert f"or use {palette} in the editor" in diag.message


# ------------------------------------------------------------------ 2: problems that track reality


def phasewise_problems(diags: list[types.Diagnostic]) -> list[types.Diagnostic]:
    return [d for d in diags if d.source == "phasewise"]


@pytest.mark.slow
async def test_setting_the_missing_key_clears_its_problem_without_sending(client: LanguageClient,
                                                                          sim: SimulatorThread) -> None:
    editor = Editor(client)
    settings = acme(sim, {"plan": {"model": "acme-o/m-plan"}})
    settings["providers"]["acme-o"]["apiKeyEnv"] = "LATE_KEY"
    editor.configure(settings)
    editor.open(URI, DOC)
    result = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert result["error"]["kind"] == "missing-credentials"
    await editor.diagnostics_where(URI, lambda ds: any(d.code == "missing-credentials" for d in ds))
    # an unrelated key first (the problem still holds), then the missing one
    client.protocol.notify("phasewise/setKeys", {"keys": {"UNRELATED_KEY": "test-key-unrelated-1234"}})
    client.protocol.notify("phasewise/setKeys", {"keys": {"LATE_KEY": "test-key-late-5f6e7d8c9b"}})
    await editor.diagnostics_where(URI, lambda ds: phasewise_problems(ds) == [])
    assert sim.requests == []


@pytest.mark.slow
async def test_fixing_the_settings_clears_the_config_problem_without_sending(client: LanguageClient,
                                                                             sim: SimulatorThread) -> None:
    editor = Editor(client)
    good = acme(sim, {"plan": {"model": "acme-o/m-plan"}, "code": {"model": "acme-o/m-code"}})
    bad = json.loads(json.dumps(good))
    bad["phases"]["code"] = {"model": "glm-4.7"}  # not a provider/model reference
    bad["phases"]["plan"] = {"model": "nowhere/x"}
    editor.configure(bad)
    editor.open(URI, DOC)
    code = await run(editor, "phasewise.code", {"uri": URI, "instruction": "x"})
    plan = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert code["error"]["kind"] == plan["error"]["kind"] == "config"
    await editor.diagnostics_where(URI, lambda ds: len(phasewise_problems(ds)) == 2)
    # code fixed, plan still wrong: only the code problem goes
    half = json.loads(json.dumps(bad))
    half["phases"]["code"] = good["phases"]["code"]
    editor.configure(half)
    diags = await editor.diagnostics_where(
        URI, lambda ds: [d.data["phase"] for d in phasewise_problems(ds)] == ["plan"])
    assert "nowhere" in diags[0].message
    editor.configure(good)
    await editor.diagnostics_where(URI, lambda ds: phasewise_problems(ds) == [])
    assert sim.requests == []


REVIEW_DOC = """import os


def load(path, cache={}):
    try:
        return open(path).read()
    except:
        print("failed", path)
        return None
"""


@pytest.mark.slow
async def test_an_applied_suggestion_takes_its_finding_and_fix_away(client: LanguageClient,
                                                                    sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {"review": {"model": "acme-a/claude-sim"}}))
    editor.open(URI, REVIEW_DOC)
    review = await run(editor, "phasewise.review", {"uri": URI})
    assert review["ok"] and len(review["findings"]) >= 2, review
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.source == "phasewise-review" for d in ds))
    findings = [d for d in diags if d.source == "phasewise-review"]
    assert all(d.code is None for d in findings)  # the column reads "phasewise-review", not "(review)"
    bare = next(d for d in findings if "except" in d.message.lower())
    # as the JSON the server sent: the Python client decodes a CodeAction with a command as a Command
    fix = next(a for a in await code_actions_json(client, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI), range=bare.range,
        context=types.CodeActionContext(diagnostics=[bare], only=[types.CodeActionKind.QuickFix]))) if "edit" in a)
    sent = len(sim.requests)
    editor._apply(types.ApplyWorkspaceEditParams(edit=default_converter().structure(fix["edit"], types.WorkspaceEdit)))
    left = await editor.diagnostics_where(
        URI, lambda ds: len([d for d in ds if d.source == "phasewise-review"]) == len(findings) - 1)
    assert bare.message not in [d.message for d in left]
    # the others stay where their lines are
    for d in findings:
        if d is not bare:
            now = next(x for x in left if x.message == d.message)
            assert now.range == d.range
    # a line typed above moves the remaining findings with their lines
    editor.change(URI, "# header\n" + editor.texts[URI])
    moved = await editor.diagnostics_where(
        URI, lambda ds: all(x.range.start.line == d.range.start.line + 1 for d in left
                            for x in ds if x.message == d.message and x.source == "phasewise-review"))
    assert len([d for d in moved if d.source == "phasewise-review"]) == len(left)
    assert len(sim.requests) == sent


@pytest.mark.slow
async def test_a_rate_limit_says_when_it_lifts_then_that_a_retry_works_now(client: LanguageClient,
                                                                            sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {"plan": {"model": "acme-o/m-plan"}},
                          retry={"maxAttempts": 2, "maxWaitSeconds": 0.05}))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="acme-o", retry_after=None, retry_after_ms=1500)
    result = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    at = result["error"]["retryAt"][11:19]
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "rate-limit" for d in ds))
    limited = next(d for d in diags if d.code == "rate-limit")
    assert at in limited.message and limited.severity == types.DiagnosticSeverity.Warning
    # the time passes (a timer on the server's loop; nothing polled here): "you can retry now"
    diags = await editor.diagnostics_where(URI, lambda ds: any("you can retry now" in d.message for d in ds))
    lifted = next(d for d in diags if d.code == "rate-limit")
    assert lifted.message.startswith("plan: ") and lifted.severity == types.DiagnosticSeverity.Information
    actions = await code_actions_for(client, URI, [lifted])
    assert actions[0].title == "Retry the plan phase now (the limit has lifted)"
    assert len(sim.requests) == 1


# ------------------------------------------------------------------ 4: a retry that waits


def progress_titled(client: LanguageClient, words: str) -> list[str]:
    return [token for token, reports in client.progress_reports.items()
            if any(words in (getattr(r, "title", None) or "") for r in reports)]


@pytest.mark.slow
async def test_retry_waits_until_the_limit_lifts_then_runs(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {"plan": {"model": "acme-o/m-plan"}},
                          retry={"maxAttempts": 2, "maxWaitSeconds": 0.05}))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="acme-o", retry_after=None, retry_after_ms=1500)
    first = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert first["error"]["kind"] == "rate-limit" and first["error"]["retryAfterSeconds"] == 1.5
    await editor.diagnostics_where(URI, lambda ds: any(d.code == "rate-limit" for d in ds))
    again = await run(editor, "phasewise.retry", {"uri": URI, "phase": "plan"})
    assert again["ok"], again
    refused, served = [r for r in sim.requests if r.endpoint == "chat"]
    assert served.started_at - (refused.finished_at or refused.started_at) >= 1.4  # not at once
    token = progress_titled(client, "waiting for the rate limit on acme-o/m-plan")
    assert len(token) == 1
    messages = [getattr(r, "message", None) or "" for r in client.progress_reports[token[0]]]
    assert any(m.startswith("retrying in 1 s") or m.startswith("retrying in 2 s") for m in messages), messages
    assert "has lifted" in messages[-1]


@pytest.mark.slow
async def test_cancelling_the_wait_sends_nothing(client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    editor.configure(acme(sim, {"plan": {"model": "acme-o/m-plan"}},
                          retry={"maxAttempts": 2, "maxWaitSeconds": 1}))
    editor.open(URI, DOC)
    sim.add_fault("openai.rate_limit", provider="acme-o", retry_after=300)
    first = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert first["error"]["kind"] == "rate-limit"
    await editor.diagnostics_where(URI, lambda ds: any(d.code == "rate-limit" for d in ds))
    pending = editor.start("phasewise.retry", {"uri": URI, "phase": "plan"}, msg_id="retry-1")
    while not progress_titled(client, "waiting for the rate limit"):
        await client.wait_for_notification("$/progress")
    token = progress_titled(client, "waiting for the rate limit")[0]
    client.protocol.notify(types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token))
    result = plain(await pending)
    assert result["error"]["kind"] == "cancelled" and "nothing was sent" in result["error"]["message"]
    assert len([r for r in sim.requests if r.endpoint == "chat"]) == 1


# ------------------------------------------------------------------ 10: doctor without a key


@pytest.fixture
def project(tmp_path: Path, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with no settings (every phase on Anthropic) and no provider key in the environment."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_AUTH_TOKEN")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHASEWISE_SIM_URL", sim.url)
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "state" / "runs.jsonl"))
    monkeypatch.setenv("COLUMNS", "200")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "app.py").write_text(DOC, encoding="utf-8")
    return folder


def test_doctor_without_a_key_says_not_set_and_the_protocol(project: Path, sim: SimulatorThread,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["doctor", str(project)])
    out = capsys.readouterr().out
    assert code == 1
    row = next(line for line in out.splitlines() if "ANTHROPIC_API_KEY" in line)
    assert "None" not in row and "ANTHROPIC_API_KEY (not set)" in row, row
    assert row.split("│")[2].strip() == "anthropic", row  # the protocol column of a catalogue provider
    code = cli.main(["doctor", str(project), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["providers"][0]["protocol"] == "anthropic" and report["providers"][0]["keyMasked"] is None
    assert sim.requests == []


# ------------------------------------------------------------------ 11: the way out where the phase runs


def test_on_the_command_line_a_missing_key_says_export_or_auth_set(project: Path, sim: SimulatorThread,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["plan", str(project / "app.py"), "-i", "add a discount", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code != 0 and result["error"]["kind"] == "missing-credentials"
    message = result["error"]["message"]
    assert "export ANTHROPIC_API_KEY=" in message and "phasewise auth set anthropic" in message, message
    assert "editor" not in message
    # a key written into the CLI's settings file: the same way out
    (project / "phasewise.json").write_text(json.dumps({"providers": {"anthropic": {"apiKey": "whatever-it-is"}}}))
    code = cli.main(["doctor", str(project), "--json"])
    out = capsys.readouterr()
    assert "whatever-it-is" not in out.out + out.err
    assert "set api key" not in (out.out + out.err).lower() and "export ANTHROPIC_API_KEY=" in out.out + out.err
    assert sim.requests == []


@pytest.mark.slow
async def test_in_a_client_without_a_set_key_command_a_missing_key_names_none(client: LanguageClient,
                                                                              sim: SimulatorThread) -> None:
    """Issue 23 item 4: a client without Phasewise's plugin is told what it has: the environment the
    server starts in (and a restart) or the OS keyring, not another editor's command."""
    editor = Editor(client)
    settings = acme(sim, {"plan": {"model": "acme-o/m-plan"}})
    settings["providers"]["acme-o"]["apiKeyEnv"] = "NOPE_KEY"
    editor.configure(settings)
    editor.open(URI, DOC)
    result = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    message = result["error"]["message"]
    assert "set the environment variable NOPE_KEY where the editor starts Phasewise and restart the language " \
           "server, or run `phasewise auth set acme-o` (OS keyring)" in message, message
    assert "Set API Key" not in message and "export NOPE_KEY" not in message


# ------------------------------------------------------------------ 12: percent-escapes in file URIs


@pytest.mark.slow
async def test_an_escaped_file_uri_reaches_the_model_the_diff_and_the_record_decoded(
        client: LanguageClient, sim: SimulatorThread, tmp_path: Path) -> None:
    editor = Editor(client)
    ledger = tmp_path / "runs.jsonl"
    editor.configure(acme(sim, {"plan": {"model": "acme-o/m-plan"},
                                "code": {"model": "acme-o/m-code", "editFormat": "text"}},
                          ledgerPath=str(ledger), recordContent=True))
    uri = "file:///work/editor/my%20m%C3%B3dulo.py"
    editor.open(uri, DOC)
    plan = await run(editor, "phasewise.plan", {"uri": uri, "instruction": "add a discount"})
    assert plan["ok"], plan
    sent = json.dumps([r.body for r in sim.requests if r.endpoint == "chat"], ensure_ascii=False)
    assert "/work/editor/my módulo.py" in sent and "%20" not in sent and "%C3" not in sent
    code = await run(editor, "phasewise.code", {"uri": uri, "instruction": "add a discount"})
    assert code["ok"] and code["diff"], code
    assert "my módulo.py" in code["diff"] and "%20" not in code["diff"]
    records = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    assert [r["content"]["document"] for r in records] == ["/work/editor/my módulo.py"] * 2


def test_file_uris_become_paths() -> None:
    from phasewise.phases.documents import uri_path

    assert uri_path("file:///work/my%20m%C3%B3dulo.py") == "/work/my módulo.py"
    assert uri_path("file:///c%3A/src/a%23b.py") == "c:/src/a#b.py"
    assert uri_path("file://server/share/x.py") == "//server/share/x.py"
    assert uri_path("untitled:Untitled-1") == "untitled:Untitled-1"


# ------------------------------------------------------------------ 14: messages that read well


def test_a_provider_is_named_with_its_id_once() -> None:
    from phasewise.router.messages import provider_label

    assert provider_label("Simulated Claude (Anthropic protocol)", "sim-claude") == \
        "Simulated Claude (sim-claude, Anthropic protocol)"
    assert provider_label("Anthropic", "anthropic") == "Anthropic"
    assert provider_label("acme-o", "acme-o") == "acme-o"
    assert provider_label("Z.AI", "zai") == "Z.AI (zai)"


@pytest.mark.slow
async def test_messages_are_plain_text_and_a_result_that_sent_nothing_says_so(
        client: LanguageClient, sim: SimulatorThread) -> None:
    editor = Editor(client)
    settings = acme(sim, {"plan": {"model": "acme-o/m-plan"}, "code": {"model": "glm-4.7"}})
    settings["providers"]["acme-o"]["apiKeyEnv"] = "NOPE_KEY"
    settings["retry"] = {**settings["retry"], "maxAttempts": "many"}  # a settings issue: a notification
    editor.configure(settings)
    editor.open(URI, DOC)
    plan = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    code = await run(editor, "phasewise.code", {"uri": URI, "instruction": "x"})
    assert plan["sent"] is False and code["sent"] is False  # header: no "0.0 s, 0 → 0 tokens"
    assert "`" in code["error"]["message"]  # the problem's own words keep their marks
    diags = await editor.diagnostics_where(URI, lambda ds: len(ds) == 2)
    assert all("`" not in d.message for d in diags), [d.message for d in diags]
    notes = [m.message for m in client.messages if "Phasewise settings" in m.message]
    assert notes and all("`" not in m for m in notes), notes
    # a phase that reached the provider has no "sent" mark
    editor.configure(acme(sim, {"plan": {"model": "acme-o/m-plan"}}))
    served = await run(editor, "phasewise.plan", {"uri": URI, "instruction": "x"})
    assert served["ok"] and "sent" not in served


def test_the_cli_shows_no_time_or_tokens_for_a_phase_that_sent_nothing(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["plan", str(project / "app.py"), "-i", "x"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│ plan") and "missing-credentials" in line)
    assert "nothing sent" in row and "0/0" not in row and "$0" not in row, row
