"""Problems and review findings as diagnostics, and the quick fixes that go with them.

Per document the book keeps one problem per phase (source ``phasewise``, code = kind, data = the
problem; a new one replaces the old), Information notes when a fallback served a phase, and the
latest review findings (source ``phasewise-review``). Every change republishes the document's
whole set.

What the user sees (issue 12):

- A provider problem is a **Warning** (a provider failure is not a fault in the user's code),
  at the range the command ran on (the whole range; line 1 of the file when there was none), its
  message starting with the phase (``plan: …``); fallback notes stay Information.
- Messages are plain text: Markdown backticks are taken out (the Problems panel and most
  clients show them literally); the problem's JSON in ``data`` keeps the words as they were.
- Problems track reality (``recheck``): when keys, settings or a document change, each offline
  problem (no key, settings, capability, window) is checked again by preflight, nothing sent,
  and cleared (or replaced by the one that holds now); a review finding goes when its lines
  changed (its suggestion applied, or edited by hand) and follows its lines when they moved. A
  rate limit says when it lifts and, once that time has passed, turns into "you can retry now"
  (a timer on the loop).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.edge.uris import open_document
from phasewise.phases.documents import Finding, LineRange
from phasewise.problems import Problem

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

SOURCE = "phasewise"
REVIEW_SOURCE = "phasewise-review"
QA_SOURCE = "phasewise-qa"  # a qa-kind phase's findings: where its checks failed
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}
# Problems preflight can tell again offline, from settings, keys and the document alone.
OFFLINE_KINDS = frozenset({"missing-credentials", "config", "capability", "context-length"})
LIFTED = "lifted"  # data["lifted"]: the rate limit's time has passed


def plain_text(message: str) -> str:
    """A message without Markdown code marks (for the Problems panel and notifications)."""
    return message.replace("`", "")


@dataclass(slots=True)
class _Problem:
    diag: types.Diagnostic
    problem: Problem
    range: LineRange | None  # the command's range (None: the whole document)
    timer: asyncio.TimerHandle | None = None
    shown: list[dict[str, Any]] = field(default_factory=list)  # every ``data`` published for it


@dataclass(slots=True)
class _Finding:
    diag: types.Diagnostic
    start: int
    end: int
    text: list[str]  # the finding's lines as they were when it was published


@dataclass(slots=True)
class _DocDiagnostics:
    problems: dict[str, _Problem] = field(default_factory=dict)
    notes: dict[str, types.Diagnostic] = field(default_factory=dict)
    findings: list[_Finding] = field(default_factory=list)


def line_range(lines: list[str], start: int, end: int) -> types.Range:
    """Whole lines ``start..end`` (0-based, inclusive) in server units."""
    last = max(len(lines) - 1, 0)
    start, end = min(max(start, 0), last), min(max(end, start), last)
    return types.Range(types.Position(start, 0), types.Position(end, len(lines[end]) if lines else 0))


def problem_range(lines: list[str], rng: LineRange | None) -> types.Range:
    """Where a phase's problem goes: the whole range the command ran on, else line 1."""
    if rng is None:
        return line_range(lines, 0, 0)
    return line_range(lines, rng.start, rng.end)


def _prefixed(phase: str, message: str) -> str:
    text = plain_text(message)
    return text if text.startswith(f"{phase}: ") else f"{phase}: {text}"


def _seconds_until(iso: str | None, now: Callable[[], datetime]) -> float | None:
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return None
    current = now()
    if at.tzinfo is None:
        at = at.replace(tzinfo=current.tzinfo)
    return (at - current).total_seconds()


