"""Phasewise: one language server that routes each phase of work to its own model and provider.

The package flows in one direction, visible in its folders:
``edge`` (LSP) → ``phases`` → ``router`` → ``providers``. Only ``edge`` knows LSP.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
