"""Problem messages: who failed (provider, phase, model), why, and what to do.

One function builds every message so they read alike whatever the provider.
May not import: edge, phases.
"""

from __future__ import annotations

from phasewise.problems import Problem, ProblemKind, ProviderError

K = ProblemKind


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s >= 1 else f"{s * 1000:.0f} ms"


def provider_problem(err: ProviderError, *, phase: str, provider: str, provider_name: str,
                     model: str, key_env: str | None, fallbacks: list[str]) -> Problem:
    """A classified provider failure as the contract's problem, with the way out."""
    who = f"{provider_name} ({provider})"
    where = f"the {phase} phase ({model})"
    detail = err.detail.rstrip(".")
    fb = f" or use a fallback ({', '.join(fallbacks)})" if fallbacks else (
        f" or add `phasewise.phases.{phase}.fallbacks`"
    )
    todo = {
        K.AUTH: f"{who} rejected the key in {key_env or 'its key variable'} for {where}: {detail}. "
        f"Check or replace the key in {key_env or 'that variable'}.",
        K.PERMISSION: f"{who} refused {where}: the key is valid but not allowed this model or "
        f"region ({detail}). Pick another model or check the account's access.",
        K.BILLING: f"{who} refused {where} for billing: {detail}. Retrying will not help: top up "
        f"the account or switch the phase to another provider{fb[3:] if fallbacks else ''}.",
        K.RATE_LIMIT: f"{who} rate-limited {where}: {detail}. "
        + (f"Retry in {_secs(err.retry_after)}" if err.retry_after is not None else "Retry later")
        + f"{fb}.",
        K.OVERLOADED: f"{who} is overloaded and could not serve {where}: {detail}. Retry shortly{fb}.",
        K.MODEL_NOT_FOUND: f"{who} does not serve model {model!r} for the {phase} phase: {detail}. "
        f"Check `phasewise.phases.{phase}.model` (`phasewise models {provider}` lists them).",
        K.CONTEXT_LENGTH: f"The request for {where} is larger than {model}'s window at {who}: "
        f"{detail}. Select a smaller range or pick a model with a larger window.",
        K.CAPABILITY: f"{model} at {who} lacks what {where} needs: {detail}.",
        K.CONTENT_FILTER: f"{who}'s content filter refused {where}: {detail}. Rephrase the "
        f"instruction or use another model.",
        K.BAD_REQUEST: f"{who} rejected the request for {where}: {detail}. Check the phase's "
        f"settings (temperature, maxOutputTokens) for this model.",
        K.SERVER_ERROR: f"{who} failed while serving {where}: {detail}. Retry shortly{fb}.",
        K.TIMEOUT: f"{who} did not answer {where} in time: {detail}. Retry, or raise "
        f"`phasewise.timeouts`{fb}.",
        K.NETWORK: f"{who} could not be reached for {where} ({detail}). Check the network and "
        f"the provider's baseUrl{fb}.",
    }.get(err.kind, f"{who} failed {where}: {detail}.")
    return Problem(
        err.kind, todo, phase=phase, provider=provider, model=model,
        retry_after_seconds=err.retry_after if err.kind in {K.RATE_LIMIT, K.OVERLOADED} else None,
        request_id=err.request_id, key_env=key_env, status=err.status,
        fallbacks=list(fallbacks), partial_text=err.partial_text,
    )


def missing_key(*, phase: str, provider: str, provider_name: str, model: str,
                envs: tuple[str, ...]) -> Problem:
    names = " or ".join(envs) if envs else "its key variable"
    return Problem(
        K.MISSING_CREDENTIALS,
        f"No key for {provider_name} ({provider}), needed by the {phase} phase ({model}): set "
        f"{names} in the environment the editor starts Phasewise from, or use the editor's "
        f"'Phasewise: Set API key' command. Nothing was sent.",
        phase=phase, provider=provider, model=model, key_env=envs[0] if envs else None,
    )


def cancelled(*, phase: str, provider: str | None, model: str | None) -> Problem:
    return Problem(
        K.CANCELLED,
        f"The {phase} phase ({provider or '?'}/{model or '?'}) was cancelled; nothing was applied.",
        phase=phase, provider=provider, model=model,
    )
