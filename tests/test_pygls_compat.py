"""The private pygls names the edge relies on (``edge/_pygls_compat.py``) are still what they were.

pygls is pinned to one minor version; this fails loudly, naming what changed, when an upgrade
moves one of them, instead of the server breaking in some quieter way."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

from phasewise.edge import _pygls_compat
from phasewise.edge.setup import create_server

EDGE = Path(_pygls_compat.__file__).resolve().parent


def test_the_private_pygls_names_used_are_unchanged() -> None:
    from pygls.lsp.client import LanguageClient

    ls = create_server()
    assert _pygls_compat.check_private_signatures(ls.protocol) == []
    client = LanguageClient("probe", "1")
    for attr in _pygls_compat.CLIENT_PRIVATE_ATTRIBUTES:
        assert hasattr(client, attr), f"pygls LanguageClient().{attr} is gone"
    assert _pygls_compat.client_process(client) is None  # before start_io
    assert metadata.version("pygls").startswith("2.1."), metadata.version("pygls")


def test_no_other_edge_module_uses_a_private_pygls_name() -> None:
    """Every ``_name`` reached on a pygls object or imported from pygls lives in the compat module."""
    private = set(_pygls_compat.PRIVATE_SIGNATURES) | set(_pygls_compat.PRIVATE_ATTRIBUTES)
    offenders = []
    for path in sorted(EDGE.rglob("*.py")):
        if path.name == "_pygls_compat.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pygls"):
                offenders += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offenders == []
