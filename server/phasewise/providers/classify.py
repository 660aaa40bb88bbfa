"""Classify what a provider said into one problem kind, the same way for every provider.

The body's code decides first, the HTTP status second: a 429 carrying ``insufficient_quota`` is
``billing`` (never retried), Moonshot's 429 "engine is overloaded" is ``overloaded``. Also reads
how long the provider asked us to wait, from every header providers use for it.
Facts: ``shared/reference/providers.md``. Works on plain values (status, headers, body) so both
SDKs' exceptions and errors found inside 200 streams go through the same code.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from phasewise.problems import ProblemKind, ProviderError, redact

K = ProblemKind

# Body codes (any provider), lower-cased. Checked before the status.
_CODES: dict[str, ProblemKind] = {
    # OpenAI and OpenAI-shaped providers
    "invalid_api_key": K.AUTH,
    "insufficient_quota": K.BILLING,
    "billing_hard_limit_reached": K.BILLING,
    "rate_limit_exceeded": K.RATE_LIMIT,
    "model_not_found": K.MODEL_NOT_FOUND,
    "context_length_exceeded": K.CONTEXT_LENGTH,
    "string_above_max_length": K.CONTEXT_LENGTH,
    "content_filter": K.CONTENT_FILTER,
    "content_policy_violation": K.CONTENT_FILTER,
    "unsupported_country_region_territory": K.PERMISSION,
    # Anthropic error types
    "invalid_request_error": K.BAD_REQUEST,
    "authentication_error": K.AUTH,
    "billing_error": K.BILLING,
    "permission_error": K.PERMISSION,
    "not_found_error": K.MODEL_NOT_FOUND,
    "request_too_large": K.CONTEXT_LENGTH,
    "rate_limit_error": K.RATE_LIMIT,
    "api_error": K.SERVER_ERROR,
    "timeout_error": K.TIMEOUT,
    "overloaded_error": K.OVERLOADED,
    # Z.AI / Zhipu (string codes)
    "1000": K.AUTH, "1001": K.AUTH, "1002": K.AUTH, "1003": K.AUTH, "1004": K.AUTH,
    "1113": K.BILLING,
    "1211": K.MODEL_NOT_FOUND,
    "1261": K.CONTEXT_LENGTH,
    "1301": K.CONTENT_FILTER,
    "1302": K.RATE_LIMIT, "1303": K.RATE_LIMIT, "1304": K.RATE_LIMIT,
    "1305": K.OVERLOADED,
    "1308": K.BILLING, "1309": K.BILLING, "1310": K.BILLING,
    # DashScope (Qwen)
    "invalidapikey": K.AUTH,
    "arrearage": K.BILLING,
    "modelnotfound": K.MODEL_NOT_FOUND,
    "throttling.ratequota": K.RATE_LIMIT,
    "throttling": K.RATE_LIMIT,
    "throttling.allocationquota": K.RATE_LIMIT,
    "datainspectionfailed": K.CONTENT_FILTER,
    # Moonshot
    "invalid_authentication_error": K.AUTH,
    "engine_overloaded_error": K.OVERLOADED,
    "exceeded_current_quota_error": K.BILLING,
    "rate_limit_reached_error": K.RATE_LIMIT,
    "resource_not_found_error": K.MODEL_NOT_FOUND,
}

# MiniMax ``base_resp.status_code`` (inside an HTTP 200).
_MINIMAX: dict[int, ProblemKind] = {
    1000: K.SERVER_ERROR, 1001: K.TIMEOUT, 1002: K.RATE_LIMIT, 1004: K.AUTH, 1008: K.BILLING,
    1013: K.SERVER_ERROR, 1024: K.SERVER_ERROR, 1026: K.CONTENT_FILTER, 1027: K.CONTENT_FILTER,
    1039: K.RATE_LIMIT, 2013: K.BAD_REQUEST, 2049: K.AUTH,
}

_STATUS: dict[int, ProblemKind] = {
    400: K.BAD_REQUEST, 401: K.AUTH, 402: K.BILLING, 403: K.PERMISSION, 404: K.MODEL_NOT_FOUND,
    408: K.TIMEOUT, 409: K.SERVER_ERROR, 413: K.CONTEXT_LENGTH, 422: K.BAD_REQUEST,
    429: K.RATE_LIMIT, 504: K.TIMEOUT, 529: K.OVERLOADED, 503: K.OVERLOADED,
}

_MESSAGE_HINTS: tuple[tuple[re.Pattern[str], ProblemKind], ...] = (
    (re.compile(r"overloaded", re.I), K.OVERLOADED),
    (re.compile(r"insufficient (balance|quota|credits?)|out of credits|arrears|quota (is )?exhausted", re.I),
     K.BILLING),
    (re.compile(r"context (length|window)|too many tokens|prompt is too long|maximum context", re.I),
     K.CONTEXT_LENGTH),
    (re.compile(r"model.*(not (found|exist)|does not exist|unknown)|unknown model", re.I), K.MODEL_NOT_FOUND),
    (re.compile(r"flagged|moderation|content (policy|filter|management)|unsafe or sensitive", re.I),
     K.CONTENT_FILTER),
)
# Kinds a message hint may refine a generic status into (a 400 or 403 says little by itself).
_REFINABLE = {K.BAD_REQUEST, K.PERMISSION}
_REFINED_BY_HINT = {K.CONTEXT_LENGTH, K.MODEL_NOT_FOUND, K.CONTENT_FILTER}
# Body codes too generic to beat the status ("invalid_request_error" on a 401, 402 or 404).
_GENERIC_CODES = {"invalid_request_error", "unknown_error", "error"}
# A 404/405 for the path itself, not for the model: the base URL is wrong.
_WRONG_URL = re.compile(r"unknown (request )?url|no route|invalid url|not found: /|cannot (post|get) /", re.I)
_OVERLOAD_TEXT = re.compile(r"overloaded", re.I)
# A rate limit whose words say it is the whole account's, not the model's: Moonshot's "Your
# account ... reached organization max RPM" / "Your account reached max request rate". OpenAI's
# ("Rate limit reached for gpt-4o in organization org-… on requests per min") and Anthropic's
# ("would exceed the rate limit for your organization … of 50 requests per minute") name an
# organization but are per model (class): their headers describe the model's limit. A message
# that names a model is never account-wide.
_ACCOUNT_WIDE = re.compile(r"\byour account\b[^.]*\breached\b|organization max|account[- ]wide|"
                           r"across all (of your )?models", re.I)
_NAMES_MODEL = re.compile(r"\bmodel\b|\bfor (gpt|claude|glm|o\d)", re.I)


def _error_object(body: Any) -> Mapping[str, Any] | None:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            return inner
        return body
    return None


def body_code(body: Any) -> tuple[str | None, str | None]:
    """The code (or type) and message a provider put in an error body."""
    err = _error_object(body)
    if err is None:
        return None, body if isinstance(body, str) and body else None
    code = err.get("code")
    etype = err.get("type")
    message = err.get("message") or err.get("msg")
    chosen = None
    for candidate in (code, etype):
        if candidate is None or candidate == "":
            continue
        text = str(candidate)
        if text.lower() in _CODES and text.lower() not in _GENERIC_CODES:
            return text, message if isinstance(message, str) else None
        chosen = chosen or text
    return chosen, message if isinstance(message, str) else None


def minimax_status(body: Any) -> tuple[int, str] | None:
    """A MiniMax ``base_resp`` error (status_code != 0), if the body carries one."""
    if isinstance(body, Mapping):
        base = body.get("base_resp")
        if isinstance(base, Mapping):
            code = base.get("status_code")
            if isinstance(code, int) and code != 0:
                return code, str(base.get("status_msg") or "")
    return None


def is_html(body: Any) -> bool:
    """Whether a body is a web page (a proxy's, a captive portal's), not any provider's API."""
    if not isinstance(body, str):
        return False
    head = body.lstrip()[:200].lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body")) or (
        head.startswith("<") and "<html" in body[:2000].lower()
    )


