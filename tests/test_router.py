"""Issue 3, core level: the router's policy against the simulator, the real SDKs underneath.

The phase service runs in the test's event loop (no LSP); ``engine.sleep`` records the waits
instead of sleeping, so "waits exactly what the provider asks" is asserted exactly and no test
sleeps. What reached the wire is read from the simulator.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.problems import ProblemKind
from phasewise.router.router import Cooldowns, Engine
from phasewise.router.routes import Keyring
from phasewise.settings import LoadedSettings, load_settings
from phasewise.sim import SimulatorThread

K = ProblemKind
DOC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
KEYS = {"MAIN_KEY": "test-key-main-0001", "MAIN_KEY_2": "test-key-main-0002", "FB_KEY": "test-key-fb-0003",
        "OTHER_KEY": "test-key-other-0004"}


class Recorder:
    """The observer of a phase: streamed text and status lines (waits, key changes, fallbacks)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.status: list[str] = []

    def on_text(self, delta: str) -> None:
        self.text.append(delta)

    def on_status(self, message: str) -> None:
        self.status.append(message)


class Harness:
    def __init__(self, sim: SimulatorThread, keys: dict[str, str] | None = None) -> None:
        self.sim = sim
        self.engine = Engine(Keyring(environ=dict(KEYS if keys is None else keys)))
        self.waits: list[float] = []

        async def sleep(seconds: float) -> None:
            self.waits.append(seconds)

        # Virtual time: a recorded wait moves the cooldowns' clock on as a real one would.
        self.engine.sleep = sleep
        self.engine.cooldowns = Cooldowns(clock=lambda: time.monotonic() + sum(self.waits))
        self.service = PhaseService(self.engine)

    def provider(self, name: str, protocol: str = "openai", key: str | list[str] = "MAIN_KEY",
                 **extra: Any) -> dict[str, Any]:
        return {"protocol": protocol, "baseUrl": self.sim.base_url(name, protocol), "apiKeyEnv": key, **extra}

    async def run(self, loaded: LoadedSettings, phase: str = "plan", observer: Recorder | None = None) -> PhaseResult:
        doc = Document("file:///t/calc.py", DOC, 1, "python")
        return await self.service.run(loaded, phase, PhaseInput(doc, "add a mul function"), observer or Recorder())

    def chat(self, provider: str | None = None) -> list[Any]:
        return [r for r in self.sim.requests if r.endpoint == "chat" and (provider is None or r.provider == provider)]


def settings(phases: dict[str, Any], providers: dict[str, Any], **rest: Any) -> LoadedSettings:
    raw = {"phases": phases, "providers": providers,
           "retry": {"maxAttempts": 3, "backoffBaseSeconds": 0.2, "backoffMaxSeconds": 1, **rest.pop("retry", {})},
           "timeouts": {"firstTokenSeconds": 5, "idleSeconds": 2, **rest.pop("timeouts", {})}, **rest}
    loaded = load_settings(raw)
    assert not loaded.issues and not loaded.broken_phases and not loaded.broken_providers, loaded
    return loaded


@pytest.fixture
def h(sim: SimulatorThread) -> Harness:
    return Harness(sim)


def outcomes(result: PhaseResult) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in result.attempts]


# -------------------------------------------------------------------- one retry layer


@pytest.mark.parametrize(("protocol", "fault"), [
    ("openai", {"status": 429, "body": {"error": {"message": "slow down", "type": "requests",
                                                  "code": "rate_limit_exceeded"}}}),
    ("openai", {"status": 500, "body": {"error": {"message": "boom", "type": "server_error", "code": None}}}),
    ("anthropic", "anthropic.rate_limit_error"),
    ("anthropic", "anthropic.api_error"),
    ("anthropic", "anthropic.overloaded_error"),
])
async def test_sdk_retries_never_run(h: Harness, protocol: str, fault: Any) -> None:
    h.sim.add_fault(fault, provider="main", times=-1)
    loaded = settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main", protocol)})
    result = await h.run(loaded)
    assert not result.ok and result.error is not None
    assert len(h.chat("main")) == 3  # retry.maxAttempts, never a hidden SDK retry on top
    assert len(result.attempts) == 3 and all(a.sent for a in result.attempts)


