"""A/B: two builds of the server, measured side by side in one run against one simulator.

    python bench/ab.py --a rev:HEAD~1 --b worktree --scenarios ttft,responsiveness

A variant is ``worktree`` (the code as it is), ``rev:REV`` (the package as it was at a git
revision, e.g. ``rev:HEAD~3``), or steps joined by ``+``: ``patch:FILE`` (apply a unified diff to
the work tree's code) and ``rpatch:FILE`` (revert one); any other variant runs from a copy of
``server/phasewise`` put first on the server's ``PYTHONPATH``, so nothing in the work tree changes.
Rounds alternate the variants (A B, B A, ...) and each figure is the median over rounds, so a
noisy machine weighs on both alike. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scenarios  # noqa: E402
from bench.lspclient import LspProcess  # noqa: E402
from bench.stats import p50  # noqa: E402

Scenario = Callable[[scenarios.Env], Awaitable[dict[str, Any]]]

SCENARIOS: dict[str, Scenario] = {
    "ttft": lambda env: scenarios.ttft(env, "fast", 40),
    "layers": lambda env: scenarios.ttft_layers(env, "fast", 40),
    "relay": lambda env: scenarios.relay(env, 2, 1000),
    "growth": lambda env: scenarios.rss_growth(env, 300),
    "cancel": lambda env: scenarios.cancel(env, 4),
    "responsiveness": lambda env: scenarios.responsiveness(env, 50, 30, 240),
    "concurrent": lambda env: scenarios.concurrent(env, 50, 1000, 1),
}


def build_variant(spec: str, into: Path) -> dict[str, str]:
    """The extra environment a server of this variant needs (a PYTHONPATH overlay, or none)."""
    if spec == "worktree":
        return {}
    if spec.startswith("rev:"):
        into.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", spec[4:], "server/phasewise"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return {"PYTHONPATH": str(into / "server")}
    shutil.copytree(ROOT / "server" / "phasewise", into / "server" / "phasewise",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for step in spec.split("+"):
        how, _, patch = step.partition(":")
        if how not in {"patch", "rpatch"} or not patch:
            raise SystemExit(f"unknown variant {spec!r}: worktree, or patch:FILE / rpatch:FILE joined by +")
        cmd = ["patch", "-s", "-p1", "-d", str(into), "-i", str((ROOT / patch).resolve())]
        if how == "rpatch":
            cmd.insert(1, "-R")
        subprocess.run(cmd, check=True)
    return {"PYTHONPATH": str(into / "server")}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.scenarios.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {"A": {n: [] for n in names}, "B": {n: [] for n in names}}
    with tempfile.TemporaryDirectory(prefix="phasewise-ab-") as tmp:
        extra = {"A": build_variant(args.a, Path(tmp) / "A"), "B": build_variant(args.b, Path(tmp) / "B")}
        env = scenarios.Env(Path(tmp), short=True)
        await env.start()
        servers: dict[str, LspProcess] = {}
        try:
            for v in ("A", "B"):
                servers[v] = await env.spawn_phasewise(f"ab-{v}", warmup=True, extra_env=extra[v])
            await scenarios.settle({v: s.pid for v, s in servers.items()}, quiet_s=0.5, limit_s=15)
            for r in range(args.rounds):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                for name in names:
                    for v in order:
                        env.lsp = servers[v]
                        started = time.perf_counter()
                        results[v][name].append(await SCENARIOS[name](env))
                        print(f"round {r + 1} {name} {v}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        finally:
            for s in servers.values():
                await s.close()
            env.lsp = None
            await env.stop()
    return {v: {n: summarise(rs) for n, rs in by_name.items()} for v, by_name in results.items()}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = round(p50(values), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="variant A (the 'before')")
    parser.add_argument("--b", default="worktree", help="variant B (the 'after'), default: worktree")
    parser.add_argument("--scenarios", default="ttft,responsiveness")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    summary = asyncio.run(main_async(args))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"A = {args.a}   B = {args.b}   (median of {args.rounds} alternating rounds)")
    for col in ("scenario", "figure", "A", "B", "B/A"):
        table.add_column(col, justify="right" if col in {"A", "B", "B/A"} else "left")
    for name, figures in summary["A"].items():
        for key, a in figures.items():
            b = summary["B"][name].get(key)
            ratio = f"{b / a:.3f}" if isinstance(b, (int, float)) and a else "-"
            table.add_row(name, key, f"{a:g}", f"{b:g}" if b is not None else "-", ratio)
    Console(width=140).print(table)
    print(json.dumps({"a": args.a, "b": args.b, "rounds": args.rounds, **summary}, separators=(",", ":")))


if __name__ == "__main__":
    main()
