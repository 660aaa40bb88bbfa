"""Where a document's lines went in a change: old line numbers mapped to new ones.

Findings stay on their lines (issue 23, item 9), so each change of a document maps the lines of
its text before to its text after, whatever the client sent (incremental changes or the whole
text). The common prefix and suffix are found by comparing the two texts in chunks (no split of
a 20,000-line document on a keystroke); only the lines between them are diffed: with ``difflib``
when they are few, else first anchored on the lines found once in each text (patience diff: a
formatter's whole-text answer changes lines all over, and ``difflib`` on 20,000 lines takes most
of a second), ``difflib`` between the anchors. An edited line maps to its new text; lines replaced
by a different number of lines map proportionally into the new block (two lines joined into one
both map to it; a line deleted right beside an edited one, in one change, maps to the edited one
too); deleted lines map to nothing.

Pure text: knows nothing of LSP (the diagnostics book uses it).
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from phasewise.edge.edits import patience_anchors

_CHUNK = 4096
# Up to this many old × new lines, difflib looks at every line (no "popular line" junk heuristic,
# which would leave blank lines unmatched); above, the lines are anchored on unique lines first.
_DIFFLIB_CELLS = 250_000
Block = tuple[str, int, int, int, int]  # a difflib opcode: tag, old i1..i2, new j1..j2


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
    blocks: Sequence[Block]  # difflib opcodes over old and new
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
        blocks = _blocks(old, new, 0, 0)
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
        first = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        for tag, i1, i2, _, _ in self.blocks[first:]:
            if i1 > hi:
                return False
            if tag != "equal" and lo < i2:
                return True
        return False

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


def _blocks(old: list[str], new: list[str], i0: int, j0: int) -> list[Block]:
    """The opcodes turning ``old`` into ``new``, their line numbers offset by ``i0`` and ``j0``."""
    if not old or not new:
        return [("insert" if new else "delete", i0, i0 + len(old), j0, j0 + len(new))] if old or new else []
    if len(old) * len(new) <= _DIFFLIB_CELLS:
        ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
        return [(tag, i1 + i0, i2 + i0, j1 + j0, j2 + j0) for tag, i1, i2, j1, j2 in ops]
    anchors = patience_anchors(old, new, 0, len(old), 0, len(new))
    if not anchors:  # nothing to hold on to: one block replaced by the other
        return [("replace", i0, i0 + len(old), j0, j0 + len(new))]
    out: list[Block] = []
    i, j = 0, 0
    for a, b in [*anchors, (len(old), len(new))]:
        if a > i or b > j:
            out += _blocks(old[i:a], new[j:b], i0 + i, j0 + j)
        if a < len(old):
            if out and out[-1][0] == "equal" and out[-1][2] == i0 + a:  # runs of anchors: one block
                out[-1] = ("equal", out[-1][1], i0 + a + 1, out[-1][3], j0 + b + 1)
            else:
                out.append(("equal", i0 + a, i0 + a + 1, j0 + b, j0 + b + 1))
        i, j = a + 1, b + 1
    return out


def _middle_end(text: str, suffix_at: int) -> int:
    """Where the changed middle ends: at the line end where the unchanged suffix's lines begin."""
    at = text.find("\n", suffix_at)
    return len(text) if at < 0 else at


__all__ = ["LineMap"]
