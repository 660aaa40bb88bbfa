"""Results a client without a Phasewise plugin can see: Markdown files opened with ``showDocument``.

Helix, Vim, Kate, Sublime and Zed reach the server through code actions and standard requests
only: the reply of ``workspace/executeCommand`` is dropped and ``phasewise/streamText`` is
unknown to them. When such a client has not said it is a Phasewise plugin (which shows plans
itself), a plan is written to ``.phasewise/plans/<file>-<phase>.md`` in the document's workspace
folder (or the folder ``phasewise.plansDirectory`` names, which must lie inside it) and shown with
``window/showDocument``, or, for a client that cannot open documents (ALE), named in a
``window/showMessage``. The file goes through the workspace's path gate (``phasewise.gate``): a
directory outside the workspace, or a file the repository made a link out of it, is not written
and a warning says which and why. A document outside every workspace folder is not written anywhere.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from phasewise.edge.requests import ClientSilent, ask_client
from phasewise.gate import PathGate, PathRefused

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseResult

log = logging.getLogger("phasewise")
PLANS_DIR = Path(".phasewise") / "plans"
SHOW_SECONDS = 10.0  # how long the editor may take to open a document before the file is named instead


def wants_documents(ls: PhasewiseServer) -> bool:
    """Whether results should be written as documents: the client has no plugin (which shows plans
    itself). A client that cannot open them (ALE, no ``showDocument``) is told where they are."""
    return ls.client_plugin() is None


def _opens_documents(ls: PhasewiseServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.show_document and window.show_document.support)


def workspace_folder(ls: PhasewiseServer, uri: str) -> Path | None:
    """The workspace folder holding ``uri`` (the deepest one), or None."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if path is None:
        return None
    target = Path(path).resolve()
    best: Path | None = None
    roots = [to_fs_path(f.uri) for f in ls.workspace.folders.values()] or [ls.workspace.root_path]
    for root in roots:  # a client that sends only rootUri: that is the one folder
        if root is None:
            continue
        base = Path(root).resolve()
        if target.is_relative_to(base) and (best is None or len(base.parts) > len(best.parts)):
            best = base
    root = ls.workspace.root_path  # a client that sends rootUri only (ALE): its one folder
    if best is None and not ls.workspace.folders and root and target.is_relative_to(Path(root).resolve()):
        best = Path(root).resolve()
    return best


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "document"


def plan_markdown(doc: Document, phase: str, instruction: str, result: PhaseResult, setting_note: str = "") -> str:
    served = f"{result.provider}/{result.model}" if result.provider else "unrouted"
    head = [f"# Phasewise {phase}: {Path(doc.path).name}", "",
            f"- instruction: {instruction.strip() or '(none)'}",
            f"- served by: {served}" + (" (a fallback)" if result.fallback_used else ""),
            f"- run: `{result.run_id}`", ""]
    if setting_note:
        head += [f"> {setting_note}", ""]
    if result.note:  # e.g. cut at the output limit: what to do about it, before the text it is about
        head += [f"> {result.note}", ""]
    elif result.incomplete:
        head += ["> The answer stopped part-way; what arrived is below.", ""]
    return "\n".join(head) + result.text.rstrip() + "\n"


async def show_markdown(ls: PhasewiseServer, folder: Path, name: str, text: str, directory: str | None) -> str | None:
    """Write ``text`` to ``<folder>/<directory or .phasewise/plans>/<name>`` (through the path gate)
    and ask the client to show it; the file's URI, or None when it could not be written or shown."""
    gate = PathGate.of([folder])
    path = folder / (directory or PLANS_DIR) / name
    try:
        target_dir = gate.check(directory or PLANS_DIR, base=folder,
                                setting="phasewise.plansDirectory" if directory else None)
        path = gate.check(target_dir / name)
        gate.write_text(path, text)
    except PathRefused as refused:
        _warn(ls, f"Phasewise did not write the {name} document: {refused}")
        return None
    except OSError as exc:
        ls.log_line(f"Phasewise could not write {path}: {exc.strerror or exc}")
        return None
    uri = from_fs_path(str(path)) or path.as_uri()
    if not _opens_documents(ls):
        where = path.relative_to(folder) if path.is_relative_to(folder) else path
        message = f"Phasewise: wrote {where}"
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=message))
        return uri
    try:
        shown = await ask_client(ls, "window/showDocument", ls.window_show_document_async(
            types.ShowDocumentParams(uri=uri, take_focus=True)), SHOW_SECONDS)
    except ClientSilent as silent:  # the file is still there: say where
        shown = None
        log.warning("%s", silent)
    if not getattr(shown, "success", False):
        where = path.relative_to(folder) if path.is_relative_to(folder) else path
        ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Info, message=f"Phasewise: wrote {where} (the editor did not open it)"))
    return uri


async def show_plan(ls: PhasewiseServer, doc: Document, phase: str, instruction: str, result: PhaseResult,
                    directory: str | None) -> str | None:
    """A plan-kind result as a Markdown file beside the workspace, shown; its URI (None: not shown).
    A ``plansDirectory`` outside the workspace is a settings warning, and the default folder is used."""
    folder = workspace_folder(ls, doc.uri)
    if folder is None or not result.text.strip():
        return None
    note = ""
    if directory:
        try:
            PathGate.of([folder]).check(directory, base=folder, setting="phasewise.plansDirectory")
        except PathRefused as refused:
            note = f"{refused}; the plan was written to {PLANS_DIR.as_posix()} instead."
            _warn(ls, f"Phasewise settings: {note}")
            directory = None
    name = f"{_slug(Path(doc.path).name)}-{_slug(phase)}.md"
    return await show_markdown(ls, folder, name, plan_markdown(doc, phase, instruction, result, note), directory)


def _warn(ls: PhasewiseServer, message: str) -> None:
    """A warning the user sees (plain text: no Markdown backticks in a notification), and the log's copy."""
    ls.log_line(message)
    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=message.replace("`", "")))
