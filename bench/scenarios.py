"""The benchmark scenarios: each measures a figure and its baseline side by side, in the same run.

Every scenario returns a flat dict of named figures (milliseconds, seconds, MiB or plain ratios).
Samples of a figure and of its baseline are interleaved (A, B, B, A, ...) so the noise of a
shared two-core machine falls on both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lspclient import BARE_CMD, PHASEWISE_CMD, LspProcess, cpu_s, rss_mb, server_env
from bench.simproc import SimProcess
from bench.stats import p50, p99

KEY_ENV = "BENCH_KEY"
KEY = "bench-key-0000"


def phasewise_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A Phasewise server's environment: the bench key, and its run record kept in ``tmp``
    (thousands of bench runs have no place in the user's own record)."""
    return server_env(**{KEY_ENV: KEY, "PHASEWISE_LEDGER": str(tmp / "runs.jsonl")}, **extra)
URI = "file:///bench/inventory.py"

# Simulated providers, each with its own latency and token rate (per-name simulator config).
PROVIDERS: dict[str, tuple[str, dict[str, Any]]] = {
    # TTFT: 20 ms to the first token, then 3 words every 2 ms.
    "fast": ("openai", {"first_token_ms": 20, "chunk_interval_ms": 2, "chunk_words": 3}),
    "fastc": ("anthropic", {"first_token_ms": 20, "chunk_interval_ms": 2, "chunk_words": 3}),
    # A fast stream: one word a chunk, a chunk every millisecond (as fast as the simulator paces).
    "stream": ("openai", {"first_token_ms": 20, "chunk_interval_ms": 1, "chunk_words": 1}),
    # Memory growth: no latency at all, so a thousand runs fit in seconds.
    "quick": ("openai", {"first_token_ms": 0, "chunk_interval_ms": 0, "chunk_words": 3}),
    # Concurrency: 1 s to the first token (set after a warm run), then the answer at once.
    "slow": ("openai", {"first_token_ms": 0, "chunk_interval_ms": 0, "chunk_words": 3}),
    # Responsiveness: a realistic model, 100 ms to the first token then ~100 words/s.
    "live": ("openai", {"first_token_ms": 100, "chunk_interval_ms": 30, "chunk_words": 3}),
    # Cancellation: streams that stall after two chunks (a fault queued per trial).
    "stall": ("openai", {"first_token_ms": 0, "chunk_interval_ms": 0, "chunk_words": 3}),
}
VERIFY_PROVIDERS = {"v1": "openai", "v2": "openai", "v3": "openai", "v4": "anthropic", "v5": "anthropic"}

DOC = '''"""A small inventory module: the document every phase runs on."""

import json
import os
from dataclasses import dataclass, field


@dataclass
class Item:
    sku: str
    name: str
    quantity: int = 0
    tags: list[str] = field(default_factory=list)


class Inventory:
    def __init__(self, path):
        self.path = path
        self.items = {}

    def load(self):
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            for raw in json.load(f):
                item = Item(**raw)
                self.items[item.sku] = item

    def save(self):
        with open(self.path, "w") as f:
            json.dump([vars(i) for i in self.items.values()], f)

    def add(self, sku, name, quantity=1):
        if sku in self.items:
            self.items[sku].quantity += quantity
        else:
            self.items[sku] = Item(sku, name, quantity)

    def remove(self, sku, quantity=1):
        item = self.items.get(sku)
        if item == None:
            return False
        item.quantity -= quantity
        if item.quantity <= 0:
            del self.items[sku]
        return True
'''


def settings_for(sim: SimProcess, **phases: str) -> dict[str, Any]:
    """A ``phasewise`` section declaring every simulated provider and routing ``phases``."""
    providers = {
        name: {"protocol": proto, "baseUrl": sim.base_url(name, proto), "apiKeyEnv": KEY_ENV}
        for name, (proto, _) in PROVIDERS.items()
    }
    for name, proto in VERIFY_PROVIDERS.items():
        providers[name] = {"protocol": proto, "baseUrl": sim.base_url(name, proto), "apiKeyEnv": KEY_ENV}
    return {"phases": {phase: {"model": ref} for phase, ref in phases.items()}, "providers": providers}


# ---------------------------------------------------------------------------------------- direct


@dataclass(slots=True)
class StreamTiming:
    start: float
    first: float | None = None
    last: float | None = None
    chars: int = 0
    chunks: int = 0

    @property
    def ttft_ms(self) -> float:
        assert self.first is not None
        return (self.first - self.start) * 1000

    @property
    def chars_per_s(self) -> float:
        assert self.last is not None
        return self.chars / (self.last - self.start)


