"""From settings to routes: which provider, endpoint, key source and model serve each phase.

``RouteResolver`` merges the catalogue with the user's provider settings, resolves each phase
(its model, its fallbacks, its options) and finds keys through ``Keyring``: the environment
first, then the OS keyring (``phasewise auth set``), then keys an editor handed over in memory.
It also binds keys to origins: a key variable the catalogue names (``OPENAI_API_KEY``) is sent
only to that provider's catalogue origins or to origins the user allowed in user-level settings
(``security.allowedKeyOrigins``); settings that would send it elsewhere get a ``config`` problem
and nothing is sent. Nothing here touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from phasewise.keystore import KeyStoreInfo, OsKeyring
from phasewise.problems import Problem, ProblemKind, register_secret
from phasewise.providers.catalogue import (
    DEFAULT_MODEL,
    DEFAULT_PROVIDER,
    KEY_ORIGINS,
    ModelInfo,
    ProviderSpec,
    builtin,
    is_loopback,
    known_ids,
    origin_of,
    providers_of_env,
)
from phasewise.settings import (
    BUILTIN_PHASES,
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_EDIT_FORMAT,
    LoadedSettings,
    ModelRef,
    PhaseSettings,
    ProviderSettings,
    phase_kind,
)
from phasewise.tool_names import AGENT_TOOLS, READ_ONLY_TOOLS


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One key: the env var it comes from (what users see) and its value (never shown)."""

    env: str
    value: str
    source: str = "environment"

    def masked(self) -> str:
        v = self.value
        return f"…{v[-4:]}" if len(v) >= 16 else "set"


_DEFAULT_STORE: Any = object()

SOURCE_ENV, SOURCE_OS_KEYRING, SOURCE_EDITOR = "environment", "OS keyring", "editor secret storage"


class Keyring:
    """Keys by env var name, first found wins: the process environment, the OS keyring (keys set
    with ``phasewise auth set``), then keys an editor sent in memory.

    ``environ`` given explicitly (tests, embedding) means no OS keyring unless ``store`` is given.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, store: OsKeyring | None = _DEFAULT_STORE) -> None:
        self._environ = environ if environ is not None else os.environ
        if store is _DEFAULT_STORE:
            store = OsKeyring() if environ is None else None
        self.store: OsKeyring | None = store
        self._memory: dict[str, str] = {}

    def set_memory(self, keys: Mapping[str, str]) -> None:
        register_secret(*keys.values())  # masked everywhere from now on, even before first use
        for env, value in keys.items():
            if value:
                self._memory[env] = value
            else:
                self._memory.pop(env, None)

    def get(self, env: str) -> KeyRef | None:
        found = self._find(env)
        if found is not None:
            register_secret(found.value)  # a key is masked wherever it shows up, whatever its name
        return found

    def _find(self, env: str) -> KeyRef | None:
        if value := self._environ.get(env):
            return KeyRef(env, value, SOURCE_ENV)
        if self.store is not None and (value := self.store.get(env)):
            return KeyRef(env, value, SOURCE_OS_KEYRING)
        if value := self._memory.get(env):
            return KeyRef(env, value, SOURCE_EDITOR)
        return None

    def store_info(self) -> KeyStoreInfo:
        """Whether the OS keyring can be used here, and a plain note saying so."""
        if self.store is None:
            return KeyStoreInfo(False, "none", "the OS keyring is not consulted by this process")
        return self.store.info()

    def store_info_known(self) -> KeyStoreInfo | None:
        """``store_info()`` if it is known without asking the keyring (None: it has to be asked)."""
        if self.store is None:
            return self.store_info()
        return self.store.known_info()

    def memory_envs(self) -> list[str]:
        """Names (never values) of the keys held in memory."""
        return list(self._memory)


@dataclass(frozen=True, slots=True)
class Route:
    """One model at one provider, with everything a call needs except the key's value."""

    phase: str
    spec: ProviderSpec
    model: str
    info: ModelInfo
    temperature: float | None = None
    max_output_tokens: int | None = None
    edit_format: str = DEFAULT_EDIT_FORMAT
    kind: str = "plan"  # what the phase's answer is: plan, code or review (``settings.phase_kind``)

    @property
    def provider(self) -> str:
        return self.spec.id

    @property
    def label(self) -> str:
        return f"{self.spec.id}/{self.model}"

    def key_envs(self) -> tuple[str, ...]:
        return self.spec.key_envs


@dataclass(frozen=True, slots=True)
class PhaseRoute:
    """How a phase is served: its routes (main first, then fallbacks) or the problem why not."""

    phase: str
    routes: tuple[Route, ...] = ()
    fallback_on: frozenset[str] = frozenset()
    problem: Problem | None = None
    from_settings: bool = False
    fallback_problems: tuple[Problem, ...] = field(default=())
    kind: str = "plan"  # what the phase's answer is: plan, code or review (``settings.phase_kind``)

    @property
    def main(self) -> Route | None:
        return self.routes[0] if self.routes else None


