"""Issue 3, unit level: the classifier table (body code first, status second) and header parsing.

Plain values in, kind and wait out: the same code classifies both SDKs' exceptions and errors
found inside 200 streams, so this table is the whole of the classification policy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from phasewise.problems import Problem, ProblemKind, redact
from phasewise.providers.classify import Origin, classify, is_html
from phasewise.providers.waits import (
    exhausted_until,
    parse_duration,
    reset_in_message,
    retry_after_seconds,
    wait_in_message,
)

K = ProblemKind


def oai(message: str, etype: str | None = None, code: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def ant(etype: str, message: str = "x") -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}


def zai(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "z.ai says no"}}


def minimax(code: int) -> dict[str, Any]:
    return {"id": "x", "choices": [], "base_resp": {"status_code": code, "status_msg": "minimax says no"}}


TABLE: list[tuple[str, int | None, Any, ProblemKind]] = [
    # OpenAI: a 429 is a quota or a rate limit depending on the body
    ("openai insufficient_quota 429", 429, oai("You exceeded your current quota", "insufficient_quota",
                                                 "insufficient_quota"), K.BILLING),
    ("openai rate_limit_exceeded 429", 429, oai("Rate limit reached", "requests", "rate_limit_exceeded"),
     K.RATE_LIMIT),
    ("openai invalid_api_key 401", 401, oai("Incorrect API key", "invalid_request_error", "invalid_api_key"),
     K.AUTH),
    ("openai 401 generic code", 401, oai("no key", "invalid_request_error", None), K.AUTH),
    ("openai region 403", 403, oai("Country not supported", "request_forbidden",
                                   "unsupported_country_region_territory"), K.PERMISSION),
    ("openai model_not_found 404", 404, oai("The model `x` does not exist", "invalid_request_error",
                                            "model_not_found"), K.MODEL_NOT_FOUND),
    ("openai context_length_exceeded 400", 400, oai("maximum context length is 128000 tokens",
                                                    "invalid_request_error", "context_length_exceeded"),
     K.CONTEXT_LENGTH),
    ("openai 400 generic", 400, oai("temperature out of range", "invalid_request_error", None), K.BAD_REQUEST),
    ("openai 500", 500, oai("The server had an error", "server_error", None), K.SERVER_ERROR),
    ("openai 503 overloaded", 503, oai("The engine is currently overloaded", "server_error", None), K.OVERLOADED),
    # Z.AI: string codes beat the status
    ("zai 1113 (429)", 429, zai("1113"), K.BILLING),
    ("zai 1302 (429)", 429, zai("1302"), K.RATE_LIMIT),
    ("zai 1303 (429)", 429, zai("1303"), K.RATE_LIMIT),
    ("zai 1304 (429)", 429, zai("1304"), K.RATE_LIMIT),
    ("zai 1305 (429)", 429, zai("1305"), K.OVERLOADED),
    ("zai 1308 (429)", 429, zai("1308"), K.BILLING),
    ("zai 1309 (429)", 429, zai("1309"), K.BILLING),
    ("zai 1310 (429)", 429, zai("1310"), K.BILLING),
    ("zai 1211 (400)", 400, zai("1211"), K.MODEL_NOT_FOUND),
    ("zai 1261 (400)", 400, zai("1261"), K.CONTEXT_LENGTH),
    ("zai 1301 (400)", 400, zai("1301"), K.CONTENT_FILTER),
    ("zai 1000 (401)", 401, zai("1000"), K.AUTH),
    # MiniMax: inside an HTTP 200
    ("minimax 1002 in 200", None, minimax(1002), K.RATE_LIMIT),
    ("minimax 1004 in 200", None, minimax(1004), K.AUTH),
    ("minimax 1008 in 200", None, minimax(1008), K.BILLING),
    ("minimax 1026 in 200", None, minimax(1026), K.CONTENT_FILTER),
    ("minimax 1001 in 200", None, minimax(1001), K.TIMEOUT),
    ("minimax 1024 in 200", None, minimax(1024), K.SERVER_ERROR),
    # DashScope
    ("dashscope Arrearage 403", 403, {"error": {"code": "Arrearage", "message": "Access denied",
                                                "type": "Arrearage"}}, K.BILLING),
    ("dashscope InvalidApiKey 401", 401, {"error": {"code": "InvalidApiKey", "message": "bad"}}, K.AUTH),
    ("dashscope Throttling.RateQuota 429", 429, {"error": {"code": "Throttling.RateQuota", "message": "x"}},
     K.RATE_LIMIT),
    ("dashscope insufficient_quota 429", 429, {"error": {"code": "insufficient_quota", "message": "x"}}, K.BILLING),
    # DeepSeek: the 402 carries a generic code; the status decides
    ("deepseek 402", 402, oai("Insufficient Balance", "unknown_error", "invalid_request_error"), K.BILLING),
    ("deepseek 422", 422, oai("Invalid Parameters", "invalid_request_error", "invalid_request_error"),
     K.BAD_REQUEST),
    # Anthropic
    ("anthropic 402 billing_error", 402, ant("billing_error", "credit balance is too low"), K.BILLING),
    ("anthropic 413 request_too_large", 413, ant("request_too_large"), K.CONTEXT_LENGTH),
    ("anthropic 529 overloaded_error", 529, ant("overloaded_error", "Overloaded"), K.OVERLOADED),
    ("anthropic 429 rate_limit_error", 429, ant("rate_limit_error"), K.RATE_LIMIT),
    ("anthropic 401", 401, ant("authentication_error"), K.AUTH),
    ("anthropic 403", 403, ant("permission_error"), K.PERMISSION),
    ("anthropic 404", 404, ant("not_found_error", "model: claude-x"), K.MODEL_NOT_FOUND),
    ("anthropic 400", 400, ant("invalid_request_error", "messages: Field required"), K.BAD_REQUEST),
    ("anthropic 400 prompt too long", 400, ant("invalid_request_error", "prompt is too long: 210000 tokens"),
     K.CONTEXT_LENGTH),
    ("anthropic 500", 500, ant("api_error"), K.SERVER_ERROR),
    ("anthropic 504", 504, ant("timeout_error"), K.TIMEOUT),
    ("anthropic error event in a 200 stream", None, ant("overloaded_error", "Overloaded"), K.OVERLOADED),
    ("anthropic invalid_request in a 200 stream", None, ant("invalid_request_error", "bad"), K.BAD_REQUEST),
    # Moonshot: its 429 "engine overloaded" is an overload
    ("moonshot 429 overloaded", 429, {"error": {"message": "The engine is currently overloaded, please try "
                                                "again later", "type": "engine_overloaded_error"}}, K.OVERLOADED),
    ("moonshot 429 overloaded, unknown type", 429, {"error": {"message": "engine is overloaded",
                                                              "type": "whatever"}}, K.OVERLOADED),
    ("moonshot 429 rate limit", 429, {"error": {"message": "max request rate: 3",
                                                "type": "rate_limit_reached_error"}}, K.RATE_LIMIT),
    ("moonshot 400 content_filter", 400, {"error": {"message": "high risk", "type": "content_filter"}},
     K.CONTENT_FILTER),
    # OpenRouter: int codes, errors inside 200 streams, moderation as a 403
    ("openrouter 402", 402, {"error": {"code": 402, "message": "Insufficient credits"}}, K.BILLING),
    ("openrouter 403 moderation", 403, {"error": {"code": 403, "message": "Your input was flagged",
                                                  "metadata": {"reasons": ["harassment"],
                                                               "flagged_input": "…"}}}, K.CONTENT_FILTER),
    ("openrouter 502", 502, {"error": {"code": 502, "message": "Provider returned error"}}, K.SERVER_ERROR),
    ("openrouter error chunk in a 200 stream", None, {"code": 502, "message": "upstream disconnected"},
     K.SERVER_ERROR),
    ("openrouter 429 chunk in a 200 stream", None, {"code": 429, "message": "slow down"}, K.RATE_LIMIT),
    # Bodies that are not any provider's
    ("HTML 502 from a proxy", 502, "<!DOCTYPE html><html><body>Bad Gateway</body></html>", K.SERVER_ERROR),
    ("HTML 403 from a proxy", 403, "<html><head><title>Forbidden</title></head></html>", K.PERMISSION),
    ("empty 500", 500, "", K.SERVER_ERROR),
    ("wrong base URL 404", 404, {"error": {"message": "Unknown request URL: POST /chat/completions",
                                           "type": "invalid_request_error", "code": "unknown_url"}}, K.CONFIG),
    ("unknown status 418", 418, None, K.BAD_REQUEST),
    ("unknown 5xx 599", 599, None, K.SERVER_ERROR),
]


@pytest.mark.parametrize(("status", "body", "kind"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_classifier_table(status: int | None, body: Any, kind: ProblemKind) -> None:
    assert classify(status, body).kind is kind


def test_body_code_beats_status_in_every_direction() -> None:
    # the same 429 is billing, rate-limit or overloaded depending on the body alone
    assert classify(429, zai("1113")).kind is K.BILLING
    assert classify(429, zai("1302")).kind is K.RATE_LIMIT
    assert classify(429, zai("1305")).kind is K.OVERLOADED
    # and a JSON body given as text is read the same way
    assert classify(429, '{"error": {"code": "insufficient_quota", "message": "quota"}}').kind is K.BILLING


def test_detail_request_id_and_html() -> None:
    err = classify(529, ant("overloaded_error", "Overloaded"), {"request-id": "req_abc"})
    assert (err.detail, err.request_id, err.status, err.code) == ("Overloaded", "req_abc", 529, "overloaded_error")
    page = classify(502, "<!DOCTYPE html>\n<html><body><h1>Bad Gateway</h1>" + "x" * 5000 + "</body></html>")
    assert "HTML page" in page.detail and "<" not in page.detail
    assert is_html("  <!doctype html><html>") and not is_html('{"error": "<b>"}') and not is_html(None)


def test_keys_echoed_by_a_provider_are_redacted() -> None:
    key = "test-key-echoed-12345"
    err = classify(401, oai(f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key"),
                   secrets=(key,))
    assert key not in err.detail and "[redacted]" in err.detail
    # anything shaped like a real key is masked even when we did not know it
    assert "sk-ant-" not in redact("the key sk-ant-test-not-a-real-key was refused")
    assert "Bearer" not in redact("header Authorization: Bearer abcdefghijklmnopqrstuvwx")


NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "wait"), [
    ({"retry-after-ms": "350"}, 0.35),
    ({"Retry-After": "12"}, 12.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30.0),
    ({"retry-after": format_datetime(NOW - timedelta(seconds=30), usegmt=True)}, 0.0),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the most precise header wins
    ({"x-ms-retry-after-ms": "1500"}, 1.5),
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m2s",
      "x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "6ms"}, 62.0),
    ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "250ms"}, 0.25),
    ({"anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": (NOW + timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
      "anthropic-ratelimit-tokens-remaining": "900",
      "anthropic-ratelimit-tokens-reset": (NOW + timedelta(seconds=50)).strftime("%Y-%m-%dT%H:%M:%SZ")}, 20.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "inf"}, None),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "-5"}, 0.0),
    ({"retry-after": "99999999"}, 99_999_999.0),  # never cut short: the router refuses it and says so
    ({"retry-after-ms": "276480000"}, 276_480.0),  # 3.2 days, not one
    # OpenRouter's X-RateLimit-Reset is epoch milliseconds; others send epoch seconds or a duration
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((NOW.timestamp() + 42) * 1000))}, 42.0),
    ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW.timestamp()) + 3600)}, 3600.0),
    ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "17"}, 17.0),
    ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int((NOW.timestamp() - 5) * 1000))}, 0.0),
    ({"x-ratelimit-remaining": "3", "x-ratelimit-reset": str(int((NOW.timestamp() + 42) * 1000))}, None),
    ({}, None),
])
def test_retry_after_headers(headers: dict[str, str], wait: float | None) -> None:
    found = retry_after_seconds(headers, now=NOW)
    assert found == (pytest.approx(wait) if wait is not None else None)


@pytest.mark.parametrize(("text", "seconds"), [
    ("6ms", 0.006), ("1m2s", 62.0), ("0.5s", 0.5), ("2h", 7200.0), ("17", 17.0), ("1m2.5s", 62.5),
    ("", None), ("soon", None), ("5 s", None), ("1x", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    found = parse_duration(text)
    assert found == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(("message", "seconds"), [
    ("Please try again in 1.574s. Visit https://platform.openai.com/account/rate-limits", 1.574),
    ("Limit: 10000 / min. Please try again in 6ms. Contact us", 0.006),
    ("request reached organization max RPM: 20, please try again after 1 seconds", 1.0),
    ("No deployments available for selected model, Try again in 60 seconds.", 60.0),
    ("Rate limited. Please retry after 2 minutes", 120.0),
    ("Rate limit reached for requests", None),
])
def test_a_wait_stated_only_in_the_message_is_read(message: str, seconds: float | None) -> None:
    assert wait_in_message(message) == (pytest.approx(seconds) if seconds is not None else None)
    err = classify(429, {"error": {"message": message, "type": "rate_limit_error"}}, {})
    assert err.retry_after == (pytest.approx(seconds) if seconds is not None else None)


def test_a_header_wait_beats_the_message_and_a_gateway_body_repeats_headers() -> None:
    body = {"error": {"message": "Rate limit exceeded: limit_rpm/x. Please try again in 30 seconds", "code": 429,
                      "metadata": {"headers": {"X-RateLimit-Limit": "8", "X-RateLimit-Remaining": "0",
                                               "X-RateLimit-Reset": str(int((NOW.timestamp() + 9) * 1000))}}}}
    assert classify(429, body, {}, now=NOW).retry_after == pytest.approx(9.0)
    assert classify(429, body, {"retry-after": "4"}, now=NOW).retry_after == 4.0


@pytest.mark.parametrize(("message", "family", "at"), [
    ("usage limit exceeded, 5-hour usage limit reached for Token Plan Starter (0/0 used), resets at "
     "2026-05-15T15:00:00Z (2056)", "minimax", "2026-05-15T15:00:00+00:00"),
    ("Usage limit reached for 5 hour. Your limit will reset at 2026-09-09 05:38:28", "zai",
     "2026-09-09T05:38:28+08:00"),
    ("You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC.", "",
     "2026-04-01T00:00:00+00:00"),
    ("Insufficient balance or no resource package. Please recharge.", "zai", None),
])
def test_when_a_billing_limit_resets(message: str, family: str, at: str | None) -> None:
    found = reset_in_message(message, family)
    assert found == (datetime.fromisoformat(at) if at else None)


def test_provider_specific_meanings_follow_the_family() -> None:
    quota = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota, please check "
                                                                "your plan and billing details."}}
    assert classify(429, quota, origin=Origin("openai", "openai")).kind is K.BILLING
    assert classify(429, quota, origin=Origin("qwen", "openai")).kind is K.RATE_LIMIT  # DashScope: TPM
    assert classify(429, quota).kind is K.BILLING  # unknown provider: OpenAI's meaning
    pulled = {"error": {"message": 'model "x" not found, try pulling it first', "type": "api_error"}}
    assert classify(404, pulled, origin=Origin("ollama", "openai")).kind is K.MODEL_NOT_FOUND
    balance = {"type": "error", "error": {"type": "api_error", "message": "insufficient balance (1008)"}}
    assert classify(500, balance, origin=Origin("minimax", "anthropic")).kind is K.BILLING
    assert classify(500, {"type": "error", "error": {"type": "api_error", "message": "internal error (1024)"}},
                    origin=Origin("minimax", "anthropic")).kind is K.SERVER_ERROR


def test_plain_string_bodies_keep_their_words() -> None:
    err = classify(404, '{"error": "model \'llama3\' not found"}')
    assert (err.kind, err.detail) == (K.MODEL_NOT_FOUND, "model 'llama3' not found")
    assert classify(403, {"error": "Forbidden"}).detail == "Forbidden"


def test_gateway_envelopes_are_opened() -> None:
    raw = json.dumps({"error": {"message": "is suspended due to insufficient balance",
                                "type": "exceeded_current_quota_error"}})
    wrapped = {"error": {"message": "Provider returned error", "code": 429, "metadata": {"raw": raw}}}
    err = classify(429, wrapped)
    assert (err.kind, err.code, err.detail) == (K.BILLING, "exceeded_current_quota_error",
                                                "is suspended due to insufficient balance")
    litellm = ('litellm.BadRequestError: AnthropicException - {"type":"error","error":{"type":'
               '"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}')
    assert classify(400, {"error": {"message": litellm}}).kind is K.CONTEXT_LENGTH


def test_exhausted_windows_pace_the_next_request() -> None:
    assert exhausted_until({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "1s"}) is None
    assert exhausted_until({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}) == 2.0
    assert exhausted_until({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m"}) == 60.0
    assert exhausted_until({"x-ratelimit-remaining-requests": "0"}) == 1.0  # zero left, no reset: a second
    reset = (NOW + timedelta(seconds=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert exhausted_until({"anthropic-ratelimit-output-tokens-remaining": "0",
                            "anthropic-ratelimit-output-tokens-reset": reset}, now=NOW) == 8.0
    assert exhausted_until({"anthropic-ratelimit-requests-remaining": "3"}, now=NOW) is None


def test_problem_json_is_the_contract_shape() -> None:
    problem = Problem(K.RATE_LIMIT, "m", phase="plan", provider="p", model="x", retry_after_seconds=12.3456,
                      retry_at="2026-11-03T12:00:12+00:00", key_env="P_KEY", partial_text="half a plan")
    out = problem.to_json()
    assert out == {"kind": "rate-limit", "message": "m", "phase": "plan", "provider": "p", "model": "x",
                   "retryAfterSeconds": 12.346, "retryAt": "2026-11-03T12:00:12+00:00", "keyEnv": "P_KEY"}
    assert Problem.from_json(out).kind is K.RATE_LIMIT


def test_families_and_billing_pages_come_from_the_catalogue() -> None:
    from phasewise.providers.catalogue import ProviderSpec, billing_url_of, builtin, family_of

    def spec(provider: str) -> ProviderSpec:
        found = builtin(provider)
        assert found is not None
        return found

    assert [family_of(spec(p)) for p in ("zhipu", "zai-anthropic", "minimax-anthropic", "qwen", "ollama")] == [
        "zai", "zai", "minimax", "qwen", "ollama"]
    # a provider of your own at a catalogue provider's host reads that provider's errors
    assert family_of(ProviderSpec("mine", "openai", "https://dashscope.aliyuncs.com/compatible-mode/v1")) == "qwen"
    assert family_of(ProviderSpec("mine", "openai", "http://127.0.0.1:9999/v1")) == ""
    assert billing_url_of(spec("anthropic")).startswith("https://console.anthropic.com/")
    assert billing_url_of(spec("openrouter")) == "https://openrouter.ai/settings/credits"
    assert billing_url_of(spec("qwen")) == ""  # not known: not invented


def test_billing_problems_name_the_billing_page_and_when_a_plan_comes_back() -> None:
    from phasewise.router.messages import clock_time, provider_problem, seconds_text

    now = datetime(2026, 5, 15, 12, 0, 0, tzinfo=UTC)
    credit = classify(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit "
                            "balance is too low to access the Anthropic API."}})
    problem = provider_problem(credit, phase="plan", provider="anthropic", provider_name="Anthropic",
                               model="claude-sonnet-4-5", key_env="ANTHROPIC_API_KEY", now=now,
                               billing_url="https://console.anthropic.com/settings/billing")
    assert problem.kind is K.BILLING and problem.retry_at is None
    assert "Retrying will not help" in problem.message
    assert "https://console.anthropic.com/settings/billing" in problem.message
    window = classify(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "usage limit exceeded, "
                            "5-hour usage limit reached for Token Plan Starter (0/0 used), resets at "
                            "2026-05-15T15:00:00Z (2056)"}}, origin=Origin("minimax", "anthropic"))
    problem = provider_problem(window, phase="code", provider="minimax-anthropic", provider_name="MiniMax",
                               model="MiniMax-M2", key_env="MINIMAX_API_KEY", now=now)
    assert "plan's allowance is used up" in problem.message and "in 3 h" in problem.message, problem.message
    assert problem.retry_at is not None and datetime.fromisoformat(problem.retry_at) == datetime(
        2026, 5, 15, 15, 0, tzinfo=UTC)
    assert [seconds_text(s) for s in (0.2, 12, 245, 7 * 3600 + 720, 3.2 * 86400)] == [
        "200 ms", "12 s", "4 min 5 s", "7 h 12 min", "3 d 5 h"]
    assert len(clock_time(30, now)) == 8 and clock_time(2 * 86400, now).startswith("2026-05-17")
