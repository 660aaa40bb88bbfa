"""How the simulator fails on purpose: fault rules, and the providers' documented error replies.

A rule says which requests it applies to (provider name, model, protocol, phase, endpoint) and
how many times; the first matching rule in arrival order is consumed. Its ``fault`` is a preset
name (``openai.rate_limit``, ``zai.1113``, ...), a raw reply (``status``/``headers``/``body``),
a stream fault after a 200 (``error_event``, ``cut``, ``stall``, ``html``, ``empty``,
``garbage``), an answer stopped at an output limit (``cut_at_tokens``: the answer ends after that
many tokens with the protocol's stop reason for the limit, ``length`` or ``max_tokens``), a delay
before the headers, or closing the socket. Facts about each provider's status, body and headers
come from ``shared/reference/providers.md``.

A recorded answer replays as it was received: ``replay(status, body, headers)`` (a case of
``tests/data/provider_errors.jsonl``) is a raw reply whose body goes out byte for byte, a JSON
body recorded as text with ``application/json`` (``content_type`` overrides), and an error that
arrived inside a 200 answer (status ``None``) as a 200 carrying it.

Any rule may set ``echo_key`` to put the request's key into its error message, as providers do
("Incorrect API key provided: sk-…"; presets ``openai.invalid_api_key_echo`` and
``anthropic.authentication_error_echo``), to check that nothing downstream repeats it. Besides
rules, ``Simulator.set_fault_mix(rate, faults, seed=…)`` (``POST /_sim/mix``) fails a seeded
random share of requests with faults drawn from a list, for soaks; ``fault_mix_counts()`` says
which were injected.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar

from phasewise.serial import Jsonable

PROTOCOLS = ("openai", "anthropic")
ENDPOINTS = ("chat", "models", "any")
STREAM_FAULTS = ("error_event", "cut", "stall", "html", "empty", "garbage")

HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>\n"
    "<h1>Bad Gateway</h1>\n<p>The proxy server received an invalid response from an upstream server.</p>\n"
    "<hr><address>corporate-proxy (simulated by Phasewise)</address>\n</body></html>\n"
)
GARBAGE = b"\x00\x1f\x8b<<not json at all>> \xff\xfe{\"choices\": [ ... truncated"


@dataclass(slots=True)
class FaultContext:
    """What a preset may need to know about the request it fails."""

    model: str | None
    protocol: str | None
    request_id: str
    prompt_tokens: int = 0
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # the key the request carried: only for faults that echo it back, as some providers do
    api_key: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class Reply:
    """A complete HTTP reply standing in for the answer (an error status, or a 200 body)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FaultPlan:
    """One fault resolved against one request: what the server does instead of answering."""

    name: str
    delay_ms: float = 0.0
    close: bool = False
    reply: Reply | None = None
    stream: str | None = None
    after_chunks: int = 0
    error_payload: dict[str, Any] | None = None  # the SSE data of an error_event (either protocol)
    first_line: dict[str, Any] | None = None  # a chunk sent before any content (MiniMax base_resp)
    abrupt: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)
    comment: str | None = None  # an SSE comment line sent first (OpenRouter keep-alives)
    cut_at_tokens: int | None = None  # the answer stops at this output limit, whatever max_tokens asked


@dataclass(slots=True)
class FaultRule(Jsonable):
    """A queued fault and the requests it applies to (``None`` matches anything)."""

    __json_case__: ClassVar[str] = "snake"

    fault: dict[str, Any]
    provider: str | None = None
    model: str | None = None
    protocol: str | None = None
    phase: str | None = None
    endpoint: str = "chat"
    times: int = 1
    hits: int = 0
    skip: int = 0  # matching requests let through before the fault applies (step 3 of a loop: skip 2)

    def matches(self, provider: str, model: str | None, protocol: str | None, phase: str | None,
                endpoint: str) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.model is None or self.model == model)
            and (self.protocol is None or self.protocol == protocol)
            and (self.phase is None or self.phase == phase)
            and (self.endpoint == "any" or self.endpoint == endpoint)
        )


# --------------------------------------------------------------------------- bodies


