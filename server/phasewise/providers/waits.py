"""How long a provider asked us to wait, and when a limit comes back, from its headers and words.

Every header providers use for it (``retry-after-ms``, ``retry-after`` in seconds or as an HTTP
date, ``x-ratelimit-reset*`` as OpenAI durations, epoch seconds or OpenRouter's epoch
milliseconds, ``anthropic-ratelimit-*-reset`` times), a wait stated only in the message ("Please
try again in 1.574s"), and the time a billing limit or plan window resets ("resets at
2026-05-15T15:00:00Z"). Nothing is capped: a wait longer than ``retry.maxWaitSeconds`` is the
router's to refuse, saying the real time. Facts: ``shared/reference/providers.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<u>ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Numbers above these are epoch times, not durations: milliseconds (OpenRouter's
# ``X-RateLimit-Reset``), then seconds (GitHub-style resets); any wait shorter than 30 years is
# below the second threshold.
_EPOCH_MS = 1e12
_EPOCH_S = 1e9


def _seconds(text: str, scale: float = 1.0) -> float | None:
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def _reset_value(text: str, now: datetime) -> float | None:
    """A rate-limit reset header's value as seconds from ``now``: epoch milliseconds, epoch
    seconds, a plain number of seconds, or an OpenAI duration (``6ms``, ``1m2s``)."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return parse_duration(text)
    if not math.isfinite(number):
        return None
    if number >= _EPOCH_MS:
        number = number / 1000 - now.timestamp()
    elif number >= _EPOCH_S:
        number = number - now.timestamp()
    return max(0.0, number)


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
        total += float(m.group("n")) * _UNIT_SECONDS[m.group("u")]
        pos = m.end()
    return total if pos == len(text) else None


def _until(when: str, now: datetime) -> float | None:
    """Seconds from ``now`` to an RFC 3339 time (Anthropic) or an HTTP date (Retry-After)."""
    at = _parse_time(when)
    return max(0.0, (at - now).total_seconds()) if at is not None else None


def _parse_time(when: str, default_tz: timezone = UTC) -> datetime | None:
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
    return at.replace(tzinfo=default_tz) if at.tzinfo is None else at


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asked us to wait, from the most precise header present.

    ``retry-after-ms`` (OpenAI, Azure's ``x-ms-retry-after-ms``), then ``retry-after`` in seconds
    or as an HTTP date, then the reset time of any exhausted rate-limit window
    (``x-ratelimit-reset*`` as durations, epoch seconds or epoch milliseconds,
    ``anthropic-ratelimit-*-reset`` times); None when the provider said nothing (Z.AI's 1302
    comes without any header). Never capped: a wait longer than ``retry.maxWaitSeconds`` is the
    router's to refuse, with the real time.
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
        if name.startswith("x-ratelimit-reset") or name == "ratelimit-reset":
            remaining = h.get(name.replace("-reset", "-remaining"))
            if remaining in (None, "0") and (d := _reset_value(value, now)) is not None:
                waits.append(d)
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = h.get(name.removesuffix("-reset") + "-remaining")
            if remaining in (None, "0") and (d := _until(value, now)) is not None:
                waits.append(d)
    return max(waits) if waits else None


# "Please try again in 1.574s" (OpenAI), "try again after 1 seconds" (Moonshot), "Try again in 60
# seconds" (LiteLLM), "Please try again in 6ms".
_MESSAGE_WAIT = re.compile(
    r"(?:try|retry)(?: again)? (?:in|after) (?P<n>\d+(?:\.\d+)?)\s*(?P<u>ms|milliseconds?|s|secs?|seconds?|"
    r"m|mins?|minutes?|h|hours?)\b", re.I)


def wait_in_message(message: str) -> float | None:
    """A wait stated only in the provider's words, in seconds."""
    m = _MESSAGE_WAIT.search(message)
    if m is None:
        return None
    unit = m.group("u").lower()
    scale = 0.001 if unit.startswith("ms") or unit.startswith("milli") else _UNIT_SECONDS.get(unit[0], 1.0)
    return float(m.group("n")) * scale


# "resets at 2026-05-15T15:00:00Z" (MiniMax), "Your limit will reset at 2026-09-09 05:38:28"
# (Z.AI, Beijing time), "You will regain access on 2026-04-01 at 00:00 UTC" (Anthropic).
_MESSAGE_TIME = re.compile(
    r"(?P<d>\d{4}-\d{2}-\d{2})(?:T|\s+at\s+|\s+)(?P<t>\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?\s*(?P<z>Z|UTC|GMT|[+-]\d{2}:?\d{2})?")
# The zone a family writes times in when it names none.
FAMILY_TIMEZONES: dict[str, timezone] = {"zai": timezone(timedelta(hours=8))}


def reset_in_message(message: str, family: str = "") -> datetime | None:
    """When a billing limit or plan window resets, if the provider's words say."""
    m = _MESSAGE_TIME.search(message)
    if m is None:
        return None
    zone = m.group("z") or ""
    text = f"{m.group('d')}T{m.group('t')}"
    if zone and zone not in ("UTC", "GMT"):
        text += "+00:00" if zone == "Z" else zone
    default = UTC if zone else FAMILY_TIMEZONES.get(family, UTC)
    return _parse_time(text, default)


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
            d = _reset_value(h.get(f"x-ratelimit-reset-{window}", ""), now)
            waits.append(d if d is not None else 1.0)
    for window in _ANTHROPIC_WINDOWS:
        if h.get(f"anthropic-ratelimit-{window}-remaining", "").strip() == "0":
            d = _until(h.get(f"anthropic-ratelimit-{window}-reset", ""), now)
            waits.append(d if d is not None else 1.0)
    return max(waits) if waits else None
