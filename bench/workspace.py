"""``python bench/workspace.py [--files N]``: workspace-scale phases, printed (never asserted).

1. Context gathering on a generated workspace (20,000 files by default, a git work tree with a
   ``.gitignore``): cold (no per-file facts cached, fresh file list) and warm (same ``Workspace``,
   facts cached) time to pick a phase's context; and, while gathering runs in a thread as the
   service runs it, how late the event loop answers a 1 ms tick (a stand-in for ``phasewise.status``).
2. Matching a whole answer's SEARCH/REPLACE blocks on a 5,000-line file, and building the LSP
   edits of a change (one minimal ``TextEdit`` per hunk) on that file and on 300 KB of repeated lines.
3. Tokens sent per phase for the demo task (the two-file example project) beside "whole document
   only" (``contextTokens: 0``), as the simulator counts them, through the real CLI.
4. The agent's ``search_files`` tool (``phases.tools``) on the same generated workspace: cold (a
   new session's first search, nothing listed; once per round) and warm (the same session) p50/p95,
   a pattern found once (every file read) and one found everywhere (stops at the match limit), with
   its files untracked (as generated) and then added to git's index; beside plain ``git grep``, the
   tool's own ``git grep`` command run bare (its settings, one thread on two cores) and a Python scan
   of the listing, measured alternately in the same run, and ``git grep`` on one thread against
   git's default (one per core). ``bench/run.py --short`` runs a short version (``search``).

``--only search`` (or ``context``, ``matching``, ``edits``, ``tokens``) runs one part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from phasewise.edge.workspace_edit import minimal_text_edits  # noqa: E402
from phasewise.phases import context as ctx  # noqa: E402
from phasewise.phases.edits import FileText  # noqa: E402
from phasewise.phases.formats import SEARCH_REPLACE  # noqa: E402
from phasewise.phases.index import WorkspaceIndex  # noqa: E402
from phasewise.phases.search import scan  # noqa: E402
from phasewise.phases.tools import AgentWorkspace, run_call  # noqa: E402
from phasewise.phases.workspace import Workspace  # noqa: E402


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def generate(root: Path, files: int) -> Path:
    per_dir = 20
    for i in range(files):
        d = root / f"pkg{i // (per_dir * 50)}" / f"mod{i // per_dir}"
        d.mkdir(parents=True, exist_ok=True)
        other = (i * 7919) % files
        body = [f"from pkg{other // 1000}.mod{other // per_dir}.f{other} import func_{other}", "", ""]
        for k in range(4):
            body += [f"def func_{i}{'' if k == 0 else f'_{k}'}(x):", f"    return func_{other}(x) + {k}", "", ""]
        body += [f"class Thing{i}:", "    pass", ""]
        (d / f"f{i}.py").write_text("\n".join(body), encoding="utf-8")
    (root / "build").mkdir()
    for i in range(200):
        (root / "build" / f"gen{i}.py").write_text("def func_1(x):\n    return x\n", encoding="utf-8")
    (root / ".gitignore").write_text("build/\n", encoding="utf-8")
    (root / ".env").write_text("SECRET=1\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root / "pkg0" / "mod0" / "f1.py"


def bench_context(files: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="phasewise-bench-ws-"))
    try:
        started = time.perf_counter()
        doc = generate(tmp, files)
        gen_s = time.perf_counter() - started
        text = doc.read_text(encoding="utf-8")

        def pick(ws: Workspace) -> ctx.Context:
            return ctx.gather(ws, document_uri=doc.as_uri(), document_text=text,
                              instruction="rename func_1 to func_one and keep its callers working",
                              budget_tokens=8000)

        index = WorkspaceIndex()  # the session's, shared by every phase's Workspace
        t = time.perf_counter()
        ws = Workspace([tmp], index=index)
        first = pick(ws)
        cold = (time.perf_counter() - t) * 1000
        warm = []
        for _ in range(10):
            t = time.perf_counter()
            pick(ws)
            warm.append((time.perf_counter() - t) * 1000)
        fresh_list = []
        for _ in range(3):  # a new Workspace each time (as the edge makes one per phase), caches warm
            t = time.perf_counter()
            pick(Workspace([tmp], index=index))
            fresh_list.append((time.perf_counter() - t) * 1000)

        async def loop_lag() -> list[float]:
            lags: list[float] = []
            index.clear()
            task = asyncio.ensure_future(asyncio.to_thread(pick, Workspace([tmp], index=index)))
            while not task.done():
                t0 = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - t0) * 1000 - 1.0)
            await task
            return lags

        lags = asyncio.run(loop_lag())
        print(f"context: generated {files:,} files in {gen_s:.1f} s; picked {len(first.files)} files "
              f"({', '.join(f.reason.split(' ')[0] for f in first.files[:5])}...) + map of "
              f"{first.repo_map.count(chr(10)) + 1 if first.repo_map else 0} lines, {first.tokens} tokens")
        rechecking = WorkspaceIndex(ttl=0.0)  # every gathering re-lists and re-checks every file (one stat each)
        revalidated = []
        for _ in range(3):
            t = time.perf_counter()
            pick(Workspace([tmp], index=rechecking))
            revalidated.append((time.perf_counter() - t) * 1000)
        out = {"context_cold_ms": cold,
               "context_revalidated_p50_ms": statistics.median(revalidated[1:]),
               "context_warm_p50_ms": statistics.median(warm),
               "context_warm_max_ms": max(warm), "context_new_workspace_p50_ms": statistics.median(fresh_list),
               "loop_lag_p50_ms": p(lags, 0.5), "loop_lag_p99_ms": p(lags, 0.99), "loop_ticks": float(len(lags))}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_matching() -> dict[str, float]:
    text = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(2500))
    blocks = []
    for i in range(0, 2500, 125):  # 20 blocks spread over the file
        blocks += ["big.py", "```python", "<<<<<<< SEARCH", f"def f{i}(x):", f"    return x + {i}", "=======",
                   f"def f{i}(x):", f"    return x * {i}", ">>>>>>> REPLACE", "```", ""]
    markers = ("big.py", "```", "<<<<<<<", "=======", ">>>>>>>")
    drifted = [ln if not ln or ln.startswith(markers) else "    " + ln for ln in blocks]  # uniformly over-indented
    answer, answer_drift = "\n".join(blocks), "\n".join(drifted)

    def resolve(path: str) -> FileText:
        return FileText(path, "file:///b/big.py", text)

    def once(a: str) -> float:
        t = time.perf_counter()
        cs = SEARCH_REPLACE.change(text=a, tool_input=None, resolve=resolve, document=resolve("big.py"))
        assert cs.files[0].after.count(" * ") == 20
        return (time.perf_counter() - t) * 1000

    exact = [once(answer) for _ in range(20)]
    drift = [once(answer_drift) for _ in range(20)]
    return {"match_5000_lines_20_blocks_p50_ms": statistics.median(exact),
            "match_5000_lines_20_blocks_drifted_p50_ms": statistics.median(drift)}


def bench_edits() -> dict[str, float]:
    """The LSP edits of a change (one minimal TextEdit per hunk), built on the event loop when the
    change is applied: the 20-block change above, and 300 KB of repeated lines (the case difflib
    alone is quadratic on) with 2 changes far apart or 200 scattered ones."""
    def timed(before: str, after: str, hunks: int, rounds: int = 10) -> float:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            edits = minimal_text_edits(before, after)
            times.append((time.perf_counter() - t) * 1000)
        assert len(edits) >= hunks * 0.9, len(edits)
        return statistics.median(times)

    text = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(2500))
    changed = text
    for i in range(0, 2500, 125):
        changed = changed.replace(f"    return x + {i}\n", f"    return x * {i}\n", 1)
    repeated = "".join(f"def f{i}(x):\n    if x:\n        return None\n\n    return x\n\n\n" for i in range(5000))
    far = repeated.replace("def f1(x)", "def g1(x)", 1).replace("def f4999(x)", "def g4999(x)", 1)
    lines = repeated.split("\n")
    for k in random.Random(3).sample(range(len(lines)), 200):
        lines[k] = "changed"
    return {"edits_5000_lines_20_hunks_p50_ms": timed(text, changed, 20),
            "edits_300kb_repeated_2_far_apart_p50_ms": timed(repeated, far, 2),
            "edits_300kb_repeated_200_scattered_p50_ms": timed(repeated, "\n".join(lines), 200, 3)}


def bench_tokens() -> dict[str, float]:
    from phasewise.cli.demo import example_project
    from phasewise.sim import SimulatorThread

    out: dict[str, float] = {}
    with SimulatorThread() as sim:
        for label, budget in (("with_context", None), ("document_only", 0)):
            work = Path(tempfile.mkdtemp(prefix="phasewise-bench-demo-"))
            for f in example_project():
                shutil.copyfile(f, work / f.name)
            phases = {"plan": {"model": "sim-claude/claude-sim"}, "code": {"model": "sim-glm/glm-sim"},
                      "review": {"model": "sim-gpt/gpt-sim"}}
            if budget is not None:
                for v in phases.values():
                    v["contextTokens"] = budget
            (work / "phasewise.json").write_text(json.dumps({"phases": phases}), encoding="utf-8")
            env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
            env.update(PHASEWISE_SIM_URL=sim.url, PHASEWISE_LEDGER=str(work / "runs.jsonl"),
                       PYTHONPATH=str(ROOT / "server"))
            done = subprocess.run([sys.executable, "-m", "phasewise", "run", "inventory.py", "--json", "--dry-run",
                                   "-i", "Rename find_item to find_by_sku and keep its callers working"],
                                  cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
            result = json.loads(done.stdout)
            for phase in result["phases"]:
                out[f"tokens_{phase['phase']}_{label}"] = float(phase["usage"]["inputTokens"])
            out[f"files_changed_{label}"] = float(len(result.get("files") or []))
            shutil.rmtree(work, ignore_errors=True)
    return out


def bench_search(files: int, rounds: int = 15, *, tracked: bool = True, scan_too: bool = True) -> dict[str, float]:
    """``search_files`` on a generated workspace, beside plain ``git grep`` and a Python scan (see the
    module docstring); each round runs every contender once, in turn. ``tracked``: also after
    ``git add -A``; ``scan_too``: also the Python scan (``--short`` leaves both out)."""
    from phasewise.phases.search import _GIT_CONFIG

    tmp = Path(tempfile.mkdtemp(prefix="phasewise-bench-search-"))
    try:
        generate(tmp, files)
        rare, common = r"def func_12345\b", r"return func_\d+\(x\) \+ 3"
        declared = {"search_files"}

        def tool(ws: AgentWorkspace, pattern: str) -> float:
            t = time.perf_counter()
            out = run_call("search_files", {"pattern": pattern}, declared, ws)
            assert out.ok and "match" in out.summary, out.content[:200]
            return (time.perf_counter() - t) * 1000

        def cold(pattern: str) -> float:
            """A new session's first search: nothing listed, nothing cached but the OS's page cache."""
            return tool(AgentWorkspace(Workspace([tmp], index=WorkspaceIndex())), pattern)

        def git(pattern: str, *extra: str, untracked: bool = True) -> float:
            cmd = ["git", *extra, "-C", str(tmp), "grep", *(["--untracked"] if untracked else []), "-n", "-I", "-P",
                   "-e", pattern]
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            return (time.perf_counter() - t) * 1000

        # the tool's own command (its settings: one thread on two cores), run bare: the floor
        as_tool = [arg for setting in _GIT_CONFIG for arg in ("-c", setting)]
        out: dict[str, float] = {}
        for label, untracked in (("untracked", True), ("tracked", False))[: 2 if tracked else 1]:
            if not untracked:
                subprocess.run(["git", "-C", str(tmp), "add", "-A"], check=True)
            ws = AgentWorkspace(Workspace([tmp], index=WorkspaceIndex()))  # a new session: nothing listed yet
            out[f"search_{label}_first_call_ms"] = tool(ws, rare)
            doc = tmp / "pkg0" / "mod0" / "f1.py"  # in an editor some files are open: searched from memory
            buffers = {doc.as_uri(): (doc.read_text("utf-8"), 1)}
            opened = AgentWorkspace(Workspace([tmp], buffers, index=ws.workspace.index))
            times: dict[str, list[float]] = {k: [] for k in ("rare", "cold", "common", "open", "git", "git_1",
                                                             "git_tool", "git_common")}
            for _ in range(rounds):
                times["rare"].append(tool(ws, rare))
                times["cold"].append(cold(rare))
                times["open"].append(tool(opened, rare))
                times["common"].append(tool(ws, common))
                times["git"].append(git(rare, untracked=untracked))
                times["git_1"].append(git(rare, "-c", "grep.threads=1", untracked=untracked))
                times["git_tool"].append(git(rare, *as_tool, untracked=True))
                times["git_common"].append(git(common, untracked=untracked))
            out[f"search_{label}_warm_p50_ms"] = statistics.median(times["rare"])
            out[f"search_{label}_warm_p95_ms"] = p(times["rare"], 0.95)
            out[f"search_{label}_warm_max_ms"] = max(times["rare"])
            out[f"search_{label}_cold_p50_ms"] = statistics.median(times["cold"])
            out[f"search_{label}_cold_p95_ms"] = p(times["cold"], 0.95)
            out[f"search_{label}_common_warm_p50_ms"] = statistics.median(times["common"])
            out[f"search_{label}_open_buffer_warm_p50_ms"] = statistics.median(times["open"])
            out[f"git_grep_{label}_p50_ms"] = statistics.median(times["git"])
            out[f"git_grep_{label}_one_thread_p50_ms"] = statistics.median(times["git_1"])
            out[f"git_grep_{label}_as_tool_p50_ms"] = statistics.median(times["git_tool"])
            out[f"git_grep_{label}_as_tool_p95_ms"] = p(times["git_tool"], 0.95)
            out[f"git_grep_{label}_common_p50_ms"] = statistics.median(times["git_common"])
        if scan_too:
            listing = WorkspaceIndex().listing(tmp)
            scans = []
            for _ in range(3):
                t = time.perf_counter()
                texts = ((rel, (tmp / rel).read_text("utf-8")) for rel in listing if rel.endswith(".py"))
                found = scan(texts, rare, limit=200, deadline=time.monotonic() + 60)
                scans.append((time.perf_counter() - t) * 1000)
                assert len(found.hits) == 1
            out["python_scan_p50_ms"] = statistics.median(scans)
        out["search_workspace_files"] = float(files)
        out["load_average_1min"] = os.getloadavg()[0]
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_search_short() -> dict[str, float]:
    """``bench/run.py --short``'s share: 20,000 files as generated (untracked), 5 rounds (~7 s)."""
    return bench_search(20_000, 5, tracked=False, scan_too=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--only", choices=["matching", "edits", "tokens", "context", "search"])
    args = parser.parse_args()
    parts = {"matching": bench_matching, "edits": bench_edits, "tokens": bench_tokens,
             "context": lambda: bench_context(args.files), "search": lambda: bench_search(args.files)}
    figures: dict[str, float] = {}
    for name, part in parts.items():
        if args.only in (None, name):
            figures.update(part())
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v:10.1f}")
    print(json.dumps({k: round(v, 2) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
