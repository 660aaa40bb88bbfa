"""The one helpers module of the tests: the server's environment and LSP client fixtures, what a
test needs to act like an editor (open documents, apply the server's edits, run commands), the
shared sample document, and reading results however the client library decoded them.
``tests.helpers.net`` (TLS and proxy fronts), ``.hostile`` (raw JSON-RPC), ``.faults`` (the fault
matrix) and ``.keyring_backend`` are its parts for particular suites."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise.sim import SimulatorThread

ROOT = Path(__file__).resolve().parent.parent.parent
CLIENTS = ["visual-studio-code", "neovim"]
LEDGER = str(Path(tempfile.gettempdir()) / f"phasewise-tests-{os.getpid()}" / "runs.jsonl")
# The commands that answer "started" at once to a client without the plugin, unless `wait: true`.
WAITING_COMMANDS = frozenset({"phasewise.plan", "phasewise.code", "phasewise.review", "phasewise.phase",
                              "phasewise.retry", "phasewise.run"})


@dataclass
class Editor:
    """The editor side of a session: document texts and versions, edits applied, configuration."""

    client: LanguageClient
    texts: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    applied: list[types.ApplyWorkspaceEditParams] = field(default_factory=list)
    stream: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # phasewise/step, as they came

    def __post_init__(self) -> None:
        editor = self

        @self.client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(
            client: LanguageClient, params: types.ApplyWorkspaceEditParams
        ) -> types.ApplyWorkspaceEditResult:
            return editor._apply(params)

        @self.client.feature("phasewise/streamText")
        def stream_text(client: LanguageClient, params: Any) -> None:
            editor.stream.append({"text": params.text, "phase": params.phase, "runId": params.runId})

        @self.client.feature("phasewise/step")
        def step(client: LanguageClient, params: Any) -> None:
            editor.steps.append({"phase": params.phase, "runId": params.runId, "uri": params.uri,
                                 "step": {k: getattr(params.step, k) for k in
                                          ("step", "of", "tool", "summary", "ok", "ms", "tokens")}})

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.texts[uri], self.versions[uri] = text, 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        ))

    def change(self, uri: str, text: str) -> None:
        """Replace the whole text, as a user typing would (full sync)."""
        self.versions[uri] += 1
        self.texts[uri] = text
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        ))

    def _apply(self, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        """As an editor applies a workspace edit: all of it or none, open documents in memory (their
        version checked), files not open on disk, new files created (annotated edits included:
        this editor confirms every change it is asked to)."""
        self.applied.append(params)
        edit = params.edit
        per_doc: list[tuple[str, int | None, list[Any]]] = []
        created: list[str] = []
        for doc_edit in edit.document_changes or ():
            if isinstance(doc_edit, types.CreateFile):
                created.append(doc_edit.uri)
                continue
            assert isinstance(doc_edit, types.TextDocumentEdit), doc_edit
            per_doc.append((doc_edit.text_document.uri, doc_edit.text_document.version,
                            [e for e in doc_edit.edits if isinstance(e, types.TextEdit | types.AnnotatedTextEdit)]))
        for uri, edits in (edit.changes or {}).items():
            per_doc.append((uri, None, list(edits)))
        for uri, version, _ in per_doc:
            if version is not None and version != self.versions.get(uri):
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason="version mismatch")
            if uri not in self.texts and uri not in created and not _file_of(uri).exists():
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason=f"no such file: {uri}")
        for uri in created:
            _file_of(uri).parent.mkdir(parents=True, exist_ok=True)
            _file_of(uri).write_text("", encoding="utf-8")
        for uri, _, edits in per_doc:
            if uri in self.texts:
                self.change(uri, apply_text_edits(self.texts[uri], edits))
            else:
                path = _file_of(uri)
                path.write_text(apply_text_edits(path.read_text(encoding="utf-8"), edits), encoding="utf-8")
        return types.ApplyWorkspaceEditResult(applied=True)

    async def command(self, name: str, arg: dict[str, Any] | None = None, *, msg_id: str | None = None) -> Any:
        """Run a command and return its answer. A phase command asks for the whole result
        (``wait: true``, as a script would): a client without the plugin would otherwise be answered
        "started" at once (tests of that pass ``wait: False``)."""
        if name in WAITING_COMMANDS and isinstance(arg, dict) and "wait" not in arg:
            arg = {**arg, "wait": True}
        params = types.ExecuteCommandParams(command=name, arguments=[arg] if arg is not None else [])
        return await self.client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND, params, msg_id=msg_id or str(uuid.uuid4())
        )

    def start(self, name: str, arg: dict[str, Any], msg_id: str) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self.command(name, arg, msg_id=msg_id))

    def configure(self, settings: dict[str, Any] | None) -> None:
        self.client.set_configuration(settings, section="phasewise")
        self.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))

    async def diagnostics_where(self, uri: str, predicate: Any, timeout: float = 10.0) -> list[types.Diagnostic]:
        """Wait for the published diagnostics of ``uri`` to satisfy ``predicate``."""
        async def wait() -> list[types.Diagnostic]:
            while True:
                found = self.client.diagnostics.get(uri, [])
                if predicate(found):
                    return found
                await self.client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

        return await asyncio.wait_for(wait(), timeout)


async def message_starting(client: LanguageClient, start: str, timeout: float = 30.0) -> str:
    """The first ``window/showMessage`` starting with ``start``, waited for (how a phase answered
    "started" says it ended); on a timeout, the messages that did come are in the failure."""
    async def wait() -> str:
        while True:
            found = [m.message for m in client.messages if m.message.startswith(start)]
            if found:
                return found[0]
            await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"no message starting {start!r} within {timeout:.0f} s; messages: "
                             f"{[m.message for m in client.messages]}") from None


def _file_of(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri)


_UNIT_BYTES = {"utf-8": ("utf-8", 1), "utf-16": ("utf-16-le", 2)}


def offset_at(text: str, pos: types.Position, encoding: str | None = None) -> int:
    """The character offset in ``text`` of an LSP position (columns as for ``apply_text_edits``)."""
    lines = text.split("\n")
    column = pos.character
    if encoding in _UNIT_BYTES and pos.line < len(lines):
        codec, width = _UNIT_BYTES[encoding]
        units = lines[pos.line].encode(codec)
        assert column * width <= len(units), f"{pos} lies past the end of its line"
        column = len(units[: column * width].decode(codec))  # raises when it splits a character
    return sum(len(line) + 1 for line in lines[: pos.line]) + column


def apply_text_edits(text: str, edits: list[Any], encoding: str | None = None) -> str:
    """Apply LSP edits as the protocol says: every range refers to ``text`` before any of them, and
    they may not overlap (asserted). Columns count characters (``None``: the ASCII or BMP test
    documents, where UTF-16 units are characters) or the units of ``encoding`` ("utf-8", "utf-16",
    "utf-32")."""
    spans = sorted(((offset_at(text, e.range.start, encoding), offset_at(text, e.range.end, encoding), i, e.new_text)
                    for i, e in enumerate(edits)))
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(spans):
        assert end <= start, f"overlapping edits: {edits}"
    for start, end, _, new_text in reversed(spans):
        assert start <= end, f"a range that ends before it starts: {edits}"
        text = text[:start] + new_text + text[end:]
    return text


def field_of(obj: Any, name: str) -> Any:
    """A field of a result: pygls gives custom results as objects, sometimes as dicts."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


