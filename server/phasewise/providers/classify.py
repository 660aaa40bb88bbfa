"""Classify what a provider said into one problem kind, the same way for every provider.

What providers really send is held against ``tests/data/provider_errors.jsonl`` (real answers
from public reports and provider docs, each with its source). The reading, in order:

1. The answer is taken apart into layers, outermost first: the body's error object (OpenAI's
   ``{"error": {...}}``, Anthropic's ``{"type": "error", "error": {...}}``, vLLM's flat object,
   a plain ``{"error": "text"}`` as Ollama and LM Studio send, or text), then what a gateway
   wraps inside it: OpenRouter's ``metadata.raw`` (the upstream provider's own body) and a JSON
   body quoted inside a message (LiteLLM's ``litellm.BadRequestError: AnthropicException - {…}``).
2. Codes, innermost layer first: the family's own meanings (``FAMILY_CODES``: DashScope's
   ``insufficient_quota`` is its per-minute throttle, Ollama's ``api_error`` says nothing), codes
   a provider puts inside its message (MiniMax's ``… (1008)``), then the shared table.
3. The HTTP status when no code decided.
4. The words (``WORDINGS``): a kind read from a generic code or status gives way to what the
   message says, within limits each wording names (Anthropic's credit error is a 400
   ``invalid_request_error``; MiniMax's empty balance a 500 ``api_error``).

Also reads how long to wait and, for billing, when a plan window or spending limit resets
(``providers.waits``). Works on plain values so both SDKs' exceptions and errors found inside
200 streams go through the same code.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from phasewise.problems import ProblemKind, ProviderError, redact
from phasewise.providers.waits import reset_in_message, retry_after_seconds, wait_in_message

K = ProblemKind


@dataclass(frozen=True, slots=True)
class Origin:
    """Who answered, as the route knows it: the provider's error ``family`` (``catalogue.family_of``:
    "qwen", "ollama", …; "" unknown) and the wire ``protocol`` ("openai" | "anthropic")."""

    family: str = ""
    protocol: str = ""


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
    # DashScope (Qwen): native codes and the compatible endpoint's snake case
    "invalidapikey": K.AUTH,
    "arrearage": K.BILLING,
    "modelnotfound": K.MODEL_NOT_FOUND,
    "throttling.ratequota": K.RATE_LIMIT,
    "throttling": K.RATE_LIMIT,
    "throttling.allocationquota": K.RATE_LIMIT,
    "datainspectionfailed": K.CONTENT_FILTER,
    "data_inspection_failed": K.CONTENT_FILTER,
    # Moonshot
    "invalid_authentication_error": K.AUTH,
    "engine_overloaded_error": K.OVERLOADED,
    "exceeded_current_quota_error": K.BILLING,
    "rate_limit_reached_error": K.RATE_LIMIT,
    "resource_not_found_error": K.MODEL_NOT_FOUND,
    # MiniMax behind gateways, llama.cpp's server, LiteLLM's proxy
    "insufficient_balance_error": K.BILLING,
    "exceed_context_size_error": K.CONTEXT_LENGTH,
    "budget_exceeded": K.BILLING,
}

# What a code means at one family when it differs from the shared table; None: the code says
# nothing there (status and words decide). Facts: ``shared/reference/providers.md``.
FAMILY_CODES: dict[str, dict[str, ProblemKind | None]] = {
    # DashScope documents 429 ``insufficient_quota`` ("You exceeded your current quota") as its
    # per-minute token limit (TPM), not an empty balance (that is ``Arrearage``, a 400).
    "qwen": {"insufficient_quota": K.RATE_LIMIT, "invalid_parameter_error": None},
    # OpenAI-compatible local servers label every failure ``api_error`` ("model … not found").
    "ollama": {"api_error": None},
    "lmstudio": {"api_error": None},
    "vllm": {"api_error": None},
    # MiniMax's Anthropic endpoint sends ``api_error`` with its own code in the message.
    "minimax": {"api_error": None},
}

# Codes a plan's window (used up until it resets) answers with, as opposed to an empty balance.
PLAN_CODES = frozenset({"1308", "1309", "1310", "2056"})

# MiniMax codes (``base_resp.status_code`` in a 200, or "… (1008)" at the end of a message).
_MINIMAX: dict[int, ProblemKind] = {
    1000: K.SERVER_ERROR, 1001: K.TIMEOUT, 1002: K.RATE_LIMIT, 1004: K.AUTH, 1008: K.BILLING,
    1013: K.SERVER_ERROR, 1024: K.SERVER_ERROR, 1026: K.CONTENT_FILTER, 1027: K.CONTENT_FILTER,
    1039: K.RATE_LIMIT, 2013: K.BAD_REQUEST, 2049: K.AUTH, 2056: K.BILLING,
}
# Codes a provider writes inside its message: MiniMax "insufficient balance (1008)", Z.AI "[1113][…]".
_EMBEDDED_CODES: dict[str, tuple[re.Pattern[str], dict[str, ProblemKind]]] = {
    "minimax": (re.compile(r"\((\d{4})\)\s*$"), {str(k): v for k, v in _MINIMAX.items()}),
    "zai": (re.compile(r"^\[(\d{4})\]"), {c: k for c, k in _CODES.items() if c.isdigit()}),
}

_STATUS: dict[int, ProblemKind] = {
    400: K.BAD_REQUEST, 401: K.AUTH, 402: K.BILLING, 403: K.PERMISSION, 404: K.MODEL_NOT_FOUND,
    408: K.TIMEOUT, 409: K.SERVER_ERROR, 413: K.CONTEXT_LENGTH, 422: K.BAD_REQUEST,
    429: K.RATE_LIMIT, 504: K.TIMEOUT, 529: K.OVERLOADED, 503: K.OVERLOADED,
}

_WEAK = frozenset({K.BAD_REQUEST, K.PERMISSION, K.SERVER_ERROR})


@dataclass(frozen=True, slots=True)
class Wording:
    """What a message's words mean, and which kinds read from a code or status they overrule
    (``None`` as the kind read so far is always overruled). ``plan``: a plan's allowance."""

    pattern: re.Pattern[str]
    kind: ProblemKind
    beats: frozenset[ProblemKind] = _WEAK
    plan: bool = False


