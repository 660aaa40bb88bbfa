"""Issue 12, the server's side: what the user meets on top of the machinery.

Through pytest-lsp clients with VS Code's and Neovim's declared capabilities, and a generic
client (Vim's yegappan/lsp stands for every client without Phasewise's plugin: it declares no
``experimental.phasewise`` capability). The simulator plays the providers at the wire.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from phasewise.providers.classify import classify
from phasewise.sim import SimulatorThread
from tests.conftest import make_client_fixture, server_env
from tests.lsp_helpers import Editor, plain

KEYS = {
    "ACME_O_KEY": "test-key-acme-o-0a1b2c3d4e",
    "ACME_A_KEY": "test-key-acme-a-5f6a7b8c9d",
    "ACME_M_KEY": "test-key-acme-m-0e1f2a3b4c",
}
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"))

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