@pytest.mark.parametrize("preset", [
    "openai.insufficient_quota", "zai.1113", "zai.1308", "zai.1309", "zai.1310", "deepseek.insufficient_balance",
    "qwen.Arrearage", "qwen.insufficient_quota", "minimax.1008", "openrouter.credits",
    "anthropic.billing_error",
])
async def test_billing_is_never_retried(h: Harness, preset: str) -> None:
    protocol = "anthropic" if preset.startswith("anthropic") else "openai"
    h.sim.add_fault(preset, provider="main", times=-1)
    loaded = settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]}},
                      {"main": h.provider("main", protocol), "fb": h.provider("fb", key="FB_KEY")})
    result = await h.run(loaded)
    assert result.error is not None and result.error.kind is K.BILLING
    assert len(h.chat("main")) == 1 and h.chat("fb") == []  # no retry, and no fallback unless opted in
    assert h.waits == []
    assert result.error.fallbacks == ["fb/sim-fast"]  # offered as a quick fix instead


async def test_waits_exactly_what_the_provider_asks(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main")})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=None, retry_after_ms=350)
    h.sim.add_fault("openai.overloaded", provider="main", retry_after=2)
    observer = Recorder()
    result = await h.run(loaded, observer=observer)
    assert result.ok, result.error
    assert outcomes(result) == [("main", "rate-limit"), ("main", "overloaded"), ("main", "ok")]
    assert [a.wait_seconds for a in result.attempts[:2]] == [pytest.approx(0.35), 2.0]
    assert sum(h.waits[:1]) == pytest.approx(0.35) and sum(h.waits[1:]) == pytest.approx(2.0)
    # the countdown is reported while waiting
    assert any("retrying in 2 s" in s for s in observer.status), observer.status
    assert any("retrying in 1 s" in s for s in observer.status), observer.status


async def test_retry_after_as_http_date_and_reset_headers(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main")})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=None, retry_after_date=30)
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=None, kind="tokens", reset_tokens="50s")
    result = await h.run(loaded)
    assert result.ok, result.error
    date_wait, reset_wait = (a.wait_seconds for a in result.attempts[:2])
    assert date_wait is not None and 28 <= date_wait <= 30  # an HTTP date has whole seconds
    assert reset_wait == 50.0
    assert sum(h.waits) == pytest.approx(date_wait + reset_wait)


async def test_backoff_with_jitter_when_the_provider_says_nothing(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main")},
                      retry={"maxAttempts": 4, "backoffBaseSeconds": 0.2, "backoffMaxSeconds": 0.5})
    h.sim.add_fault("zai.1302", provider="main", times=3)  # Z.AI sends no retry-after
    result = await h.run(loaded)
    assert result.ok, result.error
    assert [a.outcome for a in result.attempts] == ["rate-limit"] * 3 + ["ok"]
    first, second, third = h.waits
    assert 0.1 <= first <= 0.2 and 0.2 <= second <= 0.4 and 0.25 <= third <= 0.5  # doubling, capped, jittered


@pytest.mark.parametrize("preset", ["openai.invalid_api_key", "openai.model_not_found", "openai.context_length",
                                    "openai.region", "moonshot.content_filter", "deepseek.invalid_params"])
async def test_final_kinds_are_never_retried(h: Harness, preset: str) -> None:
    h.sim.add_fault(preset, provider="main", times=-1)
    result = await h.run(settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main")}))
    assert result.error is not None and result.error.kind not in {K.RATE_LIMIT, K.SERVER_ERROR}
    assert len(h.chat("main")) == 1 and h.waits == []


async def test_a_wait_over_max_wait_fails_at_once_and_holds_the_provider(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}, "review": {"model": "main/sim-fast"}},
                      {"main": h.provider("main")}, retry={"maxWaitSeconds": 60})
    h.sim.add_fault("anthropic.rate_limit_error", provider="main", retry_after=600)
    loaded = settings({"plan": {"model": "main/sim-fast"}, "review": {"model": "main/sim-fast"}},
                      {"main": h.provider("main", "anthropic")}, retry={"maxWaitSeconds": 60})
    plan = await h.run(loaded, "plan")
    assert plan.error is not None and plan.error.kind is K.RATE_LIMIT
    assert plan.error.retry_after_seconds == 600 and plan.error.retry_at
    assert "maxWaitSeconds" in plan.error.message and h.waits == []
    assert len(h.chat("main")) == 1
    # another phase on the same provider and key sends nothing while the provider holds it
    review = await h.run(loaded, "review")
    assert review.error is not None and review.error.kind is K.RATE_LIMIT
    assert review.error.retry_after_seconds is not None and 590 < review.error.retry_after_seconds <= 600
    assert [(a.outcome, a.sent) for a in review.attempts] == [("rate-limit", False)]
    assert len(h.chat("main")) == 1


