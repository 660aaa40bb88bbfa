"""A minimal LSP client over a subprocess's stdio that timestamps every message.

Raw JSON-RPC on purpose: the bench measures the server, so the client should add as little as
possible (no type structuring, no per-message validation); each message is stamped with
``time.perf_counter()`` the moment its body has been read, before it is even decoded.
Server→client requests (configuration, progress creation, apply edit) are answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
Listener = Callable[[float, Any], None]

VSCODE_LIKE_CAPABILITIES: dict[str, Any] = {
    "workspace": {
        "configuration": True,
        "didChangeConfiguration": {"dynamicRegistration": True},
        "workspaceEdit": {"documentChanges": True},
        "applyEdit": True,
    },
    "window": {"workDoneProgress": True},
    "textDocument": {"synchronization": {"didSave": True}, "publishDiagnostics": {"relatedInformation": True}},
    # what the VS Code extension declares: a Phasewise plugin, which is sent phasewise/streamText
    "experimental": {"phasewise": {"clientCommands": ["phasewise.setApiKey", "phasewise.openSettings"]}},
}


class LspError(RuntimeError):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


@dataclass(slots=True)
class Reply:
    sent: float
    received: float
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def ms(self) -> float:
        return (self.received - self.sent) * 1000


@dataclass
class LspProcess:
    """One language server process and the client end of its stdio."""

    cmd: list[str]
    env: dict[str, str]
    settings: Any = None
    stderr_path: Path | None = None
    proc: asyncio.subprocess.Process | None = None
    spawned_at: float = 0.0
    listeners: dict[str, list[Listener]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    _pending: dict[Any, tuple[float, asyncio.Future[Reply]]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _reader: asyncio.Task[None] | None = None
    _stderr: IO[bytes] | None = None

    async def spawn(self) -> None:
        self._stderr = self.stderr_path.open("wb") if self.stderr_path else None
        self.spawned_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr if self._stderr is not None else asyncio.subprocess.DEVNULL,
            env=self.env, cwd=str(ROOT),
        )
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # ------------------------------------------------------------------ wire
    def _write(self, message: dict[str, Any]) -> float:
        assert self.proc is not None and self.proc.stdin is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        stamp = time.perf_counter()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return stamp

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        try:
            while True:
                head = await out.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await out.readexactly(length)
                stamp = time.perf_counter()
                self._dispatch(stamp, json.loads(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for _, fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the server closed its output"))

    def _dispatch(self, stamp: float, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None:
            entry = self._pending.pop(msg.get("id"), None)
            if entry is not None and not entry[1].done():
                entry[1].set_result(Reply(entry[0], stamp, msg.get("result"), msg.get("error")))
            return
        self.counts[method] = self.counts.get(method, 0) + 1
        if "id" in msg:
            self._write({"jsonrpc": "2.0", "id": msg["id"], "result": self._answer(method, msg.get("params"))})
            return
        for listener in self.listeners.get(method, ()):
            listener(stamp, msg.get("params"))

    def _answer(self, method: str, params: Any) -> Any:
        if method == "workspace/configuration":
            return [self.settings for _ in (params or {}).get("items", [])]
        if method == "workspace/applyEdit":
            return {"applied": True}
        return None

    # ------------------------------------------------------------------ API
    def on(self, method: str, listener: Listener) -> None:
        self.listeners.setdefault(method, []).append(listener)

    def off(self, method: str, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.get(method, []).remove(listener)

    def send(self, method: str, params: Any = None, msg_id: Any = None) -> tuple[Any, asyncio.Future[Reply]]:
        """Send a request now; returns its id and a future of the reply (not raising on errors)."""
        msg_id = msg_id if msg_id is not None else next(self._ids)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        stamp = self._write({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        self._pending[msg_id] = (stamp, fut)
        return msg_id, fut

    async def request(self, method: str, params: Any = None, timeout: float = 60.0) -> Reply:
        _, fut = self.send(method, params)
        return await asyncio.wait_for(fut, timeout)

    async def command(self, name: str, arg: Any = None, timeout: float = 60.0) -> Reply:
        return await self.request("workspace/executeCommand",
                                  {"command": name, "arguments": [arg] if arg is not None else []}, timeout)

    def notify(self, method: str, params: Any = None) -> float:
        return self._write({"jsonrpc": "2.0", "method": method, "params": params})

    async def initialize(self, options: Any = None, root: Path = ROOT) -> Reply:
        reply = await self.request("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": VSCODE_LIKE_CAPABILITIES,
            "initializationOptions": options, "clientInfo": {"name": "phasewise-bench"},
        })
        if reply.error:
            raise LspError(reply.error)
        self.notify("initialized", {})
        return reply

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1,
                                                              "text": text}})

    def configure(self, settings: Any) -> None:
        """New settings: pulled by the server after the change notification."""
        self.settings = settings
        self.notify("workspace/didChangeConfiguration", {"settings": {}})

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid)

    async def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                await asyncio.wait_for(self.request("shutdown"), 10)
                self.notify("exit")
                await asyncio.wait_for(proc.wait(), 10)
        except (TimeoutError, ConnectionError, OSError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        finally:
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            if self._stderr is not None:
                self._stderr.close()
            self.proc = None

    async def __aenter__(self) -> LspProcess:
        await self.spawn()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (Linux ``/proc``), or None where unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (Linux ``/proc``), or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server: no real provider key from the shell leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    env.update(extra)
    return env


PHASEWISE_CMD = [sys.executable, "-m", "phasewise", "serve"]
BARE_CMD = [sys.executable, str(Path(__file__).resolve().parent / "bare_server.py")]
