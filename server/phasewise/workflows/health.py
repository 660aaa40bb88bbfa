"""Provider health, from the run record: what each provider and model did with recent requests.

Per provider and model: requests sent (every attempt the router made, retries and fallbacks
included; attempts stopped before sending and answers from Phasewise's own cache are not
requests), success rate, failures by kind, p50/p95 time to first token and total time of the
successful requests, and the last failure with when it happened. A route that failed most of its
``RECENT`` latest requests (at least ``MIN_RECENT`` of them) is *flagged*, with the fallbacks the
settings give the phases it serves, so a user knows where their runs will go instead.
Shown by ``phasewise history --stats``, a section of ``phasewise doctor`` and ``health`` in
``phasewise.status``. Reads only the tail of the ledger (``TAIL_BYTES``); for the status, which
editors ask often, a ``LedgerTail`` per file keeps the last ``STATUS_LINES`` lines in memory,
reads only what was appended since (the ledger is append only) and keeps the figures until the
ledger changes, so a status stays cheap.
May not import: edge.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasewise.router.routes import RouteResolver
from phasewise.serial import Jsonable, json_property, json_rule
from phasewise.workflows.ledger import parse_lines

RECENT = 10
MIN_RECENT = 3
TAIL_BYTES = 4 * 1024 * 1024
STATUS_LINES = 500


class LedgerTail:
    """The last ``keep`` lines of one append-only ledger, read incrementally."""

    def __init__(self, path: Path, keep: int = STATUS_LINES) -> None:
        self.path = path
        self.lines: deque[dict[str, Any]] = deque(maxlen=keep)
        self.offset = 0
        self.lock = threading.Lock()
        self._rows: tuple[int, list[dict[str, Any]]] | None = None

    def route_rows(self) -> list[dict[str, Any]]:
        """``route_health`` of the lines read so far as JSON (no fallbacks), computed once per
        change of the ledger."""
        lines = self.read()
        with self.lock:
            if self._rows is None or self._rows[0] != self.offset:
                self._rows = (self.offset, [h.to_json() for h in route_health(lines)])
            return self._rows[1]

    def behind(self) -> int:
        """Bytes appended since the last read (0 when unknown)."""
        try:
            return max(0, self.path.stat().st_size - self.offset)
        except OSError:
            return 0

    def read(self) -> list[dict[str, Any]]:
        with self.lock:
            try:
                size = self.path.stat().st_size
            except OSError:
                self.lines.clear()
                self.offset = 0
                return []
            if size < self.offset:  # truncated or replaced: start again
                self.lines.clear()
                self.offset = 0
            if size > self.offset:
                start = max(self.offset, size - TAIL_BYTES)
                try:
                    with self.path.open("rb") as f:
                        f.seek(start)
                        raw = f.read(size - start)
                except OSError:
                    return list(self.lines)
                end = raw.rfind(b"\n") + 1  # a line still being written is read next time
                texts = raw[:end].decode("utf-8", "replace").splitlines()
                if start > self.offset and texts:
                    texts = texts[1:]  # skipped ahead into the middle of a line
                self.lines.extend(parse_lines(texts))
                self.offset = start + end
            return list(self.lines)


_TAILS: dict[Path, LedgerTail] = {}
_TAILS_LOCK = threading.Lock()


def ledger_tail(path: Path) -> LedgerTail:
    with _TAILS_LOCK:
        tail = _TAILS.get(path)
        if tail is None:
            tail = _TAILS[path] = LedgerTail(path)
        return tail


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The ledger's last lines (at most ``max_bytes`` of it), oldest first; torn lines skipped."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            start = max(0, size - max_bytes)
            f.seek(start)
            raw = f.read()
    except OSError:
        return []
    lines = raw.decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # cut through the middle of a line
    return parse_lines(lines)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _timing(values: list[float]) -> dict[str, float | None]:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    return {"p50": round(p50, 1) if p50 is not None else None, "p95": round(p95, 1) if p95 is not None else None}


def _most_first(failures: dict[str, int]) -> dict[str, int]:
    return dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(slots=True)
class RouteHealth(Jsonable):
    provider: str
    model: str
    requests: int = 0
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict, metadata=json_rule(encode=_most_first))
    first_token_ms: list[float] = field(default_factory=list, metadata=json_rule(encode=_timing))
    total_ms: list[float] = field(default_factory=list, metadata=json_rule(encode=_timing))
    last_failure: dict[str, Any] | None = None
    outcomes: list[bool] = field(default_factory=list, metadata=json_rule(skip=True))  # True = ok, oldest first
    fallbacks: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    @json_property(round=4)
    def success_rate(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    @property
    def recent(self) -> list[bool]:
        return self.outcomes[-RECENT:]

    @json_property
    def flagged(self) -> bool:
        recent = self.recent
        return len(recent) >= MIN_RECENT and recent.count(False) * 2 > len(recent)

    @json_property(key="recent")
    def recent_view(self) -> dict[str, int]:
        return {"requests": len(self.recent), "failed": self.recent.count(False)}


def route_health(lines: Iterable[Mapping[str, Any]],
                 fallbacks: Mapping[str, Sequence[str]] | None = None) -> list[RouteHealth]:
    """Health of every provider/model the ledger lines name, most requests first."""
    found: dict[tuple[str, str], RouteHealth] = {}
    for line in lines:
        if line.get("cached"):
            continue
        attempts = line.get("attempts")
        if not isinstance(attempts, list):
            continue
        served = (line.get("provider"), line.get("model"))
        error = line.get("error") if isinstance(line.get("error"), Mapping) else None
        last_sent = max((i for i, a in enumerate(attempts) if isinstance(a, Mapping) and a.get("sent") is not False),
                        default=-1)
        for index, attempt in enumerate(attempts):
            if not isinstance(attempt, Mapping) or attempt.get("sent") is False:
                continue
            provider, model = attempt.get("provider"), attempt.get("model")
            if not isinstance(provider, str) or not isinstance(model, str):
                continue
            h = found.get((provider, model))
            if h is None:
                h = found[(provider, model)] = RouteHealth(provider, model)
            h.requests += 1
            outcome = str(attempt.get("outcome") or "error")
            latency = attempt.get("latencyMs")
            if outcome == "ok":
                h.ok += 1
                h.outcomes.append(True)
                if isinstance(latency, int | float):
                    h.total_ms.append(float(latency))
                ttft = line.get("firstTokenMs")
                if (provider, model) == served and isinstance(ttft, int | float):
                    h.first_token_ms.append(float(ttft))
                continue
            h.failures[outcome] = h.failures.get(outcome, 0) + 1
            h.outcomes.append(False)
            last: dict[str, Any] = {"kind": outcome, "time": line.get("time"), "phase": line.get("phase")}
            if isinstance(attempt.get("status"), int):
                last["status"] = attempt["status"]
            # the line's problem is the last sent attempt's when that attempt ended the phase
            if error is not None and index == last_sent and error.get("kind") == outcome:
                last["message"] = str(error.get("message") or "")[:500]
            h.last_failure = last
    for h in found.values():
        h.fallbacks = list((fallbacks or {}).get(h.label, ()))
    return sorted(found.values(), key=lambda h: (-h.requests, h.label))


def fallback_map(resolver: RouteResolver) -> dict[str, list[str]]:
    """route label → the fallbacks of the phases it serves as main route, in settings order."""
    out: dict[str, list[str]] = {}
    for phase in resolver.phase_names():
        pr = resolver.phase(phase)
        if pr.main is None:
            continue
        names = out.setdefault(pr.main.label, [])
        for route in pr.routes[1:]:
            if route.label not in names and route.label != pr.main.label:
                names.append(route.label)
    return out


def _report(rows: Iterable[Mapping[str, Any]], fallbacks: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    routes = [{**row, "fallbacks": list(fallbacks.get(f"{row['provider']}/{row['model']}", ()))} for row in rows]
    return {
        "window": RECENT,
        "routes": routes,
        "flagged": [{"route": f"{r['provider']}/{r['model']}", "recentFailed": r["recent"]["failed"],
                     "recentRequests": r["recent"]["requests"], "fallbacks": r["fallbacks"]}
                    for r in routes if r["flagged"]],
    }


def health_report(lines: Iterable[Mapping[str, Any]], resolver: RouteResolver | None = None) -> dict[str, Any]:
    """The ``health`` object of ``phasewise.status`` and ``phasewise history --stats --json``."""
    rows = [h.to_json() for h in route_health(lines)]
    return _report(rows, fallback_map(resolver) if resolver is not None else {})


def health_for_status(ledger: Path, resolver: RouteResolver) -> dict[str, Any]:
    """``health`` for ``phasewise.status``: the report from the tail of ``ledger``, its figures
    computed once per change of the ledger."""
    report = _report(ledger_tail(ledger).route_rows(), fallback_map(resolver))
    report["ledger"] = str(ledger)
    return report


async def health_status(ledger: Path, resolver: RouteResolver) -> dict[str, Any]:
    """``health_for_status`` for the LSP edge: in the event loop when nothing was appended since
    the last status (the usual case: the figures are kept, well under a millisecond), on a worker
    thread when they must be computed again."""
    if ledger_tail(ledger).behind() > 0:
        import asyncio

        return await asyncio.to_thread(health_for_status, ledger, resolver)
    return health_for_status(ledger, resolver)


def flagged_note(route: Mapping[str, Any]) -> str:
    """One line on a flagged route, for terminals and editors."""
    fallbacks = route.get("fallbacks") or []
    where = (f"runs fall back to {', '.join(fallbacks)}" if fallbacks
             else "no fallback is set for the phases it serves")
    return (f"{route.get('route')} failed {route.get('recentFailed')} of its last {route.get('recentRequests')} "
            f"requests; {where}")
