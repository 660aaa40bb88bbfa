"""The LSP edge: pygls server, commands, settings pulls, progress, diagnostics, cancellation.

Handlers are thin: they turn LSP values into plain ones (``Document``, ``PhaseInput``), call
the phase service, and turn results back into LSP (edits, diagnostics, progress). The core is
imported lazily, after ``initialize`` has been answered, so no SDK is paid for before then.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import os
import re
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from lsprotocol import types
from pygls import IS_WASM
from pygls.constants import PARAM_LS
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import _prepare_command_arguments, lsp_method
from pygls.uris import to_fs_path

from phasewise import __version__
from phasewise.edge.diagnostics import REVIEW_SOURCE, SOURCE, DiagnosticsBook, line_range

if TYPE_CHECKING:
    from phasewise.phases.documents import Document, LineRange
    from phasewise.phases.service import PhaseService
    from phasewise.router.router import Engine
    from phasewise.settings import LoadedSettings

log = logging.getLogger("phasewise")

SET_KEYS = "phasewise/setKeys"


class CommandError(ValueError):
    """Arguments of a command that cannot be used; answered as InvalidParams."""


class PhasewiseProtocol(LanguageServerProtocol):
    """Adds what pygls lacks: ``$/cancelRequest`` also cancels a running command's task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain_commands: dict[Any, bool] = {}  # command handler → takes (ls, *args)
        self._last_write: Any = None

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams) -> Generator[Any, Any, Any]:
        """pygls's own, but a command taking ``(ls, *args)`` gets its arguments as they are
        without pygls re-reading its signature: ``typing.get_type_hints`` evaluates every
        annotation again on each call, a quarter of a millisecond before a phase could start.
        Any other signature still goes through pygls's conversion."""
        if (handler := self.fm.commands.get(params.command, None)) is None:
            raise JsonRpcInvalidParams.of(ValueError(f"Command name {params.command!r} is not defined"))
        try:
            if _takes_plain_args(self, handler):
                args: tuple[Any, ...] = tuple(params.arguments or ())
                kwargs: dict[str, Any] = {}
            else:
                args, kwargs = _prepare_command_arguments(handler, params, self._converter)
        except Exception as exc:
            raise JsonRpcInvalidParams.of(exc) from exc
        result = yield handler, args, kwargs
        return result

    def _send_data(self, data: Any) -> None:
        """pygls's, with every key value this process knows masked in what leaves it: the last
        guard behind the redaction of problems, logs and records (a key must never reach the
        client, whatever path it took). Only exact key values are masked here, so code that
        merely looks like a key (a test fixture's ``sk-…``) is sent as it is."""
        if not data:
            return
        if self.writer is None:
            log.error("unable to send data: no transport")
            return
        try:
            body = json.dumps(data, default=self._serialize_message)
            for secret in _json_secrets():
                if secret in body:
                    body = body.replace(secret, "[redacted]")
            payload = body
            if self._include_headers:
                payload = (f"Content-Length: {len(body)}\r\n"
                           f"Content-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n{body}")
            res = self.writer.write(payload.encode(self.CHARSET))
            if inspect.isawaitable(res):  # an asynchronous writer (not stdio): keep the write alive
                self._last_write = asyncio.ensure_future(res)
        except BrokenPipeError:
            log.error("the connection to the client is lost")
            raise
        except Exception as error:
            log.exception("error sending data")
            self._server._report_server_error(error, JsonRpcInternalError)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if not isinstance(msg_id, int | str):  # a request id is a number or a string; anything else cancels nothing
            log.warning("$/cancelRequest for an id that no request can have: %s", type(msg_id).__name__)
            return
        super()._handle_cancel_notification(msg_id)
        server = self._server
        if isinstance(server, PhasewiseServer):
            server.runs.cancel_request(msg_id)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None,
                         kwargs: Any = None) -> None:
        """pygls files every coroutine handler's task under ``msg_id`` and only a request's own
        id is ever removed: a command (run through the built-in executeCommand generator under a
        fresh uuid) or an async notification handler stayed there with its result, about 3 KiB a
        phase run. Each entry now goes when its task is done."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        futures = self._request_futures
        future = futures.get(msg_id)
        if future is None:
            return

        def forget(done: Any) -> None:
            if futures.get(msg_id) is done:
                del futures[msg_id]

        future.add_done_callback(forget)


class RunRegistry:
    """Running phase tasks by request id and by progress token, so either can cancel them."""

    def __init__(self) -> None:
        self._by_request: dict[Any, asyncio.Task[Any]] = {}
        self._by_token: dict[str, asyncio.Task[Any]] = {}

    def add(self, request_id: Any, token: str | None, task: asyncio.Task[Any]) -> None:
        if request_id is not None:
            self._by_request[request_id] = task
        if token is not None:
            self._by_token[token] = task

    def remove(self, request_id: Any, token: str | None) -> None:
        self._by_request.pop(request_id, None)
        if token is not None:
            self._by_token.pop(token, None)

    def cancel_request(self, request_id: Any) -> None:
        if (task := self._by_request.get(request_id)) is not None:
            task.cancel()

    def cancel_token(self, token: str) -> None:
        if (task := self._by_token.get(token)) is not None:
            task.cancel()

    def __len__(self) -> int:
        return len(self._by_request) + len(self._by_token)


@dataclass(slots=True)
class PhaseArgs:
    uri: str
    instruction: str
    range: LineRange | None
    plan: str | None
    model: str | None


class PhasewiseServer(LanguageServer):
    """The server's state lives here, not in module globals."""

    def __init__(self) -> None:
        super().__init__("phasewise", __version__, protocol_cls=PhasewiseProtocol)
        self.runs = RunRegistry()
        self.diagnostics = DiagnosticsBook(self)
        self._engine: Engine | None = None
        self._service: PhaseService | None = None
        self._settings_cache: dict[str, LoadedSettings] = {}
        self._init_settings: Any = None
        self._pushed_settings: Any = None
        self._last_args: dict[tuple[str, str], dict[str, Any]] = {}
        self._warned_issues: set[str] = set()

    # core, imported lazily -----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from phasewise.router.router import Engine

            self._engine = Engine()
        return self._engine

    @property
    def service(self) -> PhaseService:
        if self._service is None:
            from phasewise.phases.service import PhaseService

            self._service = PhaseService(self.engine)
        return self._service

    # capabilities ----------------------------------------------------------------------------
    def _caps(self) -> types.ClientCapabilities:
        return self.client_capabilities

    def supports_config_pull(self) -> bool:
        ws = self._caps().workspace
        return bool(ws and ws.configuration)

    def supports_progress(self) -> bool:
        win = self._caps().window
        return bool(win and win.work_done_progress)

    def supports_document_changes(self) -> bool:
        ws = self._caps().workspace
        return bool(ws and ws.workspace_edit and ws.workspace_edit.document_changes)

    # settings ---------------------------------------------------------------------------------
    def set_initialization_options(self, options: Any) -> None:
        if isinstance(options, dict):
            if isinstance(options.get("keys"), dict):
                self.engine.keyring.set_memory({str(k): str(v) for k, v in options["keys"].items()})
            self._init_settings = options.get("phasewise", options.get("settings"))
            if self._init_settings is None and ("phases" in options or "providers" in options):
                self._init_settings = options

    def settings_changed(self, pushed: Any) -> None:
        if isinstance(pushed, dict) and isinstance(pushed.get("phasewise"), dict):
            self._pushed_settings = pushed["phasewise"]
        self._settings_cache.clear()

    async def settings_for(self, uri: str | None) -> LoadedSettings:
        from phasewise.settings import SECTION, load_settings

        key = uri or ""
        if (found := self._settings_cache.get(key)) is not None:
            return found
        raw: Any = None
        if self.supports_config_pull():
            try:
                result = await asyncio.shield(self.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(scope_uri=uri, section=SECTION)])
                ))
                raw = result[0] if result else None
            except Exception as exc:  # a client that fails the pull: fall back to what we have
                log.warning("workspace/configuration failed: %s", type(exc).__name__)
        if raw is None:
            raw = self._pushed_settings if self._pushed_settings is not None else self._init_settings
        loaded = load_settings(raw)
        if len(self._settings_cache) > 512:
            self._settings_cache.clear()
        self._settings_cache[key] = loaded
        self._warn_settings(loaded)
        return loaded

    def _warn_settings(self, loaded: LoadedSettings) -> None:
        """Settings issues not tied to one phase are shown once, as a message, not a crash."""
        for issue in loaded.issues:
            text = issue.describe()
            if text in self._warned_issues:
                continue
            self._warned_issues.add(text)
            self.window_show_message(types.ShowMessageParams(
                # issue 12: no Markdown backticks in a notification
                type=types.MessageType.Warning, message=f"Phasewise settings: {text}".replace("`", "")
            ))

    # documents --------------------------------------------------------------------------------
    def document(self, uri: str) -> Document:
        from phasewise.edge.uris import open_document  # issue 12: pygls files documents unquoted
        from phasewise.phases.documents import Document

        doc = open_document(self.workspace, uri)
        if doc is not None:
            return Document(uri, doc.source, doc.version, doc.language_id)
        if not uri.startswith("file:"):
            raise CommandError(f"document {uri!r} is not open and is not a file")
        path = to_fs_path(uri)
        if path is None or not Path(path).is_file():
            raise CommandError(f"document {uri!r} is not open and no such file exists")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {type(exc).__name__}") from None
        return Document(uri, text, None, None)

    def log_line(self, message: str) -> None:
        """Log to stderr and the client's output, once the current loop turn is over: a phase
        logs as it starts, and its provider request should leave before the log wakes anyone."""
        try:
            asyncio.get_running_loop().call_soon(self._log_now, message)
        except RuntimeError:
            self._log_now(message)

    def _log_now(self, message: str) -> None:
        log.info(message)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=message))

    # stdio ------------------------------------------------------------------------------------
    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """pygls's stdio loop, except that a pipe or socket on stdin is read by the event loop.

        pygls reads every header line and every body in a worker thread: three thread hand-offs
        per message, each of which waits for the GIL while phases stream, so a request waited
        tens of milliseconds before its handler ran. Anything else (a file, a terminal, streams
        passed in) keeps pygls's own reader."""
        if stdin is not None or stdout is not None or not _stdin_is_pollable():
            super().start_io(stdin, stdout)
            return
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        try:
            asyncio.run(self._serve_stdin())
        except BrokenPipeError:
            log.error("the connection to the client is lost: shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    async def _serve_stdin(self) -> None:
        stream = asyncio.StreamReader(limit=_LINE_LIMIT)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), sys.stdin.buffer
        )
        assert self._stop_event is not None
        await read_messages(self._stop_event, _PipeReader(stream), self.protocol)


