"""The router: preflight, the one retry layer, per-provider cooldowns, key rotation, fallbacks.

For a phase it walks the routes in order (main model, then the configured fallbacks); for each
route the keys (``apiKeyEnv`` may list several); for each key up to ``retry.maxAttempts``
attempts. The policy, in the order it applies:

- Preflight (offline, well under a millisecond) stops a route before anything is sent: settings,
  key, model, tool calling, context window.
- A model and key that are cooling down (a provider said "rate limited until T", or a successful
  answer said its window is used up) are waited for, shared by every phase and document (per
  provider, key and model; provider-wide only when the provider says the limit is the
  account's: see ``Cooldowns``); a wait longer than
  ``retry.maxWaitSeconds`` fails at once as ``rate-limit`` with ``retryAfterSeconds``, nothing sent.
- ``rate-limit`` and ``billing`` move to the provider's next key before anything else.
- Transient kinds (rate-limit, overloaded, server-error, network, timeout) are retried after
  exactly the wait the provider asked for, else exponential backoff with jitter; a wait asked
  beyond ``retry.maxWaitSeconds`` fails at once. Other kinds are never retried.
- A failure after visible text streamed is final: it is neither retried nor sent to a fallback
  (the plan phase returns the partial text marked incomplete; the code phase applies nothing).
- When a route fails with a kind in the phase's ``fallbackOn``, the next fallback is tried.
- An answer that is only tool calls where text was asked (a server that ignores ``tool_choice``) is
  asked for once more without tools, on the same route and key; if it comes back so again, the
  route fails as ``bad-request``.

Every attempt is recorded, including those that sent nothing (``sent: false``).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from phasewise.problems import (
    KEY_ROTATION_KINDS,
    TRANSIENT_KINDS,
    Problem,
    ProblemError,
    ProblemKind,
    ProviderError,
)
from phasewise.providers.anthropic_messages import AnthropicMessagesAdapter
from phasewise.providers.base import (
    Adapter,
    CertificateError,
    ChatRequest,
    Completion,
    Endpoint,
    HttpPool,
    NetworkConfig,
    SdkClients,
    Timeouts,
)
from phasewise.providers.catalogue import ProviderSpec, billing_url_of, family_of
from phasewise.providers.waits import exhausted_until
from phasewise.router.messages import (
    clock_time,
    fallback_note,
    missing_key,
    provider_label,
    provider_problem,
    seconds_text,
    tool_only,
)
from phasewise.router.requests import output_budget as output_budget  # the phases import these from here
from phasewise.router.requests import phase_request as phase_request
from phasewise.router.routes import KeyRef, Keyring, PhaseRoute, Route, RouteResolver
from phasewise.serial import Jsonable, json_rule
from phasewise.settings import LoadedSettings
from phasewise.tokens import estimate_tokens

K = ProblemKind
# A key that answered "billing" is tried after the provider's other keys for this long.
BILLING_DEMOTION_SECONDS = 600.0


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
class Attempt(Jsonable):
    """One try of one route and key. ``wait_seconds`` is the wait the provider asked for (or,
    when nothing was sent, the cooldown left); ``sent`` is False when the router stopped the
    attempt before any request (preflight, cooldown)."""

    provider: str
    model: str
    outcome: str
    key_env: str | None = field(default=None, metadata=json_rule(omit="empty"))
    status: int | None = field(default=None, metadata=json_rule(omit="none"))
    wait_seconds: float | None = field(default=None, metadata=json_rule(omit="none", round=3))
    latency_ms: float | None = field(default=None, metadata=json_rule(omit="none", round=1))
    sent: bool = field(default=True, metadata=json_rule(omit="default"))

@dataclass(slots=True)
class Served:
    """A phase's successful call: the answer, the route that gave it, and every attempt."""

    completion: Completion
    route: Route
    attempts: list[Attempt]
    fallback_used: bool


class RouteFailed(ProblemError):
    """A phase that no route could serve; ``attempts`` tells what was tried."""

    def __init__(self, problem: Problem, attempts: list[Attempt]) -> None:
        super().__init__(problem)
        self.attempts = attempts


@dataclass(slots=True)
class _Hold:
    until: float
    why: str


