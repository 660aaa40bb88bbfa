"""A command line run as a child process, safely: the one place Phasewise starts a user's command.

``run_line`` runs one command line to its end, without blocking the event loop (an asyncio
subprocess):

- **exactly that line**: split like a shell's words (``shlex``) and executed without a shell, unless
  it needs one (pipes, ``&&``, ``;``, redirections, globs, ``$VARS``, backquotes: ``needs_shell``),
  then ``/bin/sh -c LINE``; nothing is added to it;
- **its own process group** (``start_new_session``): a timeout, a cancel, or the command's own end
  kills the whole group (``killpg``), so a test runner's children do not outlive it;
- **an environment without keys** (``child_environment``): every variable a provider's key is read
  from, and every one named like a credential (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``…), removed;
- **stdin closed** (``/dev/null``: it cannot wait on the terminal), stderr into stdout;
- **output capped**: the last ``cap`` bytes are kept (a test run's failures come at its end) and the
  outcome says how much was cut.

Which line may run, and where, is ``phases.commands``'s decision (the trust check); this module only
runs it. Knows nothing of LSP.
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from phasewise.problems import secret_env_name

MAX_OUTPUT_BYTES = 16_000  # the tail of a command's output that is kept
SHELL = "/bin/sh"
# Characters only a shell gives meaning to: pipes, lists, redirections, globs, expansions.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~!]")


def needs_shell(line: str) -> bool:
    """Whether ``line`` means something only a shell can do (``a | b``, ``a && b``, ``> out``,
    ``*.py``, ``$HOME``); quotes alone do not (``shlex`` splits them as a shell would)."""
    unquoted = re.sub(r"'[^']*'", "", line)  # single quotes make everything inside literal
    return bool(_SHELL_SYNTAX.search(unquoted))


def argv_of(line: str) -> list[str]:
    """The argv that runs ``line``: its words, or ``/bin/sh -c line`` when it needs a shell (or
    cannot be split: an unclosed quote is the shell's to report)."""
    if needs_shell(line):
        return [SHELL, "-c", line]
    try:
        words = shlex.split(line)
    except ValueError:
        return [SHELL, "-c", line]
    return words or [SHELL, "-c", line]


def child_environment(environ: Mapping[str, str], key_names: Collection[str]) -> dict[str, str]:
    """``environ`` without any provider key: the variables in ``key_names`` (the catalogue's and the
    settings' key variables) and every variable named like a credential."""
    names = set(key_names)
    return {k: v for k, v in environ.items() if k not in names and not secret_env_name(k)}


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """How a command ended: its exit code (None: killed at its timeout, or not started), how long it
    ran, the tail of its output and how many bytes of it were cut, and why it did not run (``error``)."""

    exit_code: int | None
    seconds: float
    output: str
    cut_bytes: int = 0
    timed_out: bool = False
    error: str | None = None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_line(line: str, *, cwd: Path, timeout: float, env: Mapping[str, str],
                   cap: int = MAX_OUTPUT_BYTES) -> ProcessOutcome:
    """Run ``line`` in ``cwd`` (see the module docstring); a cancel kills its process group and
    propagates."""
    argv = argv_of(line)
    started = time.monotonic()
    # Shielded: the child runs (and may start others) before its pipes are connected; a cancel in
    # that moment would close only the child's transport, leaving what it started alive. So the
    # start completes, and then a cancel kills the whole group.
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True))
    try:
        proc = await asyncio.shield(starting)
    except OSError as err:  # not found, not executable, cwd gone
        return ProcessOutcome(None, time.monotonic() - started, "", error=f"{argv[0]}: {err.strerror or err}")
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            started_proc = await starting
            _kill_group(started_proc.pid)
            await started_proc.wait()
        raise
    tail = bytearray()
    total = 0

    async def read() -> None:
        nonlocal total
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            total += len(chunk)
            tail.extend(chunk)
            if len(tail) > cap:
                del tail[: len(tail) - cap]

    reader = asyncio.ensure_future(read())
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
        except TimeoutError:
            timed_out = True
        # the command is over (or out of time): whatever it left running in its group goes with it
        _kill_group(proc.pid)
        await proc.wait()
        # every holder of the pipe in the group is gone: it ends (one that left the group is cut off)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 5)
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        reader.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    text = bytes(tail).decode("utf-8", errors="replace")
    return ProcessOutcome(None if timed_out else proc.returncode, time.monotonic() - started, text,
                          cut_bytes=total - len(tail), timed_out=timed_out)


__all__ = ["MAX_OUTPUT_BYTES", "ProcessOutcome", "argv_of", "child_environment", "needs_shell", "run_line"]
