"""Open documents by the URI a client sent, percent-escapes and all (issue 12).

pygls files open documents under the URI with its percent-escapes decoded (``unquote``), so a
lookup by the URI as sent (``file:///my%20m%C3%B3dulo.py``) finds nothing: the document looked
closed, an edit to it looked like a changed document. Every lookup goes through here.
"""

from __future__ import annotations

from urllib.parse import unquote

from pygls.workspace import TextDocument, Workspace


def open_document(workspace: Workspace, uri: str) -> TextDocument | None:
    """The open document at ``uri`` (as the client sent it), or None."""
    return workspace.text_documents.get(unquote(uri))