def _takes_plain_args(protocol: PhasewiseProtocol, handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` is ``(ls, *args)``: pygls would pass its arguments unconverted."""
    cache = protocol.plain_commands
    found = cache.get(handler)
    if found is None:
        try:
            params = list(inspect.signature(getattr(handler, "func", handler)).parameters.values())
        except (TypeError, ValueError):
            params = []
        found = (len(params) == 2 and params[0].name == PARAM_LS
                 and params[1].kind is inspect.Parameter.VAR_POSITIONAL)
        cache[handler] = found
    return found


_LINE_LIMIT = 1 << 20  # a header line longer than this is not LSP


_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*(\d{1,12})[ \t]*\r?\n?$", re.IGNORECASE)
_MAX_BODY = 256 * 1024 * 1024  # far beyond any real message (a 10 MB document is ~10 MB of JSON)
PARSE_ERROR, INVALID_REQUEST = -32700, -32600


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
            _send_error(protocol, None, PARSE_ERROR, f"Parse error: Content-Length {length} is over the limit")
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
        _send_error(protocol, None, PARSE_ERROR, f"Parse error: the message is not JSON ({reason})")
        return
    msg_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
        msg_id = None
    problem = _invalid_message(data)
    if problem is not None:
        log.warning("invalid JSON-RPC message: %s", problem)
        if not (isinstance(data, dict) and "method" in data and "id" not in data):  # notifications get no answer
            _send_error(protocol, msg_id, INVALID_REQUEST, f"Invalid request: {problem}")
        return
    try:
        message = protocol.structure_message(data)
    except Exception as exc:
        method = data.get("method")
        log.warning("cannot read the params of %r: %s", method, type(exc).__name__)
        if "method" in data and msg_id is not None:
            _send_error(protocol, msg_id, JsonRpcInvalidParams.CODE,
                        f"Invalid params for {method!r}: they do not match the LSP type of that method")
        return
    try:
        protocol.handle_message(message)
    except Exception as exc:
        log.exception("unable to handle a %r message", data.get("method") or "response")
        if "method" in data and msg_id is not None:
            _send_error(protocol, msg_id, JsonRpcInternalError.CODE, f"Internal error: {type(exc).__name__}")


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


def _send_error(protocol: LanguageServerProtocol, msg_id: Any, code: int, message: str) -> None:
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


_json_secrets_cache: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def _json_secrets() -> tuple[str, ...]:
    """Known key values (16 characters or more: shorter ones could be ordinary words), as they
    appear inside JSON text; worked out again only when ``known_secrets`` has changed."""
    global _json_secrets_cache
    from phasewise.problems import known_secrets

    found = known_secrets()
    if _json_secrets_cache[0] is not found:
        _json_secrets_cache = (found, tuple(json.dumps(s)[1:-1] for s in found if len(s) >= 16))
    return _json_secrets_cache[1]


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


def parse_phase_args(args: Any, *, need_instruction: bool) -> PhaseArgs:
    from phasewise.phases.documents import LineRange

    if isinstance(args, list) and len(args) == 1:
        args = args[0]
    if not isinstance(args, dict):
        raise CommandError("expected one argument object {uri, instruction, range?}")
    uri = args.get("uri")
    if not isinstance(uri, str) or not uri:
        raise CommandError("`uri` is required (the document's URI)")
    instruction = args.get("instruction") or ""
    if not isinstance(instruction, str) or (need_instruction and not instruction.strip()):
        raise CommandError("`instruction` is required (what the phase should do)")
    rng = None
    raw_range = args.get("range")
    if raw_range is not None:
        try:
            rng = LineRange(int(raw_range["start"]["line"]), int(raw_range["end"]["line"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise CommandError("`range` must be an LSP range {start: {line, character}, end: …}") from None
        if rng.end < rng.start:
            raise CommandError("`range` ends before it starts")
    plan = args.get("plan")
    model = args.get("model")
    if plan is not None and not isinstance(plan, str):
        raise CommandError("`plan` must be text")
    if model is not None and not isinstance(model, str):
        raise CommandError("`model` must be a model reference 'provider/model'")
    return PhaseArgs(uri, instruction, rng, plan, model)


def create_server() -> PhasewiseServer:
    ls = PhasewiseServer()
    _register(ls)
    return ls


def _register(ls: PhasewiseServer) -> None:
    from phasewise.edge import handlers

    handlers.register(ls)


def _warm_up_on() -> bool:
    return os.environ.get("PHASEWISE_WARMUP", "1") != "0"


def warm_up(sdks: Iterable[str] = ("anthropic", "openai"), done: Callable[[list[str]], object] | None = None) -> None:
    """Import the core and the SDKs the settings route to (``sdks``: module names) off the event
    loop, so the first phase does not pay for them, and find out whether an OS keyring exists
    (0.2 s on a headless machine: not something the first phase with a key missing should wait
    for). An SDK no route uses is not imported (anthropic is 54 MiB resident, openai 27 MiB):
    a phase that needs it later imports it then, on a worker thread (``router.ensure_sdk``).

    ``PHASEWISE_WARMUP=0`` turns it all off (tests use it to show ``initialize`` needs no SDK):
    everything then happens on first use."""
    if not _warm_up_on():
        return
    wanted = sorted(sdks)

    def run() -> None:
        import importlib

        from phasewise.keystore import preload

        preload()
        try:
            for name in wanted:
                importlib.import_module(name)
            import phasewise.phases.service
            import phasewise.providers.openai_chat  # noqa: F401
        except Exception as exc:  # a broken install shows up when a phase runs, with its reason
            log.warning("warm-up import failed: %s", exc)
            return
        # The SDKs bring some 175,000 long-lived objects, and every full garbage collection
        # walked them all: an 85 ms stall of every request and stream, now and then. Frozen
        # (after one last collection), they are never scanned again.
        gc.collect()
        gc.freeze()
        if done is not None:
            done(wanted)

    threading.Thread(target=run, name="phasewise-warmup", daemon=True).start()


async def warm_up_routes(ls: PhasewiseServer) -> None:
    """``warm_up`` for the SDKs of the protocols the workspace's settings route to (every phase,
    fallbacks included); both when the settings cannot be read."""
    if not _warm_up_on():
        return  # before the settings pull: nothing to warm
    from phasewise.router.router import SDK_MODULES, route_protocols

    try:
        protocols = route_protocols(ls.engine.resolver(await ls.settings_for(None)))
    except Exception as exc:  # never in the way of serving: warm everything instead
        log.warning("warm-up could not read the routes (%s): importing both SDKs", type(exc).__name__)
        protocols = set(SDK_MODULES)
    loop = asyncio.get_running_loop()

    def done(names: list[str]) -> None:
        message = f"warm-up done: SDKs loaded for the routed protocols: {', '.join(names) or 'none'}"
        loop.call_soon_threadsafe(ls.log_line, message)

    warm_up((SDK_MODULES[p] for p in sorted(protocols) if p in SDK_MODULES), done)


def serve_stdio() -> int:
    from phasewise.problems import register_environment_secrets

    register_environment_secrets()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("phasewise %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_answered_errors_in_one_line)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("phasewise").setLevel(logging.INFO)
    ls = create_server()
    ls.start_io()
    return 0


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
        from phasewise.problems import redact

        return redact(super().format(record))


def new_token() -> str:
    return f"phasewise-{uuid.uuid4().hex[:12]}"


__all__ = [
    "REVIEW_SOURCE",
    "SOURCE",
    "CommandError",
    "PhaseArgs",
    "PhasewiseServer",
    "create_server",
    "line_range",
    "parse_phase_args",
    "serve_stdio",
]
