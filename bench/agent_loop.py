"""Issue 21: the server's own time per agent step, and ``phasewise.status`` while a loop runs.

A real agent loop through the real language server, on both protocols: a Phasewise server over
stdio rooted in a generated git work tree (``bench.workspace.generate``, 2,000 files), the
simulator in its own process playing a plan-kind agent that calls one tool a step for N steps (``[steps=N]``,
``bench/simproc.py``: ``read_file``, ``search_files``, ``list_files`` in turn), then answers.

1. **Server time per step, provider and tool time left out.** The simulator stamps each request
   when it has read it and when it has written the last byte of its answer (``started_at``,
   ``finished_at``, one wall clock for both processes). Between the answer of step k and the request
   of step k+1 the server parses the answer, runs the step's tool calls, reports progress, builds
   the next request and sends it; that gap minus the step's tool time (``steps[].ms`` of the result,
   the tool's run in its worker thread) is the server's time for the step. Sampled per step, on a
   provider with no latency. Baseline in the same run, alternating: a single-shot phase's server time
   (command sent → answered, minus the one request's provider time) on the same provider, and the
   loop's own fixed part (command → first request, last answer → result). And the floor of any
   server that calls the SDKs: each loop's requests replayed from the bench process through the
   SDK as the server's adapter calls it (same bodies, same kind of pooled client), timed the same
   way (call → the simulator has the request, its last byte → the stream read to its end); and
   the same bodies posted as bytes with the same HTTP client, no SDK (the HTTP floor). All of them
   include the simulator reading and parsing the request before it stamps it.
2. **``phasewise.status`` during a loop**: the same loop on a provider with 25 ms to its first
   token, ``phasewise.status`` sent one after the other (5 ms apart) until the phase answers;
   p50/p99 beside the same request on the idle server.

``python -m bench.agent_loop [--short]`` prints the figures; ``bench/run.py --only agent_loop`` runs
it with the other benchmarks (also in ``--short``). Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lspclient import PHASEWISE_CMD, LspProcess
from bench.scenarios import KEY, KEY_ENV, Direct, phasewise_env, settle
from bench.simproc import SimProcess
from bench.stats import p50, p99, pct

MODEL = "sim-agent"
QUICK = {"first_token_ms": 0, "chunk_interval_ms": 0, "chunk_words": 20}  # no latency: the server alone
LIVE = {"first_token_ms": 25, "chunk_interval_ms": 0, "chunk_words": 20}  # a model that thinks 25 ms a step


@dataclass(frozen=True, slots=True)
class Sizes:
    files: int  # the workspace's
    steps: int  # tool calls per loop (model calls: one more)
    runs: int  # loops measured (and as many single-shot phases)
    status_steps: int  # the loop status is sampled during
    status_idle: int


SHORT = Sizes(files=2000, steps=20, runs=3, status_steps=40, status_idle=60)
FULL = Sizes(files=2000, steps=30, runs=12, status_steps=80, status_idle=200)


PROTOCOLS = {"openai": ("quick", "steps", "plan"), "anthropic": ("quickc", "stepsc", "planc")}  # provider, loop, single


def settings(sim: SimProcess, max_steps: int) -> dict[str, Any]:
    """Phases on simulated providers: ``steps``, ``stepsc`` and ``livesteps`` work in steps (plan
    kind), ``plan`` and ``planc`` answer in one request; ``quick`` (OpenAI protocol) and ``quickc``
    (Anthropic) answer at once, ``live`` after 25 ms."""
    protocol = {"quick": "openai", "quickc": "anthropic", "live": "openai"}
    providers = {name: {"protocol": proto, "baseUrl": sim.base_url(name, proto), "apiKeyEnv": KEY_ENV,
                        "models": {MODEL: {"toolCalling": True}}} for name, proto in protocol.items()}
    agent = {"maxSteps": max_steps}
    phases: dict[str, Any] = {"livesteps": {"kind": "plan", "model": f"live/{MODEL}", "agent": agent}}
    for provider, loop, single in PROTOCOLS.values():
        phases[loop] = {"kind": "plan", "model": f"{provider}/{MODEL}", "agent": agent}
        phases[single] = {"kind": "plan", "model": f"{provider}/{MODEL}"}
    return {"providers": providers, "phases": phases}


class LoopBench:
    """One simulator, one server rooted in the generated workspace, the document open."""

    def __init__(self, tmp: Path, sizes: Sizes) -> None:
        self.tmp, self.sizes = tmp, sizes
        self.sim = SimProcess(**QUICK)
        self.lsp: LspProcess | None = None
        self.uri = ""
        self.direct = Direct()

    async def start(self) -> None:
        from bench.workspace import generate

        ws = self.tmp / "ws"
        ws.mkdir()
        doc = await asyncio.to_thread(generate, ws, self.sizes.files)
        await asyncio.to_thread(subprocess.run, ["git", "-C", str(ws), "add", "-A"], check=True)
        await self.sim.start()
        env = phasewise_env(self.tmp, PHASEWISE_WARMUP="1")
        max_steps = max(self.sizes.steps, self.sizes.status_steps) + 1  # N tool calls, then the answer
        self.lsp = LspProcess(PHASEWISE_CMD, env, settings=settings(self.sim, max_steps),
                              stderr_path=self.tmp / "agent-loop.stderr")
        await self.lsp.spawn()
        await self.lsp.initialize(root=ws)
        self.uri = doc.as_uri()
        self.lsp.open(self.uri, doc.read_text(encoding="utf-8"))
        await settle({"server": self.lsp.pid}, quiet_s=0.5, limit_s=15)  # the warm-up imports done

    @property
    def server(self) -> LspProcess:
        assert self.lsp is not None
        return self.lsp

    async def stop(self) -> None:
        if self.lsp is not None:
            await self.lsp.close()
        await self.direct.aclose()
        await self.sim.stop()

    async def fresh_sim(self) -> None:
        """Forget the simulator's requests (each run reads back its own) and set the latencies."""
        await self.sim.reset()
        for name in ("quick", "quickc"):
            await self.sim.configure(name, **QUICK)
        await self.sim.configure("live", **LIVE)

    async def phase(self, phase: str, instruction: str) -> tuple[dict[str, Any], float, float, list[dict[str, Any]]]:
        """One phase run: its result, command sent and answered (wall clock), the requests it made."""
        await self.fresh_sim()
        offset = time.time() - time.perf_counter()
        reply = await self.server.command("phasewise.phase", {"phase": phase, "uri": self.uri,
                                                              "instruction": instruction}, timeout=120)
        result = reply.result if isinstance(reply.result, dict) else {}
        if reply.error or not result.get("ok") or result.get("incomplete"):
            raise RuntimeError(f"{phase} failed: {reply.error or result.get('error') or result.get('note')}")
        chats = sorted((q for q in await self.sim.requests() if q["endpoint"] == "chat"),
                       key=lambda q: q["started_at"])
        return result, reply.sent + offset, reply.received + offset, chats


    async def floor(self, protocol: str, bodies: list[dict[str, Any]], *, raw: bool = False) -> list[float]:
        """Per step of a loop whose requests were ``bodies``: the client's own time (answer k read to
        its end + request k+1 sent), each body replayed from this process through the SDK as the
        adapter calls it (on the OpenAI protocol, messages and tools as ``extra_body``) or, ``raw``,
        as JSON bytes posted with the pooled HTTP client and the answer's lines read, no SDK."""
        await self.fresh_sim()
        provider = PROTOCOLS[protocol][0]
        base = self.sim.base_url(provider, protocol)
        client = self.direct.client(protocol, base)
        url = f"{base}/chat/completions" if protocol == "openai" else f"{base}/v1/messages"
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}", "x-api-key": KEY,
                   "anthropic-version": "2023-06-01"}
        calls: list[tuple[float, float]] = []
        for body in bodies:
            offset = time.time() - time.perf_counter()
            started = time.perf_counter()
            if raw:
                async with self.direct.http.stream("POST", url, content=json.dumps(body).encode(),
                                                   headers=headers) as response:
                    async for _ in response.aiter_lines():
                        pass
            else:
                if protocol == "openai":
                    extra = {k: body[k] for k in ("messages", "tools") if k in body}
                    stream = await client.chat.completions.create(
                        **{k: v for k, v in body.items() if k not in extra}, messages=[], extra_body=extra)
                else:
                    stream = await client.messages.create(**body)
                async for _ in stream:
                    pass
            calls.append((started + offset, time.perf_counter() + offset))
        chats = sorted((q for q in await self.sim.requests() if q["endpoint"] == "chat"),
                       key=lambda q: q["started_at"])
        pre = [(q["started_at"] - sent) * 1000 for (sent, _), q in zip(calls, chats, strict=True)]
        post = [(done - q["finished_at"]) * 1000 for (_, done), q in zip(calls, chats, strict=True)]
        return [post[k] + pre[k + 1] for k in range(len(chats) - 1)]


