"""Problem messages: who failed (provider, phase, model), why, and what to do.

One module builds every message so they read alike whatever the provider: the kind's sentence,
then (added by the router) what the phase's fallbacks did or could do. A rate-limit says when
retrying will work, as a clock time and in seconds.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from phasewise.problems import TRANSIENT_KINDS, Problem, ProblemKind, ProviderError
from phasewise.settings import Surface, key_way_out

K = ProblemKind
_WAIT_KINDS = {K.RATE_LIMIT, K.OVERLOADED}


def seconds_text(s: float) -> str:
    """A wait as people read it: ``350 ms``, ``12 s``, ``4 min 5 s``."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 90:
        return f"{s:.0f} s"
    minutes, rest = divmod(round(s), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


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
    """The local clock time ``seconds`` from now, ``HH:MM:SS``."""
    return _at(seconds, now).strftime("%H:%M:%S")


def provider_problem(err: ProviderError, *, phase: str, provider: str, provider_name: str, model: str,
                     key_env: str | None, max_wait: float | None = None,
                     now: datetime | None = None, surface: Surface = "editor") -> Problem:
    """A classified provider failure as the contract's problem, with the way out."""
    who = provider_label(provider_name, provider)
    where = f"the {phase} phase ({model})"
    detail = err.detail.rstrip(".")
    wait = err.retry_after if err.kind in _WAIT_KINDS else None
    when = ""
    if wait is not None:
        when = f"after {clock_time(wait, now)} (in {seconds_text(wait)})"
    too_long = wait is not None and max_wait is not None and wait > max_wait
    key_setting = f"phasewise.providers.{provider}.apiKeyEnv"
    setting: str | None = None
    if err.kind is K.AUTH:
        setting = key_setting
        text = (f"{who} rejected the key in {key_env or 'its key variable'} for {where}: {detail}. "
                f"Check or replace the key: {key_way_out(key_env, provider, surface)}.")
    elif err.kind is K.PERMISSION:
        text = (f"{who} refused {where}: the key is valid but not allowed this model or region "
                f"({detail}). Pick another model or check the account's access.")
    elif err.kind is K.BILLING:
        text = (f"{who} refused {where} for billing: {detail}. Retrying will not help: top up the "
                f"account{' behind ' + key_env if key_env else ''} or switch the phase to another provider.")
    elif err.kind is K.RATE_LIMIT:
        if too_long:
            text = (f"{who} rate-limited {where}: {detail}. It asked to wait {seconds_text(wait or 0)}, longer "
                    f"than `phasewise.retry.maxWaitSeconds` ({seconds_text(max_wait or 0)}), so Phasewise did "
                    f"not wait: retry {when}.")
        else:
            text = f"{who} rate-limited {where}: {detail}. Retry {when or 'in a little while'}."
    elif err.kind is K.OVERLOADED:
        text = f"{who} is overloaded and could not serve {where}: {detail}. Retry {when or 'shortly'}."
    elif err.kind is K.MODEL_NOT_FOUND:
        setting = f"phasewise.phases.{phase}.model"
        text = (f"{who} does not serve model {model!r} for the {phase} phase: {detail}. Check "
                f"`phasewise.phases.{phase}.model` (`phasewise models {provider}` lists them).")
    elif err.kind is K.CONTEXT_LENGTH:
        text = (f"The request for {where} is larger than {model}'s window at {who}: {detail}. Select a "
                f"smaller range or pick a model with a larger window.")
    elif err.kind is K.CAPABILITY:
        text = f"{model} at {who} lacks what {where} needs: {detail}."
    elif err.kind is K.CONTENT_FILTER:
        text = (f"{who}'s content filter refused {where}: {detail}. Rephrase the instruction or use "
                f"another model.")
    elif err.kind is K.BAD_REQUEST:
        text = (f"{who} rejected the request for {where}: {detail}. Check the phase's settings "
                f"(temperature, maxOutputTokens) for this model.")
    elif err.kind is K.SERVER_ERROR:
        text = f"{who} failed while serving {where}: {detail}. Retry shortly."
    elif err.kind is K.TIMEOUT:
        text = f"{who} did not answer {where} in time: {detail}. Retry, or raise `phasewise.timeouts`."
    elif err.kind is K.NETWORK:
        text = f"{who} could not be reached for {where} ({detail}). Check the network and the provider's baseUrl."
    elif err.kind is K.CONFIG:
        setting = f"phasewise.providers.{provider}.baseUrl"
        text = (f"{who} does not know the address Phasewise called for {where} ({detail}): check "
                f"`{setting}` (OpenAI-protocol base URLs usually end in /v1).")
    else:
        text = f"{who} failed {where}: {detail}."
    if err.partial_text:
        text += " The answer stopped part-way: what arrived is kept, marked incomplete; nothing was applied."
    return Problem(
        err.kind, text, phase=phase, provider=provider, model=model,
        retry_after_seconds=wait, retry_at=_at(wait, now).isoformat(timespec="seconds") if wait is not None else None,
        request_id=err.request_id, key_env=key_env, setting=setting, status=err.status,
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


def missing_key(*, phase: str, provider: str, provider_name: str, model: str,
                envs: tuple[str, ...], surface: Surface = "editor") -> Problem:
    # the editor's way names every variable that would do; a shell's export names the first
    names = (" or ".join(envs) if surface == "editor" else envs[0]) if envs else None
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
