"""Profile the server under one bench workload with py-spy (sampling, from outside the process).

    python bench/profile.py ttft|stream50|concurrent|growth [--rate 250] [--out DIR] [--top 25]

Starts the simulator and a server session like ``run.py``, attaches ``py-spy record`` to the
server's pid for the workload only, then prints where the samples fell: leaf functions (self
time) and functions on the stack (inclusive), per thread. The raw collapsed stacks and a
speedscope file are left in ``--out`` for a closer look. Needs ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scenarios  # noqa: E402


async def workload(env: scenarios.Env, name: str) -> None:
    if name == "ttft":
        for _ in range(150):
            await env.run("plan", "outline the change [tokens=150]")
    elif name == "stream50":
        futures = [env.server.send("workspace/executeCommand", {
            "command": "phasewise.plan",
            "arguments": [{"uri": scenarios.URI, "instruction": f"plan {i} [tokens=300]"}]})[1] for i in range(50)]
        gathered = asyncio.ensure_future(asyncio.gather(*futures))
        while not gathered.done():
            await env.server.command("phasewise.status", {"uri": scenarios.URI})
            await asyncio.sleep(0.01)
        await gathered
    elif name == "concurrent":
        futures = [env.server.send("workspace/executeCommand", {
            "command": "phasewise.plan",
            "arguments": [{"uri": scenarios.URI, "instruction": f"variant {i}"}]})[1] for i in range(50)]
        await asyncio.gather(*futures)
    elif name == "growth":
        for i in range(600):
            await env.run(("plan", "code", "review")[i % 3], "rename add to put")


ROUTES = {
    "ttft": {"plan": "fast/sim-fast"},
    "stream50": {"plan": "live/sim-fast"},
    "concurrent": {"plan": "slow/sim-fast"},
    "growth": {"plan": "quick/sim-fast", "code": "quick/sim-coder", "review": "quick/sim-reviewer"},
}


def summarise(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per thread from py-spy's collapsed stacks."""
    self_count: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_count: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "main"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        n = int(count)
        totals[thread] += n
        if frames:
            self_count[thread][frames[-1]] += n
        for f in set(frames):
            incl_count[thread][f] += n
    out: list[str] = []
    for thread, total in totals.most_common():
        out.append(f"== {thread}: {total} samples")
        out.append("-- self")
        out += [f"{n * 100 / total:6.1f}%  {f}" for f, n in self_count[thread].most_common(top)]
        out.append("-- inclusive")
        out += [f"{n * 100 / total:6.1f}%  {f}" for f, n in incl_count[thread].most_common(top)]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    with tempfile.TemporaryDirectory(prefix="phasewise-profile-") as tmp:
        env = scenarios.Env(Path(tmp), short=True)
        await env.start()
        try:
            await env.route(**ROUTES[args.workload])
            if args.workload == "concurrent":
                await env.sim.configure("slow", first_token_ms=1000)
            raw = out / f"{args.workload}.raw.txt"
            flags = ["--rate", str(args.rate), "--threads", "--pid", str(env.server.pid), "--nonblocking"]
            if args.gil:
                flags.append("--gil")
            if args.idle:
                flags.append("--idle")
            proc = await asyncio.create_subprocess_exec(spy, "record", "--format", "raw", "-o", str(raw), *flags,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(1.0)  # py-spy attaches
            await workload(env, args.workload)
            proc.send_signal(signal.SIGINT)
            await proc.wait()
        finally:
            await env.stop()
    print(summarise(raw, args.top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(ROUTES))
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "phasewise-profiles"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--idle", action="store_true", help="include idle samples")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