def _override(spec: ProviderSpec, ps: ProviderSettings) -> ProviderSpec:
    models = dict(spec.models)
    for model_id, ms in ps.models.items():
        info = ModelInfo(ms.tool_calling, ms.context_window, ms.max_output_tokens, ms.vision,
                         ms.input_price_per_mtok, ms.output_price_per_mtok, ms.cache_read_price_per_mtok,
                         ms.cache_write_price_per_mtok, ms.cache_min_tokens, ms.edit_format)
        models[model_id] = models[model_id].merged(info) if model_id in models else info
    envs = ps.api_key_env
    key_envs = spec.key_envs if envs is None else ((envs,) if isinstance(envs, str) else tuple(envs))
    requires = ps.requires_key if ps.requires_key is not None else (
        spec.requires_key if envs is None else True
    )
    return replace(
        spec,
        protocol=ps.protocol or spec.protocol,
        base_url=(ps.base_url or spec.base_url).rstrip("/"),
        key_envs=key_envs,
        auth_token_env=ps.auth_token_env or spec.auth_token_env,
        requires_key=requires,
        headers=tuple({**dict(spec.headers), **ps.headers}.items()),
        models=models,
    )


class RouteResolver:
    """Resolves providers and phases from one set of loaded settings."""

    def __init__(self, loaded: LoadedSettings, keyring: Keyring) -> None:
        self.loaded = loaded
        self.keyring = keyring

    # providers -----------------------------------------------------------------------------
    def provider(self, provider_id: str, *, phase: str | None = None,
                 model: str | None = None) -> ProviderSpec | Problem:
        settings = self.loaded.settings
        if issues := self.loaded.provider_issues(provider_id):
            return Problem(
                ProblemKind.CONFIG,
                f"Settings for provider {provider_id!r} are wrong, so the {phase or 'requested'} "
                f"phase ({model or '?'}) cannot use it: "
                + "; ".join(i.describe() for i in issues),
                phase=phase, provider=provider_id, model=model, setting=issues[0].path,
            )
        base = builtin(provider_id)
        ps = settings.providers.get(provider_id)
        if base is None:
            if ps is None:
                return Problem(
                    ProblemKind.CONFIG,
                    f"Unknown provider {provider_id!r} for the {phase or 'requested'} phase "
                    f"({model or '?'}): use one of {', '.join(known_ids())} or declare it under "
                    f"`phasewise.providers.{provider_id}` with protocol, baseUrl and apiKeyEnv.",
                    phase=phase, provider=provider_id, model=model,
                    setting=f"phasewise.providers.{provider_id}",
                )
            missing = [n for n, v in (("protocol", ps.protocol), ("baseUrl", ps.base_url)) if not v]
            if missing:
                return Problem(
                    ProblemKind.CONFIG,
                    f"Provider {provider_id!r} (used by the {phase or 'requested'} phase, "
                    f"{model or '?'}) is not in the catalogue, so `phasewise.providers."
                    f"{provider_id}` must set {' and '.join(missing)}.",
                    phase=phase, provider=provider_id, model=model,
                    setting=f"phasewise.providers.{provider_id}.{missing[0]}",
                )
            base = ProviderSpec(provider_id, ps.protocol or "openai", ps.base_url or "",
                                requires_key=ps.api_key_env is not None, label=provider_id)
        return _override(base, ps) if ps is not None else base

    def allowed_origins(self) -> frozenset[str]:
        return frozenset(self.loaded.settings.security.allowed_key_origins)

    def key_problem(self, spec: ProviderSpec, *, phase: str | None = None,
                    model: str | None = None) -> Problem | None:
        """A ``config`` problem when ``spec`` would send a key where the user has not said it may
        go; None when it may go.

        A key variable the catalogue names (``OPENAI_API_KEY``) goes only to that provider's
        catalogue origins; any other variable (a provider of the user's own, or a workspace's
        ``apiKeyEnv`` naming some unrelated variable such as a cloud credential) only to a
        loopback origin. Anywhere else needs the origin in ``security.allowedKeyOrigins``, which
        is read from user-level settings only. Checked on the keys that would be sent (present in
        the environment, the OS keyring or the editor's memory): a keyless provider is never
        refused."""
        target = origin_of(spec.base_url)
        allowed = self.allowed_origins()
        if target in allowed:
            return None
        for ref in self.keys(spec):
            bound = KEY_ORIGINS.get(ref.env)
            if bound is None:
                if is_loopback(target):
                    continue
                whose = ("a variable no catalogue provider uses, so it may go only to loopback or to "
                         "an origin you allowed")
            elif target in bound:
                continue
            else:
                whose = (f"the key of {', '.join(providers_of_env(ref.env))}, bound to "
                         f"{', '.join(sorted(bound))}")
            where = f"the {phase} phase ({model or '?'})" if phase else "this check"
            return Problem(
                ProblemKind.CONFIG,
                f"Refused: {where} would send the key in {ref.env} ({whose}) to {target}, where "
                f"provider {spec.id!r} points (`phasewise.providers.{spec.id}.baseUrl`). Keys go only "
                f"where you said they may, because a repository's workspace settings could otherwise send "
                f"your key to a server of its choosing. If you trust {target} with this key (your own "
                f"proxy or gateway), allow it in your user settings, not the workspace's: "
                f"\"phasewise.security.allowedKeyOrigins\": [\"{target}\"] (VS Code user settings, "
                f"Neovim's setup(), Emacs's phasewise-user-settings, or the command line's user settings file). "
                f"Nothing was sent.",
                phase=phase, provider=spec.id, model=model, key_env=ref.env,
                setting="phasewise.security.allowedKeyOrigins",
            )
        return None

    def keys(self, spec: ProviderSpec) -> list[KeyRef]:
        found = [k for env in spec.key_envs if (k := self.keyring.get(env)) is not None]
        if not found and spec.auth_token_env and (t := self.keyring.get(spec.auth_token_env)):
            found.append(t)
        return found

    # phases --------------------------------------------------------------------------------
    def phase_names(self) -> list[str]:
        names = list(BUILTIN_PHASES)
        names += [p for p in self.loaded.settings.phases if p not in names]
        names += [p for p, _ in self.loaded.broken_phases if p not in names]
        return names

    def _route(self, phase: str, ref: ModelRef, ps: PhaseSettings | None, kind: str) -> Route | Problem:
        spec = self.provider(ref.provider, phase=phase, model=ref.model)
        if isinstance(spec, Problem):
            return spec
        info = spec.models.get(ref.model, ModelInfo())
        return Route(
            phase, spec, ref.model, info,
            temperature=ps.temperature if ps else None,
            max_output_tokens=ps.max_output_tokens if ps else None,
            # the phase's setting, else the model's default (catalogue or provider settings), else search-replace
            edit_format=(ps.edit_format if ps else None) or info.edit_format or DEFAULT_EDIT_FORMAT,
            kind=kind,
        )

    def phase(self, phase: str) -> PhaseRoute:
        """How ``phase`` is served (its kind included, whether or not it can be)."""
        kind = phase_kind(self.loaded.settings, phase)
        settings = self.loaded.settings
        if issues := self.loaded.phase_issues(phase):
            return PhaseRoute(phase, kind=kind, problem=Problem(
                ProblemKind.CONFIG,
                f"Settings for the {phase} phase are wrong: "
                + "; ".join(i.describe() for i in issues)
                + ". Fix them; the other phases keep working.",
                phase=phase, setting=issues[0].path,
            ), from_settings=True)
        ps = settings.phases.get(phase)
        ref = (ps.model if ps else None) or settings.default_model or ModelRef(
            provider=DEFAULT_PROVIDER, model=DEFAULT_MODEL
        )
        main = self._route(phase, ref, ps, kind)
        if isinstance(main, Problem):
            return PhaseRoute(phase, problem=main, from_settings=ps is not None, kind=kind)
        routes = [main]
        bad: list[Problem] = []
        for fb in ps.fallbacks if ps else ():
            r = self._route(phase, fb, ps, kind)
            (bad if isinstance(r, Problem) else routes).append(r)  # type: ignore[arg-type]
        return PhaseRoute(
            phase, tuple(routes), frozenset(ps.fallback_on if ps else ()),
            from_settings=ps is not None or settings.default_model is not None,
            fallback_problems=tuple(bad), kind=kind,
        )

    def describe(self, phase_route: PhaseRoute) -> dict[str, Any]:
        """The status view of a phase: route, key sources (masked), capabilities."""
        out: dict[str, Any] = {"phase": phase_route.phase, "fromSettings": phase_route.from_settings}
        if phase_route.main is None:
            return out

        def view(route: Route) -> dict[str, Any]:
            spec = route.spec
            keys = []
            for env in spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ()):
                k = self.keyring.get(env) if env else None
                keys.append({"env": env, "present": k is not None,
                             "source": k.source if k else None, "masked": k.masked() if k else None})
            info = route.info
            return {
                "provider": spec.id, "providerName": spec.name, "model": route.model,
                "protocol": spec.protocol, "baseUrl": spec.base_url, "simulated": spec.simulated,
                "keys": keys, "requiresKey": spec.requires_key,
                "capabilities": {
                    "toolCalling": info.tool_calling, "contextWindow": info.context_window,
                    "maxOutputTokens": info.max_output_tokens, "vision": info.vision,
                },
                "editFormat": route.edit_format,
            }

        out.update(view(phase_route.main))
        out["fallbacks"] = [view(r) for r in phase_route.routes[1:]]
        out["fallbackOn"] = sorted(phase_route.fallback_on)
        ps = self.loaded.settings.phases.get(phase_route.phase)
        out["contextTokens"] = ps.context_tokens if ps else DEFAULT_CONTEXT_TOKENS
        out["kind"] = phase_route.kind
        if out["kind"] == "code":
            out["confirm"] = ps.confirm if ps else True
        if ps is not None and ps.agent is not None:  # works in steps: its bounds and tools, as they apply
            offered = AGENT_TOOLS if phase_route.kind == "code" else READ_ONLY_TOOLS
            out["agent"] = {"maxSteps": ps.agent.max_steps, "maxCostUsd": ps.agent.max_cost_usd,
                            "tools": [t for t in offered if ps.agent.tools is None or t in ps.agent.tools],
                            "commands": list(ps.agent.commands)}
        return out
