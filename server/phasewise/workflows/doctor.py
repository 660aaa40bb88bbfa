"""Verify (``phasewise doctor``): live checks of every provider in use, then every phase offline.

For each provider in use (or each one named), concurrently: is there a key, does the provider
accept it (``GET /models``), is each configured model served (listed by ``/models``; when the
provider has no list or does not list it, one tiny request decides), and how long it took.
The lists are cached in ``Engine.known_models`` so preflight knows them. Then every phase gets
the offline preflight, and a phase whose main route failed a live check is marked: ``fail``
when nothing can serve it, ``degraded`` when only a fallback can.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseService
from phasewise.problems import Problem, ProblemKind, ProviderError
from phasewise.providers.base import ChatRequest, NetworkConfig, Timeouts
from phasewise.providers.catalogue import ProviderSpec
from phasewise.router.router import Engine, network_config
from phasewise.router.routes import KeyRef, PhaseRoute
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.settings import LoadedSettings
from phasewise.workflows.discovery import DISCOVERY_TIMEOUTS, provider_message, spec_and_key
from phasewise.workflows.health import health_report, read_tail
from phasewise.workflows.ledger import ledger_path

# Errors that mean "this provider has no usable /models", not "the key or the provider is bad".
_NO_LISTING = {ProblemKind.MODEL_NOT_FOUND, ProblemKind.BAD_REQUEST, ProblemKind.SERVER_ERROR}


@dataclass(slots=True)
class ModelCheck(Jsonable):
    model: str
    phases: list[str]
    ok: bool
    how: str  # "listed", "answered", "not listed", "failed", "not checked"
    latency_ms: float | None = field(default=None, metadata=json_rule(round=1))
    problem: Problem | None = None


@dataclass(slots=True)
class ProviderCheck(Jsonable):
    provider: str
    name: str
    protocol: str | None = None
    base_url: str | None = None
    key_env: str | None = None
    key_masked: str | None = None
    key_source: str | None = None  # environment, OS keyring, editor secret storage
    key_accepted: bool | None = None
    # how many models /models listed; None: no list
    listed: int | None = field(default=None, metadata=json_rule(key="listedModels"))
    latency_ms: float | None = field(default=None, metadata=json_rule(round=1))
    models: list[ModelCheck] = field(default_factory=list)
    problem: Problem | None = None
    simulated: bool = False

    @json_property
    def ok(self) -> bool:
        return self.problem is None and all(m.ok for m in self.models)

    def model_ok(self, model: str) -> bool:
        if self.problem is not None:
            return False
        found = next((m for m in self.models if m.model == model), None)
        return found is None or found.ok


@dataclass(slots=True)
class PhaseCheck(Jsonable):
    phase: str
    route: str | None
    status: str  # "ok", "degraded", "fail"
    problem: Problem | None = None


@dataclass(slots=True)
class DoctorReport(Jsonable):
    providers: list[ProviderCheck] = field(default_factory=list)
    phases: list[PhaseCheck] = field(default_factory=list)
    # providers were named: each of them must pass too
    named: bool = field(default=False, metadata=json_rule(skip=True))
    keyring: dict[str, Any] = field(default_factory=dict)  # the OS keyring: available, backend, note
    health: dict[str, Any] = field(default_factory=dict)  # provider health from the run record (workflows.health)

    @json_property
    def ok(self) -> bool:
        """True when every phase can run (a degraded one still can, on a fallback), and every
        provider asked for by name passed."""
        phases_ok = all(p.status != "fail" for p in self.phases)
        return phases_ok and (not self.named or all(p.ok for p in self.providers))


def providers_in_use(routes: list[PhaseRoute]) -> dict[str, dict[str, list[str]]]:
    """provider → model → the phases that use it (main route or fallback), in settings order."""
    used: dict[str, dict[str, list[str]]] = {}
    for pr in routes:
        for route in pr.routes:
            phases = used.setdefault(route.provider, {}).setdefault(route.model, [])
            if pr.phase not in phases:
                phases.append(pr.phase)
    return used


async def _probe_model(engine: Engine, spec: ProviderSpec, key: KeyRef | None, model: str,
                       timeouts: Timeouts, network: NetworkConfig) -> tuple[bool, float, ProviderError | None]:
    """One tiny request (streamed, as phases are): does ``model`` answer at all?"""
    request = ChatRequest(model=model, system="You are a health check. Answer with one word.",
                          user="Say OK.", max_tokens=16, stream=True)
    started = time.perf_counter()
    try:
        await engine.adapters[spec.protocol].complete(engine.endpoint(spec, key, network), request,
                                                      lambda _t: None, timeouts)
    except ProviderError as err:
        return False, (time.perf_counter() - started) * 1000, err
    return True, (time.perf_counter() - started) * 1000, None


async def check_provider(engine: Engine, loaded: LoadedSettings, provider: str, models: dict[str, list[str]],
                         timeouts: Timeouts = DISCOVERY_TIMEOUTS) -> ProviderCheck:
    resolver = engine.resolver(loaded)
    found = spec_and_key(resolver, provider)
    if isinstance(found, Problem):
        found.phase = next((p for ps in models.values() for p in ps), None)
        check = ProviderCheck(provider, provider, problem=found, key_env=found.key_env)
        known = resolver.provider(provider)  # a provider that exists but cannot be used: say what it is
        if not isinstance(known, Problem):
            check.name, check.protocol, check.base_url = known.name, known.protocol, known.base_url
            check.simulated = known.simulated
        check.models = [ModelCheck(m, ps, False, "not checked") for m, ps in models.items()]
        return check
    spec, key = found
    network = network_config(loaded)
    check = ProviderCheck(spec.id, spec.name, spec.protocol, spec.base_url, key.env if key else None,
                          key.masked() if key else None, key.source if key else None, simulated=spec.simulated)
    adapter = engine.adapters[spec.protocol]
    started = time.perf_counter()
    listed: list[str] | None = None
    try:
        listed = await adapter.list_models(engine.endpoint(spec, key, network), timeouts)
        check.key_accepted = True if key else None
    except ProviderError as err:
        if err.kind not in _NO_LISTING:
            check.latency_ms = (time.perf_counter() - started) * 1000
            check.key_accepted = False if err.kind in {ProblemKind.AUTH, ProblemKind.PERMISSION} else None
            check.problem = Problem(err.kind, provider_message(err, spec, key, "the key check (GET /models)"),
                                    provider=spec.id, key_env=key.env if key else None, status=err.status,
                                    request_id=err.request_id)
            check.models = [ModelCheck(m, ps, False, "not checked") for m, ps in models.items()]
            return check
    check.latency_ms = (time.perf_counter() - started) * 1000
    check.listed = len(listed) if listed is not None else None

    async def one(model: str, phases: list[str]) -> ModelCheck:
        if listed is not None and model in listed:
            return ModelCheck(model, phases, True, "listed")
        ok, took, err = await _probe_model(engine, spec, key, model, timeouts, network)
        if ok:
            return ModelCheck(model, phases, True, "answered", took)
        assert err is not None
        what = f"to serve model {model!r}" + (" (not in its /models list)" if listed is not None else "")
        return ModelCheck(model, phases, False, "not listed" if listed is not None else "failed", took,
                          Problem(err.kind, provider_message(err, spec, key, what), phase=phases[0] if phases
                                  else None, provider=spec.id, model=model, status=err.status,
                                  request_id=err.request_id))

    check.models = list(await asyncio.gather(*(one(m, ps) for m, ps in models.items())))
    if check.key_accepted is None and key is not None and any(m.ok for m in check.models):
        check.key_accepted = True
    if listed is not None:
        engine.known_models[spec.id] = set(listed) | {m.model for m in check.models if m.ok}
    return check


async def doctor(engine: Engine, loaded: LoadedSettings, *, providers: list[str] | None = None,
                 document: Document | None = None, timeouts: Timeouts = DISCOVERY_TIMEOUTS) -> DoctorReport:
    """Live checks of the providers in use (or ``providers``), then every phase's preflight."""
    service = PhaseService(engine)
    resolver = engine.resolver(loaded)
    routes = [resolver.phase(p) for p in resolver.phase_names()]
    used = providers_in_use(routes)
    wanted = providers or list(used)
    checks = await asyncio.gather(*(check_provider(engine, loaded, p, used.get(p, {}), timeouts) for p in wanted))
    report = DoctorReport(providers=list(checks), named=bool(providers),
                          keyring=engine.keyring.store_info().to_json())
    by_id = {c.provider: c for c in report.providers}
    doc = document or Document("untitled:phasewise-doctor", "")
    for pr in routes:
        main = pr.main
        problem = service.preflight(loaded, pr.phase, PhaseInput(doc, "doctor"))
        live_main = by_id.get(main.provider) if main else None
        status = "ok"
        if problem is not None:
            status = "fail"
        elif main is not None and live_main is not None and not live_main.model_ok(main.model):
            fallback_ok = any(
                (c := by_id.get(r.provider)) is not None and c.model_ok(r.model) for r in pr.routes[1:]
            )
            status = "degraded" if fallback_ok else "fail"
            problem = live_main.problem or next((m.problem for m in live_main.models
                                                 if m.model == main.model and m.problem), None)
            if problem is not None:
                problem = replace(problem, phase=pr.phase, model=main.model)
        report.phases.append(PhaseCheck(pr.phase, main.label if main else None, status, problem))
    report.health = health_report(read_tail(ledger_path(loaded.settings.ledger_path)), resolver)
    return report
