"""A language client that owns the server process it starts, for a front door that drives
``phasewise serve`` over stdio as an editor would (``phasewise demo``).

The server's stderr is read as it comes (it logs there; an unread pipe would fill up and stall
it), and ``close`` ends a server that did not exit. pygls keeps the process in a private
attribute: the one read of it is ``_pygls_compat.client_process``, so no front door needs it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pygls.lsp.client import LanguageClient

from phasewise.edge._pygls_compat import client_process

EXIT_GRACE_SECONDS = 5.0  # after ``exit`` (or an error), how long a server may take to end before it is killed


class ServerProcessClient(LanguageClient):
    """pygls's ``LanguageClient`` with the server's stderr kept in ``stderr`` (one line an item)."""

    def __init__(self, name: str, version: str, *, stderr: list[str] | None = None) -> None:
        super().__init__(name, version)
        self.stderr: list[str] = [] if stderr is None else stderr
        self._drain: asyncio.Task[None] | None = None

    async def start_io(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        await super().start_io(cmd, *args, **kwargs)
        process = client_process(self)
        if process is not None and process.stderr is not None:
            self._drain = asyncio.create_task(self._read_stderr(process.stderr))

    async def close(self) -> None:
        """Stop the client; a server that did not exit after ``exit`` (or an error) is ended."""
        process = client_process(self)
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), EXIT_GRACE_SECONDS)
            except TimeoutError:
                process.kill()
        await self.stop()
        if self._drain is not None:
            await self._drain

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr.append(line.decode("utf-8", "replace").rstrip())


__all__ = ["EXIT_GRACE_SECONDS", "ServerProcessClient"]