async def code_actions_json(client: LanguageClient, params: types.CodeActionParams) -> list[dict[str, Any]]:
    """Code actions as the JSON the server sent: the Python client decodes a ``CodeAction`` that
    carries a command as a ``Command`` (both have a title) and loses its ``kind``."""
    protocol = client.protocol
    typed = protocol.get_result_type

    def untyped_for_code_actions(method: str) -> Any:
        return None if method == types.TEXT_DOCUMENT_CODE_ACTION else typed(method)

    protocol.get_result_type = untyped_for_code_actions  # type: ignore[method-assign]
    try:
        found = await protocol.send_request_async(types.TEXT_DOCUMENT_CODE_ACTION, params)
    finally:
        del protocol.get_result_type
    return [plain(a) for a in found or ()]


# ------------------------------------------------- added for the editor-experience tests (issue 12)


def plain(result: Any) -> Any:
    """A command's result as plain dicts and lists, however the client library decoded it
    (namedtuples for custom results, attrs classes for LSP types)."""
    if hasattr(result, "_asdict"):
        return {k: plain(v) for k, v in result._asdict().items()}
    if isinstance(result, dict):
        return {k: plain(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [plain(v) for v in result]
    if hasattr(result, "__attrs_attrs__"):
        import cattrs

        return cattrs.unstructure(result)
    return result


answer = plain  # the name the older suites use


async def code_actions_for(client: LanguageClient, uri: str, diags: list[types.Diagnostic],
                           rng: types.Range | None = None) -> list[Any]:
    """The quick fixes a client gets for ``diags`` (as the editor sends them) at ``rng`` (asked with
    ``only: quickfix``, as an editor's quick-fix menu does: the phases offered at the cursor are
    other code actions)."""
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=rng or diags[0].range,
        context=types.CodeActionContext(diagnostics=diags, only=[types.CodeActionKind.QuickFix]),
    ))
    return list(actions or [])