class Cooldowns:
    """Per provider, key and model: "rate limited until T" (or "window used up until T"), shared
    by every phase and document, and which keys last answered ``billing`` (per key: billing is
    the account's).

    The scope rule: OpenAI's and Anthropic's limits are per model (class) and every header they
    send about them (``x-ratelimit-*``, ``anthropic-ratelimit-*``) describes the limit of the
    model the request used, so a rate limit holds only that model of that provider and key; the
    same provider's other models and every fallback stay free. A hold is provider-wide (every
    model of that provider with that key) only when the provider's own answer says the limit is
    the account's (``ProviderError.account_wide``, set by the classifier, e.g. Moonshot's
    "reached organization max RPM"). ``model=None`` is that provider-wide slot.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._holds: dict[tuple[str, str, str | None], _Hold] = {}
        self._billing: dict[tuple[str, str], float] = {}
        self._clock = clock

    def hold(self, provider: str, key_env: str, seconds: float, why: str = "rate-limited", *,
             model: str | None = None) -> None:
        until = self._clock() + max(0.0, seconds)
        slot = (provider, key_env, model)
        current = self._holds.get(slot)
        if current is None or until > current.until:
            self._holds[slot] = _Hold(until, why)

    def _hold(self, provider: str, key_env: str, model: str | None) -> _Hold | None:
        """The hold that keeps ``model`` waiting longest: its own or the provider-wide one."""
        found = [h for h in (self._holds.get((provider, key_env, None)),
                             self._holds.get((provider, key_env, model)) if model is not None else None)
                 if h is not None]
        return max(found, key=lambda h: h.until) if found else None

    def remaining(self, provider: str, key_env: str, model: str | None = None) -> float:
        """Seconds until a request for ``model`` (None: any model) of ``provider`` with ``key_env`` may go."""
        hold = self._hold(provider, key_env, model)
        return max(0.0, hold.until - self._clock()) if hold is not None else 0.0

    def why(self, provider: str, key_env: str, model: str | None = None) -> str:
        hold = self._hold(provider, key_env, model)
        return hold.why if hold is not None else ""

    def note_billing(self, provider: str, key_env: str, seconds: float = BILLING_DEMOTION_SECONDS) -> None:
        self._billing[(provider, key_env)] = self._clock() + seconds

    def billing_noted(self, provider: str, key_env: str) -> bool:
        return self._billing.get((provider, key_env), 0.0) > self._clock()


class ToolUse(Protocol):
    """On which routes a phase answers by tool call, as its edit formats say (``phases.formats``):
    the router names no format."""

    def by_tool(self, route: Route) -> bool:
        """Whether the phase of ``route`` answers by tool call there."""
        ...

    def without_tools(self, route: Route) -> str:
        """The ``editFormat`` values to suggest for a model without tool calling."""
        ...


@dataclass(slots=True)
class Preflight:
    """Offline checks before a phase spends anything; ``tool_use`` is None for a phase that asks
    for no structured answer (a plan)."""

    tool_use: ToolUse | None
    prompt_chars: int
    output_tokens: int
    problems: list[Problem] = field(default_factory=list)
    agent: bool = False  # the phase works in steps: only on a model known to call tools


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

    def endpoint(self, spec: ProviderSpec, key: KeyRef | None, network: NetworkConfig | None = None) -> Endpoint:
        return Endpoint(
            spec.id, spec.base_url, key.value if key else None,
            auth_token=bool(key and spec.auth_token_env and key.env == spec.auth_token_env),
            headers=spec.headers, network=network or NetworkConfig(), family=family_of(spec),
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


SDK_MODULES = {"openai": "openai", "anthropic": "anthropic"}  # protocol → the SDK that speaks it
_sdk_ready: set[str] = set()


async def ensure_sdk(protocol: str) -> None:
    """Import the SDK for ``protocol`` on a worker thread the first time it is needed, so the
    event loop never stalls on it (0.3–0.7 s; the warm-up imports only the protocols the settings
    route to). An import already running elsewhere is waited for on that thread too."""
    if protocol in _sdk_ready or (name := SDK_MODULES.get(protocol)) is None:
        return
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        await asyncio.to_thread(_import_sdk, name)  # not there, or still being imported
    _sdk_ready.add(protocol)


def _import_sdk(name: str) -> None:
    import gc
    import importlib

    fresh = name not in sys.modules
    importlib.import_module(name)
    if fresh:
        gc.freeze()  # its long-lived objects out of every later full collection (see warm_up)


def route_protocols(resolver: RouteResolver) -> set[str]:
    """The protocols every phase's routes (main and fallbacks) speak."""
    return {route.spec.protocol for phase in resolver.phase_names() for route in resolver.phase(phase).routes}


