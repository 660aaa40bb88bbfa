"""Problems and findings as diagnostics, and the quick fixes that go with them.

Per document the book keeps one problem per phase (source ``phasewise``, code = kind, data = the
problem; a new one replaces the old), Information notes when a fallback served a phase, and each
phase's latest findings. Every change republishes the document's whole set.

Findings carry their phase (issue 23, item 8). The source names the phase that found them:
``phasewise-<phase>``, so the built-in review's are ``phasewise-review``, the qa phase's
``phasewise-qa``, and a review- or qa-kind phase of the user's own (``security``) shows as
``phasewise-security``. ``data`` carries ``phase``, ``id`` (unique in the session, what
``phasewise.dismissFinding {uri, id}`` takes), ``runId``, ``suggestion``, ``startLine`` and
``endLine``; no ``code`` (the client shows ``phasewise-review``, not ``phasewise-review(review)``).
A phase's findings on a file replace that phase's earlier findings there, and no other phase's.

Findings stay on their lines (item 9): on each change of the document its text before and after
are compared (``LineMap``, whether the client sent incremental changes or the whole text), and a
finding follows its lines as they move and as they are edited. It goes when its lines are
deleted, when they read as its suggestion (the suggestion applied, by the quick fix or by hand),
when the user dismisses it, or when its phase publishes findings on the file again.

What the user sees (issue 12):

- A provider problem is a **Warning** (a provider failure is not a fault in the user's code),
  at the range the command ran on (the whole range; line 1 of the file when there was none), its
  message starting with the phase (``plan: …``); fallback notes stay Information.
- Messages are plain text: Markdown backticks are taken out (the Problems panel and most
  clients show them literally); the problem's JSON in ``data`` keeps the words as they were.
- Problems track reality (``recheck``): when keys, settings or a document change, each offline
  problem (no key, settings, capability, window) is checked again by preflight, nothing sent,
  and cleared (or replaced by the one that holds now). A rate limit says when it lifts and, once
  that time has passed, turns into "you can retry now" (a timer on the loop).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.edge.line_map import LineMap
from phasewise.edge.uris import open_document
from phasewise.phases.documents import Finding, LineRange
from phasewise.problems import Problem

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

SOURCE = "phasewise"
FINDINGS_PREFIX = "phasewise-"  # findings' sources: phasewise-<phase>
REVIEW_SOURCE = "phasewise-review"  # the built-in review's findings
QA_SOURCE = "phasewise-qa"  # the qa phase's findings: where its checks failed
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
class Shown:
    """A finding the book shows now: its diagnostic (as published), phase and suggestion."""

    diag: types.Diagnostic
    id: str
    phase: str
    start: int
    end: int
    text: list[str]  # its lines as they read now
    suggestion: str | None


@dataclass(slots=True)
class _DocDiagnostics:
    problems: dict[str, _Problem] = field(default_factory=dict)
    notes: dict[str, types.Diagnostic] = field(default_factory=dict)
    findings: dict[str, list[Shown]] = field(default_factory=dict)  # by phase
    text: str | None = None  # the text the findings' lines are counted in (None: no findings)


def finding_source(phase: str) -> str:
    """The source of ``phase``'s findings: ``phasewise-review``, ``phasewise-security``."""
    return f"{FINDINGS_PREFIX}{phase}"


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
        self._ids = itertools.count(1)  # findings' ids, unique in the session
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
                     phase: str) -> None:
        """``phase``'s findings on ``uri`` (replacing that phase's earlier ones there), counted in
        ``lines`` (the text the phase read): moved onto the document as it reads now."""
        doc = self._doc(uri)
        read = "\n".join(lines)
        items = []
        for f in findings:
            rng = line_range(lines, f.start, f.end)
            start, end = rng.start.line, rng.end.line
            fid = f"{phase}.{next(self._ids)}"
            items.append(Shown(types.Diagnostic(
                range=self._lines_range(lines[start: end + 1], start),
                message=plain_text(f.message),
                severity=_SEVERITY.get(f.severity, types.DiagnosticSeverity.Warning),
                source=finding_source(phase),
                # no code: the client shows "phasewise-review", not "phasewise-review(review)"
                data={"phase": phase, "id": fid, "runId": run_id, "suggestion": f.suggestion,
                      "startLine": start, "endLine": end},
            ), fid, phase, start, end, lines[start: end + 1], f.suggestion))
        text_doc = open_document(self.ls.workspace, uri)
        now = text_doc.source if text_doc is not None else read
        if doc.text is not None:
            self._follow(doc, now)  # the other phases' findings, onto the same text
        doc.findings.pop(phase, None)
        if items:
            doc.findings[phase] = items
            if read != now:  # the document changed while the phase ran
                self._follow_items(doc, phase, LineMap.between(read, now))
        doc.text = now if any(doc.findings.values()) else None
        self.publish(uri)

    def finding(self, uri: str, fid: object) -> Shown | None:
        """The finding ``fid`` (its ``data.id``) if the book shows it now on ``uri``."""
        doc = self._docs.get(uri)
        if doc is None or not isinstance(fid, str):
            return None
        return next((f for items in doc.findings.values() for f in items if f.id == fid), None)

    def dismiss(self, uri: str, fid: str) -> bool:
        """Take the finding ``fid`` away (dismissed, or its suggestion applied); False when the
        book does not show it (any more)."""
        found = self.finding(uri, fid)
        if found is None:
            return False
        doc = self._doc(uri)
        doc.findings[found.phase] = [f for f in doc.findings[found.phase] if f is not found]
        if not doc.findings[found.phase]:
            del doc.findings[found.phase]
        if not doc.findings:
            doc.text = None
        self.publish(uri)
        return True

    def _lines_range(self, text: list[str], start: int) -> types.Range:
        """Whole lines ``text`` from line ``start`` on, in client units (only those lines are read)."""
        rng = self._client_range(text, line_range(text, 0, len(text) - 1))
        return types.Range(types.Position(start + rng.start.line, rng.start.character),
                           types.Position(start + rng.end.line, rng.end.character))

    def _follow(self, doc: _DocDiagnostics, text: str) -> bool:
        """Move every finding of ``doc`` from ``doc.text`` onto ``text``; whether any changed."""
        assert doc.text is not None
        lmap = LineMap.between(doc.text, text)
        doc.text = text
        changed = False
        for phase in list(doc.findings):
            changed = self._follow_items(doc, phase, lmap) or changed
        if not doc.findings:
            doc.text = None
        return changed

    def _follow_items(self, doc: _DocDiagnostics, phase: str, lmap: LineMap | None) -> bool:
        if lmap is None:
            return False
        kept: list[Shown] = []
        changed = False
        for f in doc.findings[phase]:
            at = lmap.span(f.start, f.end)
            touched = at is not None and lmap.touched(f.start, f.end)
            if at is not None and not touched and at[0] == f.start:
                kept.append(f)  # neither moved nor changed
                continue
            changed = True
            if at is None:
                continue  # its lines were deleted
            text = lmap.new_lines(at[0], at[1], f.start, f.text)
            if touched and f.suggestion is not None and text == f.suggestion.split("\n"):
                continue  # its lines read as its suggestion: applied
            f.start, f.end, f.text = at[0], at[1], text
            data = {**_data(f.diag), "startLine": f.start, "endLine": f.end}
            f.diag = types.Diagnostic(
                range=self._lines_range(text, f.start), message=f.diag.message, severity=f.diag.severity,
                source=f.diag.source, code=f.diag.code, data=data)
            kept.append(f)
        if kept:
            doc.findings[phase] = kept
        else:
            del doc.findings[phase]
        return changed

    # problems that go stale -----------------------------------------------------------------
    def document_changed(self, uri: str) -> None:
        """The document changed: its findings follow their lines (and go with them, or when they
        read as the suggestion); then the offline problems are checked again (a smaller range may
        now fit the window)."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        if doc.text is not None:
            text_doc = open_document(self.ls.workspace, uri)
            if text_doc is not None and self._follow(doc, text_doc.source):
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
        items = [*(e.diag for e in doc.problems.values()), *doc.notes.values(),
                 *(f.diag for found in doc.findings.values() for f in found)]
        text_doc = open_document(self.ls.workspace, uri)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=items,
                                           version=text_doc.version if text_doc else None)
        )


def too_large(ls: PhasewiseServer, phase: str, inp: Any) -> bool:
    """Whether what ``phase`` would send for ``inp`` is over ``MAX_DOCUMENT_CHARS``."""
    from phasewise.phases.documents import MAX_DOCUMENT_CHARS

    _, user, _, _ = ls.service.prepare(phase, inp)
    return len(user) > MAX_DOCUMENT_CHARS


def _data(diag: types.Diagnostic) -> dict[str, Any]:
    return diag.data if isinstance(diag.data, dict) else {}
