"""Terminal output for the command line: rich tables, and a live progress display for long runs.

Everything here only draws values the workflows produced; ``--json`` bypasses it entirely.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from phasewise.phases.service import PhaseResult
from phasewise.problems import Problem
from phasewise.workflows.compare import SUMMARY_HEADERS, CompareReport, output_text, summary_rows
from phasewise.workflows.discovery import Discovery
from phasewise.workflows.doctor import DoctorReport
from phasewise.workflows.ledger import RunSummary
from phasewise.workflows.runs import RunOutcome

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "information": "cyan", "hint": "dim"}
_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "fail": "bold red"}


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:.4f}" if value >= 0.0001 or value == 0 else f"${value:.6f}"


def tokens_cell(tokens_in: int, tokens_out: int, read: int = 0, write: int = 0) -> str:
    """``in/out``, with the provider's prompt-cache reads and writes among those in."""
    cell = f"{tokens_in}/{tokens_out}"
    if read or write:
        cell += f" (cache {read} read" + (f", {write} written)" if write else ")")
    return cell


def outcome(result: PhaseResult | dict[str, Any]) -> Text:
    if isinstance(result, dict):
        kind = result.get("result") or "?"
    else:
        kind = "ok" if result.ok else (str(result.error.kind) if result.error else "error")
    return Text(kind, style="green" if kind == "ok" else "bold red")


# ----------------------------------------------------------------------------- phases and runs

