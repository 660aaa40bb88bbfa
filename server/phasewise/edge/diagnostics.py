"""Problems and review findings as diagnostics, and the quick fixes that go with them.

Per document the book keeps one problem per phase (source ``phasewise``, code = kind, data = the
problem), Information notes when a fallback served a phase, and the latest review findings
(source ``phasewise-review``). Every change republishes the document's whole set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.phases.documents import Finding
from phasewise.problems import Problem

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

SOURCE = "phasewise"
REVIEW_SOURCE = "phasewise-review"
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


@dataclass(slots=True)
class _DocDiagnostics:
    problems: dict[str, types.Diagnostic] = field(default_factory=dict)
    notes: dict[str, types.Diagnostic] = field(default_factory=dict)
    findings: list[types.Diagnostic] = field(default_factory=list)


def line_range(lines: list[str], start: int, end: int) -> types.Range:
    """Whole lines ``start..end`` (0-based, inclusive) in server units."""
    last = max(len(lines) - 1, 0)
    start, end = min(max(start, 0), last), min(max(end, start), last)
    return types.Range(types.Position(start, 0), types.Position(end, len(lines[end]) if lines else 0))


class DiagnosticsBook:
    def __init__(self, ls: PhasewiseServer) -> None:
        self.ls = ls
        self._docs: dict[str, _DocDiagnostics] = {}

    def _doc(self, uri: str) -> _DocDiagnostics:
        return self._docs.setdefault(uri, _DocDiagnostics())

    def _client_range(self, lines: list[str], rng: types.Range) -> types.Range:
        return self.ls.workspace.position_codec.range_to_client_units(lines, rng)

    def set_problem(self, uri: str, lines: list[str], problem: Problem, rng: types.Range) -> None:
        self._doc(uri).problems[problem.phase or "?"] = types.Diagnostic(
            range=self._client_range(lines, rng),
            message=problem.message,
            severity=types.DiagnosticSeverity.Error,
            source=SOURCE,
            code=str(problem.kind),
            data=problem.to_json(),
        )
        self.publish(uri)

    def clear_problem(self, uri: str, phase: str) -> None:
        doc = self._doc(uri)
        if doc.problems.pop(phase, None) is not None or doc.notes.pop(phase, None) is not None:
            self.publish(uri)

    def set_note(self, uri: str, lines: list[str], phase: str, message: str, rng: types.Range,
                 data: dict[str, Any]) -> None:
        self._doc(uri).notes[phase] = types.Diagnostic(
            range=self._client_range(lines, rng), message=message,
            severity=types.DiagnosticSeverity.Information, source=SOURCE, code="fallback", data=data,
        )
        self.publish(uri)

    def set_findings(self, uri: str, lines: list[str], findings: list[Finding], run_id: str) -> None:
        self._doc(uri).findings = [
            types.Diagnostic(
                range=self._client_range(lines, line_range(lines, f.start, f.end)),
                message=f.message,
                severity=_SEVERITY.get(f.severity, types.DiagnosticSeverity.Warning),
                source=REVIEW_SOURCE,
                code="review",
                data={"runId": run_id, "suggestion": f.suggestion, "startLine": f.start, "endLine": f.end},
            )
            for f in findings
        ]
        self.publish(uri)

    def drop_finding(self, uri: str, start: int) -> None:
        doc = self._doc(uri)
        doc.findings = [d for d in doc.findings if (d.data or {}).get("startLine") != start]
        self.publish(uri)

    def publish(self, uri: str) -> None:
        doc = self._doc(uri)
        items = [*doc.problems.values(), *doc.notes.values(), *doc.findings]
        text_doc = self.ls.workspace.text_documents.get(uri)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=items,
                                           version=text_doc.version if text_doc else None)
        )
