"""Model discovery: what a provider serves, from its ``/models`` list, cached on the engine.

``Engine.known_models`` is what preflight reads: once a provider's list is known, a phase set to
a model the provider does not list fails with ``model-not-found`` before anything is sent.
``model_completions`` offers those ids (and the catalogue's) while a settings file is edited.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from phasewise.problems import Problem, ProblemKind, ProviderError
from phasewise.providers.base import Timeouts
from phasewise.providers.catalogue import ModelInfo, ProviderSpec, known_ids
from phasewise.router.messages import provider_label
from phasewise.router.router import Engine, network_config, network_problem
from phasewise.router.routes import KeyRef, RouteResolver
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.settings import LoadedSettings

DISCOVERY_TIMEOUTS = Timeouts(connect=10.0, first_token=30.0, idle=30.0)


@dataclass(slots=True)
class Discovery(Jsonable):
    """A provider's model list (``models`` is None when it could not be had, with ``problem``)."""

    provider: str
    name: str
    protocol: str | None = None
    base_url: str | None = None
    models: list[str] | None = field(default=None, metadata=json_rule(skip=True))
    latency_ms: float | None = field(default=None, metadata=json_rule(round=1, encode=lambda v: v or None))
    problem: Problem | None = None
    catalogue: dict[str, ModelInfo] = field(default_factory=dict, metadata=json_rule(skip=True))

    @json_property
    def ok(self) -> bool:
        return self.problem is None

    @json_property(key="models")
    def model_views(self) -> list[ModelView] | None:
        """Each listed model, with what the catalogue knows of it."""
        if self.models is None:
            return None
        return [ModelView.of(m, self.catalogue.get(m)) for m in self.models]


@dataclass(frozen=True, slots=True)
class ModelView(Jsonable):
    """A listed model as ``phasewise.models`` shows it."""

    id: str
    in_catalogue: bool
    tool_calling: bool | None = field(default=None, metadata=json_rule(when=lambda v: v.in_catalogue))
    context_window: int | None = field(default=None, metadata=json_rule(when=lambda v: v.in_catalogue))
    input_price_per_mtok: float | None = field(default=None, metadata=json_rule(when=lambda v: v.in_catalogue))
    output_price_per_mtok: float | None = field(default=None, metadata=json_rule(when=lambda v: v.in_catalogue))

    @classmethod
    def of(cls, model: str, known: ModelInfo | None) -> ModelView:
        if known is None:
            return cls(model, False)
        return cls(model, True, known.tool_calling, known.context_window, known.input_price_per_mtok,
                   known.output_price_per_mtok)


def provider_message(err: ProviderError, spec: ProviderSpec, key: KeyRef | None, what: str) -> str:
    """A live check's failure: who, what was checked, why, and what to do."""
    who = provider_label(spec.name, spec.id)
    detail = err.detail.rstrip(".")
    env = key.env if key else None
    todo = {
        ProblemKind.AUTH: f"check or replace the key in {env or 'its key variable'}",
        ProblemKind.PERMISSION: "check the account's access to this model or region",
        ProblemKind.BILLING: "top up the account or route the phases elsewhere",
        ProblemKind.MODEL_NOT_FOUND: "check the model id (`phasewise models " + spec.id + "` lists them)",
        ProblemKind.NETWORK: f"check the network and the provider's baseUrl ({spec.base_url})",
        ProblemKind.TIMEOUT: "retry, or check the provider's status",
        ProblemKind.RATE_LIMIT: "retry later",
        ProblemKind.OVERLOADED: "retry shortly",
    }.get(err.kind, "retry, or check the provider's settings")
    return f"{who} failed {what}: {detail}. To fix: {todo}."