async def test_cooldown_is_shared_between_phases_and_waited_for(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}, "code": {"model": "main/sim-fast"}},
                      {"main": h.provider("main")}, retry={"maxAttempts": 1})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=3)
    plan = await h.run(loaded, "plan")
    assert plan.error is not None and plan.error.kind is K.RATE_LIMIT
    observer = Recorder()
    code = await h.run(loaded, "code", observer)
    assert code.ok, code.error
    assert 2.5 < sum(h.waits) <= 3  # the rest of the plan phase's cooldown, then one request
    assert any("shared by every phase" in s for s in observer.status), observer.status
    assert [r.phase for r in h.chat("main")] == ["plan", "code"]


async def test_cooldown_sends_the_other_phase_to_its_fallback(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"},
                       "review": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]}},
                      {"main": h.provider("main"), "fb": h.provider("fb", key="FB_KEY")},
                      retry={"maxWaitSeconds": 5})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=120)
    await h.run(loaded, "plan")
    review = await h.run(loaded, "review")
    assert review.ok and review.fallback_used and review.provider == "fb"
    assert [(a.provider, a.outcome, a.sent) for a in review.attempts] == [
        ("main", "rate-limit", False), ("fb", "ok", True)]
    assert len(h.chat("main")) == 1


async def test_an_exhausted_window_paces_the_next_request(h: Harness) -> None:
    loaded = settings({p: {"model": "main/sim-fast"} for p in ("plan", "code", "review")},
                      {"main": h.provider("main")}, retry={"maxWaitSeconds": 10})
    h.sim.configure("main", ratelimit_headers={"x-ratelimit-remaining-requests": "0",
                                               "x-ratelimit-reset-requests": "4s"})
    assert (await h.run(loaded, "plan")).ok
    observer = Recorder()
    assert (await h.run(loaded, "code", observer)).ok
    assert 3.5 < sum(h.waits) <= 4
    assert any("no requests or tokens left" in s for s in observer.status), observer.status
    # a window that resets beyond maxWaitSeconds: the next request is not sent at all
    h.sim.configure("main", ratelimit_headers={"x-ratelimit-remaining-requests": "0",
                                               "x-ratelimit-reset-requests": "2m"})
    assert (await h.run(loaded, "plan")).ok
    blocked = await h.run(loaded, "review")
    assert blocked.error is not None and blocked.error.kind is K.RATE_LIMIT
    assert not blocked.attempts[0].sent and len(h.chat("main")) == 3


# -------------------------------------------------------------------- keys


async def test_rate_limit_moves_to_the_next_key_before_any_fallback(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]},
                       "code": {"model": "main/sim-fast"}},
                      {"main": h.provider("main", key=["MAIN_KEY", "MAIN_KEY_2"]),
                       "fb": h.provider("fb", key="FB_KEY")})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=30)
    observer = Recorder()
    plan = await h.run(loaded, "plan", observer)
    assert plan.ok and not plan.fallback_used
    assert [(a.key_env, a.outcome) for a in plan.attempts] == [("MAIN_KEY", "rate-limit"), ("MAIN_KEY_2", "ok")]
    assert [r.api_key for r in h.chat()] == [KEYS["MAIN_KEY"], KEYS["MAIN_KEY_2"]]
    assert h.waits == []
    assert any("trying MAIN_KEY_2" in s for s in observer.status)
    # the next phase starts on the key that is not cooling down
    code = await h.run(loaded, "code")
    assert code.ok and [a.key_env for a in code.attempts] == ["MAIN_KEY_2"]


async def test_billing_moves_to_the_next_key_and_remembers(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}},
                      {"main": h.provider("main", "anthropic", key=["MAIN_KEY", "MAIN_KEY_2"])})
    h.sim.add_fault("anthropic.billing_error", provider="main")
    first = await h.run(loaded)
    assert first.ok and [(a.key_env, a.outcome) for a in first.attempts] == [
        ("MAIN_KEY", "billing"), ("MAIN_KEY_2", "ok")]
    second = await h.run(loaded)  # the key that said billing is tried after the other now
    assert second.ok and [a.key_env for a in second.attempts] == ["MAIN_KEY_2"]


