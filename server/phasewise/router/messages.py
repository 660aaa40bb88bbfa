"""Problem messages: who failed (provider, phase, model), why, and what to do.

One module builds every message so they read alike whatever the provider: the kind's sentence,
then (added by the router) what the phase's fallbacks did or could do. A rate-limit says when
retrying will work, as a clock time and in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from phasewise.problems import TRANSIENT_KINDS, Problem, ProblemKind, ProviderError
from phasewise.settings import Surface, key_way_out

K = ProblemKind
_WAIT_KINDS = {K.RATE_LIMIT, K.OVERLOADED}


def seconds_text(s: float) -> str:
    """A wait as people read it: ``350 ms``, ``12 s``, ``4 min 5 s``, ``7 h 12 min``, ``3 d 4 h``."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        minutes, rest = divmod(round(s), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if s < 172_800:
        hours, rest = divmod(round(s / 60), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, rest = divmod(round(s / 3600), 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def provider_label(name: str, provider: str) -> str:
    """A provider as messages name it, the id once: ``Anthropic (anthropic)``, ``Simulated Claude
    (sim-claude, Anthropic protocol)`` (not "… (Anthropic protocol) (sim-claude)"), and just the
    name when it already holds the id."""
    if provider.lower() in name.lower():
        return name
    base, paren, rest = name.partition(" (")
    if paren and rest.endswith(")"):
        return f"{base} ({provider}, {rest[:-1]})"
    return f"{name} ({provider})"


def _at(seconds: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now().astimezone()) + timedelta(seconds=seconds)


def clock_time(seconds: float, now: datetime | None = None) -> str:
    """The local clock time ``seconds`` from now: ``HH:MM:SS``, with the date when not today."""
    now = now or datetime.now().astimezone()
    at = _at(seconds, now)
    return at.strftime("%H:%M:%S") if at.date() == now.date() else at.strftime("%Y-%m-%d %H:%M:%S")


def _reset_text(at: datetime, now: datetime | None = None) -> str:
    """When a billing limit comes back, in local time: ``at 2026-05-15 17:00 (in 3 h 12 min)``."""
    now = now or datetime.now().astimezone()
    left = (at - now).total_seconds()
    local = at.astimezone(now.tzinfo)
    if left <= 0:
        return f"at {local:%Y-%m-%d %H:%M} (that time has passed: retrying may work now)"
    return f"at {local:%Y-%m-%d %H:%M} (in {seconds_text(left)})"


@dataclass(frozen=True, slots=True)
class _Failure:
    """What a problem's sentence is made of."""

    who: str  # the provider as messages name it
    where: str  # "the plan phase (model)"
    detail: str  # the provider's own words
    phase: str
    provider: str
    model: str
    key_env: str | None
    when: str  # "after 12:00:03 (in 12 s)", or ""
    wait: float | None
    max_wait: float | None
    surface: Surface
    billing_url: str = ""  # where the account is topped up, when known
    base_url: str = ""  # where Phasewise called
    plan: bool = False  # billing: a plan's allowance, not the balance
    resets: str = ""  # billing: "at … (in …)" when the provider said when it comes back


def _rate_limited(f: _Failure) -> str:
    if f.wait is not None and f.max_wait is not None and f.wait > f.max_wait:
        return (f"{f.who} rate-limited {f.where}: {f.detail}. It asked to wait {seconds_text(f.wait)}, longer "
                f"than `phasewise.retry.maxWaitSeconds` ({seconds_text(f.max_wait)}), so Phasewise did "
                f"not wait: retry {f.when}.")
    return f"{f.who} rate-limited {f.where}: {f.detail}. Retry {f.when or 'in a little while'}."


def _unreachable(f: _Failure) -> str:
    """A network failure; on this machine (a loopback baseUrl: a local model server, the simulator),
    most likely nothing is listening: say to start it."""
    parts = urlsplit(f.base_url) if f.base_url else None
    host = (parts.hostname or "") if parts else ""
    if parts and (host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")):
        port = parts.port
        where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # no path, query or user: only where
        return (f"{f.who} could not be reached for {f.where} ({f.detail}): nothing answers at {where} on this "
                f"machine. Start the server that should be there (Phasewise's simulator: `phasewise sim"
                f"{f' --port {port}' if port and port != 8765 else ''}`; a local model server: its own command), "
                f"or correct `phasewise.providers.{f.provider}.baseUrl`.")
    return f"{f.who} could not be reached for {f.where} ({f.detail}). Check the network and the provider's baseUrl."


def _billing(f: _Failure) -> str:
    account = f"the account{' behind ' + f.key_env if f.key_env else ''}"
    where = f" ({f.billing_url})" if f.billing_url else ""
    if f.plan:
        when = f" It comes back {f.resets}." if f.resets else ""
        return (f"{f.who} refused {f.where}: the plan's allowance is used up or does not cover this request "
                f"({f.detail}).{when} Retrying before then will not help: wait for it, upgrade the plan of "
                f"{account}{where}, or switch the phase to another provider.")
    when = f" The limit lifts {f.resets}." if f.resets else ""
    return (f"{f.who} refused {f.where} for billing: {f.detail}.{when} Retrying will not help: top up or raise "
            f"the limit of {account}{where}, or switch the phase to another provider.")


# Each kind's sentence (who failed, why, what to do) and the setting it points at, in one table.
_SENTENCES: dict[ProblemKind, tuple[Callable[[_Failure], str], Callable[[_Failure], str | None]]] = {
    K.AUTH: (lambda f: f"{f.who} rejected the key in {f.key_env or 'its key variable'} for {f.where}: {f.detail}. "
                       f"Check or replace the key: {key_way_out(f.key_env, f.provider, f.surface)}.",
             lambda f: f"phasewise.providers.{f.provider}.apiKeyEnv"),
    K.PERMISSION: (lambda f: f"{f.who} refused {f.where}: the key is valid but not allowed this model or region "
                             f"({f.detail}). Pick another model or check the account's access.", lambda f: None),
    K.BILLING: (_billing, lambda f: None),
    K.RATE_LIMIT: (_rate_limited, lambda f: None),
    K.OVERLOADED: (lambda f: f"{f.who} is overloaded and could not serve {f.where}: {f.detail}. "
                             f"Retry {f.when or 'shortly'}.", lambda f: None),
    K.MODEL_NOT_FOUND: (lambda f: f"{f.who} does not serve model {f.model!r} for the {f.phase} phase: {f.detail}. "
                                  f"Check `phasewise.phases.{f.phase}.model` (`phasewise models {f.provider}` lists "
                                  f"them).", lambda f: f"phasewise.phases.{f.phase}.model"),
    K.CONTEXT_LENGTH: (lambda f: f"The request for {f.where} is larger than {f.model}'s window at {f.who}: "
                                 f"{f.detail}. Select a smaller range or pick a model with a larger window.",
                       lambda f: None),
    K.CAPABILITY: (lambda f: f"{f.model} at {f.who} lacks what {f.where} needs: {f.detail}.", lambda f: None),
    K.CONTENT_FILTER: (lambda f: f"{f.who}'s content filter refused {f.where}: {f.detail}. Rephrase the "
                                 f"instruction or use another model.", lambda f: None),
    K.BAD_REQUEST: (lambda f: f"{f.who} rejected the request for {f.where}: {f.detail}. Check the phase's settings "
                              f"(temperature, maxOutputTokens) for this model.", lambda f: None),
    K.SERVER_ERROR: (lambda f: f"{f.who} failed while serving {f.where}: {f.detail}. Retry shortly.", lambda f: None),
    K.TIMEOUT: (lambda f: f"{f.who} did not answer {f.where} in time: {f.detail}. Retry, or raise "
                          f"`phasewise.timeouts`.", lambda f: None),
    K.NETWORK: (lambda f: _unreachable(f), lambda f: None),
    K.CONFIG: (lambda f: f"{f.who} does not know the address Phasewise called for {f.where} ({f.detail}): check "
                         f"`phasewise.providers.{f.provider}.baseUrl` (OpenAI-protocol base URLs usually end in /v1).",
               lambda f: f"phasewise.providers.{f.provider}.baseUrl"),
}


def provider_problem(err: ProviderError, *, phase: str, provider: str, provider_name: str, model: str,
                     key_env: str | None, max_wait: float | None = None,
                     now: datetime | None = None, surface: Surface = "editor", billing_url: str = "",
                     base_url: str = "") -> Problem:
    """A classified provider failure as the contract's problem, with the way out. A billing
    problem names the provider's billing page (``billing_url``) and, for a plan window or a
    spending limit, when it comes back (``retryAt``); it is never offered as something to retry."""
    wait = err.retry_after if err.kind in _WAIT_KINDS else None
    resets = err.resets_at if err.kind is K.BILLING else None
    failure = _Failure(
        who=provider_label(provider_name, provider), where=f"the {phase} phase ({model})",
        detail=err.detail.rstrip("."), phase=phase, provider=provider, model=model, key_env=key_env,
        when=f"after {clock_time(wait, now)} (in {seconds_text(wait)})" if wait is not None else "",
        wait=wait, max_wait=max_wait, surface=surface, billing_url=billing_url, base_url=base_url or "",
        plan=err.plan_limit and err.kind is K.BILLING, resets=_reset_text(resets, now) if resets else "",
    )
    sentence, setting_of = _SENTENCES.get(err.kind, (lambda f: f"{f.who} failed {f.where}: {f.detail}.",
                                                      lambda f: None))
    text = sentence(failure)
    if err.partial_text:
        text += " The answer stopped part-way: what arrived is kept, marked incomplete; nothing was applied."
    return Problem(
        err.kind, text, phase=phase, provider=provider, model=model,
        retry_after_seconds=wait,
        retry_at=(_at(wait, now).isoformat(timespec="seconds") if wait is not None
                  else resets.astimezone().isoformat(timespec="seconds") if resets is not None else None),
        request_id=err.request_id, key_env=key_env, setting=setting_of(failure), status=err.status,
        partial_text=err.partial_text,
    )


def fallback_note(*, phase: str, kind: ProblemKind, fallbacks: list[str], tried: list[tuple[str, str]],
                  fallback_on: Collection[str], on_main: bool = True) -> str:
    """What the phase's fallbacks did, or could do, about a failure of kind ``kind``.

    ``tried`` lists the other routes that were tried, with their outcomes; ``on_main`` says the
    problem is the main route's (else a fallback's, which streamed part of an answer)."""
    if tried:
        lead = "Fallbacks tried" if on_main else "Tried before it"
        return f"{lead}: " + ", ".join(f"{label} ({outcome})" for label, outcome in tried) + "."
    if fallbacks and str(kind) not in fallback_on and kind not in {K.CONFIG, K.CANCELLED}:
        return (f"The fallbacks ({', '.join(fallbacks)}) are not used for {kind} unless "
                f"`phasewise.phases.{phase}.fallbackOn` lists it; retry on one from the quick fixes.")
    if not fallbacks and kind in TRANSIENT_KINDS:
        return f"Add `phasewise.phases.{phase}.fallbacks` to fall back to another model automatically."
    return ""


def tool_only(*, who: str, phase: str, provider: str, model: str, names: str, again: bool) -> str | Problem:
    """An answer of only tool calls (``names``) where text was asked: the status line of the one
    retry without tools, or (``again``: it came back so without any tool) the ``bad-request`` problem."""
    where = f"{who} answered the {phase} phase ({model}) with only a tool call ({names}) where text was asked"
    if not again:
        return f"{where}: asking once more without tools"
    return Problem(K.BAD_REQUEST, f"{where}, even when asked again without any tool: nothing usable came back. "
                                  f"Retry, or pick another model for `phasewise.phases.{phase}.model`.",
                   phase=phase, provider=provider, model=model, setting=f"phasewise.phases.{phase}.model")


def missing_key(*, phase: str, provider: str, provider_name: str, model: str,
                envs: tuple[str, ...], surface: Surface = "editor") -> Problem:
    # the editor's way names every variable that would do; a shell's export names the first
    names = (" or ".join(envs) if surface != "cli" else envs[0]) if envs else None
    return Problem(
        K.MISSING_CREDENTIALS,
        f"No key for {provider_label(provider_name, provider)}, needed by the {phase} phase ({model}): "
        f"{key_way_out(names, provider, surface)}. Nothing was sent.",
        phase=phase, provider=provider, model=model, key_env=envs[0] if envs else None,
        setting=f"phasewise.providers.{provider}.apiKeyEnv",
    )


def cancelled(*, phase: str, provider: str | None, model: str | None) -> Problem:
    return Problem(
        K.CANCELLED,
        f"The {phase} phase ({provider or '?'}/{model or '?'}) was cancelled; nothing was applied.",
        phase=phase, provider=provider, model=model,
    )