class Direct:
    """The baseline: the official SDKs called straight from the bench process, over the same kind
    of pooled ``httpx2`` client the server uses, SDK retries off, no LSP in between."""

    def __init__(self) -> None:
        import httpx2

        self.http = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
            timeout=httpx2.Timeout(connect=10.0, read=None, write=30.0, pool=30.0),
        )
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, protocol: str, base_url: str) -> Any:
        key = (protocol, base_url)
        if key not in self._clients:
            if protocol == "openai":
                from openai import AsyncOpenAI

                self._clients[key] = AsyncOpenAI(api_key=KEY, base_url=base_url, http_client=self.http,
                                                 max_retries=0)
            else:
                from anthropic import AsyncAnthropic

                self._clients[key] = AsyncAnthropic(api_key=KEY, base_url=base_url, http_client=self.http,
                                                    max_retries=0)
        return self._clients[key]

    async def stream(self, protocol: str, base_url: str, body: dict[str, Any],
                     on_chunk: Callable[[], None] | None = None) -> StreamTiming:
        client = self.client(protocol, base_url)
        t = StreamTiming(time.perf_counter())
        stream: Any = None
        try:
            if protocol == "openai":
                stream = await client.chat.completions.create(**body)
                async for chunk in stream:
                    for choice in chunk.choices or ():
                        if choice.delta is not None and choice.delta.content:
                            self._mark(t, len(choice.delta.content), on_chunk)
            else:
                stream = await client.messages.create(**body)
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        self._mark(t, len(event.delta.text), on_chunk)
        finally:
            if stream is not None:
                await stream.close()
        return t

    @staticmethod
    def _mark(t: StreamTiming, chars: int, on_chunk: Callable[[], None] | None) -> None:
        now = time.perf_counter()
        if t.first is None:
            t.first = now
        t.last = now
        t.chars += chars
        t.chunks += 1
        if on_chunk is not None:
            on_chunk()

    async def aclose(self) -> None:
        await self.http.aclose()


# ---------------------------------------------------------------------------------------- LSP


@dataclass(slots=True)
class RunTiming:
    sent: float
    done: float
    result: dict[str, Any]
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    progress: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.result.get("ok"))

    @property
    def ttft_ms(self) -> float:
        return (self.arrivals[0][0] - self.sent) * 1000

    @property
    def chars(self) -> int:
        return sum(n for _, n in self.arrivals)

    @property
    def chars_per_s(self) -> float:
        return self.chars / (self.arrivals[-1][0] - self.sent)


class Env:
    """One simulator process, one Phasewise server session, the direct baseline, a temp dir."""

    def __init__(self, tmp: Path, *, short: bool) -> None:
        self.tmp = tmp
        self.short = short
        self.sim = SimProcess(first_token_ms=20, chunk_interval_ms=10, chunk_words=3)
        self.lsp: LspProcess | None = None
        self.bare: LspProcess | None = None
        self.direct = Direct()
        self.streams: dict[str, list[tuple[float, int]]] = {}
        self.streamed = asyncio.Event()  # set by every phasewise/streamText
        self.tokens: list[str] = []
        self.route_ref: dict[str, str] = {}

    async def start(self) -> None:
        await self.sim.start()
        for name, (_, options) in PROVIDERS.items():
            await self.sim.configure(name, **options)
        self.lsp = await self.spawn_phasewise("session", warmup=True)
        # The warm-up thread imports the routed SDKs (here both: plan on the OpenAI protocol, the
        # rest on Claude) after ``initialized``: let it finish (memory stops growing) so no
        # scenario shares the GIL with an import.
        await settle({"session": self.lsp.pid}, quiet_s=0.5, limit_s=15)

    async def spawn_phasewise(self, label: str, *, warmup: bool, extra_env: dict[str, str] | None = None) -> LspProcess:
        env = phasewise_env(self.tmp, PHASEWISE_WARMUP="1" if warmup else "0", **(extra_env or {}))
        lsp = LspProcess(PHASEWISE_CMD, env,
                         settings=settings_for(self.sim, plan="fast/sim-fast"),
                         stderr_path=self.tmp / f"{label}.stderr")
        await lsp.spawn()
        lsp.on("phasewise/streamText", self._on_stream)
        original = lsp._answer

        def answer(method: str, params: Any) -> Any:
            if method == "window/workDoneProgress/create":
                self.tokens.append(str(params["token"]))
            return original(method, params)

        lsp._answer = answer  # type: ignore[method-assign]
        await lsp.initialize()
        lsp.open(URI, DOC)
        return lsp

    def _on_stream(self, stamp: float, params: Any) -> None:
        self.streams.setdefault(str(params.get("runId")), []).append((stamp, len(params.get("text") or "")))
        self.streamed.set()

    async def bare_relay(self) -> LspProcess:
        """The bare pygls relay server (``bare_server.py``), started on first use."""
        if self.bare is None:
            self.bare = LspProcess(BARE_CMD, server_env(), stderr_path=self.tmp / "bare-relay.stderr")
            await self.bare.spawn()
            await self.bare.initialize()
        return self.bare

    @property
    def server(self) -> LspProcess:
        assert self.lsp is not None
        return self.lsp

    async def route(self, **phases: str) -> None:
        """Route phases (a settings change, pulled by the server) and make one unmeasured warm run."""
        self.server.configure(settings_for(self.sim, **phases))
        self.route_ref = phases
        for phase in phases:
            run = await self.run(phase, "warm up [tokens=12]")
            if not run.ok:
                raise RuntimeError(f"warm run failed: {run.result.get('error')}")

    async def run(self, phase: str, instruction: str, timeout: float = 60.0) -> RunTiming:
        progress_before = self.server.counts.get("$/progress", 0)
        reply = await self.server.command(f"phasewise.{phase}", {"uri": URI, "instruction": instruction}, timeout)
        return self._timing(reply.sent, reply.received, reply.result, reply.error, progress_before)

    def _timing(self, sent: float, received: float, result: Any, error: Any, progress_before: int) -> RunTiming:
        if error is not None or not isinstance(result, dict):
            return RunTiming(sent, received, {"ok": False, "error": error})
        arrivals = self.streams.pop(str(result.get("runId")), [])
        return RunTiming(sent, received, result, arrivals, self.server.counts.get("$/progress", 0) - progress_before)

    async def request_body(self) -> dict[str, Any]:
        """The exact body the server last sent upstream: the direct baseline replays it."""
        body: dict[str, Any] = (await self.sim.last_request())["body"]
        return body

    async def stop(self) -> None:
        for lsp in (self.lsp, self.bare):
            if lsp is not None:
                await lsp.close()
        await self.direct.aclose()
        await self.sim.stop()