def split(result: dict[str, Any], sent: float, received: float, chats: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's time, in ms: per step (the gap between answer k and request k+1, minus step k's tool
    time), the fixed part (command → first request, last answer → result), provider and tool totals."""
    tool_ms: dict[int, float] = {}
    for s in result.get("steps") or ():
        tool_ms[s["step"]] = tool_ms.get(s["step"], 0.0) + float(s["ms"])
    gaps = [((chats[k + 1]["started_at"] - chats[k]["finished_at"]) * 1000 - tool_ms.get(k + 1, 0.0))
            for k in range(len(chats) - 1)]
    provider = sum((q["finished_at"] - q["started_at"]) * 1000 for q in chats)
    wall = (received - sent) * 1000
    return {"gaps": gaps, "head": (chats[0]["started_at"] - sent) * 1000,
            "tail": (received - chats[-1]["finished_at"]) * 1000, "wall": wall, "provider": provider,
            "tools": sum(tool_ms.values()), "server": wall - provider - sum(tool_ms.values()),
            "model_calls": len(chats), "tool_calls": len(result.get("steps") or ())}


async def per_step(b: LoopBench, protocol: str) -> dict[str, Any]:
    """Figure 1 on one protocol: loops of ``steps`` tool calls and single-shot phases, alternating;
    the figures' names end in ``_anthropic`` on the Anthropic protocol."""
    _, loop_phase, single_phase = PROTOCOLS[protocol]
    n = b.sizes.steps
    loop = f"look around the workspace [steps={n}]"
    single = "outline the change [tokens=12]"
    for phase, text in ((loop_phase, loop), (single_phase, single)):  # unmeasured warm runs
        await b.phase(phase, text)
    loops: list[dict[str, Any]] = []
    singles: list[dict[str, Any]] = []
    floor: list[float] = []
    http: list[float] = []
    for i in range(b.sizes.runs):
        order = [(loop_phase, loop, loops), (single_phase, single, singles)]
        for phase, text, into in order if i % 2 == 0 else order[::-1]:
            result, sent, received, chats = await b.phase(phase, text)
            into.append(split(result, sent, received, chats))
            if phase == loop_phase:
                floor += await b.floor(protocol, [q["body"] for q in chats])
                http += await b.floor(protocol, [q["body"] for q in chats], raw=True)
    gaps = [g for r in loops for g in r["gaps"]]
    early = [g for r in loops for g in r["gaps"][:5]]
    late = [g for r in loops for g in r["gaps"][-5:]]
    fixed = [r["head"] + r["tail"] for r in loops]
    one = [r["server"] for r in singles]
    figures = {
        "agent_step_server_p50_ms": p50(gaps), "agent_step_server_p95_ms": pct(gaps, 95),
        "agent_step_server_p99_ms": p99(gaps), "agent_step_server_max_ms": max(gaps),
        "agent_step_server_first5_p50_ms": p50(early), "agent_step_server_last5_p50_ms": p50(late),
        "agent_step_samples": len(gaps), "agent_step_sdk_floor_p50_ms": p50(floor),
        "agent_step_sdk_floor_p95_ms": pct(floor, 95), "agent_step_sdk_floor_p99_ms": p99(floor),
        "agent_step_over_sdk_p50_ms": p50(gaps) - p50(floor), "agent_step_http_floor_p50_ms": p50(http),
        "agent_step_tool_p50_ms": p50([r["tools"] / max(1, r["tool_calls"]) for r in loops]),
        "agent_step_provider_p50_ms": p50([r["provider"] / r["model_calls"] for r in loops]),
        "agent_loop_fixed_p50_ms": p50(fixed), "agent_loop_head_p50_ms": p50([r["head"] for r in loops]),
        "agent_loop_tail_p50_ms": p50([r["tail"] for r in loops]),
        "agent_loop_server_per_step_ms": p50([r["server"] / r["tool_calls"] for r in loops]),
        "agent_loop_wall_p50_ms": p50([r["wall"] for r in loops]),
        "agent_loop_model_calls": loops[0]["model_calls"], "agent_loop_tool_calls": loops[0]["tool_calls"],
        "single_shot_server_p50_ms": p50(one), "single_shot_server_p99_ms": p99(one),
        "single_shot_head_p50_ms": p50([r["head"] for r in singles]),
        "single_shot_tail_p50_ms": p50([r["tail"] for r in singles]),
    }
    if protocol == "openai":
        return figures
    return {k.replace("_ms", "_anthropic_ms") if k.endswith("_ms") else f"{k}_anthropic": v
            for k, v in figures.items()}


