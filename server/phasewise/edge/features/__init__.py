"""The language server's features, one class each (``edge.feature.Feature``), wired by ``edge.setup``."""