def spec_and_key(resolver: RouteResolver, provider: str) -> tuple[ProviderSpec, KeyRef | None] | Problem:
    spec = resolver.provider(provider)
    if isinstance(spec, Problem):
        return spec
    if (refused := resolver.key_problem(spec)) is not None:
        return refused
    if (net := network_problem(resolver.loaded, provider=spec.id)) is not None:
        return net
    keys = resolver.keys(spec)
    if spec.requires_key and not keys:
        envs = spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ())
        names = " or ".join(envs) if envs else "its key variable"
        return Problem(ProblemKind.MISSING_CREDENTIALS,
                       f"No key for {provider_label(spec.name, spec.id)}: set {names}. Nothing was sent.",
                       provider=spec.id, key_env=envs[0] if envs else None)
    return spec, (keys[0] if keys else None)


async def discover(engine: Engine, loaded: LoadedSettings, provider: str,
                   timeouts: Timeouts = DISCOVERY_TIMEOUTS) -> Discovery:
    """Ask ``provider`` for its models and cache the answer in ``engine.known_models``."""
    resolver = engine.resolver(loaded)
    found = spec_and_key(resolver, provider)
    if isinstance(found, Problem):
        return Discovery(provider, provider, problem=found)
    spec, key = found
    out = Discovery(spec.id, spec.name, spec.protocol, spec.base_url, catalogue=dict(spec.models))
    adapter = engine.adapters[spec.protocol]
    started = time.perf_counter()
    try:
        out.models = await adapter.list_models(engine.endpoint(spec, key, network_config(loaded)), timeouts)
    except ProviderError as err:
        out.problem = Problem(err.kind, provider_message(err, spec, key, "to list its models (GET /models)"),
                              provider=spec.id, key_env=key.env if key else None, status=err.status,
                              request_id=err.request_id)
        return out
    finally:
        out.latency_ms = (time.perf_counter() - started) * 1000
    engine.known_models[spec.id] = set(out.models)
    return out


# ----------------------------------------------------------------------- settings completion

_MODEL_KEY = re.compile(r'"(?:model|defaultModel|fallbacks|phasewise\.defaultModel)"\s*:\s*\[?[^\]:{}]*$')
_OPEN_STRING = re.compile(r'"((?:[^"\\]|\\.)*)$')


@dataclass(frozen=True, slots=True)
class Completion:
    """One completion: the text that replaces the typed part of the string, and a detail."""

    label: str
    detail: str
    replace_from: int  # column where the typed part of the string starts


def model_completions(before: str, providers: dict[str, ProviderSpec],
                      known_models: dict[str, set[str]]) -> list[Completion]:
    """Model references for a cursor in a settings file; ``before`` is the text up to the cursor.

    Only inside a string that is the value of ``"model"``, ``"defaultModel"`` or an item of
    ``"fallbacks"``: before a slash, provider ids (``"zai/"``); after it, that provider's models
    (discovered, then the catalogue's). Anything else gets no completions."""
    before = before[-4000:]
    line = before.rsplit("\n", 1)[-1]
    string = _OPEN_STRING.search(line)
    if string is None or line[: string.start()].count('"') % 2:
        return []
    head = before[: len(before) - len(line) + string.start()]
    if not _MODEL_KEY.search(head):
        return []
    typed = string.group(1)
    start = string.start() + 1
    provider, slash, _partial = typed.partition("/")
    if not slash:
        return [Completion(f"{p}/", spec.name if spec else p, start)
                for p in sorted(set(providers) | set(known_ids()))
                if p.startswith(provider) for spec in [providers.get(p)]]
    spec = providers.get(provider)
    models = set(known_models.get(provider, ())) | set(spec.models if spec else ())
    out = []
    for model in sorted(models):
        info = spec.models.get(model) if spec else None
        listed = model in known_models.get(provider, ())
        bits = ["served (discovered)" if listed else "in the catalogue"]
        if info is not None and info.context_window:
            bits.append(f"{info.context_window:,} tokens")
        if info is not None and info.tool_calling is False:
            bits.append("no tool calling")
        out.append(Completion(f"{provider}/{model}", ", ".join(bits), start))
    return out
