"""The stdio transport: a hardened message reader, a writer that masks keys, and the log set-up.

``read_messages`` replaces pygls's ``run_async`` loop: garbage from a broken or hostile client is
answered with a JSON-RPC error and the loop keeps serving. ``RedactingWriter`` is installed
through pygls's public ``set_writer``, so every byte sent to the client passes it: the last guard
behind the redaction of problems, logs and records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pygls import IS_WASM
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter

from phasewise.edge._pygls_compat import fail_pending_request
from phasewise.edge.requests import ClientReplyUnreadable
from phasewise.problems import known_secrets, redact

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer
    from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("phasewise")

_LINE_LIMIT = 1 << 20  # a header line longer than this is not LSP
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*(\d{1,12})[ \t]*\r?\n?$", re.IGNORECASE)
_MAX_BODY = 256 * 1024 * 1024  # far beyond any real message (a 10 MB document is ~10 MB of JSON)
PARSE_ERROR, INVALID_REQUEST = -32700, -32600
_HEADER_END = b"\r\n\r\n"


class RedactingWriter:
    """A pygls writer that masks every key value this process knows in what it writes.

    Only exact key values are masked (16 characters or more: shorter ones could be ordinary
    words), so code that merely looks like a key (a test fixture's ``sk-…``) goes out as it is.
    When a message had to be masked, its ``Content-Length`` is written again."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._known: tuple[str, ...] | None = None
        self._needles: tuple[tuple[bytes, bytes], ...] = ()

    def _secrets(self) -> tuple[tuple[bytes, bytes], ...]:
        found = known_secrets()  # the same tuple until a key is registered
        if found is not self._known:
            self._known = found
            # as they appear inside JSON text (pygls writes ASCII-only JSON)
            self._needles = tuple((json.dumps(s)[1:-1].encode("ascii", "backslashreplace"), b"[redacted]")
                                  for s in found if len(s) >= 16)
        return self._needles

    def write(self, data: bytes) -> Any:
        needles = self._secrets()
        if needles and any(needle in data for needle, _ in needles):
            data = _mask(data, needles)
        return self.inner.write(data)

    def close(self) -> Any:
        return self.inner.close()


def _mask(data: bytes, needles: tuple[tuple[bytes, bytes], ...]) -> bytes:
    head, sep, body = data.partition(_HEADER_END)
    if not sep or not head.lower().startswith(b"content-length"):
        head, sep, body = b"", b"", data
    for needle, mask in needles:
        body = body.replace(needle, mask)
    if not sep:
        return body
    head = re.sub(rb"(?i)content-length:[ \t]*\d+", b"Content-Length: %d" % len(body), head, count=1)
    return head + sep + body


def run_stdio(server: LanguageServer, serve_stdin_on_loop: bool = True) -> None:
    """Serve LSP on stdin/stdout until the client goes away or sends ``exit``.

    A pipe or socket on stdin is read by the event loop (``read_messages``): pygls reads every
    header line and every body in a worker thread, three thread hand-offs per message, each of
    which waits for the GIL while phases stream, so a request waited tens of milliseconds
    before its handler ran. Anything else (a file, a terminal) keeps pygls's own loop."""
    if not serve_stdin_on_loop or not _stdin_is_pollable():
        server.start_io()
        return
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(_serve_stdin(server.protocol))
    except BrokenPipeError:
        log.error("the connection to the client is lost: shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


async def _serve_stdin(protocol: LanguageServerProtocol) -> None:
    stream = asyncio.StreamReader(limit=_LINE_LIMIT)
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), sys.stdin.buffer
    )
    await read_messages(threading.Event(), _PipeReader(stream), protocol)


async def read_messages(stop_event: threading.Event, reader: _PipeReader, protocol: LanguageServerProtocol) -> None:
    """The stdio message loop (pygls's ``run_async``), hardened against a hostile or broken client.

    A body that is not JSON is answered with a parse error (-32700) and JSON that is not a
    JSON-RPC message with an invalid request (-32600), both with ``id: null`` unless the id
    could be read; a header line over the limit, a missing or unreadable ``Content-Length`` and
    an absurd length are skipped. After garbage the loop finds its footing again at the next
    ``Content-Length`` header, even one glued to the end of the garbage. Nothing a client sends
    stops the loop: only the end of input does."""
    length: int | None = None
    while not stop_event.is_set():
        try:
            line = await reader.readline()
        except ValueError:  # a header line over the limit: its bytes are dropped
            log.warning("skipped a header line longer than %d bytes", _LINE_LIMIT)
            length = None
            continue
        if not line:
            break
        if line.strip():
            if (match := _CONTENT_LENGTH.search(line)) is not None:
                if match.start() > 0:
                    log.warning("skipped %d bytes that were not a message", match.start())
                length = int(match.group(1))
            elif line[:15].lower().startswith(b"content-length"):
                log.warning("unreadable Content-Length header: %r", line[:80])
                length = None
            continue
        if length is None:
            continue  # headers without a usable Content-Length: nothing to read
        if length > _MAX_BODY:
            log.warning("ignored a message announcing %d bytes (over %d)", length, _MAX_BODY)
            send_error(protocol, None, PARSE_ERROR, f"Parse error: Content-Length {length} is over the limit")
            length = None
            continue
        want, length = length, None
        body = await reader.readexactly(want) if want else b""
        if len(body) < want:
            break  # the client went away mid-message
        handle_body(protocol, body)