def _w(pattern: str, kind: ProblemKind, beats: frozenset[ProblemKind] = _WEAK, plan: bool = False) -> Wording:
    return Wording(re.compile(pattern, re.I), kind, beats, plan)


_MONEY = _WEAK | {K.RATE_LIMIT}
# In order; the first that matches and may overrule decides.
WORDINGS: tuple[Wording, ...] = (
    # a plan's window or tier: Anthropic "Extra usage is required …", MiniMax "5-hour usage limit
    # reached … resets at …", Ollama Cloud "reached your session usage limit", Z.AI "已达到 5 小时的使用上限"
    _w(r"extra usage is required|usage limit (?:exceeded|reached)|reached your (?:session|weekly|daily) usage "
       r"limit|\b\d+[- ]hours? usage limit|weekly/monthly limit|requires a subscription|使用上限",
       K.BILLING, _MONEY, plan=True),
    # money: Anthropic's credit error is a 400, its spend limit a 400 "… usage limits … regain access",
    # LiteLLM budgets come as 400 or 429, DashScope "good standing", Ollama Cloud "payment is past due"
    _w(r"insufficient (?:balance|quota|credits?|funds)|credit balance is too low|out of credits|requires more "
       r"credits|can only afford|in arrears|arrearage|account is in good standing|past due|overdue|"
       r"budget has been exceeded|exceeded budget|crossed budget|over budget|specified api usage limits?|"
       r"regain access on|余额不足|欠费", K.BILLING, _MONEY),
    # one request larger than a per-minute token limit: waiting cannot help, a smaller request can
    _w(r"request too large for .*tokens per min", K.CONTEXT_LENGTH, _MONEY),
    _w(r"context (?:length|window|size|limit)|maximum context|too many tokens|prompt is too long|exceeds? the "
       r"available context|exceeded model token limit|range of input length|trying to keep the first \d+ tokens|"
       r"max(?:imum)? length exceeded|input token count .* exceeds", K.CONTEXT_LENGTH),
    _w(r"content exists risk|inappropriate content|data ?inspection|flagged|moderation|content (?:policy|filter|"
       r"management)|unsafe or sensitive|high risk", K.CONTENT_FILTER),
    _w(r"\bmodel\b.*\b(?:not (?:found|exist)|does not exist)|unknown model|no such model", K.MODEL_NOT_FOUND),
    _w(r"overloaded", K.OVERLOADED, frozenset({K.RATE_LIMIT, K.SERVER_ERROR})),
    _w(r"rate limit|too many requests|try again (?:in|after) \d", K.RATE_LIMIT, frozenset({K.SERVER_ERROR})),
)

