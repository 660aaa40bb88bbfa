"""The language server's features, one class each (``edge.feature.Feature``), wired by ``edge.setup``.

May import the rest of ``edge``, ``workflows`` and every layer below it.
"""
