"""Issue 23, item 19: the server's stderr carries warnings and errors only unless asked for more.

Editors file a language server's stderr as errors (Neovim's ``lsp.log`` marks every line
``[ERROR]``), so routine INFO lines go to ``window/logMessage`` alone; ``PHASEWISE_LOG_LEVEL``
brings them back to stderr.
"""

from __future__ import annotations

import logging

import pytest

from phasewise.edge.stdio import LOG_LEVEL_ENV, log_level


@pytest.mark.parametrize(("value", "level"), [
    (None, logging.WARNING), ("", logging.WARNING), ("INFO", logging.INFO), ("debug", logging.DEBUG),
    (" error ", logging.ERROR), ("chatty", logging.WARNING),
])
def test_log_level_from_the_environment(value: str | None, level: int) -> None:
    assert log_level({} if value is None else {LOG_LEVEL_ENV: value}) == level