# Body codes too generic to beat the status ("invalid_request_error" on a 401, 402 or 404).
_GENERIC_CODES = {"invalid_request_error", "unknown_error", "error"}
# A 404/405 for the path itself, not for the model: the base URL is wrong.
_WRONG_URL = re.compile(r"unknown (request )?url|no route|invalid url|not found: /|cannot (post|get) /", re.I)
# A rate limit whose words say it is the whole account's, not the model's: Moonshot's "Your
# account ... reached organization max RPM" / "Your account reached max request rate". OpenAI's
# ("Rate limit reached for gpt-4o in organization org-… on requests per min") and Anthropic's
# ("would exceed the rate limit for your organization … of 50 requests per minute") name an
# organization but are per model (class): their headers describe the model's limit. A message
# that names a model is never account-wide.
_ACCOUNT_WIDE = re.compile(r"\byour account\b[^.]*\breached\b|organization max|account[- ]wide|"
                           r"across all (of your )?models", re.I)
_NAMES_MODEL = re.compile(r"\bmodel\b|\bfor (gpt|claude|glm|o\d)", re.I)


@dataclass(slots=True)
class _Layer:
    """One error object of an answer: its codes, words and an HTTP-like status it states."""

    codes: list[str] = field(default_factory=list)
    message: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _parse_json(text: str) -> Any:
    with contextlib.suppress(ValueError):
        return json.loads(text)
    return None


def _embedded_json(text: str) -> Any:
    """A JSON object quoted inside a message (LiteLLM's ``… AnthropicException - {…}. Received …``).
    Tries a few closing braces from the end, on the first 20,000 characters: bounded work whatever
    the message."""
    text = text[:20_000]
    start = text.find("{")
    end = text.rfind("}")
    for _ in range(4):
        if not 0 <= start < end:
            break
        found = _parse_json(text[start:end + 1])
        if isinstance(found, Mapping):
            return found
        end = text.rfind("}", start, end)
    return None


def _layers(body: Any) -> list[_Layer]:
    """The error objects of an answer, outermost first (see the module docstring)."""
    layers: list[_Layer] = []
    seen = 0
    while body is not None and seen < 4:
        seen += 1
        layer = _Layer()
        inner: Any = None
        if isinstance(body, str):
            layer.message = body.strip() or None
            inner = _embedded_json(body)
        elif isinstance(body, Mapping):
            err = body.get("error")
            obj: Mapping[str, Any] = err if isinstance(err, Mapping) else body
            if isinstance(err, str):  # Ollama, LM Studio: {"error": "text"}
                layer.message = err
            for key in ("code", "type"):
                value = obj.get(key)
                if isinstance(value, bool) or value in (None, ""):
                    continue
                if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and len(value) == 3):
                    layer.status = int(value) if 100 <= int(value) < 600 else None
                    if layer.status is None:
                        layer.codes.append(str(value))
                else:
                    layer.codes.append(str(value))
            if layer.message is None:
                msg = obj.get("message") or obj.get("msg") or obj.get("status_msg")
                layer.message = msg if isinstance(msg, str) and msg else None
            meta = obj.get("metadata")
            if isinstance(meta, Mapping):
                if isinstance(meta.get("headers"), Mapping):  # OpenRouter repeats the limit's headers here
                    layer.headers = {str(k).lower(): str(v) for k, v in meta["headers"].items()}
                raw = meta.get("raw")
                if isinstance(raw, str) and raw.strip():
                    inner = _parse_json(raw) if raw.lstrip().startswith("{") else raw
                elif isinstance(raw, Mapping):
                    inner = raw
            if inner is None and layer.message:
                inner = _embedded_json(layer.message)
        else:
            break
        layers.append(layer)
        body = inner
    return layers


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


def _moderated(body: Any) -> bool:
    """OpenRouter's moderation refusal: a 403 whose metadata names what was flagged."""
    err = body.get("error") if isinstance(body, Mapping) else None
    meta = err.get("metadata") if isinstance(err, Mapping) else None
    return isinstance(meta, Mapping) and ("flagged_input" in meta or "reasons" in meta)