def _lazy_openai(clients: SdkClients) -> Adapter:
    from phasewise.providers.openai_chat import OpenAIChatAdapter

    return OpenAIChatAdapter(clients)


def preflight(resolver: RouteResolver, route: Route, check: Preflight, known: set[str] | None) -> Problem | None:
    """The first offline problem with ``route``, or None. No network, well under a millisecond."""
    spec = route.spec
    if (bound := resolver.key_problem(spec, phase=route.phase, model=route.model)) is not None:
        return bound
    if (net := network_problem(resolver.loaded, phase=route.phase, provider=spec.id, model=route.model)) is not None:
        return net
    if spec.requires_key and not resolver.keys(spec):
        envs = spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ())
        return missing_key(phase=route.phase, provider=spec.id, provider_name=spec.name,
                           model=route.model, envs=envs, surface=resolver.loaded.surface)
    if known is not None and route.model not in known:
        return Problem(
            K.MODEL_NOT_FOUND,
            f"{provider_label(spec.name, spec.id)} does not list model {route.model!r}, set for the "
            f"{route.phase} phase: check `phasewise.phases.{route.phase}.model` "
            f"(`phasewise models {spec.id}` lists what it serves).",
            phase=route.phase, provider=spec.id, model=route.model,
        )
    info = route.info
    if check.tool_use is not None and check.tool_use.by_tool(route) and info.tool_calling is False:
        other = check.tool_use.without_tools(route)
        return Problem(
            K.CAPABILITY,
            f"{route.model} at {spec.name} has no tool calling, which the {route.phase} phase uses "
            f"for structured answers: set `phasewise.phases.{route.phase}.editFormat` to {other} "
            f"or pick a model with tool calling.",
            phase=route.phase, provider=spec.id, model=route.model,
            setting=f"phasewise.phases.{route.phase}.editFormat",
        )
    if check.agent and info.tool_calling is not True:
        return Problem(
            K.CAPABILITY,
            f"The {route.phase} phase works in steps (`phasewise.phases.{route.phase}.agent`), which needs a "
            f"model known to call tools, and {route.model} at {spec.name} is "
            f"{'not one' if info.tool_calling is False else 'not known to be one'}: pick a model with tool "
            f"calling, set `phasewise.providers.{spec.id}.models.{route.model}.toolCalling: true` if it has it, "
            f"or turn `agent` off.",
            phase=route.phase, provider=spec.id, model=route.model,
            setting=f"phasewise.phases.{route.phase}.agent",
        )
    if info.context_window:
        # three characters a token and 16 more: a window check errs towards over-estimating
        needed = estimate_tokens(check.prompt_chars, chars_per_token=3) + 16 + check.output_tokens
        if needed > info.context_window:
            return Problem(
                K.CONTEXT_LENGTH,
                f"The {route.phase} phase needs about {needed:,} tokens (prompt plus answer) but "
                f"{route.model} at {spec.name} has a window of {info.context_window:,}: select a "
                f"smaller range or pick a model with a larger window.",
                phase=route.phase, provider=spec.id, model=route.model,
            )
    return None


def network_config(loaded: LoadedSettings) -> NetworkConfig:
    net = loaded.settings.network
    return NetworkConfig(ca_bundle=net.ca_bundle, proxy=net.proxy)