class DiagnosticsBook:
    def __init__(self, ls: PhasewiseServer) -> None:
        self.ls = ls
        self._docs: dict[str, _DocDiagnostics] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The wall clock a rate limit's ``retryAt`` is compared with (tests may move it on).
        self.now: Callable[[], datetime] = lambda: datetime.now().astimezone()

    def _doc(self, uri: str) -> _DocDiagnostics:
        return self._docs.setdefault(uri, _DocDiagnostics())

    def _client_range(self, lines: list[str], rng: types.Range) -> types.Range:
        return self.ls.workspace.position_codec.range_to_client_units(lines, rng)

    # problems ------------------------------------------------------------------------------
    def set_problem(self, uri: str, lines: list[str], problem: Problem, rng: types.Range | LineRange | None,
                    ) -> None:
        """The phase's problem on ``uri`` (replacing the phase's earlier one), as a Warning.

        ``rng`` is the command's line range (a ``LineRange``, or None for the whole document);
        an LSP range is still taken as it is."""
        phase = problem.phase or "?"
        line_rng = rng if isinstance(rng, LineRange) else None
        where = rng if isinstance(rng, types.Range) else problem_range(lines, line_rng)
        data = problem.to_json()
        doc = self._doc(uri)
        self._stop_timer(doc.problems.pop(phase, None))
        entry = _Problem(types.Diagnostic(
            range=self._client_range(lines, where),
            message=_prefixed(phase, problem.message),
            severity=types.DiagnosticSeverity.Warning,
            source=SOURCE,
            code=str(problem.kind),
            data=data,
        ), problem, line_rng, shown=[data])
        doc.problems[phase] = entry
        self._arm_lift(uri, phase, entry)
        self.publish(uri)

    def clear_problem(self, uri: str, phase: str) -> None:
        doc = self._doc(uri)
        entry = doc.problems.pop(phase, None)
        self._stop_timer(entry)
        if entry is not None or doc.notes.pop(phase, None) is not None:
            self.publish(uri)

    def saved(self, uri: str) -> None:
        """The document was saved: a "the document changed while the phase ran" problem is over
        (the user has the document as they want it; the phase can simply be run again)."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        for phase in [p for p, e in doc.problems.items() if str(e.problem.kind) == "document-changed"]:
            self.clear_problem(uri, phase)

    def problem_of(self, uri: str, phase: str) -> dict[str, Any] | None:
        """The problem (JSON) the document now shows for ``phase``, if any."""
        entry = self._doc(uri).problems.get(phase)
        return entry.diag.data if entry is not None else None

    def is_current(self, uri: str, diag: types.Diagnostic) -> bool:
        """Whether ``diag`` (as a client sent it back) is one the book shows now: a replaced or
        cleared problem gets no quick fixes."""
        data = diag.data if isinstance(diag.data, dict) else {}
        entry = self._doc(uri).problems.get(str(data.get("phase") or "?"))
        return entry is not None and data in entry.shown

    @staticmethod
    def _stop_timer(entry: _Problem | None) -> None:
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _arm_lift(self, uri: str, phase: str, entry: _Problem) -> None:
        """For a rate limit that said when it lifts: at that time, "you can retry now"."""
        if entry.problem.kind != "rate-limit" or _data(entry.diag).get(LIFTED):
            return
        # retryAt is whole seconds; the wait the provider asked for, from now, is the precise one
        left = entry.problem.retry_after_seconds
        if left is None:
            left = _seconds_until(entry.problem.retry_at, self.now)
        if left is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        entry.timer = loop.call_later(max(0.0, left), self.lift, uri, phase)

    def lift(self, uri: str, phase: str) -> None:
        """The rate limit behind ``phase``'s problem has lifted: say so, and that a retry works now."""
        doc = self._doc(uri)
        entry = doc.problems.get(phase)
        if entry is None or entry.problem.kind != "rate-limit":
            return
        entry.timer = None
        p = entry.problem
        at = (p.retry_at or "")[11:19]
        who = f"{p.provider}/{p.model}" if p.provider else "the provider"
        since = f" at {at}" if at else ""
        data = {**_data(entry.diag), LIFTED: True}
        data.pop("retryAfterSeconds", None)
        entry.diag = types.Diagnostic(
            range=entry.diag.range,
            message=f"{phase}: the rate limit on {who} lifted{since}: you can retry now.",
            severity=types.DiagnosticSeverity.Information, source=SOURCE, code=entry.diag.code, data=data,
        )
        entry.shown.append(data)
        self.publish(uri)

    # notes and findings -----------------------------------------------------------------------
    def set_note(self, uri: str, lines: list[str], phase: str, message: str, rng: types.Range,
                 data: dict[str, Any]) -> None:
        self._doc(uri).notes[phase] = types.Diagnostic(
            range=self._client_range(lines, rng), message=_prefixed(phase, message),
            severity=types.DiagnosticSeverity.Information, source=SOURCE, code="fallback", data=data,
        )
        self.publish(uri)

    def set_findings(self, uri: str, lines: list[str], findings: list[Finding], run_id: str,
                     source: str = REVIEW_SOURCE) -> None:
        items = []
        for f in findings:
            rng = line_range(lines, f.start, f.end)
            items.append(_Finding(types.Diagnostic(
                range=self._client_range(lines, rng),
                message=plain_text(f.message),
                severity=_SEVERITY.get(f.severity, types.DiagnosticSeverity.Warning),
                source=source,
                # no code: the client shows "phasewise-review", not "phasewise-review(review)"
                data={"runId": run_id, "suggestion": f.suggestion, "startLine": f.start, "endLine": f.end},
            ), rng.start.line, rng.end.line, lines[rng.start.line: rng.end.line + 1]))
        self._doc(uri).findings = items
        self.publish(uri)

    def drop_finding(self, uri: str, start: int) -> None:
        doc = self._doc(uri)
        doc.findings = [f for f in doc.findings if f.start != start]
        self.publish(uri)

    # problems that go stale -----------------------------------------------------------------
    def document_changed(self, uri: str) -> None:
        """The document changed: findings whose lines changed go (their suggestion was applied,
        or the code was edited), findings whose lines only moved follow them; then the offline
        problems are checked again (a smaller range may now fit the window)."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        text_doc = open_document(self.ls.workspace, uri)
        if text_doc is None:
            return
        lines = text_doc.source.split("\n")  # as ``Document.lines``: without line ends
        kept: list[_Finding] = []
        moved = False
        for f in doc.findings:
            at = _find_lines(lines, f.text, f.start)
            if at is None:
                continue
            if at != f.start:
                moved = True
                shift = at - f.start
                f.start, f.end = at, f.end + shift
                data = {**_data(f.diag), "startLine": f.start, "endLine": f.end}
                f.diag = types.Diagnostic(
                    range=self._client_range(lines, line_range(lines, f.start, f.end)), message=f.diag.message,
                    severity=f.diag.severity, source=f.diag.source, code=f.diag.code, data=data)
            kept.append(f)
        changed = moved or len(kept) != len(doc.findings)
        doc.findings = kept
        if changed:
            self.publish(uri)
        if any(str(e.problem.kind) in OFFLINE_KINDS for e in doc.problems.values()):
            self.recheck_soon(uri)

    def recheck_soon(self, uri: str | None = None) -> None:
        """``recheck`` of one document (None: every document) as a task of its own."""
        try:
            task = asyncio.get_running_loop().create_task(self.recheck(uri))
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recheck(self, uri: str | None = None) -> None:
        """Check every offline problem again (preflight: no network, nothing sent) and clear
        those that no longer hold, or show the one that holds now instead."""
        from phasewise.edge.commands import CommandError
        from phasewise.phases.documents import Document
        from phasewise.phases.service import PhaseInput

        for doc_uri in [uri] if uri is not None else list(self._docs):
            doc = self._docs.get(doc_uri)
            if doc is None or (not doc.problems and not doc.notes):
                continue
            loaded = await self.ls.settings_for(doc_uri)
            names = set(self.ls.engine.resolver(loaded).phase_names())
            for phase in [p for p in (*doc.problems, *doc.notes) if p not in names]:
                self.clear_problem(doc_uri, phase)  # a phase the settings no longer have: its problem goes
            stale = {phase: e for phase, e in doc.problems.items() if str(e.problem.kind) in OFFLINE_KINDS}
            if not stale:
                continue
            try:
                text_doc = self.ls.document(doc_uri)
            except CommandError:
                text_doc = Document(doc_uri, "")
            for phase, entry in stale.items():
                if doc.problems.get(phase) is not entry:
                    continue  # replaced while the settings were read
                inp = PhaseInput(text_doc, "recheck", entry.range)
                now = self.ls.service.preflight(loaded, phase, inp)
                if now is None and str(entry.problem.kind) == "context-length" and too_large(self.ls, phase, inp):
                    continue  # still over what Phasewise sends at once (a check of the run, not preflight)
                if now is None:
                    self.clear_problem(doc_uri, phase)
                elif (str(now.kind), now.message) != (str(entry.problem.kind), entry.problem.message):
                    self.set_problem(doc_uri, text_doc.lines, now, entry.range)

    def publish(self, uri: str) -> None:
        doc = self._doc(uri)
        items = [*(e.diag for e in doc.problems.values()), *doc.notes.values(), *(f.diag for f in doc.findings)]
        text_doc = open_document(self.ls.workspace, uri)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=items,
                                           version=text_doc.version if text_doc else None)
        )


_BLANK = re.compile(r"\s*")


def too_large(ls: PhasewiseServer, phase: str, inp: Any) -> bool:
    """Whether what ``phase`` would send for ``inp`` is over ``MAX_DOCUMENT_CHARS``."""
    from phasewise.phases.documents import MAX_DOCUMENT_CHARS

    _, user, _, _ = ls.service.prepare(phase, inp)
    return len(user) > MAX_DOCUMENT_CHARS


def _data(diag: types.Diagnostic) -> dict[str, Any]:
    return diag.data if isinstance(diag.data, dict) else {}


def _find_lines(lines: list[str], want: list[str], near: int) -> int | None:
    """Where the lines ``want`` are now: at ``near`` if unchanged, else the closest place they
    appear whole; None when they are nowhere (changed)."""
    n = len(want)
    if not n:
        return None
    if lines[near: near + n] == want:
        return near
    if all(_BLANK.fullmatch(w) for w in want):
        return None  # blank lines are everywhere: no telling where they went
    places = [i for i in range(len(lines) - n + 1) if lines[i] == want[0] and lines[i: i + n] == want]
    return min(places, key=lambda i: abs(i - near)) if places else None
