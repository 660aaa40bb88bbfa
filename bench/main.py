"""``python bench/run.py [--short]``: every figure beside its baseline, a table, then one JSON line.

The fake provider is the offline simulator in its own process, with fixed latencies and token
rates per simulated provider (``scenarios.PROVIDERS``). ``--short`` (CI) takes fewer samples,
finishes in well under a minute and does not judge the numbers; the exit status is 0 whatever
they are (a scenario that fails is reported, not raised).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import agent_loop, loop_cache, scenarios
from bench.stats import rnd

TARGETS: dict[str, tuple[str, float]] = {
    "overhead_ttft_p50_ms": ("<=", 1.0),
    "overhead_ttft_p99_ms": ("<=", 3.0),
    "relay_ratio": (">=", 0.95),
    "notifications_per_s": ("<=", 60.0),
    "initialize_ratio": ("<=", 1.15),
    "idle_rss_ratio": ("<=", 1.3),
    "rss_growth_mb_1000_runs": ("<=", 5.0),
    "concurrent_50_wall_s": ("<=", 1.2),
    "responsiveness_p99_ms": ("<=", 20.0),
    "code_action_p99_ms": ("<=", 5.0),
    "cancel_to_close_ms": ("<=", 50.0),
    "preflight_ms": ("<=", 5.0),
    # issue 14: billed input cost of one plan → code → review run on a 40 KB file, lower by
    "cache_anthropic_40kb_run1_saving_pct": (">=", 50.0),
    "cache_openai_40kb_run1_saving_pct": (">=", 40.0),
    # issue 21: billed input cost of a 10-step agent loop with caching, % of the same loop uncached
    "loop_cache_anthropic_ratio_pct": ("<=", 30.0),
    "loop_cache_openai_ratio_pct": ("<=", 35.0),
    "verify_ratio": ("<=", 1.5),
    # issue 21: the server's own time per agent step, status during a loop, search_files on 20,000 files
    "agent_step_server_p50_ms": ("<=", 2.0),
    "status_loop_p99_ms": ("<=", 20.0),
    "search_untracked_warm_p50_ms": ("<=", 100.0),
    "search_tracked_warm_p50_ms": ("<=", 100.0),
}


@dataclass
class Sizes:
    ttft: int
    ttft_anthropic: int
    relay_pairs: int
    relay_words: int
    init: int
    growth_runs: int
    concurrent_rounds: int
    status_idle: int
    stream_words: int
    cancel: int
    preflight: int
    verify: int


SHORT = Sizes(ttft=15, ttft_anthropic=0, relay_pairs=1, relay_words=800, init=2, growth_runs=150,
              concurrent_rounds=1, status_idle=30, stream_words=240, cancel=3, preflight=100, verify=3)
FULL = Sizes(ttft=200, ttft_anthropic=100, relay_pairs=6, relay_words=1500, init=12, growth_runs=1000,
             concurrent_rounds=3, status_idle=100, stream_words=300, cancel=12, preflight=500, verify=10)


# --short must end within a minute on a busy machine: scenarios that would start after
# BUDGET_S are skipped (and said so), and none may run longer than SCENARIO_LIMIT_S. Issue 21's
# (an agent loop through a server of its own, a 20,000-file workspace) run after the others, on
# their own allowance of at most EXTRA_S (in --short: ~18 s on a quiet machine).
BUDGET_S = {True: 40.0, False: 1800.0}
SCENARIO_LIMIT_S = {True: 12.0, False: 600.0}
EXTRA_S = {"agent_loop": (20.0, 900.0), "search": (12.0, 600.0)}  # scenario: (its limit --short, full)


class Bench:
    def __init__(self, short: bool, only: set[str] | None) -> None:
        self.short = short
        self.only = only
        self.sizes = SHORT if short else FULL
        self.started = time.perf_counter()
        self.skipped: list[str] = []
        self.figures: dict[str, Any] = {}
        self.rows: list[tuple[str, str, str, str]] = []
        self.errors: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    async def step(self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]],
                   record: Callable[[dict[str, Any]], None]) -> None:
        if self.only is not None and name not in self.only:
            return
        started = time.perf_counter()
        if name not in EXTRA_S and started - self.started > BUDGET_S[self.short]:
            self.skipped.append(name)
            return
        limit = EXTRA_S[name][0 if self.short else 1] if name in EXTRA_S else SCENARIO_LIMIT_S[self.short]
        try:
            record(await asyncio.wait_for(fn(), limit))
        except TimeoutError:
            self.errors[name] = f"did not finish within {limit:g} s"
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
        self.timings[name] = round(time.perf_counter() - started, 1)

    def put(self, name: str, value: Any, digits: int = 3) -> None:
        self.figures[name] = rnd(value, digits) if isinstance(value, float) else value

    def row(self, what: str, value: str, baseline: str, name: str | None = None) -> None:
        self.rows.append((what, value, baseline, name or ""))

    async def run(self) -> None:
        s = self.sizes
        with tempfile.TemporaryDirectory(prefix="phasewise-bench-") as tmp:
            env = scenarios.Env(Path(tmp), short=self.short)
            try:
                await asyncio.wait_for(env.start(), 30)
                await self.step("ttft", lambda: scenarios.ttft(env, "fast", s.ttft), self._ttft)
                await self.step("preflight", self._preflight_async, self._preflight)
                await self.step("prompt_caching", scenarios.prompt_caching_runs, self._prompt_caching)
                await self.step("loop_caching", loop_cache.loop_caching, self._loop_caching)
                await self.step("verify", lambda: scenarios.verify(env, s.verify, 200), self._verify)
                await self.step("initialize", lambda: scenarios.initialize(env, s.init), self._initialize)
                await self.step("idle_rss", lambda: scenarios.idle_rss(env), self._idle_rss)
                if s.ttft_anthropic:
                    await self.step("ttft_anthropic", lambda: scenarios.ttft(env, "fastc", s.ttft_anthropic),
                                    self._ttft_anthropic)
                await self.step("relay", lambda: scenarios.relay(env, s.relay_pairs, s.relay_words), self._relay)
                await self.step("rss_growth", lambda: scenarios.rss_growth(env, s.growth_runs), self._growth)
                await self.step("cancel", lambda: scenarios.cancel(env, s.cancel), self._cancel)
                await self.step("responsiveness", lambda: scenarios.responsiveness(env, 50, s.status_idle,
                                                                                  s.stream_words),
                                self._responsiveness)
                await self.step("code_actions", lambda: scenarios.code_actions(env, 20_000, 40 if self.short else 300),
                                self._code_actions)
                await self.step("concurrent", lambda: scenarios.concurrent(env, 50, 1000, s.concurrent_rounds),
                                self._concurrent)
            finally:
                await asyncio.wait_for(env.stop(), 30)
            await self.step("agent_loop", lambda: agent_loop.agent_loop(self.short), self._agent_loop)
            await self.step("search", self._search_async, self._search)

    # ----------------------------------------------------------------------------- records
    def _ttft(self, r: dict[str, Any]) -> None:
        self.put("overhead_ttft_p50_ms", r["overhead_p50"])
        self.put("overhead_ttft_p99_ms", r["overhead_p99"])
        for k in ("lsp_p50", "lsp_p99", "direct_p50", "direct_p99"):
            self.put(f"ttft_{k}_ms", r[k])
        self.put("ttft_samples", r["samples"])
        self.row("TTFT p50 (ms), LSP streamText vs SDK first chunk",
                 f"{r['lsp_p50']:.2f}", f"{r['direct_p50']:.2f}", "overhead_ttft_p50_ms")
        self.row("TTFT p99 (ms)", f"{r['lsp_p99']:.2f}", f"{r['direct_p99']:.2f}", "overhead_ttft_p99_ms")
        if "bare_p50" in r:
            self.put("ttft_bare_relay_p50_ms", r["bare_p50"])
            self.put("ttft_bare_relay_p99_ms", r["bare_p99"])
            self.put("overhead_ttft_bare_relay_p50_ms", r["bare_overhead_p50"])
            self.put("overhead_ttft_over_bare_relay_p50_ms", r["over_bare_p50"])
            self.row("TTFT p50 (ms), bare pygls relay (the LSP floor)", f"{r['bare_p50']:.2f}",
                     f"{r['direct_p50']:.2f}", "overhead_ttft_bare_relay_p50_ms")

    def _ttft_anthropic(self, r: dict[str, Any]) -> None:
        self.put("overhead_ttft_anthropic_p50_ms", r["overhead_p50"])
        self.put("overhead_ttft_anthropic_p99_ms", r["overhead_p99"])
        self.row("TTFT p50 (ms), Anthropic protocol", f"{r['lsp_p50']:.2f}", f"{r['direct_p50']:.2f}",
                 "overhead_ttft_anthropic_p50_ms")

    def _relay(self, r: dict[str, Any]) -> None:
        self.put("relay_ratio", r["ratio"])
        self.put("notifications_per_s", r["notifications_per_s"], 1)
        self.put("stream_notifications_per_s", r["stream_notifications_per_s"], 1)
        self.put("upstream_chunks_per_s", r["upstream_chunks_per_s"], 1)
        self.put("relay_stream_s", r["stream_s"])
        self.put("relay_same_text", r["same_text"])
        self.row("fast stream, chars/s delivered", f"{r['lsp_chars_per_s']:.0f}",
                 f"{r['direct_chars_per_s']:.0f}", "relay_ratio")
        self.row("notifications/s ($/progress + streamText)", f"{r['notifications_per_s']:.1f}",
                 f"{r['upstream_chunks_per_s']:.0f} upstream chunks/s", "notifications_per_s")

    def _initialize(self, r: dict[str, Any]) -> None:
        self.put("initialize_ratio", r["ratio"])
        self.put("initialize_phasewise_ms", r["phasewise_p50"], 1)
        self.put("initialize_bare_ms", r["bare_p50"], 1)
        self.row("spawn → initialize answered (ms, p50)", f"{r['phasewise_p50']:.0f}",
                 f"{r['bare_p50']:.0f} bare pygls", "initialize_ratio")

    def _idle_rss(self, r: dict[str, Any]) -> None:
        self.put("idle_rss_ratio", r["phasewise"] / r["bare"])
        self.put("idle_rss_ratio_nowarmup", r["phasewise_nowarmup"] / r["bare"])
        self.put("idle_rss_ratio_vs_sdk_floor", r["phasewise"] / r["bare_sdks"])
        for k, v in r.items():
            self.put(f"idle_rss_mb_{k}", v, 1)
        self.row("idle RSS (MiB), default settings (Claude)", f"{r['phasewise']:.1f}", f"{r['bare']:.1f} bare pygls",
                 "idle_rss_ratio")
        self.row("idle RSS (MiB), PHASEWISE_WARMUP=0", f"{r['phasewise_nowarmup']:.1f}",
                 f"{r['bare']:.1f} bare pygls", "idle_rss_ratio_nowarmup")
        self.row("idle RSS (MiB), warm-up on", f"{r['phasewise']:.1f}",
                 f"{r['bare_sdks']:.1f} bare pygls + both SDKs", "idle_rss_ratio_vs_sdk_floor")
        self.put("idle_rss_ratio_openai_only", r["phasewise_openai_only"] / r["bare"])
        self.row("idle RSS (MiB), every phase OpenAI-compatible", f"{r['phasewise_openai_only']:.1f}",
                 f"{r['bare']:.1f} bare pygls", "idle_rss_ratio_openai_only")

    def _growth(self, r: dict[str, Any]) -> None:
        per_1000 = r["growth_mb"] * 1000 / r["runs"]
        self.put("rss_growth_mb_1000_runs", per_1000, 2)
        self.put("rss_growth_runs_measured", r["runs"])
        self.put("rss_growth_checkpoints_mb", r["checkpoints_mb"])
        self.put("runs_per_s", r["runs_per_s"], 1)
        self.put("rss_growth_failed_runs", r["failed"])
        self.row(f"RSS over {r['runs']} runs (MiB; growth scaled to 1000)",
                 f"{r['after_mb']:.1f}", f"{r['before_mb']:.1f} after 60 warm runs", "rss_growth_mb_1000_runs")

    def _cancel(self, r: dict[str, Any]) -> None:
        self.put("cancel_to_close_ms", r["request_p50"], 2)
        self.put("cancel_to_close_p99_ms", r["request_p99"], 2)
        self.put("cancel_token_to_close_ms", r["token_p50"], 2)
        self.put("cancel_direct_to_close_ms", r["direct_p50"], 2)
        self.row("$/cancelRequest → upstream closed (ms, p50)", f"{r['request_p50']:.2f}",
                 f"{r['direct_p50']:.2f} SDK task cancelled", "cancel_to_close_ms")
        self.row("progress-token cancel → upstream closed (ms)", f"{r['token_p50']:.2f}",
                 f"{r['direct_p50']:.2f} SDK task cancelled", "cancel_token_to_close_ms")

    def _responsiveness(self, r: dict[str, Any]) -> None:
        self.put("responsiveness_p99_ms", r["busy_p99"], 2)
        self.put("responsiveness_p50_ms", r["busy_p50"], 2)
        self.put("status_idle_p50_ms", r["idle_p50"], 2)
        self.put("status_idle_p99_ms", r["idle_p99"], 2)
        self.put("rtt_p50_ms", r["rtt_p50"], 2)
        self.put("responsiveness_samples", r["busy_samples"])
        self.row("phasewise.status p50 (ms), 50 runs streaming", f"{r['busy_p50']:.2f}",
                 f"{r['idle_p50']:.2f} idle", "responsiveness_p50_ms")
        self.row("phasewise.status p99 (ms), 50 runs streaming", f"{r['busy_p99']:.2f}",
                 f"{r['idle_p99']:.2f} idle", "responsiveness_p99_ms")
        self.row("JSON-RPC round trip p50 (ms, unknown command)", f"{r['rtt_p50']:.2f}", "-", "rtt_p50_ms")

    def _code_actions(self, r: dict[str, Any]) -> None:
        self.put("code_action_p99_ms", r["p99"], 2)
        self.put("code_action_p50_ms", r["p50"], 2)
        self.row(f"code actions p99 (ms), {r['lines']:,}-line document, {r['actions']} offered",
                 f"{r['p99']:.2f}", f"{r['rtt_p50']:.2f} round trip p50", "code_action_p99_ms")

    def _concurrent(self, r: dict[str, Any]) -> None:
        self.put("concurrent_50_wall_s", r["lsp_wall_s"])
        self.put("concurrent_50_direct_wall_s", r["direct_wall_s"])
        self.put("concurrent_50_ratio", r["ratio"])
        self.put("server_cpu_ms_per_run", r["server_cpu_ms_per_run"], 2)
        self.row("50 concurrent runs at 1 s latency (s)", f"{r['lsp_wall_s']:.3f}",
                 f"{r['direct_wall_s']:.3f} SDK, 50 concurrent", "concurrent_50_wall_s")

    def _prompt_caching(self, r: dict[str, Any]) -> None:
        for key, v in r.items():
            shape, doc, run = key.split("_")
            name = f"cache_{key}_saving_pct"
            self.put(name, v["saving_pct"], 1)
            self.put(f"cache_{key}_hit_share_pct", v["hit_share_pct"], 1)
            which = "the same run again" if run == "run2" else "plan → code → review"
            self.row(f"prompt caching, {shape}, {doc} file, {which}: input cost (hit share "
                     f"{v['hit_share_pct']:.0f} %)", f"${v['input_usd_with']:.4f}",
                     f"${v['input_usd_without']:.4f} without cache", name)

    def _loop_caching(self, r: dict[str, Any]) -> None:
        for shape, v in r.items():
            name = f"loop_cache_{shape}_ratio_pct"
            self.put(name, v["ratio_pct"], 1)
            self.put(f"loop_cache_{shape}_vs_off_pct", v["ratio_vs_off_billed_pct"], 1)
            self.put(f"loop_cache_{shape}_hit_share_pct", v["hit_share_pct"], 1)
            on, off = v["caching"], v["caching_off"]
            self.row(f"{loop_cache.STEPS}-step agent loop, {shape}: input cost with caching (hit share "
                     f"{v['hit_share_pct']:.0f} %)", f"${on['billed_usd']:.4f}",
                     f"${off['uncached_usd']:.4f} uncached (${off['billed_usd']:.4f} promptCaching false)", name)

    def _agent_loop(self, r: dict[str, Any]) -> None:
        for name, value in r.items():
            self.put(name, value, 2)
        self.row(f"agent step: server time p50 (ms), provider and tool time left out ({r['agent_loop_tool_calls']} "
                 "steps, OpenAI protocol)", f"{r['agent_step_server_p50_ms']:.2f}",
                 f"{r['agent_step_sdk_floor_p50_ms']:.2f} the SDK's own per step "
                 f"({r['agent_step_http_floor_p50_ms']:.2f} HTTP alone)", "agent_step_server_p50_ms")
        self.row("agent step: server time p99 (ms)", f"{r['agent_step_server_p99_ms']:.2f}",
                 f"{r['agent_step_sdk_floor_p99_ms']:.2f} the SDK's own p99", "agent_step_server_p99_ms")
        self.row("agent step: server time p50 (ms), Anthropic protocol",
                 f"{r['agent_step_server_p50_anthropic_ms']:.2f}",
                 f"{r['agent_step_sdk_floor_p50_anthropic_ms']:.2f} the SDK's own per step "
                 f"({r['agent_step_http_floor_p50_anthropic_ms']:.2f} HTTP alone)",
                 "agent_step_server_p50_anthropic_ms")
        self.row("agent loop: server time outside the steps (ms, p50: command → first request, last answer → "
                 "result)", f"{r['agent_loop_fixed_p50_ms']:.2f}",
                 f"{r['single_shot_server_p50_ms']:.2f} a single-shot phase's", "agent_loop_fixed_p50_ms")
        self.row(f"phasewise.status p50 (ms) during a {r['status_loop_steps']}-step loop",
                 f"{r['status_loop_p50_ms']:.2f}", f"{r['status_loop_idle_p50_ms']:.2f} idle", "status_loop_p50_ms")
        self.row(f"phasewise.status p99 (ms) during a {r['status_loop_steps']}-step loop",
                 f"{r['status_loop_p99_ms']:.2f}", f"{r['status_loop_idle_p99_ms']:.2f} idle", "status_loop_p99_ms")

    async def _search_async(self) -> dict[str, Any]:
        from bench.workspace import bench_search, bench_search_short

        if self.short:
            return await asyncio.to_thread(bench_search_short)
        return await asyncio.to_thread(bench_search, 20_000)

    def _search(self, r: dict[str, Any]) -> None:
        for name, value in r.items():
            self.put(name, value, 1)
        for label in ("untracked", "tracked"):
            if f"search_{label}_warm_p50_ms" not in r:
                continue
            floor = f"git_grep_{label}_as_tool"
            self.row(f"search_files, {int(r['search_workspace_files']):,} files ({label}), warm p50 / p95 (ms)",
                     f"{r[f'search_{label}_warm_p50_ms']:.1f} / {r[f'search_{label}_warm_p95_ms']:.1f}",
                     f"{r[f'{floor}_p50_ms']:.1f} / {r[f'{floor}_p95_ms']:.1f} its git grep, bare",
                     f"search_{label}_warm_p50_ms")
            self.row(f"search_files ({label}), cold p50 / p95 (ms): a new session's first search",
                     f"{r[f'search_{label}_cold_p50_ms']:.1f} / {r[f'search_{label}_cold_p95_ms']:.1f}",
                     f"{r[f'git_grep_{label}_p50_ms']:.1f} plain git grep p50", f"search_{label}_cold_p50_ms")

    async def _preflight_async(self) -> dict[str, Any]:
        return await asyncio.to_thread(scenarios.preflight, self.sizes.preflight)

    def _preflight(self, r: dict[str, Any]) -> None:
        self.put("preflight_ms", r["p50"], 3)
        self.put("preflight_p99_ms", r["p99"], 3)
        self.put("load_settings_ms", r["load_settings_p50"], 3)
        self.row("preflight of plan+code+review (ms, p50, in process)", f"{r['p50']:.3f}",
                 f"{r['load_settings_p50']:.3f} one load_settings", "preflight_ms")

    def _verify(self, r: dict[str, Any]) -> None:
        self.put("verify_engine_cold_ratio", r["engine_ratio"])
        self.put("verify_engine_cold_wall_s", r["engine_wall_s"])
        self.put("verify_command_registered", r["registered"])
        if r["registered"]:
            self.put("verify_ratio", r["lsp_ratio"])
            self.put("verify_wall_s", r["lsp_wall_s"])
            self.row("phasewise.verify, 5 providers at 200 ms (s)", f"{r['lsp_wall_s']:.3f}", "0.200 one call",
                     "verify_ratio")
        else:
            self.put("verify_ratio", r["engine_ratio"])
        self.row("list_models ×5 concurrently, fresh Engine (s)", f"{r['engine_wall_s']:.3f}", "0.200 one call",
                 "verify_engine_cold_ratio" if r["registered"] else "verify_ratio")

    # ----------------------------------------------------------------------------- output
    def verdict(self, name: str) -> str:
        if name not in TARGETS:
            return ""
        op, bound = TARGETS[name]
        value = self.figures.get(name)
        target = f"{op} {bound:g}"
        if self.short:
            return target
        if not isinstance(value, (int, float)) or math.isnan(value):
            return f"{target} ?"
        met = value <= bound if op == "<=" else value >= bound
        return f"{target} {'met' if met else 'MISSED'}"

    def print(self, took: float) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=160, soft_wrap=False)
        title = "Phasewise benchmarks" + (" (--short: figures printed, not judged)" if self.short else "")
        table = Table(title=title)
        table.add_column("measure")
        table.add_column("Phasewise", justify="right")
        table.add_column("baseline (same run)", justify="right")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("target")
        for what, value, baseline, name in self.rows:
            fig = self.figures.get(name, "")
            table.add_row(what, value, baseline, name, str(fig), self.verdict(name))
        console.print(table)
        for name, err in self.errors.items():
            console.print(f"[red]scenario {name} failed:[/red] {err}")
        if self.skipped:
            console.print(f"skipped (over the {BUDGET_S[self.short]:g} s budget): {', '.join(self.skipped)}")
        console.print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
                      f"scenario seconds: {self.timings}; total {took:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="few samples, < 60 s, numbers not judged (CI)")
    parser.add_argument("--only", default=None, help="comma-separated scenario names (for working on one)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    bench = Bench(args.short, only)
    started = time.perf_counter()
    try:
        asyncio.run(bench.run())
    except Exception as exc:  # the harness itself failed: still print what there is, still exit 0
        bench.errors["harness"] = f"{type(exc).__name__}: {exc}"
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()
    took = time.perf_counter() - started
    bench.print(took)
    out = {**bench.figures, "short": bench.short, "seconds": round(took, 1)}
    if bench.errors:
        out["errors"] = bench.errors
    if bench.skipped:
        out["skipped"] = bench.skipped
    sys.stdout.flush()
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0