def _hint(message: str | None) -> ProblemKind | None:
    if not message:
        return None
    return next((k for rx, k in _MESSAGE_HINTS if rx.search(message)), None)


def _moderated(body: Any) -> bool:
    """OpenRouter's moderation refusal: a 403 whose metadata names what was flagged."""
    err = _error_object(body)
    meta = err.get("metadata") if err is not None else None
    return isinstance(meta, Mapping) and ("flagged_input" in meta or "reasons" in meta)


def classify(
    status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """One provider failure as a ``ProviderError``: kind, the provider's words, wait asked.

    ``status`` is the HTTP status, or None for an error found inside a 200 answer or stream.
    Order: a MiniMax ``base_resp`` code, then the body's code or type, then the status, then
    (for statuses that say little) the message's words.
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    kind: ProblemKind | None = None
    code: str | None = None
    message: str | None = None
    html = is_html(body)
    if (mm := minimax_status(body)) is not None:
        code, message = str(mm[0]), mm[1]
        kind = _MINIMAX.get(mm[0], K.SERVER_ERROR)
    elif not html:
        code, message = body_code(body)
        if code is not None:
            lowered = code.lower()
            kind = None if lowered in _GENERIC_CODES else _CODES.get(lowered)
            # OpenRouter puts the HTTP-like status in ``code`` as an int.
            if kind is None and code.isdigit() and 400 <= int(code) < 600:
                kind = _status_kind(int(code), message, body)
    if status is not None and status >= 400 and kind is None:
        kind = _status_kind(status, message, body)
    if kind is None:
        kind = _hint(message) or (K.BAD_REQUEST if code and code.lower() in _GENERIC_CODES else K.SERVER_ERROR)
    # A 429 that only says "overloaded" (Moonshot) is an overload, not a quota.
    if kind is K.RATE_LIMIT and message and _OVERLOAD_TEXT.search(message):
        kind = K.OVERLOADED
    if kind in _REFINABLE and (hinted := _hint(message)) in _REFINED_BY_HINT:
        kind = hinted
    if status in (404, 405) and message and _WRONG_URL.search(message):
        kind = K.CONFIG
    if html:
        where = f"HTTP {status}" if status else "The answer"
        detail = f"{where}: the answer was an HTML page, not the provider's API (a proxy or a wrong baseUrl?)"
    else:
        detail = message or (f"HTTP {status}" if status else "no details given")
    rid = request_id or headers.get("x-request-id") or headers.get("request-id")
    if rid is None and isinstance(body, Mapping):
        rid = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    return ProviderError(
        kind,
        redact(" ".join(detail.split()), secrets)[:500],
        status=status,
        code=code,
        retry_after=retry_after_seconds(headers),
        request_id=rid,
        account_wide=account_wide(kind, message),
    )


def account_wide(kind: ProblemKind, message: str | None) -> bool:
    """Whether a rate limit holds every model of the provider with that key (the provider's
    words say the limit is the account's), rather than only the model that was refused."""
    return (kind is K.RATE_LIMIT and bool(message) and _ACCOUNT_WIDE.search(message or "") is not None
            and _NAMES_MODEL.search(message or "") is None)


def _status_kind(status: int, message: str | None, body: Any = None) -> ProblemKind:
    if status == 403 and _moderated(body):
        return K.CONTENT_FILTER
    if status in _STATUS:
        return _STATUS[status]
    if status >= 500:
        return K.SERVER_ERROR
    return K.BAD_REQUEST


_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<u>ms|s|m|h)")
# Waits beyond this are nonsense (a misread header), not a plan: a day.
_LONGEST_WAIT = 86_400.0


def _seconds(text: str, scale: float = 1.0) -> float | None:
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    return min(max(0.0, value), _LONGEST_WAIT) if math.isfinite(value) else None


def parse_duration(text: str) -> float | None:
    """OpenAI reset durations: ``6ms``, ``1m2s``, ``0.5s``, or bare seconds."""
    text = text.strip()
    if not text:
        return None
    if (plain := _seconds(text)) is not None:
        return plain
    total, pos = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        n = float(m.group("n"))
        total += {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[m.group("u")]
        pos = m.end()
    return min(total, _LONGEST_WAIT) if pos == len(text) else None


def _until(when: str, now: datetime) -> float | None:
    """Seconds from ``now`` to an RFC 3339 time (Anthropic) or an HTTP date (Retry-After)."""
    when = when.strip()
    if not when:
        return None
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        try:
            at = parsedate_to_datetime(when)
        except (TypeError, ValueError, IndexError):
            return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(max(0.0, (at - now).total_seconds()), _LONGEST_WAIT)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asked us to wait, from the most precise header present.

    ``retry-after-ms`` (OpenAI, Azure's ``x-ms-retry-after-ms``), then ``retry-after`` in seconds
    or as an HTTP date, then the reset time of any exhausted rate-limit window
    (``x-ratelimit-reset-*`` durations, ``anthropic-ratelimit-*-reset`` times); None when the
    provider said nothing (Z.AI's 1302 comes without any header).
    """
    h = {k.lower(): v for k, v in headers.items()}
    now = now or datetime.now(UTC)
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if (ms := h.get(name)) is not None and (wait := _seconds(ms, 0.001)) is not None:
            return wait
    if (ra := h.get("retry-after")) is not None:
        wait = _seconds(ra)
        if wait is None:
            wait = _until(ra, now)
        if wait is not None:
            return wait
    waits: list[float] = []
    for name, value in h.items():
        if name.startswith("x-ratelimit-reset"):
            remaining = h.get(name.replace("-reset", "-remaining"))
            if remaining in (None, "0") and (d := parse_duration(value)) is not None:
                waits.append(d)
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = h.get(name.removesuffix("-reset") + "-remaining")
            if remaining in (None, "0") and (d := _until(value, now)) is not None:
                waits.append(d)
    return max(waits) if waits else None


# Windows whose exhaustion, announced on a successful answer, makes the next request fail.
_OPENAI_WINDOWS = ("requests", "tokens")
_ANTHROPIC_WINDOWS = ("requests", "tokens", "input-tokens", "output-tokens")


def exhausted_until(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """When a successful answer says a window has nothing left, seconds until it resets.

    The router paces the provider's next request by it instead of sending one it knows will
    be refused. A window at zero without a readable reset counts as one second.
    """
    h = {k.lower(): v for k, v in headers.items()}
    now = now or datetime.now(UTC)
    waits = []
    for window in _OPENAI_WINDOWS:
        if h.get(f"x-ratelimit-remaining-{window}", "").strip() == "0":
            d = parse_duration(h.get(f"x-ratelimit-reset-{window}", ""))
            waits.append(d if d is not None else 1.0)
    for window in _ANTHROPIC_WINDOWS:
        if h.get(f"anthropic-ratelimit-{window}-remaining", "").strip() == "0":
            d = _until(h.get(f"anthropic-ratelimit-{window}-reset", ""), now)
            waits.append(d if d is not None else 1.0)
    return max(waits) if waits else None