async def status_during_loop(b: LoopBench) -> dict[str, Any]:
    """Figure 2: ``phasewise.status`` on the idle server, then during a loop on the ``live`` provider."""
    arg = {"uri": b.uri}
    for _ in range(5):
        await b.server.command("phasewise.status", arg)
    idle: list[float] = []
    for _ in range(b.sizes.status_idle):
        idle.append((await b.server.command("phasewise.status", arg)).ms)
        await asyncio.sleep(0.005)
    await b.fresh_sim()
    _, running = b.server.send("workspace/executeCommand", {"command": "phasewise.phase", "arguments": [
        {"phase": "livesteps", "uri": b.uri, "instruction": f"look around [steps={b.sizes.status_steps}]"}]})
    busy: list[float] = []
    while not running.done():
        busy.append((await b.server.command("phasewise.status", arg)).ms)
        await asyncio.sleep(0.005)
    reply = await running
    result = reply.result if isinstance(reply.result, dict) else {}
    if not result.get("ok") or result.get("incomplete"):
        raise RuntimeError(f"the loop failed: {reply.error or result.get('error') or result.get('note')}")
    return {"status_loop_p50_ms": p50(busy), "status_loop_p99_ms": p99(busy), "status_loop_max_ms": max(busy),
            "status_loop_samples": len(busy), "status_loop_idle_p50_ms": p50(idle),
            "status_loop_idle_p99_ms": p99(idle), "status_loop_steps": len(result.get("steps") or ()),
            "status_loop_wall_ms": reply.ms}


async def agent_loop(short: bool) -> dict[str, Any]:
    """Both figures, on one server (``bench/run.py``'s ``agent_loop`` scenario)."""
    with tempfile.TemporaryDirectory(prefix="phasewise-bench-agent-") as tmp:
        b = LoopBench(Path(tmp), SHORT if short else FULL)
        try:
            await b.start()
            return {**await per_step(b, "openai"), **await per_step(b, "anthropic"),
                    **await status_during_loop(b)}
        finally:
            await b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--short", action="store_true", help="fewer samples (as in CI)")
    args = parser.parse_args()
    figures = asyncio.run(agent_loop(args.short))
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v:10.2f}")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