def _openai_error(message: str, etype: str | None, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def anthropic_error(etype: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}


def _zai_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(params: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = params.get(key, default)
    if value is None:
        return None
    return float(value)


def _seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --------------------------------------------------------------------------- presets

Preset = Callable[[Mapping[str, Any], FaultContext], FaultPlan]


def _reply(name: str, status: int, body: Any, headers: dict[str, str] | None = None) -> FaultPlan:
    return FaultPlan(name=name, reply=Reply(status, body, dict(headers or {})))


def _openai_rate_limit(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
    kind = str(p.get("kind", "requests"))
    limit = int(p.get("limit", 500 if kind == "requests" else 30000))
    reset = str(p.get("reset_requests", "1s"))
    reset_tokens = str(p.get("reset_tokens", "6ms" if kind == "requests" else reset))
    model = ctx.model or "gpt-sim"
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    wait = _num(p, "retry_after", 1.0)
    body = _openai_error(
        f"Rate limit reached for {model} in organization org-simulated on {unit}: Limit {limit}, "
        f"Used {limit}, Requested 1. Please try again in {reset}. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        kind, "rate_limit_exceeded",
    )
    headers = {
        "x-ratelimit-limit-requests": str(limit if kind == "requests" else 500),
        "x-ratelimit-remaining-requests": "0" if kind == "requests" else "499",
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(limit if kind == "tokens" else 30000),
        "x-ratelimit-remaining-tokens": "0" if kind == "tokens" else "29000",
        "x-ratelimit-reset-tokens": reset_tokens,
    }
    if p.get("retry_after_date") is not None:
        when = p["retry_after_date"]
        if isinstance(when, int | float):
            when = format_datetime(ctx.now + timedelta(seconds=float(when)), usegmt=True)
        headers["retry-after"] = str(when)
    elif wait is not None:
        headers["retry-after"] = _seconds_text(wait)
    if p.get("retry_after_ms") is not None:
        headers["retry-after-ms"] = _seconds_text(float(p["retry_after_ms"]))
    return _reply("openai.rate_limit", 429, body, headers)


def _anthropic_rate_limit(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
    wait = _num(p, "retry_after", 1.0)
    reset_in = _num(p, "reset_in", wait if wait is not None else 1.0) or 0.0
    reset_at = _rfc3339(ctx.now + timedelta(seconds=reset_in))
    body = anthropic_error(
        "rate_limit_error",
        "This request would exceed the rate limit for your organization (simulated) of 50 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
        ctx.request_id,
    )
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset_at,
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "40000",
        "anthropic-ratelimit-tokens-reset": reset_at,
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
        "anthropic-ratelimit-input-tokens-reset": reset_at,
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-output-tokens-reset": reset_at,
    }
    if wait is not None:
        headers["retry-after"] = _seconds_text(wait)
    return _reply("anthropic.rate_limit_error", 429, body, headers)


def _anthropic(etype: str, status: int, message: str) -> Preset:
    def build(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
        text = str(p.get("message", message)).replace("{model}", ctx.model or "claude-sim")
        headers = {}
        if p.get("retry_after") is not None:
            headers["retry-after"] = _seconds_text(float(p["retry_after"]))
        return _reply(f"anthropic.{etype}", status, anthropic_error(etype, text, ctx.request_id), headers)

    return build


def _anthropic_as(name: str, etype: str, status: int, message: str) -> Preset:
    """An Anthropic error under a preset name of its own (the same type means different things)."""
    inner = _anthropic(etype, status, message)

    def build(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
        plan = inner(p, ctx)
        plan.name = name
        return plan

    return build


def _openai_like(name: str, status: int, message: str, etype: str | None, code: str | None,
                 param: str | None = None) -> Preset:
    def build(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
        text = str(p.get("message", message)).replace("{model}", ctx.model or "unknown")
        text = text.replace("{tokens}", str(max(ctx.prompt_tokens, 128001)))
        headers = {}
        if p.get("retry_after") is not None:
            headers["retry-after"] = _seconds_text(float(p["retry_after"]))
        return _reply(name, status, _openai_error(text, etype, code, param), headers)

    return build


def _plain(name: str, status: int, body: dict[str, Any]) -> Preset:
    def build(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
        headers = {}
        if p.get("retry_after") is not None:
            headers["retry-after"] = _seconds_text(float(p["retry_after"]))
        out = copy.deepcopy(body)
        if "message" in p and isinstance(out.get("error"), dict):
            out["error"]["message"] = str(p["message"])
        return _reply(name, status, out, headers)

    return build


def _zai(code: str, status: int, message: str) -> Preset:
    # Z.AI sends no retry-after (1302 is documented without one); a test may still ask for one.
    return _plain(f"zai.{code}", status, _zai_error(code, message))


_MINIMAX_MESSAGES = {
    1000: "unknown error", 1001: "request timeout", 1002: "rate limit exceeded(RPM)",
    1004: "login fail: Please carry the API secret key in the 'Authorization' field of the request header",
    1008: "insufficient balance", 1013: "internal service error", 1024: "internal error",
    1026: "input new_sensitive", 1027: "output new_sensitive", 1039: "token limit exceeded",
    2013: "invalid params", 2049: "invalid api key",
}


def _minimax(code: int) -> Preset:
    def build(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
        msg = str(p.get("message", _MINIMAX_MESSAGES.get(code, "error")))
        line = {
            "id": f"sim-{ctx.request_id}", "object": "chat.completion.chunk", "created": int(ctx.now.timestamp()),
            "model": ctx.model or "minimax-sim", "choices": [],
            "base_resp": {"status_code": code, "status_msg": msg},
        }
        # HTTP 200: the error lives in the body (non-stream) or the first SSE line (stream).
        return FaultPlan(name=f"minimax.{code}", first_line=line)

    return build


def _openrouter_stream_error(p: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
    code = int(p.get("code", 502))
    payload = {
        "id": f"gen-sim-{ctx.request_id}", "object": "chat.completion.chunk", "created": int(ctx.now.timestamp()),
        "model": ctx.model or "openrouter/sim", "provider": "SimUpstream",
        "error": {"code": code, "message": str(p.get("message", "Provider returned error: upstream disconnected"))},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}],
    }
    return FaultPlan(name="openrouter.stream_error", stream="error_event", after_chunks=int(p.get("after_chunks", 2)),
                     error_payload=payload, comment="OPENROUTER PROCESSING")


PRESETS: dict[str, Preset] = {
    # OpenAI
    "openai.invalid_api_key": _openai_like(
        "openai.invalid_api_key", 401,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error", "invalid_api_key"),
    "openai.insufficient_quota": _openai_like(
        "openai.insufficient_quota", 429,
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota", "insufficient_quota"),
    "openai.rate_limit": _openai_rate_limit,
    "openai.model_not_found": _openai_like(
        "openai.model_not_found", 404, "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error", "model_not_found"),
    "openai.context_length": _openai_like(
        "openai.context_length", 400,
        "This model's maximum context length is 128000 tokens. However, your messages resulted in {tokens} "
        "tokens. Please reduce the length of the messages.",
        "invalid_request_error", "context_length_exceeded", "messages"),
    "openai.server_error": _openai_like(
        "openai.server_error", 500,
        "The server had an error while processing your request. Sorry about that!", "server_error", None),
    "openai.overloaded": _openai_like(
        "openai.overloaded", 503, "The engine is currently overloaded, please try again later.",
        "server_error", None),
    "openai.region": _openai_like(
        "openai.region", 403, "Country, region, or territory not supported", "request_forbidden",
        "unsupported_country_region_territory"),
    # Providers that echo the rejected key back ("Incorrect API key provided: sk-abc…"): the
    # server must mask it everywhere it could show up.
    "openai.invalid_api_key_echo": _openai_like(
        "openai.invalid_api_key_echo", 401,
        "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error", "invalid_api_key"),
    "anthropic.authentication_error_echo": _anthropic("authentication_error", 401, "invalid x-api-key: {key}"),
    # Anthropic
    "anthropic.invalid_request_error": _anthropic("invalid_request_error", 400, "messages: Field required"),
    "anthropic.authentication_error": _anthropic("authentication_error", 401, "invalid x-api-key"),
    "anthropic.billing_error": _anthropic(
        "billing_error", 402,
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade "
        "or purchase credits."),
    # what Anthropic really sends when the credit runs out: a 400, not the documented 402
    "anthropic.credit_balance": _anthropic_as(
        "anthropic.credit_balance", "invalid_request_error", 400,
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade "
        "or purchase credits."),
    "anthropic.permission_error": _anthropic(
        "permission_error", 403, "Your API key does not have permission to use the specified resource."),
    "anthropic.not_found_error": _anthropic("not_found_error", 404, "model: {model}"),
    "anthropic.request_too_large": _anthropic(
        "request_too_large", 413, "Request exceeds the maximum allowed number of bytes."),
    "anthropic.rate_limit_error": _anthropic_rate_limit,
    "anthropic.api_error": _anthropic("api_error", 500, "Internal server error"),
    "anthropic.timeout_error": _anthropic("timeout_error", 504, "Request timed out"),
    "anthropic.overloaded_error": _anthropic("overloaded_error", 529, "Overloaded"),
    # Z.AI / Zhipu (string codes; statuses partly unverified, see providers.md)
    "zai.1000": _zai("1000", 401, "Authentication failed."),
    "zai.1001": _zai("1001", 401, "Authentication parameter not received in the request header."),
    "zai.1002": _zai("1002", 401, "Invalid authentication token; please check the token."),
    "zai.1003": _zai("1003", 401, "The authentication token has expired; please create a new one."),
    "zai.1004": _zai("1004", 401, "Authentication failed with the provided token."),
    "zai.1113": _zai("1113", 429, "Your account is in arrears; please recharge and try again."),
    "zai.1211": _zai("1211", 400, "Unknown model; please check the model code."),
    "zai.1261": _zai("1261", 400, "Prompt exceeds the maximum length."),
    "zai.1301": _zai("1301", 400,
                     "The system detected potentially unsafe or sensitive content in the input or generation."),
    "zai.1302": _zai("1302", 429, "High concurrency usage of this API; please reduce concurrency."),
    "zai.1303": _zai("1303", 429, "High frequency usage of this API; please reduce the request rate."),
    "zai.1304": _zai("1304", 429, "The daily call limit for this API has been reached."),
    "zai.1305": _zai("1305", 429, "The service may be temporarily overloaded; please try again later."),
    "zai.1308": _zai("1308", 429, "Usage limit reached for the 5-hour window of your plan."),
    "zai.1309": _zai("1309", 429, "Your GLM Coding Plan package has expired."),
    "zai.1310": _zai("1310", 429, "Weekly/monthly limit of your plan exhausted."),
    # DeepSeek (OpenAI-shaped; the 402 really carries code "invalid_request_error")
    "deepseek.insufficient_balance": _plain("deepseek.insufficient_balance", 402, _openai_error(
        "Insufficient Balance", "unknown_error", "invalid_request_error")),
    "deepseek.invalid_params": _plain("deepseek.invalid_params", 422, _openai_error(
        "Invalid Parameters: max_tokens must be less than or equal to 8192", "invalid_request_error",
        "invalid_request_error")),
    "deepseek.rate_limit": _plain("deepseek.rate_limit", 429, _openai_error(
        "Rate Limit Reached", "rate_limit_error", "rate_limit_exceeded")),
    "deepseek.overloaded": _plain("deepseek.overloaded", 503, _openai_error(
        "Server overloaded, please retry shortly.", "server_error", None)),
    # Qwen / DashScope compatible mode
    "qwen.InvalidApiKey": _plain("qwen.InvalidApiKey", 401, {
        "error": {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "param": None,
                  "type": "InvalidApiKey"}, "request_id": "sim-qwen"}),
    "qwen.Arrearage": _plain("qwen.Arrearage", 400, {
        "error": {"code": "Arrearage", "message": "Access denied, please make sure your account is in good "
                  "standing.", "param": None, "type": "Arrearage"}, "request_id": "sim-qwen"}),
    "qwen.ModelNotFound": _plain("qwen.ModelNotFound", 404, {
        "error": {"code": "ModelNotFound", "message": "Model not found (or you have no access to it).",
                  "param": None, "type": "ModelNotFound"}, "request_id": "sim-qwen"}),
    "qwen.Throttling.RateQuota": _plain("qwen.Throttling.RateQuota", 429, {
        "error": {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded, please try again "
                  "later.", "param": None, "type": "Throttling.RateQuota"}, "request_id": "sim-qwen"}),
    "qwen.insufficient_quota": _plain("qwen.insufficient_quota", 429, {
        "error": {"code": "insufficient_quota", "message": "You exceeded your current quota, please check your "
                  "plan and billing details.", "param": None, "type": "insufficient_quota"},
        "request_id": "sim-qwen"}),
    # Moonshot (Kimi)
    "moonshot.overloaded": _plain("moonshot.overloaded", 429, {"error": {
        "message": "The engine is currently overloaded, please try again later", "type": "engine_overloaded_error"}}),
    "moonshot.content_filter": _plain("moonshot.content_filter", 400, {"error": {
        "message": "The request was rejected because it was considered high risk", "type": "content_filter"}}),
    "moonshot.invalid_authentication": _plain("moonshot.invalid_authentication", 401, {"error": {
        "message": "Invalid Authentication", "type": "invalid_authentication_error"}}),
    "moonshot.rate_limit": _plain("moonshot.rate_limit", 429, {"error": {
        "message": "Your account reached max request rate: 3, please try again after 1 seconds",
        "type": "rate_limit_reached_error"}}),
    # OpenRouter
    "openrouter.credits": _plain("openrouter.credits", 402, {"error": {
        "code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
        "metadata": None}}),
    "openrouter.moderation": _plain("openrouter.moderation", 403, {"error": {
        "code": 403, "message": "openai/gpt-sim requires moderation on OpenAI. Your input was flagged for "
        "\"harassment\". No credits were charged.",
        "metadata": {"reasons": ["harassment"], "flagged_input": "…", "provider_name": "OpenAI",
                     "model_slug": "openai/gpt-sim"}}}),
    "openrouter.model_down": _plain("openrouter.model_down", 502, {"error": {
        "code": 502, "message": "Provider returned error",
        "metadata": {"provider_name": "SimUpstream", "raw": "upstream connect error"}}}),
    "openrouter.no_provider": _plain("openrouter.no_provider", 503, {"error": {
        "code": 503, "message": "No allowed providers are available for the selected model.", "metadata": None}}),
    "openrouter.stream_error": _openrouter_stream_error,
}
PRESETS.update({f"minimax.{code}": _minimax(code) for code in _MINIMAX_MESSAGES})


def preset_names() -> list[str]:
    return sorted(PRESETS)


def replay(status: int | None, body: Any, headers: Mapping[str, str] | None = None,
           content_type: str | None = None) -> dict[str, Any]:
    """A fault answering exactly what a provider once sent: status (None: an error found inside
    a 200 answer, sent as a 200), headers and body as recorded (JSON, or text as it came)."""
    fault: dict[str, Any] = {"status": 200 if status is None else status, "headers": dict(headers or {}),
                             "body": body}
    if content_type is not None:
        fault["content_type"] = content_type
    return normalise_fault(fault)


# --------------------------------------------------------------------------- normalising

_RULE_KEYS = frozenset({"provider", "model", "protocol", "phase", "endpoint", "times", "skip"})
_FAULT_KEYS = frozenset({
    "preset", "status", "headers", "body", "stream", "after_chunks", "error_type", "message", "error",
    "delay_ms", "close", "abrupt", "ratelimit_headers", "retry_after", "retry_after_ms", "retry_after_date",
    "reset_requests", "reset_tokens", "reset_in", "kind", "limit", "code", "content_type", "echo_key",
    "cut_at_tokens",
})


def normalise_fault(fault: str | Mapping[str, Any] | None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fault as a plain dict, checked now so a typo fails when queued, not when hit."""
    out: dict[str, Any] = {}
    if isinstance(fault, str):
        out["preset"] = fault
    elif isinstance(fault, Mapping):
        out.update(fault)
    elif fault is not None:
        raise ValueError(f"a fault is a preset name or an object, not {type(fault).__name__}")
    out.update(params or {})
    unknown = set(out) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    if "preset" in out and out["preset"] not in PRESETS:
        raise ValueError(f"unknown fault preset {out['preset']!r}; known: {', '.join(preset_names())}")
    if "stream" in out and out["stream"] not in STREAM_FAULTS:
        raise ValueError(f"unknown stream fault {out['stream']!r}; known: {', '.join(STREAM_FAULTS)}")
    if "status" in out and not (isinstance(out["status"], int) and 100 <= out["status"] <= 599):
        raise ValueError("status must be an HTTP status code")
    if "cut_at_tokens" in out and not (isinstance(out["cut_at_tokens"], int) and out["cut_at_tokens"] > 0):
        raise ValueError("cut_at_tokens is a positive number of output tokens")
    if not out:
        raise ValueError("an empty fault does nothing")
    return out


def rule_from_json(data: Mapping[str, Any]) -> FaultRule:
    """A rule from its JSON form: ``{"provider", "model", "protocol", "phase", "endpoint", "times", "fault"}``."""
    if not isinstance(data, Mapping):
        raise ValueError("a rule is an object")
    unknown = set(data) - _RULE_KEYS - {"fault"}
    if unknown:
        raise ValueError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
    if "fault" not in data:
        raise ValueError("a rule needs a 'fault'")
    return make_rule(data["fault"], **{k: data[k] for k in _RULE_KEYS if k in data})


def make_rule(
    fault: str | Mapping[str, Any] | None,
    *,
    provider: str | None = None,
    model: str | None = None,
    protocol: str | None = None,
    phase: str | None = None,
    endpoint: str = "chat",
    times: int = 1,
    params: Mapping[str, Any] | None = None,
    skip: int = 0,
) -> FaultRule:
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS} or null")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS}")
    if not isinstance(times, int) or times == 0 or times < -1:
        raise ValueError("times is a positive count, or -1 for ever")
    if not isinstance(skip, int) or skip < 0:
        raise ValueError("skip is how many matching requests go through first: 0 or more")
    return FaultRule(normalise_fault(fault, params), provider, model, protocol, phase, endpoint, times, skip=skip)


_STREAM_ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "Rate limited",
    "server_error": "The server had an error while processing your request.",
}


def resolve(fault: Mapping[str, Any], ctx: FaultContext) -> FaultPlan:
    """Turn a stored fault into what the server does for this request."""
    plan: FaultPlan
    if "preset" in fault:
        plan = PRESETS[str(fault["preset"])](fault, ctx)
    elif "status" in fault:
        body = fault.get("body", "")
        headers = dict(fault.get("headers") or {})
        if isinstance(body, str) and "content_type" not in fault and body.lstrip().startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                json.loads(body)
                headers.setdefault("content-type", "application/json")  # a JSON body recorded as text
        if "content_type" in fault:
            headers["content-type"] = str(fault["content_type"])
        plan = FaultPlan(name=f"status:{fault['status']}", reply=Reply(int(fault["status"]), body, headers))
    elif "stream" in fault:
        kind = str(fault["stream"])
        plan = FaultPlan(name=f"stream:{kind}", stream=kind, after_chunks=int(fault.get("after_chunks", 0)),
                         abrupt=bool(fault.get("abrupt", False)))
        if kind == "error_event":
            etype = str(fault.get("error_type", "overloaded_error"))
            message = str(fault.get("message", _STREAM_ERROR_MESSAGES.get(etype, "Simulated stream error")))
            custom = fault.get("error")
            if ctx.protocol == "anthropic":
                plan.error_payload = anthropic_error(etype, message, ctx.request_id)
                if isinstance(custom, Mapping):
                    plan.error_payload["error"] = dict(custom)
            else:
                plan.error_payload = {"error": dict(custom) if isinstance(custom, Mapping) else
                                      {"message": message, "type": etype, "param": None, "code": etype}}
    elif fault.get("close"):
        plan = FaultPlan(name="close")
    elif "cut_at_tokens" in fault:
        plan = FaultPlan(name="cut-at-limit")
    elif "delay_ms" in fault:
        plan = FaultPlan(name="delay")
    else:
        plan = FaultPlan(name="headers")
    plan.delay_ms = float(fault.get("delay_ms", 0) or 0)
    plan.close = bool(fault.get("close", False))
    plan.cut_at_tokens = int(fault["cut_at_tokens"]) if "cut_at_tokens" in fault else None
    if plan.close and plan.name != "close" and plan.reply is None and plan.stream is None:
        plan.name = "close"
    extra = {**dict(fault.get("ratelimit_headers") or {})}
    if "status" not in fault:
        extra.update(dict(fault.get("headers") or {}))
    plan.extra_headers = {str(k).lower(): str(v) for k, v in extra.items()}
    _echo_key(plan, bool(fault.get("echo_key")), ctx.api_key)
    return plan


def fault_label(fault: Mapping[str, Any]) -> str:
    """A short name for a fault, for counting (``openai.rate_limit``, ``stream:cut``, ``status:502``)."""
    if "preset" in fault:
        return str(fault["preset"])
    if "stream" in fault:
        return f"stream:{fault['stream']}" + (":abrupt" if fault.get("abrupt") else "")
    if "status" in fault:
        return f"status:{fault['status']}"
    if fault.get("close"):
        return "close"
    if "cut_at_tokens" in fault:
        return "cut-at-limit"
    return "delay" if "delay_ms" in fault else "headers"


def _echo_key(plan: FaultPlan, append: bool, key: str | None) -> None:
    """``{key}`` in an error's text becomes the request's key; ``echo_key`` appends it to every
    error message: what a provider that echoes the rejected key back does."""
    shown = key or "(no key sent)"

    def fill(value: Any, in_message: bool = False) -> Any:
        if isinstance(value, str):
            value = value.replace("{key}", shown)
            return f"{value} (key: {shown})" if append and in_message else value
        if isinstance(value, dict):
            return {k: fill(v, k in {"message", "status_msg"}) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    if plan.reply is not None:
        body = plan.reply.body
        if append and isinstance(body, str):
            body = f"{body} (key: {shown})"
        plan.reply.body = fill(body)
    if plan.error_payload is not None:
        plan.error_payload = fill(plan.error_payload)
    if plan.first_line is not None:
        plan.first_line = fill(plan.first_line)
