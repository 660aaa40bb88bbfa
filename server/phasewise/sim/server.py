"""The simulator's loopback HTTP/1.1 server (asyncio streams + h11), its routing and its records.

One port serves many named simulated providers: the first path segment is the provider name,
``/<name>/v1/chat/completions`` speaks OpenAI, ``/<name>/v1/messages`` speaks Anthropic and
``/<name>/v1/models`` lists models in whichever shape the caller expects. ``/_sim/*`` is the
control surface (faults, reset, config, request log). Every request is recorded with its
outcome, every connection with who closed it, so tests wait for events instead of sleeping.

This is a SIMULATOR: it never talks to a real provider and never prints an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any, ClassVar

import h11

import phasewise.sim.agent as agent
import phasewise.sim.answers as answers
import phasewise.sim.wire as wire
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.sim.faults import (
    GARBAGE,
    HTML_PAGE,
    FaultContext,
    FaultPlan,
    FaultRule,
    anthropic_error,
    fault_label,
    make_rule,
    normalise_fault,
    preset_names,
    resolve,
    rule_from_json,
)

log = logging.getLogger("phasewise.sim")

DEFAULT_MODELS: tuple[str, ...] = ("sim-fast", "sim-smart", "sim-coder", "sim-reviewer")
NOTICE = "Phasewise provider SIMULATOR: answers are generated locally by rule; this is not a real model provider."
MAX_BODY = 32 * 1024 * 1024
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}
_CONFIG_KEYS = frozenset({"models", "require_key", "reject_keys", "first_token_ms", "chunk_interval_ms",
                          "chunk_words", "ratelimit_headers", "owned_by", "prompt_cache"})
# Implicit prompt caches (OpenAI, Z.AI, DeepSeek): the shortest cached prefix and the step its
# hits come in, in tokens. Anthropic's explicit cache needs 1,024 tokens up to its mark.
_IMPLICIT_CACHE = {"openai": (1024, 128), "zai": (1024, 128), "deepseek": (64, 64)}
ANTHROPIC_CACHE_MIN = 1024
_CACHE_ENTRIES = 128  # prompts (or marked prefixes) remembered per provider and model


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class SimRequest(Jsonable):
    """One request as the simulator saw it. ``api_key`` stays in memory, never in logs or JSON."""

    id: str
    number: int
    provider: str
    protocol: str | None  # "openai" | "anthropic" | None (unknown path)
    endpoint: str  # "chat" | "models" | "count_tokens" | "unknown"
    method: str
    path: str
    model: str | None
    stream: bool
    __json_case__: ClassVar[str] = "snake"

    api_key: str | None = field(repr=False, metadata=json_rule(skip=True))
    headers: dict[str, str]
    body: Any
    connection_id: int
    started_at: float
    phase: str | None = None
    finished_at: float | None = None
    outcome: str | None = None  # None while in flight; "ok", "fault:<name>", "client-closed", "error:<status>"
    status: int | None = None
    fault: str | None = None
    chunks_sent: int = 0

    @json_property
    def has_key(self) -> bool:
        return self.api_key is not None


@dataclass(slots=True)
class SimConnection(Jsonable):
    """One TCP connection: when it opened and closed, who closed it, which requests it carried."""

    __json_case__: ClassVar[str] = "snake"

    id: int
    peer: str
    opened_at: float
    closed_at: float | None = None
    closed_by: str | None = None  # "client" | "server"
    requests: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClientClose(Jsonable):
    """The client closed a connection while a request on it was still being answered."""

    __json_case__: ClassVar[str] = "snake"

    request_id: str
    connection_id: int
    provider: str
    stream: bool
    chunks_sent: int
    at: float


@dataclass(slots=True)
class ProviderConfig:
    """Settings of one provider name (or, for the simulator-wide entry, of all); None = inherit."""

    models: tuple[str, ...] | None = None
    require_key: bool | None = None
    reject_keys: frozenset[str] | None = None
    first_token_ms: float | None = None
    chunk_interval_ms: float | None = None
    chunk_words: int | None = None
    ratelimit_headers: dict[str, str] | None = None
    owned_by: str | None = None
    prompt_cache: str | None = None


def _config_update(cfg: ProviderConfig, options: Mapping[str, Any]) -> None:
    unknown = set(options) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown config option(s): {', '.join(sorted(unknown))}")
    for key, value in options.items():
        if value is None:
            setattr(cfg, key, None)
        elif key == "models":
            if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                raise ValueError("models is a list of model ids")
            cfg.models = tuple(value)
        elif key == "reject_keys":
            cfg.reject_keys = frozenset(str(k) for k in value)
        elif key == "require_key":
            cfg.require_key = bool(value)
        elif key in {"first_token_ms", "chunk_interval_ms"}:
            if float(value) < 0:
                raise ValueError(f"{key} must not be negative")
            setattr(cfg, key, float(value))
        elif key == "chunk_words":
            cfg.chunk_words = max(1, int(value))
        elif key == "ratelimit_headers":
            cfg.ratelimit_headers = {str(k).lower(): str(v) for k, v in dict(value).items()}
        elif key == "prompt_cache":
            if value not in wire.CACHE_SHAPES:
                raise ValueError(f"prompt_cache is one of {', '.join(wire.CACHE_SHAPES)} (or null: off)")
            cfg.prompt_cache = str(value)
        else:
            cfg.owned_by = str(value)


@dataclass(slots=True)
class FaultMix:
    """A seeded random share of faulty answers (soak tests): each chat request not already
    claimed by a queued rule fails with probability ``rate``, with a fault drawn from ``faults``."""

    rate: float
    faults: list[dict[str, Any]]
    rng: random.Random
    provider: str | None = None
    seen: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def draw(self, provider: str) -> FaultRule | None:
        self.seen += 1
        if self.rng.random() >= self.rate:
            return None
        fault = dict(self.rng.choice(self.faults))
        self.counts[fault_label(fault)] += 1
        return FaultRule(fault, provider=provider, hits=1)


# --------------------------------------------------------------------------- connection


def _reason(status: int) -> bytes:
    if status == 529:
        return b"Overloaded"
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class _Conn:
    """One client connection: h11 state, a reader that notices the client closing, and writes."""

    def __init__(self, sim: Simulator, record: SimConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.record = record
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)
        self.got_data = asyncio.Event()
        self.eof = asyncio.Event()
        self.inflight: SimRequest | None = None
        self.closing = False
        self.pump: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        # One reader for the connection's life: feeds h11 and notices the client going away even
        # while we stream (the only way to see a disconnect during a stall).
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.h11.receive_data(data)
                self.got_data.set()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):
                self.h11.receive_data(b"")
            self.eof.set()
            self.got_data.set()
            if not self.closing:
                self.sim._client_went_away(self)

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.got_data.clear()
                await self.got_data.wait()
                continue
            return event

    def writable(self) -> bool:
        return not self.eof.is_set() and not self.writer.transport.is_closing()

    async def write(self, data: bytes, *, drain: bool = True) -> bool:
        if not self.writable():
            return False
        self.writer.write(data)
        if drain:
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                return False
        return self.writable()

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if self.writable():
                await self.writer.drain()

    def start(self, status: int, headers: Mapping[str, str]) -> bytes:
        pairs = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in headers.items()]
        return self.h11.send(h11.Response(status_code=status, headers=pairs, reason=_reason(status))) or b""

    def chunk(self, data: bytes) -> bytes:
        return self.h11.send(h11.Data(data=data)) or b""

    def end(self) -> bytes:
        return self.h11.send(h11.EndOfMessage()) or b""

    async def pause(self, seconds: float) -> bool:
        """Wait, unless the client goes away first; False if it did."""
        if self.eof.is_set():
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
            return not self.eof.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self.eof.wait()
        except TimeoutError:
            return True
        return False

    def close(self, *, abort: bool = False) -> None:
        self.closing = True
        transport = self.writer.transport
        if abort:
            transport.abort()
        else:
            transport.close()


# --------------------------------------------------------------------------- simulator


class Simulator:
    """Simulated OpenAI- and Anthropic-protocol providers on one loopback port."""

    def __init__(
        self,
        *,
        first_token_ms: float = 20.0,
        chunk_interval_ms: float = 2.0,
        chunk_words: int = 3,
        models: Iterable[str] = DEFAULT_MODELS,
        on_finish: Callable[[SimRequest], None] | None = None,
    ) -> None:
        self._base = ProviderConfig(
            models=tuple(models), require_key=False, reject_keys=frozenset(), first_token_ms=first_token_ms,
            chunk_interval_ms=chunk_interval_ms, chunk_words=max(1, chunk_words), ratelimit_headers={},
        )
        self._initial_base = replace(self._base)
        self._configs: dict[str, ProviderConfig] = {}
        self.on_finish = on_finish
        self._lock = threading.RLock()
        self._rules: list[FaultRule] = []
        self._mix: FaultMix | None = None
        self._requests: list[SimRequest] = []
        self._prompt_caches: dict[tuple[str, str], list[str]] = {}
        self._connections: dict[int, SimConnection] = {}
        self._client_closes: list[ClientClose] = []
        self._counter = 0
        self._conn_counter = 0
        self._ids = 0
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], _Conn | None] = {}
        self._changed: asyncio.Event | None = None
        self._stopping = False
        self.host = "127.0.0.1"
        self.port = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._changed = asyncio.Event()
        self._stopping = False
        self._server = await asyncio.start_server(self._on_connect, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = host, int(sockname[1])
        return self

    async def stop(self) -> None:
        """Stop serving and close every connection, stalled streams included; never hangs."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        server.close()
        handlers = list(self._handlers.items())
        for _task, conn in handlers:
            if conn is not None:
                if conn.inflight is not None:
                    self._finish(conn.inflight, "server-stopped")
                conn.closing = True
        for task, conn in handlers:
            if conn is not None:
                conn.close(abort=True)
            task.cancel()
        if handlers:
            await asyncio.wait([t for t, _ in handlers], timeout=5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()

    async def __aenter__(self) -> Simulator:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, name: str, protocol: str = "openai") -> str:
        """The SDK ``base_url`` of simulated provider ``name`` for ``protocol``."""
        if not name or "/" in name or name == "_sim":
            raise ValueError(f"not a usable provider name: {name!r}")
        if protocol == "openai":
            return f"{self.url}/{name}/v1"
        if protocol == "anthropic":
            return f"{self.url}/{name}"
        raise ValueError("protocol is 'openai' or 'anthropic'")

    # ----------------------------------------------------------------- configuration & faults

    def add_fault(
        self,
        fault: str | Mapping[str, Any] | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        protocol: str | None = None,
        phase: str | None = None,
        endpoint: str = "chat",
        times: int = 1,
        skip: int = 0,
        **params: Any,
    ) -> FaultRule:
        """Queue one fault (after ``skip`` matching requests went through). ``fault`` is a preset name,
        a fault object, or a whole rule object."""
        if isinstance(fault, Mapping) and "fault" in fault:
            if params or provider or model or protocol or phase:
                raise ValueError("pass either a whole rule object or a fault with keyword arguments")
            rule = rule_from_json(fault)
        else:
            rule = make_rule(fault, provider=provider, model=model, protocol=protocol, phase=phase,
                             endpoint=endpoint, times=times, params=params, skip=skip)
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_rules(self, rules: Iterable[Mapping[str, Any]]) -> list[FaultRule]:
        """Queue rules in their JSON form (all or none: a bad rule queues nothing)."""
        built = [rule_from_json(r) for r in rules]
        with self._lock:
            self._rules.extend(built)
        return built

    @property
    def faults(self) -> list[FaultRule]:
        with self._lock:
            return [replace(r, fault=dict(r.fault)) for r in self._rules]

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()
            self._mix = None

    def set_fault_mix(self, rate: float, faults: Iterable[str | Mapping[str, Any]], *, seed: int = 0,
                      provider: str | None = None) -> FaultMix:
        """Fail a share ``rate`` of chat requests (of ``provider``, or all) with faults drawn from
        ``faults``, reproducibly (``seed``). Queued rules still come first. ``fault_mix_counts``
        tells which faults were served how often."""
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError("rate is a share between 0 and 1")
        built = [normalise_fault(f) for f in faults]
        if not built:
            raise ValueError("a fault mix needs at least one fault")
        mix = FaultMix(float(rate), built, random.Random(seed), provider)
        with self._lock:
            self._mix = mix
        return mix

    @property
    def fault_mix_counts(self) -> dict[str, int]:
        """Chat requests the mix looked at (``requests``), faults served (``faulted``), and each fault's count."""
        with self._lock:
            mix = self._mix
            if mix is None:
                return {}
            return {"requests": mix.seen, "faulted": sum(mix.counts.values()), **dict(sorted(mix.counts.items()))}

    def configure(self, provider: str | None = None, **options: Any) -> None:
        """Set options for one provider name, or (``provider=None``) the defaults of all.

        Options: ``models`` (served list; per name it also makes unknown models a 404),
        ``require_key``, ``reject_keys``, ``first_token_ms``, ``chunk_interval_ms``, ``chunk_words``,
        ``ratelimit_headers`` (merged into successful responses), ``owned_by``, ``prompt_cache``
        (report prompt caching in one provider's usage shape: ``anthropic``, ``openai``, ``zai``,
        ``deepseek``; see ``_prompt_cache``). ``None`` resets one.
        """
        with self._lock:
            if provider is None:
                probe = replace(self._base)
                _config_update(probe, options)
                for key in ("require_key", "first_token_ms", "chunk_interval_ms", "chunk_words"):
                    if getattr(probe, key) is None:
                        setattr(probe, key, getattr(self._initial_base, key))
                if probe.models is None:
                    probe.models = self._initial_base.models
                self._base = probe
            else:
                if not provider or "/" in provider or provider == "_sim":
                    raise ValueError(f"not a usable provider name: {provider!r}")
                cfg = replace(self._configs.get(provider) or ProviderConfig())
                _config_update(cfg, options)
                self._configs[provider] = cfg

    def _setting(self, provider: str, key: str) -> Any:
        with self._lock:
            cfg = self._configs.get(provider)
            value = getattr(cfg, key) if cfg is not None else None
            return getattr(self._base, key) if value is None else value

    def reset(self) -> None:
        """Forget faults, requests, closes and per-provider config (keeps constructor defaults)."""
        with self._lock:
            self._rules.clear()
            self._mix = None
            self._requests.clear()
            self._prompt_caches.clear()
            self._client_closes.clear()
            self._configs.clear()
            self._base = replace(self._initial_base)
            self._connections = {k: v for k, v in self._connections.items() if v.closed_at is None}

    # ----------------------------------------------------------------- observation

    @property
    def requests(self) -> list[SimRequest]:
        with self._lock:
            return [replace(r, headers=dict(r.headers)) for r in self._requests]

    @property
    def connections(self) -> list[SimConnection]:
        with self._lock:
            return [replace(c, requests=list(c.requests)) for c in self._connections.values()]

    @property
    def client_closes(self) -> list[ClientClose]:
        with self._lock:
            return list(self._client_closes)

    def _select(self, provider: str | None, endpoint: str | None, finished: bool) -> list[SimRequest]:
        with self._lock:
            return [
                replace(r, headers=dict(r.headers)) for r in self._requests
                if (provider is None or r.provider == provider)
                and (endpoint is None or r.endpoint == endpoint)
                and (not finished or r.outcome is not None)
            ]

    # The timeouts below are part of the API on purpose: running out raises a TimeoutError that
    # says what did arrive, which a bare asyncio.timeout() around the call could not.
    async def _wait(self, ready: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
        if self._changed is None:
            raise RuntimeError("the simulator is not running")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    got = ready()
                    if got is not None:
                        return got
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(describe()) from None

    async def await_requests(
        self, n: int = 1, timeout: float = 10.0, *, provider: str | None = None,
        endpoint: str | None = None, finished: bool = False,
    ) -> list[SimRequest]:
        """Wait (in the simulator's loop) until ``n`` matching requests arrived (or finished)."""

        def ready() -> list[SimRequest] | None:
            got = self._select(provider, endpoint, finished)
            return got if len(got) >= n else None

        def describe() -> str:
            got = self._select(provider, endpoint, finished)
            seen = ", ".join(f"{r.id} {r.provider} {r.endpoint} {r.outcome}" for r in got) or "none"
            return f"waited {timeout}s for {n} request(s); have {len(got)}: {seen}"

        result: list[SimRequest] = await self._wait(ready, timeout, describe)
        return result

    async def await_client_close(self, timeout: float = 10.0, count: int = 1) -> ClientClose:
        """Wait until the client has closed ``count`` connections with a request in flight."""

        def ready() -> ClientClose | None:
            with self._lock:
                return self._client_closes[count - 1] if len(self._client_closes) >= count else None

        def describe() -> str:
            return f"waited {timeout}s for {count} client close(s); have {len(self.client_closes)}"

        result: ClientClose = await self._wait(ready, timeout, describe)
        return result

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _finish(self, rec: SimRequest, outcome: str, status: int | None = None) -> bool:
        with self._lock:
            if rec.outcome is not None:
                return False
            rec.outcome = outcome
            rec.finished_at = time.time()
            if status is not None:
                rec.status = status
        self._notify()
        if self.on_finish is not None:
            try:
                self.on_finish(rec)
            except Exception:
                log.exception("on_finish callback failed")
        return True

    def _client_went_away(self, conn: _Conn) -> None:
        now = time.time()
        with self._lock:
            if conn.record.closed_by is None:
                conn.record.closed_by = "client"
        rec = conn.inflight
        if rec is None or self._stopping:
            return
        if self._finish(rec, "client-closed"):
            with self._lock:
                self._client_closes.append(
                    ClientClose(rec.id, conn.record.id, rec.provider, rec.stream, rec.chunks_sent, now)
                )
            self._notify()

    # ----------------------------------------------------------------- connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._conn_counter += 1
            peer = writer.get_extra_info("peername")
            record = SimConnection(self._conn_counter, str(peer[0]) if peer else "?", time.time())
            self._connections[record.id] = record
        conn = _Conn(self, record, reader, writer)
        self._handlers[task] = conn
        if self._stopping:
            conn.close(abort=True)
            self._handlers.pop(task, None)
            return
        conn.pump = asyncio.create_task(conn._pump())
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            pass  # stop() cancels us; the transport is already aborted
        except Exception:
            log.exception("simulator connection %s failed", record.id)
        finally:
            with self._lock:
                if record.closed_by is None:
                    record.closed_by = "server"
                record.closed_at = time.time()
            if not conn.writer.transport.is_closing():
                conn.close()
            else:
                conn.closing = True
            if conn.pump is not None:
                conn.pump.cancel()
            self._handlers.pop(task, None)
            self._notify()

    async def _serve(self, conn: _Conn) -> None:
        while True:
            try:
                event = await conn.next_event()
                if not isinstance(event, h11.Request):
                    return
                request = event
                body = bytearray()
                while True:
                    event = await conn.next_event()
                    if isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_BODY:
                            await self._plain_error(conn, 413, "request body too large")
                            return
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
            except h11.RemoteProtocolError as exc:
                if conn.h11.our_state in {h11.IDLE, h11.SEND_RESPONSE} and conn.writable():
                    await self._plain_error(conn, exc.error_status_hint or 400, f"bad HTTP request: {exc}")
                return
            keep = await self._dispatch(conn, request, bytes(body))
            if not keep or not conn.writable():
                return
            if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
            else:
                return

    async def _plain_error(self, conn: _Conn, status: int, message: str) -> None:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        data = conn.start(status, {"content-type": "application/json", "content-length": str(len(body)),
                                   "connection": "close"})
        await conn.write(data + conn.chunk(body) + conn.end())

    # ----------------------------------------------------------------- replies

    def _headers(self, rec: SimRequest | None, content_type: str, length: int | None = None) -> dict[str, str]:
        headers = {"content-type": content_type, "date": formatdate(usegmt=True), "server": "phasewise-sim",
                   "x-phasewise-simulator": "true"}
        if rec is not None:
            headers["request-id" if rec.protocol == "anthropic" else "x-request-id"] = rec.id
        if length is not None:
            headers["content-length"] = str(length)
        return headers

    async def _send_whole(self, conn: _Conn, rec: SimRequest | None, status: int, body: Any,
                          extra: Mapping[str, str] | None = None, outcome: str | None = None) -> bool:
        content_type = "application/json"
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            content_type = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        else:
            data = json.dumps(body, ensure_ascii=False).encode()
        headers = self._headers(rec, content_type, len(data))
        for key, value in (extra or {}).items():
            headers[key.lower()] = value
        headers["content-length"] = str(len(data))
        payload = conn.start(status, headers) + conn.chunk(data) + conn.end()
        if rec is not None:
            rec.status = status
            self._finish(rec, outcome or ("ok" if status < 400 else f"error:{status}"), status)
        return await conn.write(payload)

    @staticmethod
    def _protocol_error(protocol: str | None, rec: SimRequest, message: str, etype: str,
                        code: str | None = None) -> dict[str, Any]:
        """An error body in the caller's protocol (``etype`` is Anthropic's word for it)."""
        if protocol == "anthropic":
            return anthropic_error(etype, message, rec.id)
        openai_type = {"api_error": "server_error"}.get(etype, "invalid_request_error")
        return wire.openai_error(message, openai_type, code)

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, conn: _Conn, request: h11.Request, raw: bytes) -> bool:
        method = request.method.decode("latin-1").upper()
        target = request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        segments = [s for s in path.split("/") if s]
        if segments[:1] == ["_sim"]:
            return await self._control(conn, method, segments[1:], raw)
        if not segments:
            info = {"simulator": "phasewise", "notice": NOTICE, "openai_base_url": self.base_url("NAME", "openai"),
                    "anthropic_base_url": self.base_url("NAME", "anthropic")}
            return await self._send_whole(conn, None, 200 if method == "GET" else 405, info)

        provider = segments[0]
        rest = segments[1:]
        anthropic_hint = "anthropic-version" in headers
        protocol: str | None
        endpoint: str
        allowed: str
        if rest == ["v1", "chat", "completions"]:
            protocol, endpoint, allowed = "openai", "chat", "POST"
        elif rest == ["v1", "messages"]:
            protocol, endpoint, allowed = "anthropic", "chat", "POST"
        elif rest == ["v1", "messages", "count_tokens"]:
            protocol, endpoint, allowed = "anthropic", "count_tokens", "POST"
        elif rest[:2] == ["v1", "models"]:
            protocol, endpoint, allowed = ("anthropic" if anthropic_hint else "openai"), "models", "GET"
        else:
            protocol, endpoint, allowed = ("anthropic" if anthropic_hint else None), "unknown", ""

        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as exc:
                body_error = f"the body is not valid JSON ({exc.msg} at position {exc.pos})"
            except UnicodeDecodeError:
                body_error = "the body is not UTF-8 JSON"
        api_key = self._api_key(protocol, headers)
        with self._lock:
            self._counter += 1
            number = self._counter
            rec = SimRequest(
                id=f"req_sim_{number}", number=number, provider=provider, protocol=protocol, endpoint=endpoint,
                method=method, path=path, model=None, stream=False, api_key=api_key,
                headers={k: v for k, v in headers.items() if k not in _SECRET_HEADERS}, body=body,
                connection_id=conn.record.id, started_at=time.time(),
            )
            self._requests.append(rec)
            conn.record.requests.append(rec.id)
        conn.inflight = rec
        self._notify()
        try:
            if endpoint == "unknown":
                status = 404
                message = f"Unknown request URL: {method} {path}. (This is the Phasewise simulator: use " \
                          f"/<name>/v1/chat/completions, /<name>/v1/messages or /<name>/v1/models.)"
                err = self._protocol_error(protocol, rec, message, "not_found_error", "unknown_url")
                return await self._send_whole(conn, rec, status, err)
            if method != allowed:
                err = self._protocol_error(protocol, rec, f"Method {method} not allowed on {path}",
                                           "invalid_request_error")
                return await self._send_whole(conn, rec, 405, err, {"allow": allowed})
            assert protocol is not None
            if endpoint == "models":
                return await self._models(conn, rec, protocol, rest[2:])
            return await self._chat(conn, rec, protocol, endpoint, body, body_error)
        except Exception:
            # A simulator bug must still look like a provider's 500, never a crash or a hang.
            log.exception("simulator failed on %s %s", method, path)
            if conn.h11.our_state is h11.SEND_RESPONSE and conn.writable():
                err = self._protocol_error(protocol, rec, "simulator internal error", "api_error")
                await self._send_whole(conn, rec, 500, err, outcome="error:internal")
            self._finish(rec, "error:internal", 500)
            return False
        finally:
            conn.inflight = None

    @staticmethod
    def _api_key(protocol: str | None, headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if protocol == "anthropic":
            return headers.get("x-api-key") or bearer or None
        return bearer or None

    def _take_fault(self, rec: SimRequest) -> FaultRule | None:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(rec.provider, rec.model, rec.protocol, rec.phase, rec.endpoint):
                    if rule.skip > 0:  # this one goes through
                        rule.skip -= 1
                        continue
                    rule.hits += 1
                    if rule.times > 0:
                        rule.times -= 1
                        if rule.times == 0:
                            del self._rules[index]
                    return replace(rule, fault=dict(rule.fault))
            mix = self._mix
            if mix is not None and rec.endpoint == "chat" and mix.provider in (None, rec.provider):
                return mix.draw(rec.provider)
        return None

    async def _apply_fault_prelude(self, conn: _Conn, rec: SimRequest, plan: FaultPlan) -> bool | None:
        """Delay, close or a whole error reply. True/False = handled (keep-alive?); None = go on."""
        rec.fault = plan.name
        if plan.delay_ms > 0 and not await conn.pause(plan.delay_ms / 1000):
            return False
        if plan.close:
            self._finish(rec, f"fault:{plan.name}")
            conn.close()
            return False
        if plan.reply is not None:
            extra = {**plan.reply.headers, **plan.extra_headers}
            return await self._send_whole(conn, rec, plan.reply.status, plan.reply.body, extra,
                                          outcome=f"fault:{plan.name}")
        return None

    def _auth_error(self, rec: SimRequest, protocol: str) -> tuple[int, dict[str, Any]] | None:
        require = bool(self._setting(rec.provider, "require_key"))
        rejected = self._setting(rec.provider, "reject_keys") or frozenset()
        if rec.api_key is None and require:
            if protocol == "anthropic":
                return 401, anthropic_error("authentication_error", "x-api-key header is required", rec.id)
            return 401, wire.openai_error(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", None)
        if rec.api_key is not None and rec.api_key in rejected:
            if protocol == "anthropic":
                return 401, anthropic_error("authentication_error", "invalid x-api-key", rec.id)
            return 401, wire.openai_error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    def _model_error(self, rec: SimRequest, protocol: str, model: str) -> dict[str, Any] | None:
        with self._lock:
            cfg = self._configs.get(rec.provider)
            strict = cfg.models if cfg is not None else None
        if strict is None or model in strict:
            return None
        if protocol == "anthropic":
            return anthropic_error("not_found_error", f"model: {model}", rec.id)
        return wire.openai_error(f"The model `{model}` does not exist or you do not have access to it.",
                                 "invalid_request_error", "model_not_found")

    def _context(self, rec: SimRequest, prompt_chars: int = 0) -> FaultContext:
        return FaultContext(model=rec.model, protocol=rec.protocol, request_id=rec.id,
                            prompt_tokens=wire.tokens(prompt_chars), api_key=rec.api_key)

    def _success_headers(self, rec: SimRequest, plan: FaultPlan | None) -> dict[str, str]:
        extra = dict(self._setting(rec.provider, "ratelimit_headers") or {})
        if plan is not None:
            extra.update(plan.extra_headers)
        return extra

    # ----------------------------------------------------------------- models

    async def _models(self, conn: _Conn, rec: SimRequest, protocol: str, rest: list[str]) -> bool:
        rule = self._take_fault(rec)
        plan = resolve(rule.fault, self._context(rec)) if rule else None
        if plan is not None:
            handled = await self._apply_fault_prelude(conn, rec, plan)
            if handled is not None:
                return handled
        auth = self._auth_error(rec, protocol)
        if auth is not None:
            return await self._send_whole(conn, rec, auth[0], auth[1])
        models = list(self._setting(rec.provider, "models") or ())
        owned_by = self._setting(rec.provider, "owned_by") or f"sim:{rec.provider}"
        extra = self._success_headers(rec, plan)
        outcome = f"fault:{plan.name}" if plan is not None and plan.name not in {"delay", "headers"} else "ok"

        def item(model_id: str) -> dict[str, Any]:
            if protocol == "anthropic":
                return {"type": "model", "id": model_id, "display_name": f"{model_id} (simulated)",
                        "created_at": "2025-01-01T00:00:00Z", "lifecycle": "active"}
            return {"id": model_id, "object": "model", "created": 1735689600, "owned_by": owned_by}

        if rest:
            model_id = "/".join(rest)
            rec.model = model_id
            if model_id not in models and self._model_error(rec, protocol, model_id) is not None:
                err = self._model_error(rec, protocol, model_id)
                return await self._send_whole(conn, rec, 404, err)
            return await self._send_whole(conn, rec, 200, item(model_id), extra, outcome)
        data = [item(m) for m in models]
        if protocol == "anthropic":
            body: dict[str, Any] = {"data": data, "has_more": False, "first_id": models[0] if models else None,
                                    "last_id": models[-1] if models else None}
        else:
            body = {"object": "list", "data": data}
        return await self._send_whole(conn, rec, 200, body, extra, outcome)

    # ----------------------------------------------------------------- chat

    async def _chat(self, conn: _Conn, rec: SimRequest, protocol: str, endpoint: str, body: Any,
                    body_error: str | None) -> bool:
        call: wire.Call | None = None
        bad: str | None = body_error
        bad_param: str | None = None
        if bad is None:
            try:
                call = wire.parse_openai(body) if protocol == "openai" else wire.parse_anthropic(body)
            except wire.BadRequest as exc:
                bad, bad_param = exc.message, exc.param
        if isinstance(body, Mapping):
            rec.model = body.get("model") if isinstance(body.get("model"), str) else None
            rec.stream = bool(body.get("stream"))
        if call is not None:
            rec.phase = answers.parse_prompt(call.system, call.user).phase if call.system else None

        rule = self._take_fault(rec)
        plan = resolve(rule.fault, self._context(rec, call.prompt_chars if call else 0)) if rule else None
        if plan is not None:
            handled = await self._apply_fault_prelude(conn, rec, plan)
            if handled is not None:
                return handled
        if bad is not None or call is None:
            message = bad or "invalid request"
            err = (anthropic_error("invalid_request_error", message, rec.id) if protocol == "anthropic"
                   else wire.openai_error(message, "invalid_request_error", None, bad_param))
            return await self._send_whole(conn, rec, 400, err)
        auth = self._auth_error(rec, protocol)
        if auth is not None:
            return await self._send_whole(conn, rec, auth[0], auth[1])
        missing = self._model_error(rec, protocol, call.model)
        if missing is not None:
            return await self._send_whole(conn, rec, 404, missing)
        prompt_tokens = wire.tokens(call.prompt_chars)
        if endpoint == "count_tokens":
            return await self._send_whole(conn, rec, 200, {"input_tokens": prompt_tokens},
                                          self._success_headers(rec, plan))

        if plan is not None and plan.stream == "empty":
            ans = answers.Answer()
        else:
            prompt = answers.parse_prompt(call.system, call.user, call.callable)
            limit = call.max_tokens
            if plan is not None and plan.cut_at_tokens is not None:  # a lower limit than the request's
                limit = min(limit or plan.cut_at_tokens, plan.cut_at_tokens)
            ans = wire.truncate(agent.reply(prompt, call.history, call.tools, call.callable, rec.provider,
                                            call.model, call.commands), limit)
        with self._lock:
            self._ids += 1
            serial = self._ids
        cache = self._prompt_cache(rec.provider, protocol, call.model, body, prompt_tokens)
        ids = (wire.Ids(f"chatcmpl-sim{serial:06d}", f"call_sim{serial:06d}") if protocol == "openai"
               else wire.Ids(f"msg_sim{serial:06d}", f"toolu_sim{serial:06d}"))
        first_ms = float(self._setting(rec.provider, "first_token_ms") or 0)
        interval_ms = float(self._setting(rec.provider, "chunk_interval_ms") or 0)
        words = int(self._setting(rec.provider, "chunk_words") or 3)
        extra = self._success_headers(rec, plan)
        outcome = "ok" if plan is None or plan.name in {"delay", "headers"} else f"fault:{plan.name}"

        if plan is not None and plan.stream in {"html", "garbage"}:
            if plan.stream == "html":
                return await self._send_whole(conn, rec, 200, HTML_PAGE,
                                              {**extra, "content-type": "text/html; charset=utf-8"}, outcome)
            return await self._send_whole(conn, rec, 200, GARBAGE, extra, outcome)

        if call.stream:
            sse = (wire.openai_stream(ans, call.model, ids, prompt_tokens, call.include_usage, words, cache)
                   if protocol == "openai"
                   else wire.anthropic_stream(ans, call.model, ids, prompt_tokens, words, cache))
            return await self._stream(conn, rec, protocol, sse, plan, extra, outcome, first_ms, interval_ms)

        # Non-streaming: the whole answer after the simulated generation time.
        pieces = len(answers.chunk_text(ans.text, words)) if ans.text else 0
        pieces += sum(len(answers.chunk_json(u.arguments)) for u in ans.tool_uses())
        if not await conn.pause((first_ms + interval_ms * pieces) / 1000):
            return False
        whole: Any
        if plan is not None and plan.first_line is not None:
            whole = {**plan.first_line, "object": "chat.completion"}
        elif plan is not None and plan.stream == "error_event" and plan.error_payload is not None:
            if protocol == "anthropic":
                # A whole Anthropic answer cannot carry an error event: the API answers with the
                # error's own status instead. OpenAI-compatible gateways (OpenRouter) do send a 200.
                etype = str((plan.error_payload.get("error") or {}).get("type", "api_error"))
                return await self._send_whole(conn, rec, _ANTHROPIC_STATUS.get(etype, 500), plan.error_payload,
                                              extra, outcome)
            whole = plan.error_payload
        elif protocol == "openai":
            whole = wire.openai_completion(ans, call.model, ids, prompt_tokens, cache)
        else:
            whole = wire.anthropic_message(ans, call.model, ids, prompt_tokens, cache)
        if plan is not None and plan.stream in {"cut", "stall"}:
            data = json.dumps(whole).encode()
            headers = {**self._headers(rec, "application/json", len(data)), **extra}
            await conn.write(conn.start(200, headers))
            rec.status = 200
            if plan.stream == "stall":
                await conn.eof.wait()
                return False
            self._finish(rec, outcome, 200)
            await conn.write(conn.chunk(data[: len(data) // 2]))
            conn.close()
            return False
        return await self._send_whole(conn, rec, 200, whole, extra, outcome)

    def _prompt_cache(self, provider: str, protocol: str, model: str, body: Any, prompt_tokens: int) -> wire.CacheUse:
        """What this provider's prompt cache (config ``prompt_cache``) serves of this prompt: a real
        prefix cache per provider and model, keyed by the exact prompt text. Anthropic caches only up
        to ``cache_control`` marks, prefixes of at least 1,024 tokens: the longest prefix cached
        earlier that ends at a mark or at one of the 20 blocks before a mark is read, the rest up to
        the last mark written; the implicit caches hit on the longest prefix shared with an earlier
        prompt, in steps."""
        shape = self._setting(provider, "prompt_cache")
        if shape is None or not isinstance(body, Mapping):
            return wire.CacheUse()
        layout = wire.prompt_layout(protocol, body)
        text = layout.text
        with self._lock:
            seen = self._prompt_caches.setdefault((provider, model), [])
            if protocol == "anthropic":
                return self._anthropic_cache(seen, layout, prompt_tokens)
            minimum, step = _IMPLICIT_CACHE.get(shape, _IMPLICIT_CACHE["openai"])
            shared = max((wire.common_prefix(text, old) for old in seen), default=0)
            seen.append(text)
            del seen[:-_CACHE_ENTRIES]
            size = min(wire.tokens(shared), prompt_tokens)
            read = size // step * step if size >= minimum else 0
            return wire.CacheUse(read=read, shape=shape if shape != "anthropic" else "openai")

    @staticmethod
    def _anthropic_cache(seen: list[str], layout: wire.PromptLayout, prompt_tokens: int) -> wire.CacheUse:
        text, marks, ends = layout.text, layout.marks, layout.ends
        if not marks or min(wire.tokens(marks[-1]), prompt_tokens) < ANTHROPIC_CACHE_MIN:
            return wire.CacheUse(shape="anthropic")
        looked: set[int] = set()
        for mark in marks:
            at = ends.index(mark)
            looked.update(ends[max(0, at - 20):at + 1])
        hits = [end for end in looked if wire.tokens(end) >= ANTHROPIC_CACHE_MIN and text[:end] in seen]
        hit = max(hits, default=0)
        for end in sorted({hit, *marks} - {0}):
            prefix = text[:end]
            if prefix in seen:
                seen.remove(prefix)
            if wire.tokens(end) >= ANTHROPIC_CACHE_MIN:
                seen.append(prefix)
        del seen[:-_CACHE_ENTRIES]
        total = min(wire.tokens(marks[-1]), prompt_tokens)
        read = min(wire.tokens(hit), total) if hit else 0
        return wire.CacheUse(read=read, write=total - read, shape="anthropic")

    async def _stream(self, conn: _Conn, rec: SimRequest, protocol: str, sse: wire.StreamPlan,
                      plan: FaultPlan | None, extra: Mapping[str, str], outcome: str, first_ms: float,
                      interval_ms: float) -> bool:
        headers = {**self._headers(rec, "text/event-stream; charset=utf-8"), "cache-control": "no-cache", **extra}
        rec.status = 200
        head = conn.start(200, headers)
        if plan is not None and plan.comment:
            head += conn.chunk(wire.sse_comment(plan.comment))
        if not await conn.write(head):
            return False
        if not await conn.pause(first_ms / 1000):
            return False
        if plan is not None and plan.first_line is not None:
            # MiniMax: the error is the first SSE line, then the stream simply ends.
            self._finish(rec, outcome, 200)
            await conn.write(conn.chunk(wire.openai_sse_data(plan.first_line)) + conn.end())
            return True
        if sse.preamble and not await conn.write(b"".join(conn.chunk(e) for e in sse.preamble)):
            return False
        stop_at = plan.after_chunks if plan is not None and plan.stream in {"error_event", "cut", "stall"} else None
        for event in sse.content:
            if stop_at is not None and rec.chunks_sent >= stop_at:
                break
            if not await conn.write(conn.chunk(event)):
                return False
            rec.chunks_sent += 1
            if interval_ms and not await conn.pause(interval_ms / 1000):
                return False
        if plan is not None and plan.stream == "error_event" and plan.error_payload is not None:
            data = (wire.anthropic_error_event(plan.error_payload) if protocol == "anthropic"
                    else wire.openai_sse_data(plan.error_payload))
            self._finish(rec, outcome, 200)
            await conn.write(conn.chunk(data) + conn.end())
            return True
        if plan is not None and plan.stream == "cut":
            self._finish(rec, outcome, 200)
            # Clean: the HTTP body ends properly but the SSE terminator never comes.
            # Abrupt: the socket closes mid-body (the client sees an incomplete chunked message).
            if not plan.abrupt:
                await conn.write(conn.end())
            conn.close()
            return False
        if plan is not None and plan.stream == "stall":
            # Hold the connection open, sending nothing, until the client gives up or we stop.
            await conn.eof.wait()
            return False
        closing = b"".join(conn.chunk(e) for e in sse.closing) + conn.end()
        self._finish(rec, outcome, 200)
        return await conn.write(closing)

    # ----------------------------------------------------------------- control

    async def _control(self, conn: _Conn, method: str, parts: list[str], raw: bytes) -> bool:
        what = "/".join(parts)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return await self._send_whole(conn, None, 400, {"error": {"message": "the body is not valid JSON"}})
        try:
            if what == "health" and method == "GET":
                with self._lock:
                    inflight = sum(1 for r in self._requests if r.outcome is None)
                    reply: Any = {
                        "ok": True, "simulator": "phasewise", "notice": NOTICE, "requests": len(self._requests),
                        "in_flight": inflight, "pending_faults": len(self._rules),
                        "open_connections": sum(1 for c in self._connections.values() if c.closed_at is None),
                        "client_closes": len(self._client_closes),
                    }
            elif what == "faults" and method == "POST":
                rules = body.get("rules") if isinstance(body, Mapping) and "rules" in body else body
                if isinstance(rules, Mapping):
                    rules = [rules]
                if not isinstance(rules, list):
                    raise ValueError('send {"rules": [...]}')
                queued = self.add_rules(rules)
                reply = {"queued": len(queued), "pending": len(self.faults)}
            elif what == "faults" and method == "GET":
                reply = {"rules": [r.to_json() for r in self.faults]}
            elif what == "faults" and method == "DELETE":
                self.clear_faults()
                reply = {"ok": True}
            elif what == "mix" and method == "POST":
                if not isinstance(body, Mapping):
                    raise ValueError('send {"rate": 0.2, "faults": [...], "seed": 0, "provider": null}')
                self.set_fault_mix(float(body.get("rate", 0)), list(body.get("faults") or []),
                                   seed=int(body.get("seed", 0)), provider=body.get("provider"))
                reply = {"ok": True}
            elif what == "mix" and method == "GET":
                reply = {"counts": self.fault_mix_counts}
            elif what == "presets" and method == "GET":
                reply = {"presets": preset_names()}
            elif what == "reset" and method == "POST":
                self.reset()
                reply = {"ok": True}
            elif what == "requests" and method == "GET":
                reply = {"requests": [r.to_json() for r in self.requests]}
            elif what == "connections" and method == "GET":
                reply = {"connections": [c.to_json() for c in self.connections],
                         "client_closes": [c.to_json() for c in self.client_closes]}
            elif what == "config" and method == "POST":
                if not isinstance(body, Mapping):
                    raise ValueError("send a JSON object")
                if "providers" in body:
                    for name, options in dict(body["providers"]).items():
                        self.configure(str(name), **dict(options))
                else:
                    options = dict(body)
                    self.configure(options.pop("provider", None), **options)
                reply = {"ok": True}
            else:
                return await self._send_whole(conn, None, 404, {"error": {"message": f"no control endpoint "
                                                                          f"{method} /_sim/{what}"}})
        except (ValueError, TypeError) as exc:
            return await self._send_whole(conn, None, 400, {"error": {"message": str(exc)}})
        return await self._send_whole(conn, None, 200, reply)
