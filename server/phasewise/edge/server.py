"""The LSP edge: pygls server, commands, settings pulls, progress, diagnostics, cancellation.

Handlers are thin: they turn LSP values into plain ones (``Document``, ``PhaseInput``), call
the phase service, and turn results back into LSP (edits, diagnostics, progress). The core is
imported lazily, after ``initialize`` has been answered, so no SDK is paid for before then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
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

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        super()._handle_cancel_notification(msg_id)
        server = self._server
        if isinstance(server, PhasewiseServer):
            server.runs.cancel_request(msg_id)


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
                type=types.MessageType.Warning, message=f"Phasewise settings: {text}"
            ))

    # documents --------------------------------------------------------------------------------
    def document(self, uri: str) -> Document:
        from phasewise.phases.documents import Document

        doc = self.workspace.text_documents.get(uri)
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
        log.info(message)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=message))


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
        except (KeyError, TypeError, ValueError):
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


def warm_up() -> None:
    """Import the core and SDKs off the event loop, so the first phase does not pay for them.

    ``PHASEWISE_WARMUP=0`` turns it off (tests use it to show ``initialize`` needs no SDK)."""
    if os.environ.get("PHASEWISE_WARMUP", "1") == "0":
        return

    def run() -> None:
        try:
            import anthropic  # noqa: F401
            import openai  # noqa: F401

            import phasewise.phases.service
            import phasewise.providers.openai_chat  # noqa: F401
        except Exception as exc:  # a broken install shows up when a phase runs, with its reason
            log.warning("warm-up import failed: %s", exc)

    threading.Thread(target=run, name="phasewise-warmup", daemon=True).start()


def serve_stdio() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="phasewise %(levelname)s %(name)s: %(message)s")
    logging.getLogger("phasewise").setLevel(logging.INFO)
    ls = create_server()
    ls.start_io()
    return 0


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
