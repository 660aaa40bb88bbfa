"""Where a document's lines went in a change: old line numbers mapped to new ones.

Findings stay on their lines (issue 23, item 9), so each change of a document maps the lines of
its text before to its text after, whatever the client sent (incremental changes or the whole
text): the common prefix and suffix are found by comparing the two texts in chunks (no split of
a 20,000-line document on a keystroke), and only the lines between them go through ``difflib``.
An edited line maps to its new text; lines replaced by a different number of lines map
proportionally into the new block; deleted lines map to nothing.

Pure text: knows nothing of LSP (the diagnostics book uses it).
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

_CHUNK = 4096
# Up to this many old × new middle lines, difflib looks at every line (no "popular line" junk
# heuristic, which would make blank lines unmatched); above, its cheaper default.
_EXACT_CELLS = 4_000_000


def _common_prefix(a: str, b: str) -> int:
    """The length of the common prefix of ``a`` and ``b``: chunk by chunk, then halving."""
    limit = min(len(a), len(b))
    i, step = 0, _CHUNK
    while i < limit:
        j = min(i + step, limit)
        if a[i:j] != b[i:j]:
            lo, hi = i, j  # the first difference is in [lo, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[lo:mid] == b[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        i, step = j, step * 2
    return limit


def _common_suffix(a: str, b: str, limit: int) -> int:
    """The length of the common suffix of ``a`` and ``b``, at most ``limit``."""
    la, lb = len(a), len(b)
    i, step = 0, _CHUNK
    while i < limit:
        j = min(i + step, limit)
        if a[la - j: la - i] != b[lb - j: lb - i]:
            lo, hi = i, j  # the suffix ends between lo and hi characters long
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[la - mid: la - lo] == b[lb - mid: lb - lo]:
                    lo = mid
                else:
                    hi = mid
            return lo
        i, step = j, step * 2
    return limit


@dataclass(frozen=True, slots=True)
class LineMap:
    """Old lines ``< head`` are unchanged; old lines ``head .. head+len(old)-1`` became the new
    lines ``head .. head+len(new)-1`` as ``blocks`` say; later ones moved by ``len(new)-len(old)``."""

    head: int
    old: list[str]  # the changed middle, before
    new: list[str]  # and after
    blocks: Sequence[tuple[str, int, int, int, int]]  # difflib opcodes over old and new
    starts: list[int]  # where each block starts in old

    @classmethod
    def between(cls, before: str, after: str) -> LineMap | None:
        """The map from ``before``'s lines to ``after``'s (lines split at ``\\n``); None when the
        texts are equal."""
        if before == after:
            return None
        p = _common_prefix(before, after)
        s = _common_suffix(before, after, min(len(before), len(after)) - p)
        start = before.rfind("\n", 0, p) + 1  # the first line that differs starts here, in both
        head = before.count("\n", 0, start)
        old = before[start: _middle_end(before, len(before) - s)].split("\n")
        new = after[start: _middle_end(after, len(after) - s)].split("\n")
        exact = len(old) * len(new) <= _EXACT_CELLS
        blocks = difflib.SequenceMatcher(None, old, new, autojunk=not exact).get_opcodes()
        return cls(head, old, new, blocks, [b[1] for b in blocks])

    @property
    def shift(self) -> int:
        return len(self.new) - len(self.old)

    def _line(self, k: int) -> tuple[int, int] | None:
        """Where old line ``k`` is now: the new lines ``(first, last)`` it became, None if deleted."""
        if k < self.head:
            return k, k
        i = k - self.head
        if i >= len(self.old):
            return k + self.shift, k + self.shift
        n = bisect.bisect_right(self.starts, i) - 1
        tag, i1, i2, j1, j2 = self.blocks[n]
        if tag == "equal":
            return self.head + j1 + i - i1, self.head + j1 + i - i1
        if tag == "delete" or j2 == j1:
            return None
        # replaced: its share of the new block (one line edited maps to its new text)
        first = j1 + (i - i1) * (j2 - j1) // (i2 - i1)
        last = j1 + -(-(i - i1 + 1) * (j2 - j1) // (i2 - i1)) - 1
        return self.head + first, self.head + max(first, last)

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """Where old lines ``start..end`` (inclusive) are now; None when all of them were deleted."""
        if end < self.head:
            return start, end
        if start >= self.head + len(self.old):
            return start + self.shift, end + self.shift
        found = [at for k in range(start, end + 1) if (at := self._line(k)) is not None]
        if not found:
            return None
        return found[0][0], found[-1][1]

    def touched(self, start: int, end: int) -> bool:
        """Whether any of old lines ``start..end`` changed, or lines came between them (not only moved)."""
        lo, hi = start - self.head, end - self.head
        return any(tag != "equal" and i1 <= hi and lo < i2 for tag, i1, i2, _, _ in self.blocks)

    def new_lines(self, start: int, end: int, old_start: int, old_lines: list[str]) -> list[str]:
        """The text of new lines ``start..end``, given the text ``old_lines`` of the old lines from
        ``old_start`` on (an unchanged line's text is taken from there)."""
        out = []
        for j in range(start, end + 1):
            if j < self.head:
                out.append(old_lines[j - old_start])
            elif j < self.head + len(self.new):
                out.append(self.new[j - self.head])
            else:
                out.append(old_lines[j - self.shift - old_start])
        return out


def _middle_end(text: str, suffix_at: int) -> int:
    """Where the changed middle ends: at the line end where the unchanged suffix's lines begin."""
    at = text.find("\n", suffix_at)
    return len(text) if at < 0 else at


__all__ = ["LineMap"]
