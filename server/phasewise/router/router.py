"""The router: preflight, the one retry layer, per-provider cooldowns, key rotation, fallbacks.

For a phase it walks the routes in order (main model, then the configured fallbacks); for each
route the keys in order (``apiKeyEnv`` may list several); for each key up to
``retry.maxAttempts`` attempts. Waits are exactly what the provider asked for, else exponential
backoff with jitter; a wait longer than ``retry.maxWaitSeconds`` fails at once. Billing, auth and
the other final kinds are never retried. Every attempt is recorded.
May not import: edge.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from phasewise.phases.prompts import ToolSpec
from phasewise.problems import TRANSIENT_KINDS, PhasewiseError, Problem, ProblemKind, ProviderError
from phasewise.providers.anthropic_messages import AnthropicMessagesAdapter
from phasewise.providers.base import (
    Adapter,
    ChatRequest,
    Completion,
    Endpoint,
    HttpPool,
    SdkClients,
    Timeouts,
)
from phasewise.providers.catalogue import ProviderSpec
from phasewise.providers.classify import exhausted_until
from phasewise.router.messages import missing_key, provider_problem
from phasewise.router.routes import KeyRef, Keyring, PhaseRoute, Route, RouteResolver
from phasewise.settings import LoadedSettings

K = ProblemKind
_NEVER_FALLBACK_BY_DEFAULT = {K.AUTH, K.PERMISSION, K.BILLING}


class Observer(Protocol):
    """What a running phase tells its caller: streamed text and status lines (waits, fallbacks)."""

    def on_text(self, delta: str) -> None: ...

    def on_status(self, message: str) -> None: ...


class NullObserver:
    def on_text(self, delta: str) -> None:
        pass

    def on_status(self, message: str) -> None:
        pass


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    outcome: str
    key_env: str | None = None
    status: int | None = None
    wait_seconds: float | None = None
    latency_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "model": self.model, "outcome": self.outcome}
        if self.key_env:
            out["keyEnv"] = self.key_env
        if self.status is not None:
            out["status"] = self.status
        if self.wait_seconds is not None:
            out["waitSeconds"] = round(self.wait_seconds, 3)
        if self.latency_ms is not None:
            out["latencyMs"] = round(self.latency_ms, 1)
        return out


@dataclass(slots=True)
class Served:
    """A phase's successful call: the answer, the route that gave it, and every attempt."""

    completion: Completion
    route: Route
    attempts: list[Attempt]
    fallback_used: bool


class RouteFailed(PhasewiseError):
    """A phase that no route could serve; ``attempts`` tells what was tried."""

    def __init__(self, problem: Problem, attempts: list[Attempt]) -> None:
        super().__init__(problem)
        self.attempts = attempts


