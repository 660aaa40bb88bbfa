"""How many tokens a text makes, estimated offline: the one estimator Phasewise has.

It sizes the related files a phase sends (``phases.context``), what is left of a model's window for
them (``phases.service``), whether a prompt prefix is long enough for a cache mark, and whether a
prompt fits a model's window (``router``). About four characters a token for code and English,
rounded up; a check that must not under-count asks for fewer characters a token. Providers'
tokenizers differ: the estimate only decides budgets and checks, never what is billed (providers
report that). A leaf: imports nothing of Phasewise.
"""

from __future__ import annotations

from typing import Final

CHARS_PER_TOKEN: Final = 4


def estimate_tokens(text: str | int, *, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    """About how many tokens ``text`` (or that many characters) makes, rounded up."""
    chars = text if isinstance(text, int) else len(text)
    return -(-chars // chars_per_token)