def network_problem(loaded: LoadedSettings, *, phase: str | None = None, provider: str | None = None,
                    model: str | None = None) -> Problem | None:
    """A ``config`` problem when ``network.caBundle`` names no readable file (found offline)."""
    bundle = loaded.settings.network.ca_bundle
    if bundle is None:
        return None
    from pathlib import Path

    path = Path(bundle).expanduser()
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Problem(K.CONFIG, f"`phasewise.network.caBundle` names {path}, which cannot be read ({reason}), so "
                                 f"the {phase or 'requested'} phase ({provider or '?'}/{model or '?'}) cannot verify "
                                 f"its provider: point it at a PEM file of CA certificates. Nothing was sent.",
                       phase=phase, provider=provider, model=model, setting="phasewise.network.caBundle")
    if b"-----BEGIN CERTIFICATE-----" not in head:
        return Problem(K.CONFIG, f"`phasewise.network.caBundle` names {path}, which holds no PEM certificate "
                                 f"(\"-----BEGIN CERTIFICATE-----\"): the {phase or 'requested'} phase "
                                 f"({provider or '?'}/{model or '?'}) cannot use it. Nothing was sent.",
                       phase=phase, provider=provider, model=model, setting="phasewise.network.caBundle")
    return None


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
        self.network = network_config(loaded)

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
        failures: list[tuple[Route, Problem]] = []
        for index, route in enumerate(phase_route.routes):
            problem = preflight(self.resolver, route, check, self.engine.known_models.get(route.provider))
            if problem is not None:
                attempts.append(Attempt(route.provider, route.model, str(problem.kind), sent=False))
                if index > 0:
                    failures.append((route, problem))
                    continue  # a fallback that cannot serve (no key, no tools, too small) is skipped
            else:
                if failures:
                    before, why = failures[-1]
                    observer.on_status(f"falling back to {route.label} ({before.label}: {why.kind})")
                try:
                    completion = await self._serve_route(route, build(route), attempts, observer)
                except RouteFailed as failed:
                    problem = failed.problem
                else:
                    return Served(completion, route, attempts, fallback_used=index > 0)
            failures.append((route, problem))
            if problem.partial_text:
                break  # the user has seen part of this answer: it stands, unfinished
            if not self._may_fall_back(phase_route, problem.kind):
                break
        raise RouteFailed(self._final_problem(phase_route, failures), attempts)

    @staticmethod
    def _may_fall_back(phase_route: PhaseRoute, kind: ProblemKind) -> bool:
        return len(phase_route.routes) > 1 and str(kind) in phase_route.fallback_on

    @staticmethod
    def _final_problem(phase_route: PhaseRoute, failures: list[tuple[Route, Problem]]) -> Problem:
        """The problem users see: the main route's (what they chose), unless a later route
        streamed part of an answer; with what the fallbacks did, or could do."""
        route, problem = failures[-1] if failures[-1][1].partial_text else failures[0]
        labels = [r.label for r in phase_route.routes[1:]]
        tried = [(r.label, str(p.kind)) for r, p in failures if r is not route]
        note = fallback_note(phase=route.phase, kind=problem.kind, fallbacks=labels, tried=tried,
                             fallback_on=phase_route.fallback_on, on_main=route is failures[0][0])
        if note:
            problem.message = f"{problem.message} {note}"
        problem.fallbacks = [label for label in labels if label != route.label]
        return problem

    def _keys(self, spec: ProviderSpec, model: str) -> list[KeyRef | None]:
        """The provider's keys, those free now first, then by shortest cooldown; keys that last
        answered ``billing`` after the others (an order, never a block: a topped-up account
        works again at once)."""
        keys = self.resolver.keys(spec)
        if not keys:
            return [None]
        cooldowns = self.engine.cooldowns
        ordered: list[KeyRef] = sorted(keys, key=lambda k: (cooldowns.billing_noted(spec.id, k.env),
                                                            cooldowns.remaining(spec.id, k.env, model)))
        return list(ordered)

    async def _serve_route(self, route: Route, request: ChatRequest, attempts: list[Attempt],
                           observer: Observer) -> Completion:
        spec = route.spec
        keys = self._keys(spec, route.model)
        for index, key in enumerate(keys):
            more_keys = index + 1 < len(keys)
            try:
                return await self._serve_key(route, request, key, attempts, observer, more_keys)
            except ProviderError as err:
                if more_keys and err.kind in KEY_ROTATION_KINDS and not err.after_output:
                    nxt = keys[index + 1]
                    observer.on_status(f"{spec.name}: {err.kind} on {_env(key)}, trying {_env(nxt)}")
                    continue
                raise RouteFailed(provider_problem(
                    err, phase=route.phase, provider=spec.id, provider_name=spec.name, model=route.model,
                    key_env=key.env if key else None, max_wait=self.retry.max_wait_seconds,
                    surface=self.loaded.surface, billing_url=billing_url_of(spec), base_url=spec.base_url,
                ), attempts) from None
        raise AssertionError("unreachable: the last key either answers or raises")

    async def _serve_key(self, route: Route, request: ChatRequest, key: KeyRef | None,
                         attempts: list[Attempt], observer: Observer, more_keys: bool) -> Completion:
        """Up to ``retry.maxAttempts`` attempts with one key; raises the error that ends them."""
        spec = route.spec
        env = _env(key)
        key_env = key.env if key else None
        cooldowns = self.engine.cooldowns
        adapter = self.engine.adapters[spec.protocol]
        await ensure_sdk(spec.protocol)
        endpoint = self.engine.endpoint(spec, key, self.network)
        max_wait = self.retry.max_wait_seconds
        for attempt_no in range(1, self.retry.max_attempts + 1):
            held = cooldowns.remaining(spec.id, env, route.model)
            if held > 0:
                why = cooldowns.why(spec.id, env, route.model)
                if held > max_wait:
                    attempts.append(Attempt(spec.id, route.model, str(K.RATE_LIMIT), key_env,
                                            wait_seconds=held, sent=False))
                    raise ProviderError(
                        K.RATE_LIMIT,
                        f"{why} until {clock_time(held)} (an earlier answer, shared by every phase using "
                        f"{spec.id}/{route.model}{' with ' + key_env if key_env else ''}); nothing was sent",
                        retry_after=held,
                    )
                await self._wait(held, f"{spec.name} {why} (shared by every phase)", observer)
            started = time.perf_counter()
            try:
                completion = await adapter.complete(endpoint, request, observer.on_text, self.timeouts)
            except ProviderError as err:
                attempts.append(Attempt(spec.id, route.model, str(err.kind), key_env, err.status,
                                        err.retry_after, (time.perf_counter() - started) * 1000))
                wait = err.retry_after if err.retry_after is not None else self._backoff(attempt_no)
                if err.kind is K.RATE_LIMIT:
                    # per model unless the provider said the limit is the account's (see Cooldowns)
                    cooldowns.hold(spec.id, env, wait, "rate-limited",
                                   model=None if err.account_wide else route.model)
                elif err.kind is K.BILLING:
                    cooldowns.note_billing(spec.id, env)
                final = (
                    err.after_output
                    or isinstance(err, CertificateError)
                    or err.kind not in TRANSIENT_KINDS
                    or (more_keys and err.kind in KEY_ROTATION_KINDS)
                    or attempt_no == self.retry.max_attempts
                    or (err.retry_after is not None and err.retry_after > max_wait)
                )
                if final:
                    raise
                await self._wait(min(wait, max_wait),
                                 f"{spec.name}: {err.kind}, attempt {attempt_no + 1} of {self.retry.max_attempts}",
                                 observer)
                continue
            calls_only = request.expects_text and completion.tool_only
            attempts.append(Attempt(spec.id, route.model, "tool-only" if calls_only else "ok", key_env,
                                    latency_ms=completion.total_ms))
            if (until := exhausted_until(completion.headers)) is not None:
                # The window is used up: pace the next request instead of sending one to be refused.
                cooldowns.hold(spec.id, env, until, "has no requests or tokens left in its window",
                               model=route.model)
            if calls_only:
                return await self._without_tools(route, request, completion, key, attempts, observer, more_keys)
            return completion
        raise AssertionError("unreachable: the last attempt either answers or raises")

    async def _without_tools(self, route: Route, request: ChatRequest, answer: Completion, key: KeyRef | None,
                             attempts: list[Attempt], observer: Observer, more_keys: bool) -> Completion:
        """Text was asked but only tool calls came back (some servers ignore ``tool_choice``): the
        request once more without tools (another prefix: one cache miss), else ``bad-request``."""
        said = tool_only(who=provider_label(route.spec.name, route.provider), phase=route.phase,
                         provider=route.provider, model=route.model, again=not request.declared_tools(),
                         names=", ".join(dict.fromkeys(c.name for c in answer.tool_calls)))
        if isinstance(said, Problem):
            raise RouteFailed(said, attempts)
        observer.on_status(said)
        return await self._serve_key(route, replace(request, tools=(), tool=None), key, attempts, observer, more_keys)

    def _backoff(self, attempt_no: int) -> float:
        base = self.retry.backoff_base_seconds * (2 ** (attempt_no - 1))
        capped = min(self.retry.backoff_max_seconds, base)
        return capped / 2 + random.uniform(0, capped / 2)

    async def _wait(self, seconds: float, why: str, observer: Observer) -> None:
        """Wait ``seconds`` (through ``engine.sleep``), telling the observer the countdown once a
        second. Counted in steps rather than against a clock so a test's instant sleep works."""
        left = seconds
        while left > 0:
            observer.on_status(f"{why}: retrying in {seconds_text(left)} (at {clock_time(left)})")
            step = min(1.0, left)
            await self.engine.sleep(step)
            left -= step
        observer.on_status(f"{why}: retrying now")


def _env(key: KeyRef | None) -> str:
    """A key's name for cooldowns and status lines: its env var (never its value)."""
    return key.env if key else "no key"
