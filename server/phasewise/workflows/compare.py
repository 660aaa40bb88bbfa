"""One phase on several models at once, reported side by side.

Every model runs concurrently on the same input with its own route (no fallbacks, so a row shows
that model and no other). A model that fails is a row with its problem, never an abort. Nothing
is applied: a code-phase comparison shows each model's diff. The report renders as Markdown
(a file to keep or share) and as JSON; the command line also draws it as a terminal table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService, new_run_id
from phasewise.problems import Problem, ProblemKind
from phasewise.router.router import NullObserver, Observer
from phasewise.serial import Jsonable, json_property
from phasewise.settings import LoadedSettings, with_phase_model


@dataclass(slots=True)
class CompareRow(Jsonable):
    model: str  # the reference as asked, "provider/model"
    result: PhaseResult

    @json_property
    def outcome(self) -> str:
        if self.result.ok:
            return "ok"
        return str(self.result.error.kind) if self.result.error else "error"


@dataclass(slots=True)
class CompareReport(Jsonable):
    phase: str
    instruction: str
    document: str
    run_id: str
    rows: list[CompareRow] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @json_property
    def ok(self) -> bool:
        return any(r.result.ok for r in self.rows)

    def to_markdown(self) -> str:
        return compare_markdown(self)


ObserverFactory = Callable[[str], Observer]  # model reference → observer


def report_dir(ledger: Path) -> Path:
    """Where comparison reports go by default: ``compare/`` beside the run record."""
    return ledger.parent / "compare"


def write_report(report: CompareReport, ledger: Path, path: Path | None = None) -> Path:
    """Write the Markdown report (to ``path``, else beside the run record) and return where."""
    target = path or report_dir(ledger) / f"{report.phase}-{report.run_id}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report.to_markdown(), encoding="utf-8")
    return target


async def compare(service: PhaseService, loaded: LoadedSettings, phase: str, models: list[str],
                  inp: PhaseInput, *, observer_for: ObserverFactory | None = None) -> CompareReport:
    """Run ``phase`` on every model in ``models`` concurrently; one row per model, in order."""
    run_id = inp.run_id or new_run_id()
    report = CompareReport(phase, inp.instruction, inp.document.path, run_id)
    one = PhaseInput(inp.document, inp.instruction, inp.range, inp.plan, inp.change, run_id,
                     users_words=inp.users_words)

    async def run(model: str) -> PhaseResult:
        observer = observer_for(model) if observer_for else NullObserver()
        try:
            return await service.run(with_phase_model(loaded, phase, model), phase, one, observer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one model's crash is its row, not the comparison's end
            return PhaseResult(ok=False, run_id=run_id, phase=phase, error=Problem(
                ProblemKind.SERVER_ERROR, f"The {phase} phase on {model} failed unexpectedly: "
                f"{type(exc).__name__}. The other models' rows are unaffected.", phase=phase))

    results = await asyncio.gather(*(run(m) for m in models))
    report.rows = [CompareRow(m, r) for m, r in zip(models, results, strict=True)]
    return report


def _ms(value: float | None) -> str:
    return "–" if value is None else (f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms")


def _cost(value: float | None) -> str:
    return "–" if value is None else f"${value:.4f}" if value >= 0.0001 or value == 0 else f"${value:.6f}"


def summary_rows(report: CompareReport) -> list[list[str]]:
    """One row of cells per model: model, served by, outcome, first token, total, tokens, cost."""
    out = []
    for row in report.rows:
        r = row.result
        served = f"{r.provider}/{r.model}" if r.provider else "–"
        if not r.sent:  # stopped before any request: no times or tokens to show (the contract)
            out.append([row.model, served, row.outcome, "nothing sent", "–", "–", "–"])
            continue
        out.append([row.model, served, row.outcome, _ms(r.first_token_ms), _ms(r.total_ms),
                    f"{r.input_tokens} / {r.output_tokens}", _cost(r.cost_usd)])
    return out


SUMMARY_HEADERS = ["model", "served by", "outcome", "first token", "total", "tokens in / out", "cost"]


def output_text(result: PhaseResult) -> str:
    """A model's output as text: the answer, plus the diff (code) or the findings (review)."""
    if result.error is not None and not result.ok:
        return f"{result.error.kind}: {result.error.message}"
    parts = [result.text.strip()] if result.text.strip() else []
    if result.note:  # e.g. cut at the output limit: the comparison is not of whole answers
        parts.append(f"({result.note})")
    if result.diff:
        parts.append(result.diff.rstrip())
    if result.findings:
        parts.append("\n".join(f"line {f.start + 1} [{f.severity}] {f.message}" for f in result.findings))
    return "\n\n".join(parts) or "(empty)"


def _cells(row: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |"


def compare_markdown(report: CompareReport) -> str:
    cells = _cells
    lines = [
        f"# Phasewise comparison: {report.phase} phase",
        "",
        f"- document: `{report.document}`",
        f"- instruction: {report.instruction or '(none)'}",
        f"- run: `{report.run_id}` at {report.started}",
        "",
        cells(SUMMARY_HEADERS),
        cells(["---"] * len(SUMMARY_HEADERS)),
        *(cells(row) for row in summary_rows(report)),
        "",
    ]
    if report.phase == "review":
        lines += _findings_matrix(report)
    lines += ["## Outputs", ""]
    for row in report.rows:
        result = row.result
        lines += [f"### {row.model} ({row.outcome})", ""]
        if not result.ok and result.error is not None:
            lines += [f"> {result.error.kind}: {result.error.message}", ""]
            continue
        if result.text.strip():
            lines += [result.text.strip(), ""]
        if result.note:
            lines += [f"> {result.note}", ""]
        if result.diff:
            lines += ["```diff", result.diff.rstrip(), "```", ""]
        if result.findings:
            lines += [f"- line {f.start + 1} **{f.severity}**: {f.message}" for f in result.findings]
            lines.append("")
    return "\n".join(lines)


def _findings_matrix(report: CompareReport) -> list[str]:
    """Review findings side by side: one row per line, one column per model."""
    ok_rows = [r for r in report.rows if r.result.ok]
    if not ok_rows:
        return []
    by_line: dict[int, dict[str, list[str]]] = {}
    for row in ok_rows:
        for f in row.result.findings:
            by_line.setdefault(f.start + 1, {}).setdefault(row.model, []).append(f.severity)
    if not by_line:
        return []
    header = ["line", *(r.model for r in ok_rows)]
    lines = ["## Findings side by side", "", "| " + " | ".join(header) + " |",
             "| " + " | ".join(["---"] * len(header)) + " |"]
    for line_no in sorted(by_line):
        found = by_line[line_no]
        lines.append("| " + " | ".join([str(line_no), *(", ".join(found.get(r.model, [])) or "–"
                                                          for r in ok_rows)]) + " |")
    return [*lines, ""]