class Cooldowns:
    """Per provider and key: "rate limited until T", shared by every phase and document."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: dict[tuple[str, str], float] = {}
        self._clock = clock

    def hold(self, provider: str, key_env: str, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        slot = (provider, key_env)
        self._until[slot] = max(self._until.get(slot, 0.0), until)

    def remaining(self, provider: str, key_env: str) -> float:
        return max(0.0, self._until.get((provider, key_env), 0.0) - self._clock())


@dataclass(slots=True)
class Preflight:
    """Offline checks before a phase spends anything."""

    needs_tool: bool
    prompt_chars: int
    output_tokens: int
    problems: list[Problem] = field(default_factory=list)


def estimate_tokens(chars: int) -> int:
    # About four characters a token for code and English; errs towards over-estimating.
    return chars // 3 + 16


class Engine:
    """What the whole server shares: connection pool, SDK clients, adapters, cooldowns, keys."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self.keyring = keyring or Keyring()
        self.pool = HttpPool()
        self.clients = SdkClients(self.pool)
        self.adapters: dict[str, Adapter] = {
            "openai": _lazy_openai(self.clients),
            "anthropic": AnthropicMessagesAdapter(self.clients),
        }
        self.cooldowns = Cooldowns()
        self.known_models: dict[str, set[str]] = {}
        self.sleep: Callable[[float], Any] = asyncio.sleep

    def resolver(self, loaded: LoadedSettings) -> RouteResolver:
        return RouteResolver(loaded, self.keyring)

    def endpoint(self, spec: ProviderSpec, key: KeyRef | None) -> Endpoint:
        return Endpoint(
            spec.id, spec.base_url, key.value if key else None,
            auth_token=bool(key and spec.auth_token_env and key.env == spec.auth_token_env),
            headers=spec.headers,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


def _lazy_openai(clients: SdkClients) -> Adapter:
    from phasewise.providers.openai_chat import OpenAIChatAdapter

    return OpenAIChatAdapter(clients)


def preflight(resolver: RouteResolver, route: Route, check: Preflight, known: set[str] | None) -> Problem | None:
    """The first offline problem with ``route``, or None. No network, well under a millisecond."""
    spec = route.spec
    if spec.requires_key and not resolver.keys(spec):
        envs = spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ())
        return missing_key(phase=route.phase, provider=spec.id, provider_name=spec.name,
                           model=route.model, envs=envs)
    if known is not None and route.model not in known:
        return Problem(
            K.MODEL_NOT_FOUND,
            f"{spec.name} ({spec.id}) does not list model {route.model!r}, set for the "
            f"{route.phase} phase: check `phasewise.phases.{route.phase}.model` "
            f"(`phasewise models {spec.id}` lists what it serves).",
            phase=route.phase, provider=spec.id, model=route.model,
        )
    info = route.info
    if check.needs_tool and route.edit_format == "tool" and info.tool_calling is False:
        return Problem(
            K.CAPABILITY,
            f"{route.model} at {spec.name} has no tool calling, which the {route.phase} phase uses "
            f"for structured answers: set `phasewise.phases.{route.phase}.editFormat` to \"text\" "
            f"or pick a model with tool calling.",
            phase=route.phase, provider=spec.id, model=route.model,
            setting=f"phasewise.phases.{route.phase}.editFormat",
        )
    if info.context_window:
        needed = estimate_tokens(check.prompt_chars) + check.output_tokens
        if needed > info.context_window:
            return Problem(
                K.CONTEXT_LENGTH,
                f"The {route.phase} phase needs about {needed:,} tokens (prompt plus answer) but "
                f"{route.model} at {spec.name} has a window of {info.context_window:,}: select a "
                f"smaller range or pick a model with a larger window.",
                phase=route.phase, provider=spec.id, model=route.model,
            )
    return None


def output_budget(route: Route) -> int:
    cap = route.info.max_output_tokens or 8192
    return route.max_output_tokens or min(cap, 16_384)


