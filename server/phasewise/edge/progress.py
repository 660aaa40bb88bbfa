"""Work-done progress for a running phase, coalesced so a fast stream never floods the client.

Streamed text is buffered and flushed at most every ``FLUSH_SECONDS``: one ``$/progress``
report (the latest line, for any client) plus one ``phasewise/streamText`` notification (the
new text, for clients that show the plan as it arrives).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

FLUSH_SECONDS = 0.05
STREAM_NOTIFICATION = "phasewise/streamText"


class PhaseProgress:
    """Observer of one phase run that reports to the client (router ``Observer`` protocol)."""

    def __init__(self, ls: PhasewiseServer, *, token: str | None, run_id: str, phase: str,
                 uri: str | None) -> None:
        self.ls = ls
        self.token = token
        self.run_id = run_id
        self.phase = phase
        self.uri = uri
        self._buffer: list[str] = []
        self._handle: asyncio.TimerHandle | None = None
        self._tail = ""
        self.notifications = 0

    def begin(self, title: str) -> None:
        if self.token is not None:
            self.ls.work_done_progress.begin(
                self.token, types.WorkDoneProgressBegin(title=title, cancellable=True, message="starting")
            )
            self.notifications += 1

    def on_text(self, delta: str) -> None:
        self._buffer.append(delta)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def on_status(self, message: str) -> None:
        self.flush()
        self._report(message)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self.ls.protocol.notify(STREAM_NOTIFICATION, {
            "runId": self.run_id, "phase": self.phase, "uri": self.uri, "text": text,
        })
        self.notifications += 1
        self._tail = (self._tail + text).rsplit("\n", 1)[-1][-120:] or self._tail
        self._report(self._tail.strip() or "streaming…")

    def _report(self, message: str) -> None:
        if self.token is not None:
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(message=message))
            self.notifications += 1

    def end(self, message: str) -> None:
        self.flush()
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.notifications += 1

    def detail(self) -> dict[str, Any]:
        return {"notifications": self.notifications}
