"""Changes as LSP edits: the minimal ``TextEdit`` list, one edit per changed hunk, that turn a document's
text into a new text, so what lies between two changes (marks, folds, breakpoints, the cursor)
is never rewritten."""

from __future__ import annotations

import bisect
import difflib
from collections import Counter
from collections.abc import Callable, Sequence

from lsprotocol import types
from pygls.workspace import PositionCodec


def _common_length(old: str, new: str, limit: int, end: Callable[[str, int], str]) -> int:
    """Length of the longest common end (``end`` cuts a prefix or a suffix), by bisection:
    string comparisons run in C, a character loop in Python blocked the loop 26 ms on 200 KB."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if end(old, mid) == end(new, mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _lines(text: str) -> list[str]:
    """``text`` cut after each ``\\n`` (a CRLF line keeps its pair whole): joined, they give ``text``."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


# A stretch with no line unique on both sides goes to difflib only up to this many line pairs (its
# matcher is quadratic on repeated lines, see bench/RESULTS.md); a larger one is one hunk.
_MATCHER_PAIRS = 40_000


def patience_anchors(a: Sequence[str], b: Sequence[str], alo: int, ahi: int, blo: int, bhi: int,
                     ) -> list[tuple[int, int]]:
    """Patience diff's anchors: the longest run, in order on both sides, of lines that occur once in
    ``a[alo:ahi]`` and once in ``b[blo:bhi]``."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    in_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1}
    pairs = [(i, in_b[a[i]]) for i in range(alo, ahi) if count_a[a[i]] == 1 and a[i] in in_b]
    positions = [j for _, j in pairs]
    if positions == sorted(positions):
        return pairs  # nothing moved: all of them (the usual case, and sorting runs in C)
    # longest increasing run of the b positions (patience sorting), then walked back
    tops: list[int] = []
    top_pair: list[int] = []
    back: list[int] = []
    for k, (_, j) in enumerate(pairs):
        at = bisect.bisect_left(tops, j)
        back.append(top_pair[at - 1] if at else -1)
        if at == len(tops):
            tops.append(j)
            top_pair.append(k)
        else:
            tops[at], top_pair[at] = j, k
    out = []
    k = top_pair[-1] if top_pair else -1
    while k >= 0:
        out.append(pairs[k])
        k = back[k]
    return out[::-1]


def _line_hunks(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """``(i1, i2, j1, j2)``: ``a[i1:i2]`` becomes ``b[j1:j2]``, in order, at least one equal line
    apart. Patience diff (common ends, then lines unique on both sides as anchors, then the
    stretches between them), ``difflib`` where no line is unique: near linear on sparse changes."""
    hunks: list[tuple[int, int, int, int]] = []
    todo = [(0, len(a), 0, len(b))]
    while todo:
        alo, ahi, blo, bhi = todo.pop()
        while alo < ahi and blo < bhi and a[alo] == b[blo]:
            alo, blo = alo + 1, blo + 1
        while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
            ahi, bhi = ahi - 1, bhi - 1
        if alo == ahi or blo == bhi:
            if alo < ahi or blo < bhi:
                hunks.append((alo, ahi, blo, bhi))
            continue
        anchors = patience_anchors(a, b, alo, ahi, blo, bhi)
        if anchors:
            stretches = []
            for i, j in anchors:
                if i > alo or j > blo:
                    stretches.append((alo, i, blo, j))
                alo, blo = i + 1, j + 1
            stretches.append((alo, ahi, blo, bhi))
            todo.extend(reversed(stretches))  # popped first to last: hunks come out in order
        elif (ahi - alo) * (bhi - blo) <= _MATCHER_PAIRS:
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
            hunks.extend((alo + i1, alo + i2, blo + j1, blo + j2)
                         for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")
        else:
            hunks.append((alo, ahi, blo, bhi))
    return hunks


def _hunks(old: str, new: str) -> list[tuple[int, int, int, str]]:
    """``(line, start, end, text)`` per changed hunk, in document order: replace ``old[start:end]``
    (which begins at the start of 0-based ``line``) by ``text``. Hunks are whole lines apart."""
    a, b = _lines(old), _lines(new)
    starts = [0]
    for line in a:
        starts.append(starts[-1] + len(line))
    return [(i1, starts[i1], starts[i2], "".join(b[j1:j2])) for i1, i2, j1, j2 in _line_hunks(a, b)]


def _trimmed(old: str, start: int, end: int, text: str) -> tuple[int, int, str]:
    """A hunk narrowed to the characters that change (its common prefix and suffix kept), never
    ending or starting between the two characters of a CRLF pair."""
    chunk = old[start:end]
    limit = min(len(chunk), len(text))
    a = _common_length(chunk, text, limit, lambda s, n: s[:n])
    if a > 0 and old[start + a - 1] == "\r" and old[start + a : start + a + 1] == "\n":
        a -= 1
    b = _common_length(chunk, text, limit - a, lambda s, n: s[len(s) - n :])
    if b > 0 and old[end - b - 1 : end - b] == "\r" and old[end - b] == "\n":
        b -= 1
    return start + a, end - b, text[a : len(text) - b]


def _position(old: str, line: int, start: int, offset: int) -> types.Position:
    """Where ``offset`` of ``old`` is, in characters, counted from ``start``, the start of ``line``
    (not from the top: a file of many hunks is not scanned again for each)."""
    newline = old.rfind("\n", start, offset)
    return types.Position(line + old.count("\n", start, offset), offset - (newline + 1 if newline >= 0 else start))


def minimal_edits(codec: PositionCodec, old: str, new: str) -> list[types.TextEdit]:
    """The TextEdits turning ``old`` into ``new``: one per changed hunk of lines, each cut to the
    characters that change, non-overlapping and in document order, in the client's position
    units (``codec``). None when the texts are equal."""
    if old == new:
        return []
    lines = old.split("\n")
    edits = []
    for line, start, end, text in _hunks(old, new):
        begin, stop, new_text = _trimmed(old, start, end, text)
        rng = types.Range(_position(old, line, start, begin), _position(old, line, start, stop))
        edits.append(types.TextEdit(range=codec.range_to_client_units(lines, rng), new_text=new_text))
    return edits
