"""``python bench/scratch_copy.py [--files N] [--rounds R] [--out DIR]``: the scratch copy a code phase's commands
run in (``phases.scratch``, issue 22), printed (never asserted).

1. **Setup** of ``ScratchCopy.create`` on a generated git work tree (20,000 tracked files by default,
   a few modified, deleted and untracked, an ignored ``.venv`` of 2,000 files that is linked): the
   first create of the process (*cold*: git and Python's caches cold; the OS page cache is warm, as
   the files were just written) and the p50 of ``R`` more (*warm*), each beside baselines timed in
   the same rounds, alternating order, every sample after an (untimed) ``sync`` so that none pays
   for the writes of the one before: ``cp -r`` of the folder (everything: ``.git`` and ``.venv``
   too), ``git archive HEAD | tar -x`` (HEAD's files only, without the working tree's changes) and
   ``git read-tree`` into a temporary index + ``checkout-index --prefix`` (the same, through git's
   object store). Then ``close`` (removal) p50, and ``write`` of a 3-file staged change p50.
2. **Disk cost**: ``du -sk`` of the copy (links not followed) beside the work tree's own (without
   ``.git``; ``.venv`` apart).
3. **``run_command`` overhead** around ``true``: ``PhaseCommands.run`` of a user-level command (no
   question asked) in the workspace, and in a scratch copy already made (each call syncs a 1-file
   change first), minus spawning ``true`` directly (``asyncio.create_subprocess_exec``, same loop),
   ``R`` alternating samples each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from phasewise.phases.commands import AllowedCommands, CommandTrust, PhaseCommands  # noqa: E402
from phasewise.phases.scratch import ScratchCopy, ScratchPlace  # noqa: E402
from phasewise.settings import load_settings  # noqa: E402

GIT_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com"}


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, env=GIT_ENV, check=True, capture_output=True)


def generate(root: Path, files: int) -> Path:
    """A git work tree of ``files`` committed Python files (20 a folder), then 5 modified, 2 deleted,
    5 untracked, and an ignored ``.venv`` of 2,000 files."""
    repo = root / "repo"
    for i in range(files):
        d = repo / f"pkg{i // 1000}" / f"mod{i // 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.py").write_text("".join(f"def func_{i}_{k}(x):\n    return x + {k}\n\n" for k in range(1 + i % 12)),
                                    encoding="utf-8")
    (repo / ".gitignore").write_text(".venv/\n", encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "gc.auto=0", "commit", "-qm", "generated")
    git(repo, "gc", "-q")  # packed, as a real repository is (and no gc left running in the background)
    for i in range(5):
        with (repo / "pkg0" / "mod0" / f"f{i}.py").open("a", encoding="utf-8") as f:
            f.write("# modified\n")
        (repo / f"untracked_{i}.py").write_text("NEW = 1\n", encoding="utf-8")
    for i in (10, 11):
        (repo / "pkg0" / "mod0" / f"f{i}.py").unlink()
    venv = repo / ".venv" / "lib"
    venv.mkdir(parents=True)
    (repo / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    for i in range(2000):
        (venv / f"m{i}.py").write_text("x = 1\n", encoding="utf-8")
    git(repo, "status", "--short")
    return repo


def p50(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    """``fn``'s time in ms, the disk's dirty pages written out first (untimed), so that no sample pays
    for the one before it."""
    os.sync()
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def du_k(path: Path, *exclude: str) -> int:
    out = subprocess.run(["du", "-sk", *(f"--exclude={e}" for e in exclude), str(path)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[0])


def setup(repo: Path, work: Path, rounds: int) -> dict[str, float]:
    cache = work / "cache"
    out: dict[str, float] = {}
    copy: ScratchCopy | None = None

    def make() -> None:
        nonlocal copy
        copy = ScratchCopy.create(repo, base=cache)

    out["cold_ms"] = timed(make)
    assert copy is not None
    out["copy_kib"] = du_k(copy.root)
    out["files"] = copy.copied
    out["tree_kib"] = du_k(repo, ".git", ".venv")
    out["venv_kib"] = du_k(repo / ".venv")
    change = {"pkg0/mod0/f0.py": "A\n", "pkg1/mod50/f1000.py": "B\n", "new/mod.py": "C\n"}
    writes = []
    for i in range(rounds):
        writes.append(timed(lambda i=i: copy.write({k: v + str(i) for k, v in change.items()})))  # type: ignore[union-attr]
    out["write_3_files_ms"] = p50(writes)
    closes = [timed(copy.close)]

    def cp() -> None:
        subprocess.run(["cp", "-r", str(repo), str(work / "cp")], check=True)

    def archive() -> None:
        (work / "archive").mkdir()
        subprocess.run(f"git archive HEAD | tar -xf - -C {work / 'archive'}", shell=True, cwd=repo, env=GIT_ENV,
                       check=True)

    def checkout() -> None:
        env = {**GIT_ENV, "GIT_INDEX_FILE": str(work / "index")}
        subprocess.run(["git", "read-tree", "HEAD"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "checkout-index", "-a", f"--prefix={work / 'checkout'}/"], cwd=repo, env=env,
                       check=True)

    samples: dict[str, list[float]] = {"warm": [], "cp": [], "archive": [], "checkout": []}
    ways: list[tuple[str, Callable[[], None]]] = [("warm", make), ("cp", cp), ("archive", archive),
                                                   ("checkout", checkout)]
    for r in range(rounds):
        for name, fn in ways if r % 2 == 0 else list(reversed(ways)):
            samples[name].append(timed(fn))
            if name == "warm":
                assert copy is not None
                closes.append(timed(copy.close))
            else:
                shutil.rmtree(work / name, ignore_errors=True)
                (work / "index").unlink(missing_ok=True)
    out["warm_p50_ms"] = p50(samples["warm"])
    out["cp_r_p50_ms"] = p50(samples["cp"])
    out["archive_p50_ms"] = p50(samples["archive"])
    out["checkout_index_p50_ms"] = p50(samples["checkout"])
    out["close_p50_ms"] = p50(closes)
    return out


async def overhead(repo: Path, work: Path, rounds: int) -> dict[str, float]:
    loaded = load_settings({"commands": {"t": "true"}}, user_commands={"t": "true"})
    assert loaded.command_origin("t") == "user"
    trust = CommandTrust(AllowedCommands(work / "allowed.json"), None)
    here = PhaseCommands("code", ("t",), loaded, repo, trust, frozenset(), check_path=lambda p: p)
    n = 0

    def staged() -> dict[str, str | None]:
        return {"pkg0/mod0/f0.py": f"X = {n}\n"}

    place = ScratchPlace(repo, staged=staged, base=work / "cache")
    there = PhaseCommands("code", ("t",), loaded, repo, trust, frozenset(), check_path=lambda p: p, place=place)
    await there.run("t")  # the copy made once: what follows is the steady state

    async def direct() -> None:
        proc = await asyncio.create_subprocess_exec("true", cwd=repo, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    start_new_session=True)
        await proc.communicate()

    samples: dict[str, list[float]] = {"direct": [], "workspace": [], "scratch": []}
    for r in range(rounds):
        n = r
        order = [("direct", direct), ("workspace", lambda: here.run("t")), ("scratch", lambda: there.run("t"))]
        for name, fn in order if r % 2 == 0 else list(reversed(order)):
            t = time.perf_counter()
            await fn()
            samples[name].append((time.perf_counter() - t) * 1000)
    await place.close()
    d = p50(samples["direct"])
    return {"spawn_true_p50_ms": d, "run_command_workspace_p50_ms": p50(samples["workspace"]),
            "run_command_scratch_p50_ms": p50(samples["scratch"]),
            "overhead_workspace_ms": p50(samples["workspace"]) - d, "overhead_scratch_ms": p50(samples["scratch"]) - d}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", help="where the copies and the baselines' copies are written (default: beside the "
                                      "generated repository); /dev/shm takes the disk out of the figures")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="phasewise-bench-scratch-"))
    out = Path(tempfile.mkdtemp(prefix="phasewise-bench-scratch-out-", dir=args.out)) if args.out else work
    try:
        t = time.perf_counter()
        repo = generate(work, args.files)
        print(f"generated {args.files:,} files in {time.perf_counter() - t:.1f} s; load {os.getloadavg()[0]:.2f}; "
              f"copies written under {out}")
        s = setup(repo, out, args.rounds)
        o = asyncio.run(overhead(repo, out, max(args.rounds, 30)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"\nscratch copy of a {args.files:,}-file git work tree ({s['files']:,.0f} files copied, .venv linked)")
    print(f"  setup cold        {s['cold_ms']:8.0f} ms")
    for name, key in (("cp -r", "cp_r_p50_ms"), ("git archive | tar", "archive_p50_ms"),
                      ("read-tree+checkout-index", "checkout_index_p50_ms")):
        print(f"  setup warm p50    {s['warm_p50_ms']:8.0f} ms   {name:<26} {s[key]:8.0f} ms   "
              f"ratio {s['warm_p50_ms'] / s[key]:.2f}")
    print(f"  close p50         {s['close_p50_ms']:8.0f} ms")
    print(f"  write 3 files p50 {s['write_3_files_ms']:8.2f} ms")
    print(f"  disk: copy {s['copy_kib'] / 1024:.1f} MiB; work tree without .git {s['tree_kib'] / 1024:.1f} MiB "
          f"(ratio {s['copy_kib'] / s['tree_kib']:.2f}); .venv {s['venv_kib'] / 1024:.1f} MiB, linked")
    print("\nrun_command around `true`")
    print(f"  spawn directly p50      {o['spawn_true_p50_ms']:6.2f} ms")
    print(f"  in the workspace p50    {o['run_command_workspace_p50_ms']:6.2f} ms   overhead "
          f"{o['overhead_workspace_ms']:+.2f} ms")
    print(f"  in a scratch copy p50   {o['run_command_scratch_p50_ms']:6.2f} ms   overhead "
          f"{o['overhead_scratch_ms']:+.2f} ms (a 1-file sync each call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