def interleaved(n: int) -> list[bool]:
    """A, B, B, A, A, B, ...: which of the pair goes first in each round."""
    return [(i // 2 + i) % 2 == 0 for i in range(n)]


async def pairs(n: int, a: Callable[[], Awaitable[Any]],
                b: Callable[[], Awaitable[Any]]) -> tuple[list[Any], list[Any]]:
    out_a: list[Any] = []
    out_b: list[Any] = []
    for a_first in interleaved(n):
        if a_first:
            out_a.append(await a())
            out_b.append(await b())
        else:
            out_b.append(await b())
            out_a.append(await a())
    return out_a, out_b


# ---------------------------------------------------------------------------------------- scenarios


# 150 words in 50 chunks, 2 ms apart: the stream outlasts the server's coalescing window, so the
# first token cannot ride on the end-of-stream flush.
TTFT_INSTRUCTION = "outline the change [tokens=150]"


async def _plan_on(env: Env, provider: str) -> tuple[str, dict[str, Any], str]:
    """Route the plan phase to ``provider`` and run it once: its protocol, the request body the
    server sent (what the direct arm replays) and the provider's base URL."""
    protocol = PROVIDERS[provider][0]
    await env.route(plan=f"{provider}/sim-fast")
    await env.run("plan", TTFT_INSTRUCTION)
    return protocol, await env.request_body(), env.sim.base_url(provider, protocol)


async def ttft(env: Env, provider: str, n: int) -> dict[str, Any]:
    """Time to the first streamed token: through the server vs the SDK straight at the fake."""
    instruction = TTFT_INSTRUCTION
    protocol, body, base = await _plan_on(env, provider)
    await env.direct.stream(protocol, base, body)

    async def via_lsp() -> float | None:
        run = await env.run("plan", instruction)
        return run.ttft_ms if run.ok and run.arrivals else None

    async def direct() -> float | None:
        return (await env.direct.stream(protocol, base, body)).ttft_ms

    arms: dict[str, Callable[[], Awaitable[float | None]]] = {"lsp": via_lsp, "direct": direct}
    bare = await env.bare_relay() if protocol == "openai" else None
    if bare is not None:
        relay_arg = {"baseUrl": base, "key": KEY, "body": body}

        async def via_bare() -> float | None:
            first: list[float] = []

            def on_text(stamp: float, params: Any) -> None:
                if not first:
                    first.append(stamp)

            bare.on("bare/streamText", on_text)
            try:
                reply = await bare.command("bare.relay", relay_arg)
            finally:
                bare.off("bare/streamText", on_text)
            return (first[0] - reply.sent) * 1000 if first and reply.error is None else None

        await via_bare()
        arms["bare"] = via_bare
    samples: dict[str, list[float]] = {k: [] for k in arms}
    names = list(arms)
    for i in range(n):  # round robin, each arm first in turn
        for k in names[i % len(names):] + names[:i % len(names)]:
            value = await arms[k]()
            if value is not None:
                samples[k].append(value)
    lsp_ms, direct_ms = samples["lsp"], samples["direct"]
    out = {
        "lsp_p50": p50(lsp_ms), "lsp_p99": p99(lsp_ms),
        "direct_p50": p50(direct_ms), "direct_p99": p99(direct_ms),
        "overhead_p50": p50(lsp_ms) - p50(direct_ms), "overhead_p99": p99(lsp_ms) - p99(direct_ms),
        "samples": len(lsp_ms), "failed": n - len(lsp_ms),
    }
    if "bare" in samples:
        out.update({"bare_p50": p50(samples["bare"]), "bare_p99": p99(samples["bare"]),
                    "bare_overhead_p50": p50(samples["bare"]) - p50(direct_ms),
                    "over_bare_p50": p50(lsp_ms) - p50(samples["bare"])})
    return out


async def relay(env: Env, n: int, words: int) -> dict[str, Any]:
    """A fast stream end to end: characters per second at the LSP client vs the SDK's own loop,
    and how many progress notifications per second the client gets while it streams."""
    await env.route(plan="stream/sim-fast")
    instruction = f"write the long plan [tokens={words}]"
    first = await env.run("plan", instruction)
    body = await env.request_body()
    base = env.sim.base_url("stream", "openai")

    async def via_lsp() -> RunTiming:
        return await env.run("plan", instruction)

    async def direct() -> StreamTiming:
        return await env.direct.stream("openai", base, body)

    lsp_runs, direct_runs = await pairs(n, via_lsp, direct)
    good = [r for r in lsp_runs if r.ok and r.arrivals]
    lsp_rate = [r.chars_per_s for r in good]
    direct_rate = [d.chars_per_s for d in direct_runs if d.last is not None]
    per_s = [(len(r.arrivals) + r.progress) / (r.done - r.sent) for r in good]
    stream_per_s = [len(r.arrivals) / (r.done - r.sent) for r in good]
    upstream_per_s = [d.chunks / (d.last - d.start) for d in direct_runs if d.last is not None]
    same_text = all(r.chars == first.chars for r in good) and all(d.chars == first.chars for d in direct_runs)
    return {
        "ratio": p50(lsp_rate) / p50(direct_rate), "lsp_chars_per_s": p50(lsp_rate),
        "direct_chars_per_s": p50(direct_rate), "notifications_per_s": p50(per_s),
        "stream_notifications_per_s": p50(stream_per_s), "upstream_chunks_per_s": p50(upstream_per_s),
        "stream_s": p50([r.done - r.sent for r in good]), "same_text": same_text, "samples": len(good),
    }


async def initialize(env: Env, n: int) -> dict[str, Any]:
    """Spawn → ``initialize`` answered: Phasewise vs a bare pygls server, alternately."""

    async def spawn(cmd: list[str], label: str) -> float:
        lsp = LspProcess(cmd, phasewise_env(env.tmp), stderr_path=env.tmp / f"{label}.stderr")
        await lsp.spawn()
        reply = await lsp.initialize()
        took = (reply.received - lsp.spawned_at) * 1000
        await lsp.close()
        return took

    async def phasewise() -> float:
        return await spawn(PHASEWISE_CMD, "init-phasewise")

    async def bare() -> float:
        return await spawn(BARE_CMD, "init-bare")

    await bare()  # both pay the cold file cache once, unmeasured
    await phasewise()
    pw, br = await pairs(n, phasewise, bare)
    return {"phasewise_p50": p50(pw), "bare_p50": p50(br), "ratio": p50(pw) / p50(br),
            "phasewise_p99": p99(pw), "bare_p99": p99(br), "samples": n}


async def idle_rss(env: Env) -> dict[str, Any]:
    """Resident memory once idle after ``initialize``: five servers side by side."""
    openai_only = settings_for(env.sim, plan="fast/sim-fast", code="fast/sim-fast", review="fast/sim-fast")
    kinds: dict[str, tuple[list[str], dict[str, str], Any]] = {
        "bare": (BARE_CMD, {}, None),
        "bare_sdks": ([*BARE_CMD, "--import-sdks"], {}, None),
        "phasewise_nowarmup": (PHASEWISE_CMD, {"PHASEWISE_WARMUP": "0"}, None),
        # no settings: every phase on Claude, so the warm-up loads the Anthropic SDK only
        "phasewise": (PHASEWISE_CMD, {"PHASEWISE_WARMUP": "1"}, None),
        # every phase on OpenAI-compatible providers: the OpenAI SDK only
        "phasewise_openai_only": (PHASEWISE_CMD, {"PHASEWISE_WARMUP": "1"}, openai_only),
    }
    procs: dict[str, LspProcess] = {}
    try:
        for name, (cmd, extra, settings) in kinds.items():
            lsp = LspProcess(cmd, phasewise_env(env.tmp, **extra), settings=settings,
                             stderr_path=env.tmp / f"rss-{name}.stderr")
            await lsp.spawn()
            await lsp.initialize()
            lsp.open(URI, DOC)
            procs[name] = lsp
        rss = await settle({name: lsp.pid for name, lsp in procs.items()}, quiet_s=0.7 if env.short else 1.0,
                           limit_s=9 if env.short else 20)
    finally:
        for lsp in procs.values():
            await lsp.close()
    return rss


async def settle(pids: dict[str, int], *, quiet_s: float = 1.0, limit_s: float = 20.0) -> dict[str, Any]:
    """RSS of each pid once it has not changed by more than 0.2 MiB for ``quiet_s``."""
    last: dict[str, float] = {}
    since: dict[str, float] = {}
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        now = time.perf_counter()
        for name, pid in pids.items():
            value = rss_mb(pid) or 0.0
            if name not in last or abs(value - last[name]) > 0.2:
                last[name], since[name] = value, now
        if all(now - since[n] >= quiet_s for n in pids):
            break
        await asyncio.sleep(0.1)
    return dict(last)


async def rss_growth(env: Env, runs: int) -> dict[str, Any]:
    """Resident memory of the server over ``runs`` phase runs (plan, code, review in turn)."""
    await env.route(plan="quick/sim-fast", code="quick/sim-coder", review="quick/sim-reviewer")
    phases = ("plan", "code", "review")
    instruction = "rename add to put"
    for i in range(60):
        await env.run(phases[i % 3], instruction)
    before = (await settle({"s": env.server.pid}, quiet_s=0.5, limit_s=5))["s"]
    checkpoints = [before]
    failed = 0
    started = time.perf_counter()
    sem = asyncio.Semaphore(4)

    async def one(i: int) -> None:
        nonlocal failed
        async with sem:
            run = await env.run(phases[i % 3], instruction)
            if not run.ok:
                failed += 1

    step = max(1, runs // 4)
    for lo in range(0, runs, step):
        await asyncio.gather(*(one(i) for i in range(lo, min(runs, lo + step))))
        checkpoints.append(env.server.rss_mb() or 0.0)
    took = time.perf_counter() - started
    after = (await settle({"s": env.server.pid}, quiet_s=0.5, limit_s=5))["s"]
    return {"before_mb": before, "after_mb": after, "growth_mb": after - before, "runs": runs,
            "failed": failed, "runs_per_s": runs / took, "checkpoints_mb": [round(c, 1) for c in checkpoints]}


async def concurrent(env: Env, n: int, latency_ms: float, rounds: int) -> dict[str, Any]:
    """``n`` phase runs at once at ``latency_ms`` provider latency: wall time, server vs direct."""
    await env.route(plan="slow/sim-fast")  # warm at zero latency: client built, connection pooled
    body = await env.request_body()
    base = env.sim.base_url("slow", "openai")
    await env.direct.stream("openai", base, body)
    await env.sim.configure("slow", first_token_ms=latency_ms)

    cpu: list[float] = []

    async def via_lsp() -> float:
        cpu_before = cpu_s(env.server.pid)
        start = time.perf_counter()
        futures = [env.server.send("workspace/executeCommand", {
            "command": "phasewise.plan", "arguments": [{"uri": URI, "instruction": f"variant {i}"}]})[1]
            for i in range(n)]
        replies = await asyncio.wait_for(asyncio.gather(*futures), 120)
        bad = [r for r in replies if r.error or not (r.result or {}).get("ok")]
        if bad:
            raise RuntimeError(f"{len(bad)} of {n} concurrent runs failed: {bad[0].error or bad[0].result}")
        for r in replies:
            env.streams.pop(str(r.result.get("runId")), None)
        wall = max(r.received for r in replies) - start
        cpu_after = cpu_s(env.server.pid)
        if cpu_before is not None and cpu_after is not None:
            cpu.append((cpu_after - cpu_before) * 1000 / n)
        return wall

    async def direct() -> float:
        start = time.perf_counter()
        timings = await asyncio.gather(*(env.direct.stream("openai", base, body) for _ in range(n)))
        return max(t.last or start for t in timings) - start

    try:
        lsp_wall, direct_wall = await pairs(rounds, via_lsp, direct)
    finally:
        await env.sim.configure("slow", first_token_ms=0)
    return {"lsp_wall_s": p50(lsp_wall), "direct_wall_s": p50(direct_wall),
            "ratio": p50(lsp_wall) / p50(direct_wall), "rounds": rounds,
            "server_cpu_ms_per_run": p50(cpu) if cpu else None}


async def responsiveness(env: Env, n_runs: int, idle_samples: int, words: int) -> dict[str, Any]:
    """``phasewise.status`` answer time: idle, and while ``n_runs`` phase runs stream."""
    await env.route(plan="live/sim-fast")
    arg = {"uri": URI}
    for _ in range(5):
        await env.server.command("phasewise.status", arg)
    idle: list[float] = []
    for _ in range(idle_samples):
        idle.append((await env.server.command("phasewise.status", arg)).ms)
        await asyncio.sleep(0.01)
    rtt: list[float] = []
    for _ in range(idle_samples):
        rtt.append((await env.server.command("phasewise.none")).ms)  # pygls answers InvalidParams
        await asyncio.sleep(0.01)

    futures = [env.server.send("workspace/executeCommand", {
        "command": "phasewise.plan", "arguments": [{"uri": URI, "instruction": f"plan {i} [tokens={words}]"}]})[1]
        for i in range(n_runs)]
    gathered = asyncio.ensure_future(asyncio.gather(*futures))
    env.streamed.clear()
    await asyncio.wait_for(env.streamed.wait(), 10)
    busy: list[float] = []
    for _ in range(2000):
        if gathered.done():
            break
        busy.append((await env.server.command("phasewise.status", arg)).ms)
        await asyncio.sleep(0.01)
    replies = await asyncio.wait_for(gathered, 120)
    ok = sum(1 for r in replies if (r.result or {}).get("ok"))
    for r in replies:
        env.streams.pop(str((r.result or {}).get("runId")), None)
    return {"idle_p50": p50(idle), "idle_p99": p99(idle), "busy_p50": p50(busy), "busy_p99": p99(busy),
            "rtt_p50": p50(rtt), "rtt_p99": p99(rtt), "busy_samples": len(busy), "runs_ok": ok}


async def cancel(env: Env, n: int) -> dict[str, Any]:
    """Cancel → the upstream connection closed, as the simulator saw it (its own clock)."""
    await env.route(plan="stall/sim-fast")
    body = await env.request_body()
    base = env.sim.base_url("stall", "openai")
    instruction = "plan the stalled change"

    async def wait_close(count_before: int) -> float:
        for _ in range(500):
            closes = await env.sim.client_closes()
            if len(closes) > count_before:
                return float(closes[-1]["at"])
            await asyncio.sleep(0.01)
        raise TimeoutError("the upstream connection was never closed")

    async def via_lsp(by_token: bool) -> float:
        await env.sim.add_fault({"stream": "stall", "after_chunks": 2}, provider="stall")
        count = len(await env.sim.client_closes())
        env.streams.clear()
        env.streamed.clear()
        msg_id, fut = env.server.send("workspace/executeCommand", {
            "command": "phasewise.plan", "arguments": [{"uri": URI, "instruction": instruction}]})
        await asyncio.wait_for(env.streamed.wait(), 10)
        at = time.time()
        if by_token:
            env.server.notify("window/workDoneProgress/cancel", {"token": env.tokens[-1]})
        else:
            env.server.notify("$/cancelRequest", {"id": msg_id})
        await asyncio.wait_for(fut, 30)
        closed = await wait_close(count)
        env.streams.clear()
        return (closed - at) * 1000

    async def direct() -> float:
        await env.sim.add_fault({"stream": "stall", "after_chunks": 2}, provider="stall")
        count = len(await env.sim.client_closes())
        got = asyncio.Event()
        task = asyncio.ensure_future(env.direct.stream("openai", base, body, on_chunk=got.set))
        await asyncio.wait_for(got.wait(), 10)
        at = time.time()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        closed = await wait_close(count)
        return (closed - at) * 1000

    async def request_cancel() -> float:
        return await via_lsp(False)

    async def token_cancel() -> float:
        return await via_lsp(True)

    by_request, by_direct = await pairs(n, request_cancel, direct)
    by_token = [await token_cancel() for _ in range(max(1, n // 2))]
    await env.sim.clear_faults()
    return {"request_p50": p50(by_request), "request_p99": p99(by_request), "token_p50": p50(by_token),
            "direct_p50": p50(by_direct), "direct_p99": p99(by_direct), "samples": n}


def preflight(n: int) -> dict[str, Any]:
    """Offline checks of every phase, in process: settings, key, model, capability, window."""
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseInput, PhaseService
    from phasewise.router.router import Engine
    from phasewise.settings import load_settings

    sim = SimProcess()
    sim.url = "http://127.0.0.1:9"
    raw = settings_for(sim, plan="fastc/sim-smart", code="fast/sim-coder", review="live/sim-reviewer")
    engine = Engine()
    engine.keyring.set_memory({KEY_ENV: KEY})
    service = PhaseService(engine)
    loaded = load_settings(raw)
    doc = Document(URI, DOC * 8, 1, "python")
    phases = ("plan", "code", "review")

    def once() -> float:
        start = time.perf_counter()
        for phase in phases:
            problem = service.preflight(loaded, phase, PhaseInput(doc, "status"))
            if problem is not None:
                raise RuntimeError(problem.message)
        return (time.perf_counter() - start) * 1000

    for _ in range(20):
        once()
    samples = [once() for _ in range(n)]
    load = []
    for _ in range(max(10, n // 5)):
        start = time.perf_counter()
        load_settings(raw)
        load.append((time.perf_counter() - start) * 1000)
    return {"p50": p50(samples), "p99": p99(samples), "load_settings_p50": p50(load), "samples": n}


async def verify(env: Env, n: int, latency_ms: float) -> dict[str, Any]:
    """Live check of 5 providers of ``latency_ms`` latency, concurrently: wall ÷ one latency.

    Through ``phasewise.verify`` over LSP when the server has it (its pooled connections warm
    after the first call), and always the calls it makes, each adapter's ``list_models``, from
    a fresh ``Engine`` in this process (new clients and connections: a first verify)."""
    from phasewise.providers.base import Endpoint, Timeouts
    from phasewise.router.router import Engine

    for name in VERIFY_PROVIDERS:
        await env.sim.add_fault({"delay_ms": latency_ms}, provider=name, endpoint="models", times=-1)
    arg = {"providers": list(VERIFY_PROVIDERS)}
    out: dict[str, Any] = {"samples": n}
    try:
        probe = await env.server.command("phasewise.verify", arg, timeout=30)
        out["registered"] = not (probe.error and "not defined" in str(probe.error.get("message")))
        if out["registered"]:
            if probe.error is not None or not (probe.result or {}).get("providers"):
                raise RuntimeError(f"phasewise.verify failed: {probe.error or probe.result}")
            bad = [p["provider"] for p in probe.result["providers"] if not p.get("ok")]
            if bad:
                raise RuntimeError(f"phasewise.verify found providers failing: {bad}")
            walls = [(await env.server.command("phasewise.verify", arg, 30)).ms / 1000 for _ in range(n)]
            out["lsp_wall_s"] = p50(walls)
            out["lsp_ratio"] = p50(walls) / (latency_ms / 1000)
        cold: list[float] = []
        for _ in range(n):
            engine = Engine()
            start = time.perf_counter()
            await asyncio.gather(*(
                engine.adapters[proto].list_models(Endpoint(name, env.sim.base_url(name, proto), KEY), Timeouts())
                for name, proto in VERIFY_PROVIDERS.items()))
            cold.append(time.perf_counter() - start)
            await engine.aclose()
        out["engine_wall_s"] = p50(cold)
        out["engine_ratio"] = p50(cold) / (latency_ms / 1000)
    finally:
        await env.sim.clear_faults()
    return out


async def ttft_layers(env: Env, provider: str, n: int) -> dict[str, Any]:
    """Where the TTFT overhead sits: the SDK alone, the provider adapter, the phase service (the
    whole core, no LSP) in this process, and the full server over LSP, round-robin."""
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseInput, PhaseService
    from phasewise.providers.base import ChatRequest, Endpoint, Timeouts
    from phasewise.router.router import Engine
    from phasewise.settings import load_settings

    instruction = TTFT_INSTRUCTION
    protocol, body, base = await _plan_on(env, provider)
    engine = Engine()
    engine.keyring.set_memory({KEY_ENV: KEY})
    service = PhaseService(engine)
    loaded = load_settings(settings_for(env.sim, plan=f"{provider}/sim-fast"))
    doc = Document(URI, DOC, 1, "python")
    endpoint = Endpoint(provider, base, KEY)
    system = body["messages"][0]["content"] if protocol == "openai" else body["system"]
    user = body["messages"][-1]["content"]
    request = ChatRequest(model=body["model"], system=system, user=user, max_tokens=body.get("max_tokens", 8192))

    class First:
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.first: float | None = None

        def on_text(self, delta: str) -> None:
            if self.first is None:
                self.first = time.perf_counter()

        def on_status(self, message: str) -> None:
            pass

        def ms(self) -> float:
            assert self.first is not None
            return (self.first - self.start) * 1000

    async def direct() -> float:
        return (await env.direct.stream(protocol, base, body)).ttft_ms

    async def adapter() -> float:
        probe = First()
        await engine.adapters[protocol].complete(endpoint, request, probe.on_text, Timeouts())
        return probe.ms()

    async def core() -> float:
        probe = First()
        result = await service.run(loaded, "plan", PhaseInput(doc, instruction), probe)
        if not result.ok:
            raise RuntimeError(str(result.error))
        return probe.ms()

    async def lsp() -> float:
        return (await env.run("plan", instruction)).ttft_ms

    layers: dict[str, Callable[[], Awaitable[float]]] = {"direct": direct, "adapter": adapter, "core": core,
                                                         "lsp": lsp}
    for fn in layers.values():
        await fn()
    samples: dict[str, list[float]] = {k: [] for k in layers}
    names = list(layers)
    for i in range(n):
        for k in names[i % 4:] + names[:i % 4]:
            samples[k].append(await layers[k]())
    await engine.aclose()
    out: dict[str, Any] = {}
    for k, v in samples.items():
        out[f"{k}_p50"] = p50(v)
        out[f"{k}_p99"] = p99(v)
    return out


# ----------------------------------------------------------------------------- prompt caching (issue 14)

# Per protocol shape: the simulated provider's protocol and the model's prices (USD per Mtok:
# input, cache read, cache write), as the catalogue gives them for the real model it stands for.
CACHE_ROUTES: dict[str, tuple[str, float, float, float]] = {
    "anthropic": ("anthropic", 3.0, 0.30, 3.75),  # claude-sonnet-4-5
    "openai": ("openai", 1.25, 0.125, 1.25),  # gpt-5
    "zai": ("openai", 0.60, 0.11, 0.60),  # glm-4.6
    "deepseek": ("openai", 0.28, 0.028, 0.28),  # deepseek-chat
}


def forty_kb_module(size: int = 40_000) -> str:
    """A Python module of about ``size`` characters with a ``find_item`` to rename."""
    parts = ["def find_item(items, sku):\n    for item in items:\n        if item['sku'] == sku:\n"
             "            return item\n    return None\n"]
    n = 0
    while sum(map(len, parts)) < size:
        parts.append(f"\n\ndef stock_{n}(items, limit={n}):\n    total = 0\n    for item in items[:limit]:\n"
                     f"        total += item['count'] * {n}\n    return total, find_item(items, 'sku-{n}')\n")
        n += 1
    return "".join(parts)


def _file_step(service: Any, loaded: Any, uri: str, text: str, observer: Any) -> Any:
    """A run's step on one file held in memory: the code phase's change is applied to it."""
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseInput, PhaseResult
    from phasewise.workflows.runs import Step

    state = {"text": text}

    async def step(s: Step) -> PhaseResult:
        doc = Document(uri, state["text"], 1, "python")
        result: PhaseResult = await service.run(loaded, s.phase, PhaseInput(
            doc, s.instruction, plan=s.plan, change=s.change, run_id=s.run_id), observer)
        if result.phase == "code" and result.ok and result.new_text is not None:
            state["text"] = result.new_text
        return result

    return step


async def prompt_caching_runs() -> dict[str, Any]:
    """The demo run and a run on a 40 KB file, plan → code → review, then the same run again on
    the file as it was left, on a simulator reporting prompt caching the way each protocol does.
    Billed input cost with the provider's cache (prices as above) against the same requests billed
    without it, and the share of input tokens read from the cache."""
    from phasewise.cli.demo import DEMO_INSTRUCTION, example_file
    from phasewise.phases.service import PhaseService
    from phasewise.router.router import Engine
    from phasewise.router.routes import Keyring
    from phasewise.settings import load_settings
    from phasewise.sim import SimulatorThread
    from phasewise.workflows.runs import run_plan_code_review

    class Quiet:
        def on_text(self, delta: str) -> None:
            pass

        def on_status(self, message: str) -> None:
            pass

    documents = {"demo": example_file().read_text(encoding="utf-8"), "40kb": forty_kb_module()}
    instruction = {"demo": DEMO_INSTRUCTION, "40kb": "Rename find_item to find_by_sku and keep its callers working"}
    out: dict[str, Any] = {}
    with SimulatorThread(first_token_ms=0, chunk_interval_ms=0, chunk_words=50) as sim:
        for shape, (protocol, price_in, price_read, price_write) in CACHE_ROUTES.items():
            provider = f"cache-{shape}"
            sim.configure(provider, prompt_cache=shape)
            ref = f"{provider}/claude-sim"
            loaded = load_settings({
                # a rename across 40 KB is a long answer: the budget a user would set for it
                "phases": {p: {"model": ref, "maxOutputTokens": 64_000} for p in ("plan", "code", "review")},
                "providers": {provider: {"protocol": protocol, "baseUrl": sim.base_url(provider, protocol),
                                         "requiresKey": False,
                                         "models": {"claude-sim": {
                                             "toolCalling": True, "inputPricePerMtok": price_in,
                                             "outputPricePerMtok": price_in * 5,
                                             "cacheReadPricePerMtok": price_read,
                                             "cacheWritePricePerMtok": price_write}}}},
            })
            service = PhaseService(Engine(Keyring(environ={})))
            for name, text in documents.items():
                step = _file_step(service, loaded, f"file:///bench/{name}.py", text, Quiet())
                for run in ("run1", "run2"):
                    outcome = await run_plan_code_review(step, instruction[name])
                    rs = outcome.results
                    if not outcome.ok:
                        raise RuntimeError(f"{shape} {name}: {[r.to_json().get('error') for r in rs]}")
                    tokens_in = sum(r.input_tokens for r in rs)
                    read = sum(r.cache_read_tokens for r in rs)
                    write = sum(r.cache_write_tokens for r in rs)
                    without = tokens_in * price_in / 1e6
                    with_cache = ((tokens_in - read - write) * price_in + read * price_read
                                  + write * price_write) / 1e6
                    out[f"{shape}_{name}_{run}"] = {
                        "input_tokens": tokens_in, "cache_read_tokens": read, "cache_write_tokens": write,
                        "input_usd_without": without, "input_usd_with": with_cache,
                        "saving_pct": 100 * (1 - with_cache / without) if without else 0.0,
                        "hit_share_pct": 100 * read / tokens_in if tokens_in else 0.0,
                    }
            await service.engine.aclose()
    return out


async def code_actions(env: Env, lines: int, n: int) -> dict[str, Any]:
    """``textDocument/codeAction`` answer time at cursors spread over a ``lines``-line open document
    (every phase offered, no network): p50/p99 beside the JSON-RPC round trip of an unknown command."""
    await env.route(plan="live/sim-fast")
    uri = "file:///bench/actions/big.py"
    body = "".join(f"def f{i}(x):  # phasewise: make f{i} faster\n    return x * {i}\n" for i in range(lines // 2))
    env.server.open(uri, body)
    params = lambda line: {"textDocument": {"uri": uri},  # noqa: E731
                           "range": {"start": {"line": line, "character": 4}, "end": {"line": line, "character": 4}},
                           "context": {"diagnostics": []}}
    for _ in range(5):
        await env.server.request("textDocument/codeAction", params(0))
    times, offered = [], 0
    for i in range(n):
        reply = await env.server.request("textDocument/codeAction", params((i * 7919) % lines))
        times.append(reply.ms)
        offered = len(reply.result or [])
    rtt = [(await env.server.command("phasewise.none")).ms for _ in range(n)]
    return {"p50": p50(times), "p99": p99(times), "rtt_p50": p50(rtt), "actions": offered, "lines": lines}
