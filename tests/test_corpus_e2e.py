"""Issue 19, end to end: recorded provider answers replayed by the simulator, through a real client.

A few cases of the corpus (``tests/data/provider_errors.jsonl``) go out on the wire exactly as
they were received (``sim.faults.replay``) while a pytest-lsp client (VS Code's and Neovim's
capabilities, with Phasewise's plugin) runs a phase through the real SDKs; the result, what
reached the wire, the published diagnostic and its quick fixes are checked. Nothing sleeps: the
waits are the provider's own, a second or two, and the test waits for the notifications.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from phasewise.sim.faults import replay
from tests.helpers import Editor, answer, make_plugin_client_fixture, server_env
from tests.helpers.faults import DOC, FAST, KEYS, fixes_for, leaks

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

client = make_plugin_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"))

CORPUS = Path(__file__).parent / "data" / "provider_errors.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
URI = "file:///work/corpus/cart.py"


def recorded(source: str, status: int | None = None) -> dict[str, Any]:
    """The corpus case from ``source`` (the first with that status, when given)."""
    return next(c for c in CASES if c["source"] == source and (status is None or c["status"] == status))


def route(sim: SimulatorThread, name: str, protocol: str, **extra: Any) -> dict[str, Any]:
    return {"phases": {"plan": {"model": f"{name}/sim-fast"}},
            "providers": {name: {"protocol": protocol, "baseUrl": sim.base_url(name, protocol),
                                 "apiKeyEnv": "MAIN_KEY"}},
            **FAST, **extra}


async def plan(editor: Editor) -> dict[str, Any]:
    return answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a discount"}))


def sent(sim: SimulatorThread, provider: str) -> int:
    return len([r for r in sim.requests if r.provider == provider and r.endpoint == "chat"])


async def test_anthropic_credit_balance_400_is_billing_sent_once_and_never_offered_as_a_retry(
        client: LanguageClient, sim: SimulatorThread) -> None:
    case = recorded("https://github.com/anthropics/claude-code/issues/66314")
    editor = Editor(client)
    editor.configure(route(sim, "credit", "anthropic"))
    editor.open(URI, DOC)
    sim.add_fault(replay(case["status"], case["body"], case["headers"]), provider="credit", times=-1)
    result = await plan(editor)
    error = result["error"]
    assert error["kind"] == "billing" and error["status"] == 400, error
    assert "credit balance is too low" in error["message"] and "Retrying will not help" in error["message"]
    assert [a["outcome"] for a in result["attempts"]] == ["billing"] and sent(sim, "credit") == 1
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "billing" for d in ds))
    diag = next(d for d in diags if d.code == "billing")
    titles = [a.title for a in await fixes_for(client, URI, diag)]
    assert not any(t.startswith("Retry the plan phase") for t in titles), titles
    assert "Add a fallback model for the plan phase" in titles, titles
    assert leaks(client, editor, result) == []


async def test_openrouter_epoch_ms_reset_within_max_wait_is_waited_out(client: LanguageClient,
                                                                      sim: SimulatorThread) -> None:
    case = recorded("https://github.com/Gitlawb/openclaude/issues/1549")
    editor = Editor(client)
    editor.configure(route(sim, "router", "openai"))
    editor.open(URI, DOC)
    # OpenRouter's X-RateLimit-Reset is epoch milliseconds: 3 s from now (less by the time the answer
    # is read), a time, not a duration of 55 years
    reset = str(int((time.time() + 3) * 1000))
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    sim.add_fault(replay(case["status"], case["body"], headers), provider="router")
    result = await plan(editor)
    assert result["ok"], result
    assert [a["outcome"] for a in result["attempts"]] == ["rate-limit", "ok"]
    assert 0 <= result["attempts"][0]["waitSeconds"] <= 3
    assert sent(sim, "router") == 2


async def test_openrouter_daily_limit_in_the_body_fails_at_once_with_the_real_time(client: LanguageClient,
                                                                                   sim: SimulatorThread) -> None:
    case = recorded("https://github.com/Gitlawb/openclaude/issues/936")
    editor = Editor(client)
    editor.configure(route(sim, "daily", "openai"))
    editor.open(URI, DOC)
    body = json.loads(json.dumps(case["body"]))
    # the daily window resets in eight hours: OpenRouter repeats its headers inside the body
    body["error"]["metadata"]["headers"]["X-RateLimit-Reset"] = str(int((time.time() + 8 * 3600) * 1000))
    sim.add_fault(replay(case["status"], json.dumps(body)), provider="daily", times=-1)
    result = await plan(editor)
    error = result["error"]
    assert error["kind"] == "rate-limit" and 8 * 3600 - 60 < error["retryAfterSeconds"] <= 8 * 3600, error
    assert "8 h" in error["message"] and "maxWaitSeconds" in error["message"], error["message"]
    assert "a day" not in error["message"]
    assert sent(sim, "daily") == 1  # over retry.maxWaitSeconds: not waited, not retried


async def test_ollama_plain_string_error_shows_its_words(client: LanguageClient, sim: SimulatorThread) -> None:
    case = recorded("https://github.com/TheBlewish/Automated-AI-Web-Researcher-Ollama/issues/42")
    editor = Editor(client)
    # the catalogue's Ollama, pointed at the simulator: its own meanings of codes apply
    editor.configure({"phases": {"plan": {"model": "ollama/custom-phi3"}},
                      "providers": {"ollama": {"baseUrl": sim.base_url("ollama", "openai")}}, **FAST})
    editor.open(URI, DOC)
    sim.add_fault(replay(case["status"], case["body"], case["headers"]), provider="ollama")
    result = await plan(editor)
    error = result["error"]
    assert error["kind"] == "model-not-found", error
    assert "model 'custom-phi3-32k-Q4_K_M' not found" in error["message"], error["message"]
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "model-not-found" for d in ds))
    assert any("custom-phi3-32k-Q4_K_M" in d.message for d in diags)

    # Ollama's OpenAI-compatible endpoint calls the same failure an api_error: not a server error
    case = recorded("https://github.com/netease-youdao/QAnything/issues/555")
    sim.add_fault(replay(case["status"], case["body"], case["headers"]), provider="ollama")
    again = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "again"}))
    assert again["error"]["kind"] == "model-not-found" and sent(sim, "ollama") == 2, again


async def test_minimax_plan_window_says_when_it_comes_back(client: LanguageClient, sim: SimulatorThread) -> None:
    case = recorded("https://github.com/MiniMax-AI/MiniMax-M2.7/issues/36")
    editor = Editor(client)
    editor.configure(route(sim, "mm", "anthropic"))
    editor.open(URI, DOC)
    sim.add_fault(replay(case["status"], case["body"], case["headers"]), provider="mm", times=-1)
    result = await plan(editor)
    error = result["error"]
    assert error["kind"] == "billing" and sent(sim, "mm") == 1, error
    assert "plan's allowance is used up" in error["message"] and "2026-05-15" in error["message"], error["message"]
    assert error["retryAt"].startswith("2026-05-15"), error