def _code_kind(layer: _Layer, family: str) -> tuple[ProblemKind | None, str | None, bool, bool]:
    """(kind, code, firm, plan) from one layer's codes: the family's meanings and codes inside the
    message first (firm: words do not overrule them), then the shared table."""
    if family in _EMBEDDED_CODES and layer.message:
        rx, table = _EMBEDDED_CODES[family]
        if (m := rx.search(layer.message.strip())) and m.group(1) in table:
            return table[m.group(1)], m.group(1), True, m.group(1) in PLAN_CODES
    own = FAMILY_CODES.get(family, {})
    for code in layer.codes:
        lowered = code.lower()
        if lowered in own:
            return own[lowered], code, own[lowered] is not None, False
    for code in layer.codes:
        lowered = code.lower()
        if lowered in _CODES and lowered not in _GENERIC_CODES:
            return _CODES[lowered], code, False, code in PLAN_CODES
    return None, (layer.codes[0] if layer.codes else None), False, False


def _status_kind(status: int, body: Any = None) -> ProblemKind:
    if status == 403 and _moderated(body):
        return K.CONTENT_FILTER
    if status in _STATUS:
        return _STATUS[status]
    if status >= 500:
        return K.SERVER_ERROR
    return K.BAD_REQUEST


def classify(
    status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    origin: Origin | None = None,
    request_id: str | None = None,
    secrets: tuple[str, ...] = (),
    now: datetime | None = None,
) -> ProviderError:
    """One provider failure as a ``ProviderError``: kind, the provider's words, wait asked.

    ``status`` is the HTTP status, or None for an error found inside a 200 answer or stream;
    ``origin`` says which provider family and protocol answered (their own meanings apply).
    """
    origin = origin or Origin()
    now = now or datetime.now(UTC)
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.lstrip().startswith(("{", "[")):
        parsed = _parse_json(body)
        body = parsed if parsed is not None else body
    html = is_html(body)
    layers = [] if html else _layers(body)
    kind: ProblemKind | None = None
    code: str | None = None
    firm = plan = False
    if (mm := minimax_status(body)) is not None:
        code, kind, firm, plan = str(mm[0]), _MINIMAX.get(mm[0], K.SERVER_ERROR), True, mm[0] in PLAN_CODES
        layers.insert(0, _Layer([code], mm[1] or None))
    else:
        for layer in reversed(layers):  # the provider's own (innermost) codes first
            found, found_code, firm, plan = _code_kind(layer, origin.family)
            code = code or found_code
            if found is not None or firm:
                kind, code = found, found_code
                break
    if kind is None:
        stated = next((la.status for la in reversed(layers) if la.status), None)
        if status is not None and status >= 400:
            kind = _status_kind(status, body)
        elif stated is not None and stated >= 400:
            kind = _status_kind(stated, body)
    messages = [la.message for la in reversed(layers) if la.message]
    if not firm:
        for wording in WORDINGS:
            if (kind is None or kind in wording.beats) and any(wording.pattern.search(m) for m in messages):
                kind, plan = wording.kind, wording.plan
                break
    if kind is None:
        kind = K.BAD_REQUEST if code and code.lower() in _GENERIC_CODES else K.SERVER_ERROR
    plan = plan and kind is K.BILLING
    if status in (404, 405) and messages and _WRONG_URL.search(messages[-1]):
        kind = K.CONFIG
    message = messages[0] if messages else None
    if html:
        where = f"HTTP {status}" if status else "The answer"
        detail = f"{where}: the answer was an HTML page, not the provider's API (a proxy or a wrong baseUrl?)"
    else:
        detail = message or (f"HTTP {status}" if status else "no details given")
    rid = request_id or headers.get("x-request-id") or headers.get("request-id")
    if rid is None and isinstance(body, Mapping):
        rid = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    # the answer's own headers first, then those a gateway repeats in its body
    stated_headers = {k: v for la in layers for k, v in la.headers.items()}
    wait = retry_after_seconds({**stated_headers, **headers}, now)
    if wait is None and kind in (K.RATE_LIMIT, K.OVERLOADED):
        wait = next((w for m in messages if (w := wait_in_message(m)) is not None), None)
    resets = None
    if kind is K.BILLING:
        resets = next((r for m in messages if (r := reset_in_message(m, origin.family)) is not None), None)
    return ProviderError(
        kind,
        redact(" ".join(detail.split()), secrets)[:500],
        status=status,
        code=code,
        retry_after=wait,
        request_id=rid,
        account_wide=account_wide(kind, message),
        plan_limit=plan,
        resets_at=resets,
    )


def account_wide(kind: ProblemKind, message: str | None) -> bool:
    """Whether a rate limit holds every model of the provider with that key (the provider's
    words say the limit is the account's), rather than only the model that was refused."""
    return (kind is K.RATE_LIMIT and bool(message) and _ACCOUNT_WIDE.search(message or "") is not None
            and _NAMES_MODEL.search(message or "") is None)
