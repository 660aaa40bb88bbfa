"""The session: ``initialize`` (settings and keys handed over at start), warm-up once
initialized, settings and document changes (problems that no longer hold are cleared, offline),
and a progress bar's Cancel."""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from phasewise.edge.feature import Feature
from phasewise.edge.features.keys import KeysFeature
from phasewise.edge.warmup import warm_up_routes


class SessionFeature(Feature):
    def register(self) -> None:
        ls = self.ls

        @ls.feature(types.INITIALIZE)
        def on_initialize(params: types.InitializeParams) -> None:
            self.initialization_options(params.initialization_options)

        @ls.feature(types.INITIALIZED)
        async def on_initialized(params: types.InitializedParams) -> None:
            await warm_up_routes(ls)

        @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
        def on_config(params: types.DidChangeConfigurationParams) -> None:
            ls.settings.changed(params.settings)
            ls.diagnostics.recheck_soon()  # problems the new settings fixed go (offline, nothing sent)

        @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
        def on_change(params: types.DidChangeTextDocumentParams) -> None:
            # findings follow their lines (or go with them); offline problems are checked again
            ls.diagnostics.document_changed(params.text_document.uri)

        @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
        def on_open(params: types.DidOpenTextDocumentParams) -> None:
            pass  # pygls keeps the document; registering makes the client send full text sync

        @ls.feature(types.TEXT_DOCUMENT_DID_SAVE)
        def on_save(params: types.DidSaveTextDocumentParams) -> None:
            ls.files_changed()  # the next phase's context reads the workspace as it is now
            ls.diagnostics.saved(params.text_document.uri)

        @ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)
        def on_close(params: types.DidCloseTextDocumentParams) -> None:
            ls.files_changed()  # its buffer no longer stands in for the file on disk

        @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
        def on_progress_cancel(params: types.WorkDoneProgressCancelParams) -> None:
            ls.runs.cancel_token(str(params.token))

    def initialization_options(self, options: Any) -> None:
        """Settings (``{phasewise: …}``) and keys (``{keys: {ENV: value}}``) sent at start."""
        if isinstance(options, dict) and isinstance(options.get("keys"), dict):
            self.ls.get_feature(KeysFeature).take(options["keys"])
        self.ls.settings.set_initialization_options(options)