def phases_table(results: Sequence[PhaseResult], protocols: dict[str, str | None], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("phase")
    table.add_column("served by", overflow="fold")
    table.add_column("protocol")
    table.add_column("outcome")
    for header in ("first token", "total", "tokens in/out", "cost"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in results:
        served = f"{r.provider}/{r.model}" if r.provider else "–"
        result = outcome(r)
        if len(r.attempts) > 1:
            result.append(f" ({len(r.attempts)} attempts)", style="dim")
        if r.ok and r.incomplete:
            result.append(" (cut at the output limit)", style="yellow")
        if r.cached:
            result.append(" (cached answer)", style="dim")
        elif not r.sent:  # stopped before any request: no time, tokens or cost to show
            result.append(" (nothing sent)", style="dim")
            table.add_row(r.phase, served, protocols.get(r.phase) or "–", result, "–", "–", "–", "–")
            continue
        table.add_row(r.phase, served, protocols.get(r.phase) or "–", result, ms(r.first_token_ms),
                      ms(r.total_ms), tokens_cell(r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                                  r.cache_write_tokens), usd(r.cost_usd))
    return table


def findings_table(result: PhaseResult, file: str | None = None) -> Table:
    return review_table([f.to_json() for f in result.findings], file)


def review_table(findings: Sequence[Mapping[str, Any]], file: str | None = None,
                 title: str = "Review findings") -> Table:
    """Findings (as JSON: ``startLine``, ``endLine``, ``severity``, ``message``, ``path``) one a row.
    When any is on another file of the change (its ``path``), a file column says which file each
    line is in: such a finding is never listed among the reviewed file's lines."""
    table = Table(title=f"{title} ({len(findings)})", title_justify="left")
    other_files = any(f.get("path") for f in findings)
    if other_files:
        table.add_column("file")
    table.add_column("line", justify="right")
    table.add_column("severity")
    table.add_column("finding")
    for f in findings:
        start = int(f.get("startLine") or 0)
        end = int(f.get("endLine") or start)
        severity = str(f.get("severity"))
        row: list[str | Text] = [str(start + 1) if end == start else f"{start + 1}-{end + 1}",
                                 Text(severity, style=_SEVERITY_STYLE.get(severity, "")), str(f.get("message"))]
        if other_files:
            row.insert(0, str(f.get("path") or file or "(the file reviewed)"))
        table.add_row(*row)
    return table


def steps_table(title: str, steps: Sequence[Mapping[str, Any]]) -> Table | None:
    """A phase that worked in steps (its result's ``steps``, as JSON): each tool call, what it did,
    how long it took; None when it made none."""
    if not steps:
        return None
    table = Table(title=f"{title} ({len(steps)} tool calls)", title_justify="left", box=box.SIMPLE)
    for name in ("step", "tool", "what", "ms"):
        table.add_column(name, justify="right" if name in ("step", "ms") else "left")
    for data in steps:
        mark = "" if data.get("ok") else "[red]✗[/] "
        what = str(data.get("summary") or "").removeprefix(f"{data.get('tool')} ")
        table.add_row(str(data.get("step")), str(data.get("tool")), f"{mark}{what}",
                      f"{float(data.get('ms') or 0):.0f}")
    return table


def phase_details(console: Console, result: PhaseResult, file: str | None = None) -> None:
    """The phase's own output: the steps it took, the plan, the diff, or the findings (``file``: the
    one worked on, naming its findings beside another file's); the problem if it failed."""
    if (steps := steps_table(f"{result.phase}: its steps", [s.to_json() for s in result.steps])) is not None:
        console.print(steps)
    if not result.ok and result.error is not None:
        console.print(Panel(result.error.message, title=f"{result.phase}: {result.error.kind}",
                            border_style="red", title_align="left"))
        if result.phase != "code" or not result.diff:
            return
    if (result.kind or result.phase) == "code":
        if result.diff:
            console.print(Panel(Syntax(result.diff.rstrip(), "diff", theme="ansi_dark", word_wrap=True),
                                title=f"code: {result.text or 'the change'}", title_align="left"))
        else:
            console.print(Panel(result.text or "no change", title="code: no change", title_align="left"))
    elif (result.kind or result.phase) in ("review", "qa"):
        if result.passed is not None:
            ran = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'failed'}" for c in result.checks) or "no command"
            console.print(f"[bold {'green' if result.passed else 'red'}]{result.phase}: "
                          f"{'passed' if result.passed else 'failed'}[/] ({ran})")
        console.print(result.text)
        if result.findings:
            console.print(findings_table(result, file))
    elif result.text:
        console.print(Panel(result.text.rstrip(), title=f"{result.phase}", title_align="left"))
    if result.ok and result.note:  # an ok result the user should know more about (cut, a bound reached)
        console.print(Text(result.note, style="yellow"))


def run_summary(console: Console, outcome_: RunOutcome, protocols: dict[str, str | None], *,
                dry_run: bool, path: str) -> None:
    for r in outcome_.results:
        phase_details(console, r, os.path.basename(path))
    console.print(phases_table(outcome_.results, protocols, f"Run {outcome_.run_id}"))
    cost = usd(outcome_.cost_usd)
    saved = [r.saved_usd for r in outcome_.results if r.saved_usd is not None]
    if saved:
        cost += f" ({usd(sum(saved))} saved by the providers' prompt caches)"
    if outcome_.ok:
        wrote = "not written (--dry-run)" if dry_run else f"written to {path}"
        console.print(f"[green]plan → code → review done[/] in {ms(outcome_.total_ms)}, cost {cost}; change {wrote}.")
    else:
        console.print(f"[bold red]The run stopped at the {outcome_.stopped_at} phase[/]; earlier phases' "
                      f"results are above (cost so far {cost}).")


# ----------------------------------------------------------------------------- history

def history_table(runs: Sequence[RunSummary]) -> Table:
    table = Table(title="Recent runs (newest first)", title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("run", no_wrap=True)
    table.add_column("phase")
    table.add_column("served by", overflow="fold")
    table.add_column("result")
    for header in ("first token", "total", "tokens in/out", "cost", "saved"):
        table.add_column(header, justify="right", no_wrap=True)
    for run in runs:
        for index, p in enumerate(run.phases):
            result = outcome(p)
            if p.get("cached"):
                result.append(" (cached)", style="dim")
            table.add_row(run.time[5:16].replace("T", " ") if index == 0 else "",
                          run.run_id if index == 0 else "", str(p.get("phase") or "?"),
                          f"{p.get('provider') or '?'}/{p.get('model') or '?'}", result,
                          ms(p.get("firstTokenMs")), ms(p.get("totalMs")),
                          tokens_cell(int(p.get("inputTokens") or 0), int(p.get("outputTokens") or 0),
                                      int(p.get("cacheReadTokens") or 0), int(p.get("cacheWriteTokens") or 0)),
                          usd(p.get("costUsd")), usd(p.get("savedUsd")))
        if len(run.phases) > 1:
            table.add_row("", "", Text("run", style="bold"), "", Text("ok" if run.ok else "failed",
                          style="green" if run.ok else "red"), "", ms(run.total_ms), "",
                          Text(usd(run.cost_usd), style="bold"), Text(usd(run.saved_usd), style="bold"),
                          end_section=True)
        else:
            table.add_section()
    return table


def health_table(health: dict[str, Any], title: str = "Provider health (from the run record)") -> Table:
    """``workflows.health``'s report: one row per provider and model."""
    from phasewise.workflows.health import flagged_note

    table = Table(title=title, title_justify="left")
    for header in ("provider/model", "requests", "success", "failures", "first token p50/p95", "total p50/p95",
                   "last failure"):
        table.add_column(header, justify="right" if header in {"requests", "success"} else "left")
    flagged = {f["route"]: f for f in health.get("flagged") or ()}
    for r in health.get("routes") or ():
        label = f"{r['provider']}/{r['model']}"
        rate = r.get("successRate")
        success = Text(f"{rate * 100:.0f} %" if rate is not None else "–",
                       style="bold red" if label in flagged else ("green" if rate == 1 else "yellow"))
        failures = ", ".join(f"{k} {n}" for k, n in (r.get("failures") or {}).items()) or "–"
        ttft, total = r.get("firstTokenMs") or {}, r.get("totalMs") or {}
        last = r.get("lastFailure")
        last_text = f"{last.get('kind')} at {str(last.get('time') or '?')[:19].replace('T', ' ')}" if last else "–"
        name = Text(label, style="bold red" if label in flagged else "")
        if label in flagged:
            name.append("  FLAGGED", style="bold red")
        table.add_row(name, str(r.get("requests", 0)), success, failures,
                      f"{ms(ttft.get('p50'))} / {ms(ttft.get('p95'))}",
                      f"{ms(total.get('p50'))} / {ms(total.get('p95'))}", last_text)
    if flagged:
        table.caption = "; ".join(flagged_note(f) for f in flagged.values())
        table.caption_style = "bold red"
    return table


# ----------------------------------------------------------------------------- compare

def compare_view(report: CompareReport) -> Group:
    table = Table(title=f"Comparison: {report.phase} phase on {len(report.rows)} models", title_justify="left")
    for header in SUMMARY_HEADERS:
        table.add_column(header, justify="right" if header in {"first token", "total", "cost"} else "left")
    for cells, row in zip(summary_rows(report), report.rows, strict=True):
        table.add_row(*cells[:2], outcome(row.result), *cells[3:])
    panels = [Panel(Text(output_text(row.result)), title=row.model, title_align="left",
                    border_style="green" if row.result.ok else "red") for row in report.rows]
    return Group(table, Columns(panels, equal=True, expand=True))


# ----------------------------------------------------------------------------- doctor, models

def doctor_key(env: str | None, masked: str | None, source: str | None, problem: Problem | None) -> str:
    """The doctor's key column: ``ENV (sk-…abcd, environment)``, ``ENV (not set)``, ``none needed``."""
    if env is None:
        return "none needed" if problem is None or problem.kind != "missing-credentials" else "not set"
    if masked is None:
        return f"{env} (not set)" if problem is not None and problem.kind == "missing-credentials" else env
    return f"{env} ({masked}, {source})" if source else f"{env} ({masked})"


def doctor_view(report: DoctorReport) -> Group:
    providers = Table(title="Providers (live checks)", title_justify="left")
    for header in ("provider", "protocol", "key", "key accepted", "model", "served", "latency", "problem"):
        providers.add_column(header)
    for p in report.providers:
        key = doctor_key(p.key_env, p.key_masked, p.key_source, p.problem)
        accepted = {True: Text("yes", style="green"), False: Text("no", style="red"), None: Text("–")}[p.key_accepted]
        name = f"{p.provider} (simulated)" if p.simulated else p.provider
        if not p.models:
            providers.add_row(name, p.protocol or "–", key, accepted, "–", "–", ms(p.latency_ms),
                              Text(p.problem.message if p.problem else "", style="red"))
        for index, m in enumerate(p.models):
            problem = m.problem or (p.problem if index == 0 else None)
            providers.add_row(name if index == 0 else "", p.protocol or "–" if index == 0 else "",
                              key if index == 0 else "", accepted if index == 0 else "",
                              m.model, Text(m.how, style="green" if m.ok else "red"),
                              ms(m.latency_ms if m.latency_ms is not None else p.latency_ms),
                              Text(problem.message if problem else "", style="red"))
    phases = Table(title="Phases (offline preflight + live result)", title_justify="left")
    for header in ("phase", "route", "status", "problem"):
        phases.add_column(header)
    for ph in report.phases:
        phases.add_row(ph.phase, ph.route or "–", Text(ph.status, style=_STATUS_STYLE[ph.status]),
                       ph.problem.message if ph.problem else "")
    verdict = Text("Every phase can run." if report.ok else "Some phase cannot run: see above.",
                   style="green" if report.ok else "bold red")
    parts: list[Any] = [providers, phases]
    if report.health.get("routes"):
        parts.append(health_table(report.health))
    keyring = report.keyring
    if keyring:
        parts.append(Text(f"OS keyring: {keyring.get('note', '')}",
                          style="dim" if keyring.get("available") else "yellow"))
    return Group(*parts, verdict)


def models_view(found: Discovery) -> Table | Panel:
    if found.problem is not None or found.models is None:
        return Panel(found.problem.message if found.problem else "no models", title=found.provider,
                     border_style="red")
    table = Table(title=f"{found.name} ({found.provider}): {len(found.models)} models, "
                        f"listed in {ms(found.latency_ms)}", title_justify="left")
    for header in ("model", "reference", "in catalogue", "tool calling", "context", "$/Mtok in / out"):
        table.add_column(header)
    for model in found.models:
        info = found.catalogue.get(model)
        prices = (f"{info.input_price_per_mtok} / {info.output_price_per_mtok}"
                  if info and info.input_price_per_mtok is not None else "–")
        table.add_row(model, f"{found.provider}/{model}", "yes" if info else "–",
                      {True: "yes", False: "no", None: "?"}[info.tool_calling] if info else "?",
                      f"{info.context_window:,}" if info and info.context_window else "?", prices)
    return table


# ----------------------------------------------------------------------------- progress

class PhaseProgressObserver:
    """Router observer drawing one spinner line per phase: route, status, streamed characters."""

    def __init__(self, progress: Progress, task: TaskID, label: str) -> None:
        self.progress = progress
        self.task = task
        self.label = label
        self.chars = 0

    def on_text(self, delta: str) -> None:
        self.chars += len(delta)
        self.progress.update(self.task, description=f"{self.label}: streaming, {self.chars} characters")

    def on_status(self, message: str) -> None:
        self.progress.update(self.task, description=f"{self.label}: {message}")


class ProgressBoard:
    """A live progress display (on a terminal only; silent when output is piped or ``--json``)."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=True, disable=not self.enabled)

    def observer(self, name: str, label: str) -> PhaseProgressObserver:
        title = f"{name} on {label}"
        task = self.progress.add_task(title)
        return PhaseProgressObserver(self.progress, task, title)

    @contextmanager
    def shown(self) -> Iterator[ProgressBoard]:
        with self.progress:
            yield self
