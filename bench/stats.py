"""Small statistics for benchmark samples: medians and nearest-rank percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pct(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank: with few samples p99 is the maximum."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def p50(samples: Sequence[float]) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def p99(samples: Sequence[float]) -> float:
    return pct(samples, 99)


def rnd(value: float | None, digits: int = 3) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(value, digits)
