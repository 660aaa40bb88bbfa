"""Shared by the hostile-input, soak and leak tests: full/short mode, canary keys, a server whose
every output stream is kept in files, a client driven from synchronous code (hypothesis), and
the server's memory.

``PHASEWISE_FULL=1`` runs the full sizes (10,000+ fuzz cases, 1,000 soak runs); the default is
the short mode of ``.ci/run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client

from phasewise.providers.catalogue import builtin, known_ids
from tests.helpers import ROOT, server_env

T = TypeVar("T")

FULL = os.environ.get("PHASEWISE_FULL", "") not in ("", "0")


def size(short: int, full: int) -> int:
    return full if FULL else short


# Recognisable canary keys, one per shape a redaction might (or might not) recognise: OpenAI- and
# Anthropic-shaped, Z.AI-shaped (hex.secret), and plain strings no pattern would catch.
CANARY_MARK = "cnry7f3a"
_SHAPES = [
    "sk-" + CANARY_MARK + "-openai-1b2c3d4e5f60718293a4",
    "sk-ant-canary-" + CANARY_MARK + "-anthropic-b5c6d7e8f9a0",
    CANARY_MARK + "zhipustylecanarynotarealkey.fakesecret01",
    CANARY_MARK + "-plain-deepseek-q81vX0zz",
    CANARY_MARK + "_plain_qwen_77HHaa11",
]


def provider_key_envs() -> list[str]:
    envs: set[str] = set()
    for pid in known_ids():
        spec = builtin(pid)
        if spec is not None:
            envs.update(spec.key_envs)
    return sorted(envs)


def canary_env(extra: Iterable[str] = ()) -> dict[str, str]:
    """A canary value for every provider key variable of the catalogue and for ``extra`` names."""
    names = [*provider_key_envs(), *extra]
    return {name: f"{_SHAPES[i % len(_SHAPES)]}{i:02d}" for i, name in enumerate(names)}


def leak_windows(canaries: Iterable[str], width: int = 12) -> set[str]:
    """Every ``width``-character piece of every canary: a key cut short still counts as a leak
    (a masked ``…wxyz`` tail is 4 characters, never 12)."""
    out: set[str] = set()
    for value in canaries:
        out.update(value[i:i + width] for i in range(len(value) - width + 1))
    return out


def find_leaks(text: str, canaries: Iterable[str]) -> list[str]:
    """The canary pieces found in ``text`` (empty: nothing leaked)."""
    if CANARY_MARK not in text and not any(c[-12:] in text for c in canaries):
        return []
    return sorted(w for w in leak_windows(canaries) if w in text)[:10]


@dataclass
class TeeFiles:
    """Where a tee'd server's stdout (the JSON-RPC stream exactly as the client got it) and its
    stderr are kept."""

    stdout: Path
    stderr: Path

    def read(self) -> dict[str, str]:
        return {str(p): p.read_text("utf-8", "replace") if p.exists() else "" for p in (self.stdout, self.stderr)}


def tee_dir(name: str) -> Path:
    d = Path(tempfile.gettempdir()) / f"phasewise-hostile-{os.getpid()}" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def tee_command(files: TeeFiles) -> list[str]:
    """``phasewise serve`` with its stdout copied to a file on the way to the client and its
    stderr to another (the server's stdin stays a pipe of its own, as with a real editor)."""
    script = 'exec "$0" -m phasewise serve 2>"$1" | tee "$2"'
    return ["/bin/sh", "-c", script, sys.executable, str(files.stderr), str(files.stdout)]


def sandbox_env(base: Path, **extra: str) -> dict[str, str]:
    """A server environment that can write nothing outside ``base`` (state, config, keyring)."""
    for sub in ("state", "config", "data", "cache"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return server_env(
        XDG_STATE_HOME=str(base / "state"), XDG_CONFIG_HOME=str(base / "config"),
        XDG_DATA_HOME=str(base / "data"), XDG_CACHE_HOME=str(base / "cache"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        PHASEWISE_LEDGER=str(base / "ledger" / "runs.jsonl"),
        **extra,
    )


def server_pid(client: LanguageClient) -> int:
    """The ``phasewise serve`` process: the client's own child, or the python child of the tee shell."""
    proc = client._server
    assert proc is not None
    pid = int(proc.pid)
    if _comm(pid).startswith("python"):
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and _comm(int(entry.name)).startswith("python"):
                return int(entry.name)
    raise LookupError(f"no python child of {pid}")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (``VmRSS`` of ``/proc/<pid>/status``), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("no VmRSS")


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_overrides(port: int) -> dict[str, Any]:
    """Every catalogue provider pointed at a closed loopback port: nothing can leave the machine."""
    out: dict[str, Any] = {}
    for pid in known_ids():
        spec = builtin(pid)
        if spec is None:
            continue
        url = f"http://127.0.0.1:{port}" + ("/v1" if spec.protocol == "openai" else "")
        out[pid] = {"baseUrl": url}
    return out


class BackgroundClient:
    """A pytest-lsp client running on an event loop in a thread of its own, so synchronous code
    (a hypothesis test) can drive one server across thousands of cases."""

    def __init__(self, command: list[str], env: dict[str, str], profile: str = "visual-studio-code") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lsp-client", daemon=True)
        self.thread.start()
        self.client: LanguageClient = self.call(self._start(command, env, profile))

    async def _start(self, command: list[str], env: dict[str, str], profile: str) -> LanguageClient:
        client = make_test_lsp_client()
        await client.start_io(*command, env=env)
        self.init = await client.initialize_session(types.InitializeParams(
            capabilities=pytest_lsp.client_capabilities(profile), root_uri=ROOT.as_uri()))
        return client

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.client.shutdown_session(), timeout=30)
            self.call(self.client.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    @property
    def commands(self) -> list[str]:
        provider = self.init.capabilities.execute_command_provider
        return sorted(provider.commands) if provider else []


class RawServer:
    """``phasewise serve`` on pipes, spoken to byte by byte."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, env: dict[str, str]) -> RawServer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phasewise", "serve", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, limit=64 * 1024 * 1024)
        return cls(proc)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    @staticmethod
    def frame(body: bytes | str | Any) -> bytes:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        return b"Content-Length: %d\r\n\r\n" % len(raw) + raw

    def request(self, msg_id: Any, method: str, params: Any = None) -> bytes:
        return self.frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    async def read_message(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = None
        while True:
            line = await self.proc.stdout.readline()
            assert line, "the server closed its stdout"
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line in (b"\r\n", b"\n") and length is not None:
                body = await self.proc.stdout.readexactly(length)
                message: dict[str, Any] = json.loads(body)
                self.seen.append(message)
                return message

    async def response_to(self, msg_id: Any) -> dict[str, Any]:
        """Read until the response with ``msg_id``; everything before it is kept in ``seen``."""
        async def wait() -> dict[str, Any]:
            while True:
                message = await self.read_message()
                if "method" not in message and message.get("id") == msg_id:
                    return message
        return await asyncio.wait_for(wait(), 60)

    def errors(self, code: int) -> list[dict[str, Any]]:
        return [m for m in self.seen if "method" not in m and (m.get("error") or {}).get("code") == code]