def handle_body(protocol: LanguageServerProtocol, body: bytes) -> None:
    """Decode one message body and hand it to pygls; answer what pygls would not."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON (or not UTF-8, or absurdly nested)
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        log.warning("a message that is not JSON: %s", reason)
        send_error(protocol, None, PARSE_ERROR, f"Parse error: the message is not JSON ({reason})")
        return
    msg_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
        msg_id = None
    problem = _invalid_message(data)
    if problem is not None:
        log.warning("invalid JSON-RPC message: %s", problem)
        if not (isinstance(data, dict) and "method" in data and "id" not in data):  # notifications get no answer
            send_error(protocol, msg_id, INVALID_REQUEST, f"Invalid request: {problem}")
        return
    try:
        message = protocol.structure_message(data)
    except Exception as exc:
        method = data.get("method")
        typed = protocol.get_message_type(method) if isinstance(method, str) else None
        said = getattr(typed, "INVALID", None)  # a custom message's own words for params it cannot use
        if said:
            log.warning("%s", said)
        else:
            log.warning("cannot read the params of %r: %s", method, type(exc).__name__)
        if "method" in data and msg_id is not None:
            send_error(protocol, msg_id, JsonRpcInvalidParams.CODE,
                       f"Invalid params for {method!r}: they do not match the LSP type of that method")
        elif "method" not in data and msg_id is not None:  # a reply to one of the server's requests
            fail_pending_request(protocol, msg_id, ClientReplyUnreadable(
                f"its reply does not fit the request's type ({type(exc).__name__})"))
        return
    try:
        protocol.handle_message(message)
    except Exception as exc:
        log.exception("unable to handle a %r message", data.get("method") or "response")
        if "method" in data and msg_id is not None:
            send_error(protocol, msg_id, JsonRpcInternalError.CODE, f"Internal error: {type(exc).__name__}")


def _invalid_message(data: Any) -> str | None:
    """Why ``data`` is not a JSON-RPC 2.0 request, notification or response (None if it is)."""
    if isinstance(data, list):
        return "batches are not part of LSP" if data else "an empty batch"
    if not isinstance(data, dict):
        return f"expected an object, got {type(data).__name__}"
    if data.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be \"2.0\""
    if "method" in data:
        if not isinstance(data["method"], str) or not data["method"]:
            return "'method' must be a non-empty string"
        if "params" in data and data["params"] is not None and not isinstance(data["params"], dict | list):
            return "'params' must be an object or an array"
    elif "id" not in data:
        return "neither 'method' nor 'id'"
    elif "result" not in data and "error" not in data:
        return "a response needs 'result' or 'error'"
    if "id" in data and data["id"] is not None and (
            not isinstance(data["id"], int | str) or isinstance(data["id"], bool)):
        return "'id' must be a number or a string"
    return None


def send_error(protocol: LanguageServerProtocol, msg_id: Any, code: int, message: str) -> None:
    """A JSON-RPC error response, framed and written as pygls frames its own (``id`` may be null,
    which pygls's typed responses cannot express)."""
    writer = protocol.writer
    if writer is None:
        log.error("unable to send an error: no transport")
        return
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})
    payload = (f"Content-Length: {len(body)}\r\n"
               f"Content-Type: {protocol.CONTENT_TYPE}; charset={protocol.CHARSET}\r\n\r\n{body}")
    writer.write(payload.encode(protocol.CHARSET))


class _PipeReader:
    """``asyncio.StreamReader`` with the end-of-input behaviour pygls's loop expects."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self) -> bytes:
        return await self._stream.readline()

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:  # the client went away mid-message
            return exc.partial


def _stdin_is_pollable() -> bool:
    """stdin is a pipe or socket of its own (not shared with stdout), so the loop can poll it."""
    if os.name == "nt" or IS_WASM:
        return False
    try:
        st_in = os.fstat(sys.stdin.fileno())
        st_out = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    if (st_in.st_dev, st_in.st_ino) == (st_out.st_dev, st_out.st_ino):
        return False  # one socket both ways: a non-blocking read side would make writes non-blocking too
    return stat.S_ISFIFO(st_in.st_mode) or stat.S_ISSOCK(st_in.st_mode)


LOG_LEVEL_ENV = "PHASEWISE_LOG_LEVEL"


def log_level(environ: Mapping[str, str] | None = None) -> int:
    """The level of Phasewise's own lines on stderr: ``$PHASEWISE_LOG_LEVEL`` (a level name such
    as ``INFO`` or ``DEBUG``), else WARNING. Editors file a server's stderr as errors (Neovim's
    ``lsp.log`` marks every line ``[ERROR]``), so routine lines go to ``window/logMessage`` only,
    unless asked for here."""
    name = (os.environ if environ is None else environ).get(LOG_LEVEL_ENV, "").strip().upper()
    level = logging.getLevelName(name) if name else logging.WARNING
    return level if isinstance(level, int) else logging.WARNING


def configure_logging() -> None:
    """Log to stderr (the client's server log) at ``log_level()``, keys masked, answered errors in one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("phasewise %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_answered_errors_in_one_line)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("phasewise").setLevel(log_level())


def _answered_errors_in_one_line(record: logging.LogRecord) -> bool:
    """pygls logs every JSON-RPC error it answers (an unknown command, invalid params) as an
    ERROR with a traceback; the client already has the precise message, and the log (VS Code's
    output channel) should not look like a crash: one warning line instead. Real exceptions
    keep their traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, JsonRpcException):
        record.msg, record.args = f"answered with an error: {exc}", ()
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with keys masked: pygls logs the params of a message it
    could not handle, and those may carry keys."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


__all__ = [
    "LOG_LEVEL_ENV",
    "RedactingFormatter",
    "RedactingWriter",
    "configure_logging",
    "handle_body",
    "log_level",
    "read_messages",
    "run_stdio",
    "send_error",
]