async def test_billing_on_every_key_sends_one_request_per_key(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}},
                      {"main": h.provider("main", key=["MAIN_KEY", "MAIN_KEY_2"])})
    h.sim.add_fault("zai.1113", provider="main", times=-1)
    result = await h.run(loaded)
    assert result.error is not None and result.error.kind is K.BILLING
    assert len(h.chat("main")) == 2 and result.error.key_env == "MAIN_KEY_2"
    for value in KEYS.values():
        assert value not in result.error.message and value not in str(result.to_json())


# -------------------------------------------------------------------- fallbacks


async def test_fallback_order_skips_a_fallback_without_key(sim: SimulatorThread) -> None:
    h = Harness(sim, {k: v for k, v in KEYS.items() if k != "FB_KEY"})
    loaded = settings({"plan": {"model": "main/sim-fast", "fallbacks": ["nokey/sim-fast", "fb2/sim-fast",
                                                                         "fb3/sim-fast"]}},
                      {"main": h.provider("main", "anthropic"), "nokey": h.provider("nokey", key="FB_KEY"),
                       "fb2": h.provider("fb2", key="OTHER_KEY"), "fb3": h.provider("fb3", "anthropic")},
                      retry={"maxAttempts": 2})
    h.sim.add_fault("anthropic.overloaded_error", provider="main", times=-1)
    h.sim.add_fault("openai.server_error", provider="fb2", times=-1)
    observer = Recorder()
    result = await h.run(loaded, observer=observer)
    assert result.ok and result.fallback_used and (result.provider, result.model) == ("fb3", "sim-fast")
    assert [(a.provider, a.outcome, a.sent) for a in result.attempts] == [
        ("main", "overloaded", True), ("main", "overloaded", True),
        ("nokey", "missing-credentials", False),
        ("fb2", "server-error", True), ("fb2", "server-error", True),
        ("fb3", "ok", True),
    ]
    assert [r.provider for r in h.chat()] == ["main", "main", "fb2", "fb2", "fb3"]
    assert any(s.startswith("falling back to fb2/sim-fast") for s in observer.status)


async def test_auth_falls_back_only_when_opted_in(h: Harness) -> None:
    providers = {"main": h.provider("main"), "fb": h.provider("fb", key="FB_KEY")}
    h.sim.add_fault("openai.invalid_api_key", provider="main", times=-1)
    plain = await h.run(settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]}}, providers))
    assert plain.error is not None and plain.error.kind is K.AUTH and h.chat("fb") == []
    assert plain.error.key_env == "MAIN_KEY" and "fallbackOn" in plain.error.message
    opted = await h.run(settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"],
                                           "fallbackOn": ["auth", "rate-limit"]}}, providers))
    assert opted.ok and opted.provider == "fb"


async def test_every_route_failing_reports_the_main_problem_and_what_was_tried(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]}},
                      {"main": h.provider("main"), "fb": h.provider("fb", key="FB_KEY")},
                      retry={"maxAttempts": 1})
    h.sim.add_fault("openai.rate_limit", provider="main", retry_after=5)
    h.sim.add_fault("openai.invalid_api_key", provider="fb")
    result = await h.run(loaded)
    assert result.error is not None and result.error.kind is K.RATE_LIMIT and result.error.provider == "main"
    assert "Fallbacks tried: fb/sim-fast (auth)." in result.error.message
    assert [(a.provider, a.outcome) for a in result.attempts] == [("main", "rate-limit"), ("fb", "auth")]


# -------------------------------------------------------------------- failures after a 200


async def test_plan_keeps_the_partial_text_of_a_broken_stream(h: Harness) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast", "fallbacks": ["fb/sim-fast"]}},
                      {"main": h.provider("main", "anthropic"), "fb": h.provider("fb", key="FB_KEY")})
    h.sim.add_fault({"stream": "error_event", "error_type": "overloaded_error"}, provider="main", after_chunks=3)
    observer = Recorder()
    result = await h.run(loaded, observer=observer)
    assert not result.ok and result.incomplete
    assert result.error is not None and result.error.kind is K.OVERLOADED
    assert result.text and result.text == "".join(observer.text)
    assert "incomplete" in result.error.message
    assert len(h.chat()) == 1  # streamed text is never streamed twice: no retry, no fallback
    assert "partialText" not in str(result.to_json()["error"])