def action_command(action: Any) -> tuple[str, dict[str, Any]]:
    """A code action's command name and argument (the Python client may decode a CodeAction that
    carries a command as a ``Command`` whose ``command`` is the nested object's repr)."""
    import ast

    inner = action.command
    if isinstance(inner, types.Command):
        return inner.command, dict(inner.arguments[0]) if inner.arguments else {}
    if isinstance(inner, str) and inner.startswith("{"):
        inner = ast.literal_eval(inner)
    if isinstance(inner, dict):
        return inner["command"], dict(inner["arguments"][0]) if inner.get("arguments") else {}
    return inner, dict(action.arguments[0]) if getattr(action, "arguments", None) else {}

# The sample document the suites and the editor tests share: a module with a rename to do
# (``load``) and review findings to find (a mutable default, a bare except, ``== None``).
SAMPLE_DOC = """import os


def load(path, cache={}):
    try:
        return open(path).read()
    except:
        print("failed", path)
        return None


class Store:
    def get(self, key):
        if key == None:
            return None
        return os.environ.get(key)
"""
SAMPLE_URI = "file:///work/example/store.py"
# A caller of the sample document's ``load`` (as ``app.py``), for renames across two files.
SAMPLE_CALLER = """from app import load


def order_lines(path):
    text = load(path)
    return text.splitlines() if text else []
"""


def server_env(**extra: str) -> dict[str, str]:
    """The server's environment: no real provider keys leak in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    # the run record of every test session goes to a temporary folder, never the home folder
    env.setdefault("PHASEWISE_LEDGER", LEDGER)
    env.update(extra)
    return env


def sim_settings(sim: SimulatorThread, **phases: str) -> dict[str, Any]:
    """A ``phasewise`` section routing phases to simulated providers declared on ``sim``."""
    providers: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    for phase, ref in phases.items():
        provider, _, model = ref.partition("/")
        protocol = "anthropic" if "claude" in provider or provider.endswith("-anthropic") else "openai"
        providers[provider] = {
            "protocol": protocol,
            "baseUrl": sim.base_url(provider, protocol),
            "apiKeyEnv": f"{provider.upper().replace('-', '_')}_KEY",
        }
        routes[phase] = {"model": model}
        routes[phase]["model"] = f"{provider}/{model}"
    return {"phases": routes, "providers": providers}


def sim_keys(settings: dict[str, Any]) -> dict[str, str]:
    """A distinct fake key for every provider in ``settings`` (never a real key)."""
    return {p["apiKeyEnv"]: f"test-key-{name}" for name, p in settings["providers"].items()}


# What Phasewise's own plugins (VS Code, Neovim, Emacs) declare in ``initialize``: the client-side
# commands they carry out. Quick fixes name them only for a client that declares them.
PLUGIN_EXPERIMENTAL = {"phasewise": {"clientCommands": ["phasewise.setApiKey", "phasewise.openSettings"],
                                     "setKeyCommand": "Phasewise: Set API Key…"}}  # as VS Code declares them


def make_client_fixture(env: dict[str, str] | None = None, clients: list[str] | None = None,
                        experimental: Any = None, root: Path | None = None) -> Any:
    """A pytest-lsp client fixture running ``phasewise serve``, once per editor profile in
    ``clients`` (``"emacs/without-progress"``: that profile with work-done progress switched off),
    declaring ``experimental`` capabilities (a plugin's; None: a generic client) and ``root``."""

    @pytest_lsp.fixture(
        params=clients or CLIENTS,
        config=ClientServerConfig(
            server_command=[sys.executable, "-m", "phasewise", "serve"],
            server_env=env or server_env(),
        ),
    )
    async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest) -> AsyncIterator[LanguageClient]:
        profile, _, without = str(request.param).partition("/without-")
        capabilities = pytest_lsp.client_capabilities(profile)
        if without == "progress" and capabilities.window is not None:
            capabilities.window.work_done_progress = False  # a client with no progress UI
        if experimental is not None:
            capabilities.experimental = experimental
        params = types.InitializeParams(capabilities=capabilities, root_uri=(root or ROOT).as_uri())
        await lsp_client.initialize_session(params)
        yield lsp_client
        await lsp_client.shutdown_session()

    return client


def make_plugin_client_fixture(env: dict[str, str] | None = None, clients: list[str] | None = None,
                               experimental: Any = PLUGIN_EXPERIMENTAL, root: Path | None = None) -> Any:
    """``make_client_fixture`` for a Phasewise plugin: the profile plus the plugin's capabilities
    (``experimental=None``: a generic client, which declares none)."""
    return make_client_fixture(env, clients, experimental, root)
