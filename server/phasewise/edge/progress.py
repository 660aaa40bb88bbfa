"""Work-done progress for a running phase, coalesced so a fast stream never floods the client.

Streamed text is flushed at most once every ``FLUSH_SECONDS``: one ``$/progress`` report (the
latest line, for any client) plus one ``phasewise/streamText`` notification (the new text, for
clients that show the plan as it arrives). A phase that works in steps also sends each step as it
ends (``phasewise/step``), for the plugins' phase views. The first text after a quiet spell goes out at once
(leading edge), so coalescing never delays the first token; what arrives within the window after
a flush waits for the window's end.

``PhaseProgress.creating`` asks the client to create the progress token without waiting for its
answer: the phase starts at once, streamed text goes out at once, and the ``$/progress``
notifications (which may only use a token the client has accepted) are held until it answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.edge.requests import deadline

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.phases.agent import AgentStep

FLUSH_SECONDS = 0.05
STREAM_NOTIFICATION = "phasewise/streamText"
STEP_NOTIFICATION = "phasewise/step"
STATUS_LOG_SECONDS = 5.0
CREATE_SECONDS = 10.0  # how long window/workDoneProgress/create may go unanswered before progress is given up


def _size(chars: int) -> str:
    return f"{chars} characters" if chars < 10_000 else f"{chars / 1000:.0f}k characters"


def new_token() -> str:
    return f"phasewise-{uuid.uuid4().hex[:12]}"


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
        self._last_flush = float("-inf")  # loop time of the last flush
        self._received = 0  # characters of the answer streamed so far
        self.route = ""  # "provider/model" serving the phase, for readable progress
        self._held: list[Callable[[], None]] | None = None  # $/progress waiting for the token
        self.notifications = 0
        self._last_status_log = float("-inf")
        # phasewise/streamText only to a Phasewise plugin: a generic client does not know it (Vim's
        # yegappan/lsp warns about every one) and shows the result, and progress, instead
        self._streams = ls.client_plugin() is not None

    @classmethod
    def creating(cls, ls: PhasewiseServer, *, run_id: str, phase: str, uri: str | None) -> PhaseProgress:
        """A progress whose token is being created (when the client has work-done progress).

        Not awaiting ``window/workDoneProgress/create`` saves a client round trip before the
        provider is even called; if the client refuses the token, the run reports no progress,
        as when creation failed before. Must be called on the event loop."""
        token = new_token() if ls.supports_progress() else None
        progress = cls(ls, token=token, run_id=run_id, phase=phase, uri=uri)
        if token is not None:
            progress._held = []
            # Sent after this loop turn: by then the phase's provider request is on its way.
            asyncio.get_running_loop().call_soon(progress._create, token)
        return progress

    def _create(self, token: str) -> None:
        answer = self.ls.protocol.send_request(
            types.WINDOW_WORK_DONE_PROGRESS_CREATE, types.WorkDoneProgressCreateParams(token=token))
        answer.add_done_callback(self._created)
        # a client that never answers: after CREATE_SECONDS the run goes on without progress
        asyncio.get_running_loop().call_later(deadline(CREATE_SECONDS) or CREATE_SECONDS, self._give_up, answer)

    def _give_up(self, answer: concurrent.futures.Future[Any]) -> None:
        if self._held is not None and not answer.done():
            self._held, self.token = None, None

    def _created(self, answer: concurrent.futures.Future[Any]) -> None:
        if self._held is None:
            return  # given up on already (no answer within CREATE_SECONDS)
        held, self._held = self._held, None
        if answer.cancelled() or answer.exception() is not None:
            self.token = None
            return
        assert self.token is not None
        # What pygls's create_async does on success: a future the client's cancel can cancel.
        self.ls.work_done_progress.tokens.setdefault(self.token, concurrent.futures.Future())
        for send in held:
            send()

    def _progress(self, notify: Callable[[], None]) -> None:
        if self.token is None:
            return

        def send() -> None:
            notify()
            self.notifications += 1

        if self._held is not None:
            self._held.append(send)
        else:
            send()

    def begin(self, title: str) -> None:
        self._progress(lambda: self.ls.work_done_progress.begin(
            self._token(), types.WorkDoneProgressBegin(title=title, cancellable=True, message="starting")
        ))

    def _token(self) -> str:
        assert self.token is not None
        return self.token

    def on_text(self, delta: str) -> None:
        self._buffer.append(delta)
        if self._handle is not None:
            return  # a flush is already due: this text goes with it
        loop = asyncio.get_running_loop()
        due = self._last_flush + FLUSH_SECONDS
        if due <= loop.time():
            self.flush()  # leading edge: nothing sent for a window, so this goes out now
        else:
            self._handle = loop.call_at(due, self.flush)

    def on_status(self, message: str) -> None:
        self.flush()
        if self.token is None:
            self._log_status(message)
        else:
            self._report(message)

    def _log_status(self, message: str) -> None:
        """Without work-done progress (Emacs Eglot declares none), a retry's wait, a key
        rotation or a fallback still reaches the user: as a log line, the countdown thinned to
        one line every ``STATUS_LOG_SECONDS`` so a long wait does not fill the log."""
        now = asyncio.get_running_loop().time()
        if "retrying in" in message and now - self._last_status_log < STATUS_LOG_SECONDS:
            return
        self._last_status_log = now
        self.ls.window_log_message(types.LogMessageParams(
            type=types.MessageType.Info, message=f"[{self.run_id}] {self.phase}: {message}"))

    def on_step(self, step: AgentStep, of: int) -> None:
        """A step of a phase that works in steps, for a plugin's phase view: ``phasewise/step``
        {runId, phase, uri, step: {step, of, tool, summary, ok, ms, tokens}}, after the text
        streamed before it (the progress report said it already, for any client)."""
        self.flush()
        if self._streams:
            self.ls.protocol.notify(STEP_NOTIFICATION, {
                "runId": self.run_id, "phase": self.phase, "uri": self.uri,
                "step": {**step.to_json(), "of": of},
            })
            self.notifications += 1

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._buffer:
            return
        self._last_flush = asyncio.get_running_loop().time()
        text = "".join(self._buffer)
        self._buffer.clear()
        if self._streams:
            self.ls.protocol.notify(STREAM_NOTIFICATION, {
                "runId": self.run_id, "phase": self.phase, "uri": self.uri, "text": text,
            })
            self.notifications += 1
        self._received += len(text)
        # Progress says what is happening, never fragments of the answer (those go to streamText).
        self._report(f"{self.phase}{' on ' + self.route if self.route else ''}: receiving the answer "
                     f"({_size(self._received)})")

    def _report(self, message: str) -> None:
        self._progress(lambda: self.ls.work_done_progress.report(
            self._token(), types.WorkDoneProgressReport(message=message)
        ))

    def end(self, message: str) -> None:
        self.flush()

        def send() -> None:
            token = self._token()
            self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
            # pygls keeps a future per created token and never drops it: one entry per run, forever
            # (https://github.com/openlawlibrary/pygls/issues/607).
            self.ls.work_done_progress.tokens.pop(token, None)

        self._progress(send)

    def detail(self) -> dict[str, Any]:
        return {"notifications": self.notifications}