async def test_code_retries_a_broken_tool_stream_that_showed_nothing(h: Harness) -> None:
    loaded = settings({"code": {"model": "main/sim-fast", "editFormat": "tool"}}, {"main": h.provider("main")})
    h.sim.add_fault({"stream": "error_event", "error_type": "server_error"}, provider="main", after_chunks=2)
    result = await h.run(loaded, "code")
    assert result.ok, result.error
    assert [a.outcome for a in result.attempts] == ["server-error", "ok"]
    assert result.edits


async def test_code_applies_nothing_after_a_broken_text_stream(h: Harness) -> None:
    loaded = settings({"code": {"model": "main/sim-fast", "editFormat": "text"}}, {"main": h.provider("main")})
    h.sim.add_fault("openrouter.stream_error", provider="main", after_chunks=3)
    result = await h.run(loaded, "code")
    assert not result.ok and result.error is not None and result.error.kind is K.SERVER_ERROR
    assert result.edits == [] and result.new_text is None and not result.incomplete
    assert len(h.chat()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_stalled_stream_times_out(h: Harness, protocol: str) -> None:
    loaded = settings({"plan": {"model": "main/sim-fast"}}, {"main": h.provider("main", protocol)},
                      retry={"maxAttempts": 2}, timeouts={"firstTokenSeconds": 0.6, "idleSeconds": 0.3})
    h.sim.add_fault({"stream": "stall"}, provider="main", times=2)
    result = await h.run(loaded)
    assert result.error is not None and result.error.kind is K.TIMEOUT
    assert "firstTokenSeconds" in result.error.message
    assert len(h.chat()) == 2
    h.sim.add_fault({"stream": "stall"}, provider="main", after_chunks=2)
    partial = await h.run(loaded)
    assert partial.error is not None and partial.error.kind is K.TIMEOUT and partial.incomplete
    assert "idleSeconds" in partial.error.message


async def test_a_refused_connection_is_network(h: Harness) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loaded = settings({"plan": {"model": "gone/sim-fast"}},
                      {"gone": {"protocol": "openai", "baseUrl": f"http://127.0.0.1:{port}/v1",
                                "apiKeyEnv": "MAIN_KEY"}}, retry={"maxAttempts": 2})
    result = await h.run(loaded)
    assert result.error is not None and result.error.kind is K.NETWORK
    assert [a.outcome for a in result.attempts] == ["network", "network"]


# -------------------------------------------------------------------- preflight


async def test_preflight_stops_before_anything_is_sent(h: Harness) -> None:
    providers = {"main": h.provider("main", models={"tiny": {"toolCalling": False, "contextWindow": 2000}})}
    cap = await h.run(settings({"code": {"model": "main/tiny", "editFormat": "tool"}}, providers), "code")
    assert cap.error is not None and cap.error.kind is K.CAPABILITY
    assert "tiny" in cap.error.message and "tool calling" in cap.error.message
    text_format = await h.run(settings({"code": {"model": "main/tiny", "editFormat": "text",
                                                 "maxOutputTokens": 100}}, providers), "code")
    assert text_format.error is None or text_format.error.kind is not K.CAPABILITY
    ctx = await h.run(settings({"plan": {"model": "main/tiny", "maxOutputTokens": 1500}}, providers))
    assert ctx.error is not None and ctx.error.kind is K.CONTEXT_LENGTH
    assert "tiny" in ctx.error.message and "2,000" in ctx.error.message
    missing = await h.run(settings({"plan": {"model": "main/sim-fast"}},
                                   {"main": h.provider("main", key=["NOPE_1", "NOPE_2"])}))
    assert missing.error is not None and missing.error.kind is K.MISSING_CREDENTIALS
    assert "NOPE_1 or NOPE_2" in missing.error.message
    assert [r for r in h.chat() if r.model == "tiny" and r.phase != "code"] == []
    assert [r.model for r in h.chat()] == ["tiny"]  # only the text-format code phase was sent


def test_cooldowns_keep_the_longest_hold() -> None:
    now = [100.0]
    c = Cooldowns(clock=lambda: now[0])
    c.hold("p", "K", 10)
    c.hold("p", "K", 2)
    assert c.remaining("p", "K") == 10 and c.remaining("p", "OTHER") == 0 and c.remaining("q", "K") == 0
    now[0] += 11
    assert c.remaining("p", "K") == 0
    c.note_billing("p", "K", 5)
    assert c.billing_noted("p", "K") and not c.billing_noted("p", "OTHER")