class Router:
    """Serves one phase call over its routes with the policy described in the module docstring."""

    def __init__(self, engine: Engine, loaded: LoadedSettings) -> None:
        self.engine = engine
        self.loaded = loaded
        self.resolver = engine.resolver(loaded)
        s = loaded.settings
        self.retry = s.retry
        self.timeouts = Timeouts(s.timeouts.connect_seconds, s.timeouts.first_token_seconds,
                                 s.timeouts.idle_seconds)

    def check(self, phase_route: PhaseRoute, check: Preflight) -> Problem | None:
        """Preflight of the main route (the problem that stops the phase before any call)."""
        if phase_route.problem is not None:
            return phase_route.problem
        main = phase_route.main
        assert main is not None
        return preflight(self.resolver, main, check, self.engine.known_models.get(main.provider))

    async def serve(
        self,
        phase_route: PhaseRoute,
        build: Callable[[Route], ChatRequest],
        check: Preflight,
        observer: Observer,
    ) -> Served:
        attempts: list[Attempt] = []
        if phase_route.problem is not None:
            raise RouteFailed(phase_route.problem, attempts)
        routes = phase_route.routes
        labels = [r.label for r in routes[1:]]
        last: Problem | None = None
        for index, route in enumerate(routes):
            problem = preflight(self.resolver, route, check, self.engine.known_models.get(route.provider))
            if problem is not None:
                attempts.append(Attempt(route.provider, route.model, str(problem.kind)))
                if index == 0 and not self._may_fall_back(phase_route, problem.kind):
                    problem.fallbacks = labels
                    raise RouteFailed(problem, attempts)
                last = last or problem
                continue
            if index > 0:
                observer.on_status(f"falling back to {route.label}")
            try:
                completion = await self._serve_route(route, build(route), attempts, observer, labels)
            except RouteFailed as failed:
                # The main route's problem is the one users need; fallbacks only add attempts.
                last = failed.problem if index == 0 or last is None else last
                if not self._may_fall_back(phase_route, failed.problem.kind) or failed.problem.partial_text:
                    failed.problem.fallbacks = labels
                    raise RouteFailed(failed.problem, attempts) from None
                continue
            return Served(completion, route, attempts, fallback_used=index > 0)
        assert last is not None
        last.fallbacks = labels
        raise RouteFailed(last, attempts)

    @staticmethod
    def _may_fall_back(phase_route: PhaseRoute, kind: ProblemKind) -> bool:
        if len(phase_route.routes) < 2:
            return False
        return str(kind) in phase_route.fallback_on

    async def _serve_route(self, route: Route, request: ChatRequest, attempts: list[Attempt],
                           observer: Observer, fallbacks: list[str]) -> Completion:
        spec = route.spec
        keys: list[KeyRef | None] = list(self.resolver.keys(spec)) or [None]
        error: ProviderError | None = None
        key_used: KeyRef | None = None
        for key_index, key in enumerate(keys):
            key_used = key
            key_env = key.env if key else "-"
            adapter = self.engine.adapters[spec.protocol]
            endpoint = self.engine.endpoint(spec, key)
            more_keys = key_index + 1 < len(keys)
            for attempt_no in range(1, self.retry.max_attempts + 1):
                held = self.engine.cooldowns.remaining(spec.id, key_env)
                if held > 0:
                    if held > self.retry.max_wait_seconds:
                        error = ProviderError(
                            K.RATE_LIMIT, f"still rate limited for {held:.0f} s from an earlier answer",
                            retry_after=held,
                        )
                        attempts.append(Attempt(spec.id, route.model, "rate-limit", key.env if key else None,
                                                wait_seconds=held))
                        break
                    await self._wait(held, f"{spec.name} asked to wait (shared cooldown)", observer)
                started = time.perf_counter()
                try:
                    completion = await adapter.complete(endpoint, request, observer.on_text, self.timeouts)
                except ProviderError as err:
                    error = err
                    attempts.append(Attempt(spec.id, route.model, str(err.kind), key.env if key else None,
                                            err.status, err.retry_after,
                                            (time.perf_counter() - started) * 1000))
                    if err.kind is K.RATE_LIMIT:
                        self.engine.cooldowns.hold(spec.id, key_env, err.retry_after or 1.0)
                    if err.partial_text and err.after_output:
                        break  # output already streamed: do not stream it twice
                    if err.kind in {K.RATE_LIMIT, K.BILLING} and more_keys:
                        observer.on_status(f"{spec.name}: {err.kind} on {key_env}, trying the next key")
                        break
                    if err.kind not in TRANSIENT_KINDS or attempt_no == self.retry.max_attempts:
                        break
                    wait = err.retry_after if err.retry_after is not None else self._backoff(attempt_no)
                    if wait > self.retry.max_wait_seconds:
                        break
                    await self._wait(wait, f"{spec.name} {err.kind}: retry {attempt_no + 1}", observer)
                    continue
                attempts.append(Attempt(spec.id, route.model, "ok", key.env if key else None,
                                        latency_ms=completion.total_ms))
                if (until := exhausted_until(completion.headers)) is not None:
                    self.engine.cooldowns.hold(spec.id, key_env, until)
                return completion
            # Attempts on this key are over: only rate-limit and billing move on to the next key.
            if not (error is not None and error.kind in {K.RATE_LIMIT, K.BILLING} and more_keys):
                break
        assert error is not None
        problem = provider_problem(
            error, phase=route.phase, provider=spec.id, provider_name=spec.name, model=route.model,
            key_env=key_used.env if key_used else None, fallbacks=fallbacks,
        )
        raise RouteFailed(problem, attempts)

    def _backoff(self, attempt_no: int) -> float:
        base = self.retry.backoff_base_seconds * (2 ** (attempt_no - 1))
        capped = min(self.retry.backoff_max_seconds, base)
        return capped / 2 + random.uniform(0, capped / 2)

    async def _wait(self, seconds: float, why: str, observer: Observer) -> None:
        """Wait ``seconds``, telling the observer the countdown once a second."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            observer.on_status(f"{why}: waiting {left:.0f} s" if left >= 1 else f"{why}: retrying")
            await self.engine.sleep(min(1.0, left))


def phase_request(route: Route, *, system: str, user: str, tool: ToolSpec | None, stream: bool = True) -> ChatRequest:
    """The ``ChatRequest`` a phase sends on ``route``."""
    use_tool = tool is not None and route.edit_format == "tool"
    return ChatRequest(
        model=route.model, system=system, user=user, max_tokens=output_budget(route),
        tool=tool if use_tool else None, temperature=route.temperature, stream=stream,
    )
