"""A code phase's ``ChangeSet`` as one LSP ``WorkspaceEdit``, and the check that nothing moved on.

Plain functions for the edge to call (``apply_change_set`` does all three steps; ``open_documents``
turns pygls's open documents into what ``phases.context.Workspace`` and the check take):

``stale_problem(changes, open_docs, read)``
    ``document-changed`` naming the first file that is no longer what the change was computed on:
    an open document whose version or text moved on, a closed file whose content on disk moved on,
    or a file to create that now exists. ``None`` when the change still fits everywhere.
``workspace_edit(changes, capabilities, ...)``
    ``documentChanges``: a ``TextDocumentEdit`` per file carrying the version of the open document
    the change was computed on (``null`` for a file not open), a ``CreateFile`` before the edit of a
    new file (only when the client declares ``resourceOperations`` with ``create``; otherwise a
    ``capability`` problem and nothing to apply). With ``confirm`` and a client that declares
    ``changeAnnotationSupport``, every edit carries one change annotation with
    ``needsConfirmation`` (the editor shows the change first: the VS Code extension as a diff with
    Apply and Discard, the Neovim plugin as a diff it asks about). A client without
    ``documentChanges`` gets the ``changes`` map (no new files possible there).

Positions are in the negotiated position encoding (UTF-16 unless told otherwise). A file's edits are
minimal, one ``TextEdit`` per changed hunk (``edge.edits``), so the lines between two changes are
never rewritten and the cursor, marks, folds and breakpoints on them stay where they are; they all
go in the file's one ``TextDocumentEdit`` (or its ``changes`` entry), in document order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote

from lsprotocol import types
from pygls.workspace import PositionCodec

from phasewise.edge.edits import minimal_edits
from phasewise.phases.edits import ChangeSet, FileChange
from phasewise.phases.index import WorkspaceIndex
from phasewise.phases.workspace import Workspace, uri_to_path
from phasewise.problems import Problem, ProblemKind

ANNOTATION_ID = "phasewise-code"
OpenDocs = Mapping[str, tuple[str, int | None]]  # uri → (text, version) of the editor's open documents


def _read_disk(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return "\0unreadable"


def stale_problem(changes: ChangeSet, open_docs: OpenDocs, read: Callable[[Path], str | None] = _read_disk,
                  *, provider: str | None = None, model: str | None = None) -> Problem | None:
    """``document-changed`` naming the first file of ``changes`` that moved on, else ``None``."""
    for f in changes.files:
        why = _moved(f, open_docs, read)
        if why is not None:
            return Problem(
                ProblemKind.DOCUMENT_CHANGED,
                f"{f.path} {why} while the code phase ran, so none of its change ({len(changes.files)} "
                f"file{'s' if len(changes.files) != 1 else ''}) was applied. Run it again.",
                phase="code", provider=provider, model=model,
            )
    return None


def _moved(f: FileChange, open_docs: OpenDocs, read: Callable[[Path], str | None]) -> str | None:
    # pygls files open documents under the URI with its percent-escapes decoded (edge.uris)
    opened = open_docs.get(f.uri) or open_docs.get(unquote(f.uri))
    if f.created:
        if opened is not None or read(uri_to_path(f.uri)) is not None:
            return "was created by someone else"
        return None
    if opened is not None:
        text, version = opened
        if f.version is not None and version is not None and version != f.version:
            return f"changed in the editor (version {f.version} → {version})"
        if text != f.before:
            return "changed in the editor"
        return None
    if read(uri_to_path(f.uri)) != f.before:
        return "changed on disk"
    return None


def minimal_text_edits(before: str, after: str,
                       encoding: str = types.PositionEncodingKind.Utf16) -> list[types.TextEdit]:
    """The ``TextEdit`` list turning ``before`` into ``after``, one per changed hunk, in document order
    and the ``encoding``'s position units."""
    return minimal_edits(PositionCodec(types.PositionEncodingKind(encoding)), before, after)


def _caps(capabilities: types.ClientCapabilities | None) -> types.WorkspaceEditClientCapabilities | None:
    ws = capabilities.workspace if capabilities else None
    return ws.workspace_edit if ws else None


def asks_confirmation(capabilities: types.ClientCapabilities | None, confirm: bool = True) -> bool:
    """Whether the edit will ask the editor to confirm it: ``confirm`` and a client that declares
    ``changeAnnotationSupport``."""
    caps = _caps(capabilities)
    return bool(confirm and caps and caps.change_annotation_support is not None)


