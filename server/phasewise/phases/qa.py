"""A QA-kind phase's verdict: did the project's checks pass, and where did they fail.

A ``qa`` phase always works in steps (``phases.agent``): it runs the commands its settings name
(``agent.commands``) with ``run_command``, reads what failed, and finishes with ``report_findings``
(``QA_TOOL_SPEC``: the review's findings plus ``passed``). Its verdict is grounded in what the
commands did, not only in what the model says (``take_verdict``):

- ``passed`` is true only when it ran every command it was given at least once, the last run of
  each exited 0, and the model did not say otherwise. A command refused by the trust check, one that
  timed out, one never run: not passed, and the note says which.
- each finding is on the file and line it names (any text file of the workspace; one on a file
  outside it, a library's warning say, is left out), as a review's;
  when a command failed and the model reported no finding, each failure the output locates
  (``path:line``, as pytest, ruff, mypy and compilers print it; pytest's ``FAILED path::test``; a Python
  traceback's ``File "path", line N`` in a workspace file) becomes one, and a failure it does not
  locate is a finding on the document's first line.
- ``checks`` lists each command run: name, exit code, seconds.
May not import: edge, workflows, router, providers, sim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from phasewise.gate import PathRefused
from phasewise.phases.agent_workspace import AgentWorkspace
from phasewise.phases.commands import CommandRun
from phasewise.phases.documents import Document, Finding, LineRange, parse_findings
from phasewise.phases.prompts import FINDINGS_SCHEMA, ToolSpec
from phasewise.phases.results import PhaseInput, PhaseResult
from phasewise.tool_names import FINDINGS_TOOL

QA_SCHEMA: Final[dict[str, Any]] = {
    **FINDINGS_SCHEMA,
    "properties": {
        **FINDINGS_SCHEMA["properties"],
        "passed": {"type": "boolean", "description": "True only when every command you ran succeeded."},
        "findings": {
            **FINDINGS_SCHEMA["properties"]["findings"],
            "items": {
                **FINDINGS_SCHEMA["properties"]["findings"]["items"],
                "properties": {
                    **FINDINGS_SCHEMA["properties"]["findings"]["items"]["properties"],
                    "path": {"type": "string",
                             "description": "Workspace-relative path of the file the failure is in; the document "
                                            "when left out."},
                },
            },
        },
    },
    "required": ["passed", "findings"],
}
QA_TOOL_SPEC: Final = ToolSpec(
    FINDINGS_TOOL, "Report the checks' verdict: whether they passed, and a finding per failure.", QA_SCHEMA)

MAX_FOUND = 20  # findings made from one command's output
_AT = re.compile(r"(?P<path>[\w.@+-][\w./@+-]*\.[A-Za-z0-9]+):(?P<line>\d+)(?::\d+)?:?\s*(?P<message>.*)")
_TRACEBACK = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')  # Python's own tracebacks
_FAILED = re.compile(r"^FAILED (?P<path>[^\s:]+\.py)::(?P<test>[\w\[\]./-]+)(?: - (?P<message>.*))?$", re.M)


def last_runs(runs: Sequence[CommandRun]) -> list[CommandRun]:
    """The last run of each command, in the order they were first run."""
    last: dict[str, CommandRun] = {}
    for run in runs:
        last.pop(run.name, None)
        last[run.name] = run
    return list(last.values())


def take_verdict(result: PhaseResult, answer: dict[str, Any], inp: PhaseInput, ws: AgentWorkspace,
                 runs: Sequence[CommandRun], given: Sequence[str]) -> None:
    """The verdict in ``result``: ``passed``, ``checks``, ``findings``, the summary as its text and a
    note when the commands and the model disagree; see the module docstring. ``AnswerError`` when the
    answer has no findings list."""
    doc = inp.document
    whole = LineRange(0, max(len(doc.lines) - 1, 0))
    raw = answer.get("findings")
    named = [str(f.get("path")) for f in raw or () if isinstance(f, dict) and f.get("path")]
    files = _documents(ws, named)
    if isinstance(raw, list):  # a finding on a file outside the workspace (a library's warning) is left out,
        kept = []              # and one on a file of it names that file workspace-relative
        for f in raw:
            if isinstance(f, dict) and f.get("path"):
                if str(f["path"]) not in files:
                    continue
                f = {**f, "path": ws.path_of(str(f["path"]))[0]}
            kept.append(f)
        answer = {**answer, "findings": kept}
        files = {ws.path_of(name)[0]: d for name, d in files.items()}
    findings = parse_findings(answer, doc, whole, files)
    last = last_runs(runs)
    failed = [r for r in last if not r.ok]
    unrun = [n for n in given if n not in {r.name for r in last}]
    claimed = answer.get("passed")
    passed = bool(last) and not failed and not unrun and claimed is not False
    notes = []
    if failed and not findings:
        findings = [f for r in failed for f in failure_findings(r, ws, doc)]
    if claimed is True and not passed:
        notes.append("The model said the checks passed; the commands say otherwise.")
    for r in failed:
        notes.append(f"`{r.name}` {_how(r)}.")
    if unrun:
        notes.append(f"Not run: {', '.join(f'`{n}`' for n in unrun)}.")
    if not last:
        notes.append("The qa phase ran no command, so nothing was checked.")
    result.passed = passed
    result.checks = [r.to_json() for r in runs]
    result.findings = findings
    result.text = str(answer.get("summary") or "").strip() or ("The checks passed." if passed else "The checks failed.")
    if notes:
        result.note = " ".join(notes)


def _how(run: CommandRun) -> str:
    if not run.ran:
        return f"did not run ({run.why})"
    if run.timed_out:
        return f"timed out after {run.seconds:.1f} s"
    return f"exited {run.exit_code}"


def _documents(ws: AgentWorkspace, paths: Sequence[str]) -> dict[str, Document]:
    """The workspace files ``paths`` name, as findings may sit on them (through the path gate)."""
    out: dict[str, Document] = {}
    for name in paths:
        try:
            rel, path = ws.path_of(name)
        except PathRefused:
            continue
        text = ws.text_of(rel) if rel else None
        if text is not None:
            out[name] = Document(path.as_uri(), text)
    return out


def failure_findings(run: CommandRun, ws: AgentWorkspace, doc: Document) -> list[Finding]:
    """Findings for a failed command from its output: each ``path:line`` of a workspace file it
    names, each pytest ``FAILED path::test`` on the test's line; else one on the document."""
    found: dict[tuple[str, int], Finding] = {}
    files: dict[str, Document | None] = {}

    def file(name: str) -> Document | None:
        if name not in files:
            files[name] = _documents(ws, [name]).get(name)
        return files[name]

    def add(name: str, line: int, message: str) -> None:
        target = file(name)
        if target is None or len(found) >= MAX_FOUND:
            return
        at = min(max(line, 0), max(len(target.lines) - 1, 0))
        rel = ws.path_of(name)[0]
        key = (rel, at)
        if key not in found:
            text = f"`{run.name}` failed here" + (f": {message.strip()[:300]}" if message.strip() else "")
            same = target.uri == doc.uri
            found[key] = Finding(at, at, "error", text, None, None if same else rel, None if same else target.uri)

    output = run.output
    for m in _FAILED.finditer(output):
        target = file(m.group("path"))
        if target is None:
            continue
        test = m.group("test").split("[", 1)[0].rsplit("::", 1)[-1]
        defined = re.compile(rf"\s*(?:async\s+)?def {re.escape(test)}\b")
        at = next((i for i, text in enumerate(target.lines) if defined.match(text)), 0)
        add(m.group("path"), at, m.group("message") or f"{m.group('test')} failed")
    rows = output.split("\n")
    error = next((r.strip() for r in reversed(rows) if re.match(r"^\w*(Error|Exception)\b", r.strip())), "")
    for row in rows:
        frame = _TRACEBACK.match(row)
        if frame is not None:
            add(frame.group("path"), int(frame.group("line")) - 1, error)
            continue
        hit = _AT.search(row)
        if hit is not None and int(hit.group("line")) > 0:
            add(hit.group("path"), int(hit.group("line")) - 1, hit.group("message"))
    if found:
        return list(found.values())
    tail = [line for line in output.strip().split("\n") if line.strip()]
    said = tail[-1][:300] if tail else _how(run)
    return [Finding(0, 0, "error", f"`{run.name}` {_how(run)}: {said}")]


__all__ = ["QA_TOOL_SPEC", "failure_findings", "last_runs", "take_verdict"]
