"""Where a SEARCH block's lines are in a file: exactly, then tolerating what models get wrong
(trailing whitespace, uniform indentation drift, a stray blank line, a copied line-number gutter:
the prompt's ``N| `` or the agent's ``read_file``'s ``N<tab>``, ``...`` elision), the ideas of
aider's ``editblock_coder`` reimplemented. A block that matches nothing or more than one place is
not applied; ``similar_lines`` finds what the model probably meant, for the repair prompt."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from phasewise.phases.documents import LineRange

_GUTTER = re.compile(r"^\s*\d+(?:\| ?|\t)")  # the prompt's `  12| `, read_file's `12<tab>`


@dataclass(frozen=True, slots=True)
class _Match:
    start: int  # first line replaced
    stop: int  # one past the last line replaced
    replace: list[str]


def _find(hay: list[str], needle: list[str]) -> list[int]:
    """Where ``needle`` stands in ``hay`` (both already normalised the same way); C-speed first-line jumps."""
    n = len(needle)
    if n == 0 or n > len(hay):
        return []
    first, rest, last = needle[0], needle[1:], len(hay) - n
    out: list[int] = []
    i = -1
    while True:
        try:
            i = hay.index(first, i + 1, last + 1)
        except ValueError:
            return out
        if hay[i + 1 : i + n] == rest:
            out.append(i)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindented(hay: list[str], stripped: list[str], search: list[str],
                replace: list[str]) -> tuple[list[_Match], str]:
    """Matches where the block is uniformly indented differently; the replacement takes the file's indent."""
    widths = [len(_indent(s)) for s in search + replace if s.strip()]
    cut = min(widths) if widths else 0
    s_lines = [s[cut:] if s.strip() else "" for s in search]
    r_lines = [s[cut:] if s.strip() else s for s in replace]
    found: list[_Match] = []
    for i in _find(stripped, [x.strip() for x in s_lines]):
        adds = {hay[i + k][: len(hay[i + k].rstrip()) - len(s_lines[k].rstrip())]
                for k in range(len(s_lines)) if s_lines[k].strip()}
        if len(adds) != 1:
            continue
        add = adds.pop()
        if add.strip():
            continue
        found.append(_Match(i, i + len(s_lines), [add + r if r.strip() else r for r in r_lines]))
    return found, "different indentation"


def _candidates(search: list[str], replace: list[str]) -> list[tuple[list[str], list[str]]]:
    out = [(search, replace)]
    if len(search) > 1 and not search[0].strip():
        out.append((search[1:], replace))
    nonblank = [s for s in search if s.strip()]
    if nonblank and all(_GUTTER.match(s) for s in nonblank):
        def cut(x: list[str]) -> list[str]:
            return [_GUTTER.sub("", s, count=1) for s in x]
        out.append((cut(search), cut(replace) if all(_GUTTER.match(r) for r in replace if r.strip()) else replace))
    return out


def match_block(text: str, search: str, replace: str,
                window: LineRange | None = None) -> list[str] | str:
    """``text`` with ``search`` replaced once (as lines), or why it cannot be (a reason)."""
    return match_lines(text.split("\n"), search, replace, window)


def match_lines(hay: list[str], search: str, replace: str,
                window: LineRange | None = None) -> list[str] | str:
    """``match_block`` on a text already split into lines."""
    lo, hi = (window.start, window.end + 1) if window else (0, len(hay))
    part = hay[lo:hi]
    s_lines = search.split("\n")
    r_lines = replace.split("\n") if replace != "" else []
    rstripped: list[str] | None = None
    stripped: list[str] | None = None
    for s, r in _candidates(s_lines, r_lines):
        for tier in ("exact", "rstrip"):
            if tier == "exact":
                hits = _find(part, s)
            else:
                rstripped = rstripped if rstripped is not None else [x.rstrip() for x in part]
                hits = _find(rstripped, [x.rstrip() for x in s])
            if len(hits) == 1:
                i = hits[0] + lo
                return hay[:i] + r + hay[i + len(s):]
            if len(hits) > 1:
                return f"its SEARCH section matches {len(hits)} places (lines " + \
                    ", ".join(str(h + lo + 1) for h in hits[:5]) + "); include more lines to make it unique"
        stripped = stripped if stripped is not None else [x.strip() for x in part]
        matches, _ = _reindented(part, stripped, s, r)
        if len(matches) == 1:
            m = matches[0]
            return hay[: m.start + lo] + m.replace + hay[m.stop + lo:]
        if len(matches) > 1:
            return f"its SEARCH section matches {len(matches)} places; include more lines to make it unique"
    return "its SEARCH section matches no lines of the file"


def has_dots(text: str) -> bool:
    return any(line.strip() == "..." for line in text.split("\n"))


def _pieces(text: str) -> list[str]:
    out: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip() == "...":
            out.append([])
        else:
            out[-1].append(line)
    return ["\n".join(p) for p in out]


def match_elided(hay: list[str], search: str, replace: str, window: LineRange | None) -> list[str] | str | None:
    """A block whose SEARCH and REPLACE skip the same unchanged lines with ``...`` lines (as models do):
    each piece between them replaced once, in order. None when the ``...`` lines do not pair up."""
    s_parts, r_parts = _pieces(search), _pieces(replace)
    if len(s_parts) != len(r_parts):
        return "its SEARCH and REPLACE sections skip lines with `...` a different number of times"
    lines = hay
    for s_part, r_part in zip(s_parts, r_parts, strict=True):
        if not s_part.strip():
            if r_part.strip():
                return "a `...` in it leaves new lines with no place to go"
            continue
        got = match_lines(lines, s_part, r_part, window if lines is hay else None)
        if isinstance(got, str):
            return got
        lines = got
    return lines


def similar_lines(search: str, text: str, limit_lines: int = 20_000) -> str:
    """The lines of ``text`` most like ``search`` (for the repair prompt), or ``""``."""
    s = search.split("\n")
    hay = text.split("\n")[:limit_lines]
    if not s or len(s) > len(hay):
        return ""
    firsts = {x.strip() for x in s if x.strip()}
    best, best_i = 0.0, -1
    for i in range(len(hay) - len(s) + 1):
        if not any(hay[i + k].strip() in firsts for k in range(min(len(s), 3))) and len(hay) > 2000:
            continue
        ratio = difflib.SequenceMatcher(None, s, hay[i : i + len(s)]).ratio()
        if ratio > best:
            best, best_i = ratio, i
    if best < 0.5 or best_i < 0:
        return ""
    return "\n".join(hay[best_i : best_i + len(s)])


