"""The language server's shared state: the core (lazily), settings, documents, running phases.

``PhasewiseServer`` holds what every feature shares and nothing feature-specific: the engine and
phase service (imported after ``initialize`` has been answered, so no SDK is paid for before
then), the workspace's settings (``WorkspaceSettings``), the documents, the problems and findings
published (``DiagnosticsBook``), the registry of running phase tasks (so ``$/cancelRequest`` and
a progress cancel can stop them) and the features themselves (``get_feature``). The features
(``edge.features``) are wired in by ``edge.setup``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from phasewise import __version__
from phasewise.edge._pygls_compat import CompatProtocol
from phasewise.edge.commands import CommandError, SetKeysNotification
from phasewise.edge.diagnostics import DiagnosticsBook
from phasewise.edge.stdio import RedactingWriter
from phasewise.edge.uris import open_document
from phasewise.edge.workspace_settings import WorkspaceSettings

if TYPE_CHECKING:
    from phasewise.edge.feature import Feature
    from phasewise.phases.documents import Document
    from phasewise.phases.index import WorkspaceIndex
    from phasewise.phases.service import PhaseService
    from phasewise.router.router import Engine
    from phasewise.settings import LoadedSettings
    from phasewise.workflows.runner import PhaseRunner

log = logging.getLogger("phasewise")

F = TypeVar("F", bound="Feature")


class PhasewiseProtocol(CompatProtocol):
    """pygls's protocol, with every byte it writes passing ``RedactingWriter`` and the custom
    notification ``phasewise/setKeys`` read as a typed message."""

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(RedactingWriter(writer), include_headers)

    @functools.lru_cache  # noqa: B019 (as pygls's own: one protocol per process)
    def get_message_type(self, method: str) -> Any:
        if method == SetKeysNotification.METHOD:
            return SetKeysNotification
        return super().get_message_type(method)


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


class PhasewiseServer(LanguageServer):
    """The server's state lives here, not in module globals."""

    protocol: PhasewiseProtocol

    def __init__(self) -> None:
        super().__init__("phasewise", __version__, protocol_cls=PhasewiseProtocol)
        self.runs = RunRegistry()
        self.protocol.on_cancel_request = self.runs.cancel_request
        self.diagnostics = DiagnosticsBook(self)
        self.settings = WorkspaceSettings(self)
        self._features: dict[type[Feature], Feature] = {}
        self._engine: Engine | None = None
        self._service: PhaseService | None = None
        self._runner: PhaseRunner | None = None
        self._index: WorkspaceIndex | None = None

    # features --------------------------------------------------------------------------------
    def add_feature(self, feature: Feature) -> None:
        self._features[type(feature)] = feature

    def get_feature(self, cls: type[F]) -> F:
        found = self._features[cls]
        assert isinstance(found, cls)
        return found

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

    @property
    def runner(self) -> PhaseRunner:
        """The one phase runner (route, run, apply through the edge's door, record)."""
        if self._runner is None:
            from phasewise.workflows.runner import PhaseRunner

            self._runner = PhaseRunner(self.service)
        return self._runner

    @property
    def index(self) -> WorkspaceIndex:
        """What the session knows of the workspace's files (listings, symbols), for every phase."""
        if self._index is None:
            from phasewise.phases.index import WorkspaceIndex

            self._index = WorkspaceIndex()
        return self._index

    def files_changed(self) -> None:
        """Files on disk changed (saved, closed, a change applied): the next phase reads them again."""
        if self._index is not None:
            self._index.files_changed()

    # capabilities ----------------------------------------------------------------------------
    def supports_config_pull(self) -> bool:
        ws = self.client_capabilities.workspace
        return bool(ws and ws.configuration)

    def supports_progress(self) -> bool:
        win = self.client_capabilities.window
        return bool(win and win.work_done_progress)

    def client_plugin(self) -> dict[str, Any] | None:
        """What a Phasewise plugin declared (``capabilities.experimental.phasewise``), None for a
        client without one (Helix, Vim, Kate, any generic LSP client)."""
        experimental = self.client_capabilities.experimental
        found = experimental.get("phasewise") if isinstance(experimental, dict) else None
        return found if isinstance(found, dict) else None

    def set_key_command(self) -> str | None:
        """The plugin's own command to set a key, as its user knows it (``":Phasewise key"``), from
        ``experimental.phasewise.setKeyCommand``; None when the client has none (messages then name
        only the environment and ``phasewise auth``)."""
        named = (self.client_plugin() or {}).get("setKeyCommand")
        if not isinstance(named, str) or not named.strip() or len(named) > 60 or named.strip() in ("cli", "editor"):
            return None
        return " ".join(named.replace("`", "").split())

    def supports_document_changes(self) -> bool:
        ws = self.client_capabilities.workspace
        return bool(ws and ws.workspace_edit and ws.workspace_edit.document_changes)

    # settings ---------------------------------------------------------------------------------
    async def settings_for(self, uri: str | None) -> LoadedSettings:
        """The ``phasewise`` section for ``uri`` (pulled from the client, cached until it changes)."""
        return await self.settings.get(uri)

    # documents --------------------------------------------------------------------------------
    def document(self, uri: str) -> Document:
        """The open document (its text and version), else the file on disk; a ``CommandError``
        saying why when there is neither."""
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

    # the client's log -----------------------------------------------------------------------
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


__all__ = ["PhasewiseProtocol", "PhasewiseServer", "RunRegistry"]