def workspace_edit(changes: ChangeSet, capabilities: types.ClientCapabilities | None, *, confirm: bool = True,
                   label: str = "Phasewise code phase", description: str | None = None,
                   encoding: str = types.PositionEncodingKind.Utf16, provider: str | None = None,
                   model: str | None = None) -> types.WorkspaceEdit | Problem:
    """The ``WorkspaceEdit`` carrying every file of ``changes`` at once, or why the client cannot take it."""
    caps = _caps(capabilities)
    document_changes = bool(caps and caps.document_changes)
    creates = [f for f in changes.files if f.created]
    ops = set(caps.resource_operations or ()) if caps else set()
    if creates and (not document_changes or types.ResourceOperationKind.Create not in ops):
        names = ", ".join(f.path for f in creates)
        return Problem(
            ProblemKind.CAPABILITY,
            f"The change creates {names}, but this editor does not declare that it can create files in an "
            f"edit (workspace.workspaceEdit.resourceOperations \"create\"), so nothing was applied. Run it "
            f"from the command line (`phasewise code FILE`), or ask for the change without new files.",
            phase="code", provider=provider, model=model,
        )
    annotated = asks_confirmation(capabilities, confirm)
    annotation = ANNOTATION_ID if annotated else None
    edits_by_file = [(f, minimal_text_edits(f.before if not f.created else "", f.after, encoding))
                     for f in changes.files]
    if not document_changes:
        return types.WorkspaceEdit(changes={f.uri: list(edits) for f, edits in edits_by_file})
    out: list[types.TextDocumentEdit | types.CreateFile | types.RenameFile | types.DeleteFile] = []
    for f, edits in edits_by_file:
        if f.created:
            out.append(types.CreateFile(uri=f.uri, options=types.CreateFileOptions(overwrite=False,
                                                                                   ignore_if_exists=False),
                                        annotation_id=annotation))
        version = None if f.created else f.version
        out.append(types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=f.uri, version=version),
            edits=[types.AnnotatedTextEdit(range=e.range, new_text=e.new_text, annotation_id=annotation)
                   for e in edits] if annotation else list(edits),
        ))
    annotations = None
    if annotation:
        files = len(changes.files)
        annotations = {annotation: types.ChangeAnnotation(
            label=label, needs_confirmation=True,
            description=description or f"{files} file{'s' if files != 1 else ''}: "
                                       + ", ".join(f.path for f in changes.files),
        )}
    return types.WorkspaceEdit(document_changes=out, change_annotations=annotations)


def open_documents(text_documents: Mapping[str, object]) -> dict[str, tuple[str, int | None]]:
    """The editor's open documents (pygls ``workspace.text_documents``: uri → TextDocument) as
    ``OpenDocs`` for ``phases.context.Workspace`` and ``stale_problem``."""
    out: dict[str, tuple[str, int | None]] = {}
    for uri, doc in text_documents.items():
        source = getattr(doc, "source", None)
        if isinstance(source, str):
            out[uri] = (source, getattr(doc, "version", None))
    return out


async def apply_change_set(
    send: Callable[[types.ApplyWorkspaceEditParams], Awaitable[object]],
    changes: ChangeSet,
    open_docs: OpenDocs,
    capabilities: types.ClientCapabilities | None,
    *,
    confirm: bool = True,
    label: str = "Phasewise code phase",
    encoding: str = types.PositionEncodingKind.Utf16,
    provider: str | None = None,
    model: str | None = None,
    read: Callable[[Path], str | None] = _read_disk,
) -> Problem | None:
    """Check, build and send one ``workspace/applyEdit`` for the whole change; the problem if any file
    moved on, the client cannot take it, or it refused (then nothing was applied), else ``None``.
    ``send`` is the server's ``workspace_apply_edit_async``."""
    stale = stale_problem(changes, open_docs, read, provider=provider, model=model)
    if stale is not None:
        return stale
    edit = workspace_edit(changes, capabilities, confirm=confirm, label=label, encoding=encoding,
                          provider=provider, model=model)
    if isinstance(edit, Problem):
        return edit
    try:
        # a refactoring (LSP 3.18), to a client that declares metadataSupport: VS Code then saves the
        # files of a multi-file change, as after a rename (files.refactoring.autoSave), instead of
        # leaving the ones not open dirty in the background. Never unasked: Eglot 1.9 refuses an
        # applyEdit with a key it does not know.
        caps = _caps(capabilities)
        metadata = types.WorkspaceEditMetadata(is_refactoring=True) if caps and caps.metadata_support else None
        response = await send(types.ApplyWorkspaceEditParams(edit=edit, label=label, metadata=metadata))
    except Exception as exc:  # an editor without workspace/applyEdit, or one that answers with an error
        said = getattr(exc, "message", None) or type(exc).__name__
        reason = f"it answered workspace/applyEdit with an error ({said})"
    else:
        if getattr(response, "applied", False):
            return None
        reason = getattr(response, "failure_reason", None) or "the user declined it, or a document changed"
    return Problem(ProblemKind.DOCUMENT_CHANGED,
                   f"The editor did not apply the code phase's change ({provider}/{model}): {reason}. "
                   f"Nothing was applied.", phase="code", provider=provider, model=model)


def workspace_of(folder_uris: Iterable[str], text_documents: Mapping[str, object],
                 index: WorkspaceIndex | None = None) -> Workspace:
    """The core's ``Workspace`` for a phase: the client's workspace folders (``file:`` URIs; pygls
    ``workspace.folders`` values' ``uri``, else ``root_uri``) and its open documents, with the
    session's ``index`` of what is known of the files."""
    folders = [uri_to_path(u) for u in folder_uris if u.startswith("file:")]
    if index is None:
        return Workspace(folders, open_documents(text_documents))
    return Workspace(folders, open_documents(text_documents), index)
