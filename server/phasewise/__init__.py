"""Phasewise: one language server that routes each phase of work to its own model and provider.

The package flows in one direction, visible in its folders; each imports only from those after it
(``pyproject.toml``, checked by ``lint-imports``): ``cli`` → ``edge`` (LSP) → ``workflows`` →
``phases`` → ``router`` → ``settings``, ``keystore`` → ``providers`` → ``gate`` → ``problems`` →
``serial``, ``tool_names``. Only ``edge`` knows LSP. ``sim``, the offline fake provider, sits beside
``edge`` and imports ``serial`` and ``tool_names`` only.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
