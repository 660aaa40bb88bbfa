"""The run record: one JSON line per phase run, appended to a ledger file.

Each line says which run and phase it was, who served it (provider, model), every attempt with
its outcome, tokens in and out (and of those in, how many the provider's prompt cache read and
wrote), time to first token, total time, the cost estimate and the kind
of result (``ok`` or a problem kind), how many files a change touched and how many files (and
tokens) of context the phase sent. Keys never reach it; prompts, answers, source text and paths
only when ``recordContent`` is on (and then only the instruction, the answer text, the diff, the
changed files' and the context's paths).

Where the ledger lives, first found wins: the ``ledgerPath`` setting (user-level only: a workspace
may not choose a file outside itself for Phasewise to write), the ``PHASEWISE_LEDGER`` environment
variable (per process), ``$XDG_STATE_HOME/phasewise/runs.jsonl``, ``~/.local/state/phasewise/runs.jsonl``.
A record is appended only to a run record: an existing file whose first line is not one (a
``~/.bashrc`` named by mistake or by a settings file that should not have been trusted) is left
alone and the failure said.
Entries are built from the contract's phase-result JSON, so the LSP edge and the command line
record exactly what their callers were given.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phasewise.gate import PathRefused, user_path
from phasewise.problems import PhasewiseError, redact
from phasewise.serial import Jsonable, json_property

log = logging.getLogger("phasewise.ledger")

LEDGER_ENV = "PHASEWISE_LEDGER"
SCHEMA = 1
_MAX_TEXT = 200_000  # a recorded answer or diff is cut here, so one line stays readable
_MAX_STEP = 4_000  # a recorded tool call's arguments or output is cut here


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """The ledger in the user's state directory (XDG), when nothing else is set."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "phasewise" / "runs.jsonl"


def ledger_path(setting: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where runs are recorded: ``ledgerPath``, else ``PHASEWISE_LEDGER``, else the state dir. A value
    that cannot be expanded (the settings model refuses such a ``ledgerPath`` already) is passed over,
    with a warning in the log."""
    env = os.environ if environ is None else environ
    for chosen, name in ((setting, "phasewise.ledgerPath"), (env.get(LEDGER_ENV), LEDGER_ENV)):
        if chosen and chosen.strip():
            try:
                return user_path(chosen, setting=name)
            except PathRefused as refused:
                log.warning("%s; the run record goes elsewhere", refused)
    return default_ledger_path(env)


def result_kind(result: Mapping[str, Any]) -> str:
    """``ok``, or the kind of the problem that ended the phase."""
    if result.get("ok"):
        return "ok"
    error = result.get("error")
    return str(error.get("kind")) if isinstance(error, Mapping) and error.get("kind") else "error"


def entry(result: Mapping[str, Any], *, source: str, workflow: str | None = None,
          record_content: bool = False, instruction: str | None = None,
          document: str | None = None, protocol: str | None = None,
          secrets: tuple[str, ...] = (), step_details: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """One ledger line from a phase result (the contract's JSON shape); ``step_details`` are a phase
    that worked in steps' tool calls with their arguments and outputs, kept only with content on."""
    usage = result.get("usage") or {}
    latency = result.get("latencyMs") or {}
    attempts = []
    for a in result.get("attempts") or ():
        if not isinstance(a, Mapping):
            continue
        attempt = {k: a[k] for k in ("provider", "model", "outcome", "keyEnv", "status", "waitSeconds",
                                     "latencyMs", "sent") if a.get(k) is not None}
        attempts.append(attempt)
    error = result.get("error") if isinstance(result.get("error"), Mapping) else None
    line: dict[str, Any] = {
        "v": SCHEMA,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "runId": result.get("runId"),
        "phase": result.get("phase"),
        "provider": result.get("provider"),
        "model": result.get("model"),
        "protocol": protocol,
        "result": result_kind(result),
        "attempts": attempts,
        "inputTokens": int(usage.get("inputTokens") or 0),
        "outputTokens": int(usage.get("outputTokens") or 0),
        "cacheReadTokens": int(usage.get("cacheReadTokens") or 0),
        "cacheWriteTokens": int(usage.get("cacheWriteTokens") or 0),
        "firstTokenMs": latency.get("firstToken"),
        "totalMs": latency.get("total"),
        "costUsd": result.get("costUsd"),
        "savedUsd": result.get("savedUsd"),
        "cached": True if result.get("cached") else None,
        "fallbackUsed": bool(result.get("fallbackUsed")),
        "source": source,
        "workflow": workflow,
    }
    if error is not None:
        # The problem's message names provider, phase and model; it never holds a key or source.
        line["error"] = {"kind": error.get("kind"), "message": redact(str(error.get("message", "")), secrets)}
    if result.get("phase") == "code" and "applied" in result:
        line["applied"] = result.get("applied")
    files = [f for f in result.get("files") or () if isinstance(f, Mapping)]
    if files:
        line["filesChanged"] = len(files)
    context = [c for c in result.get("context") or () if isinstance(c, Mapping)]
    if context:
        line["contextFiles"] = len(context)
        line["contextTokens"] = sum(int(c.get("tokens") or 0) for c in context)
    if isinstance(result.get("findings"), list):
        line["findings"] = len(result["findings"])
    steps = [s for s in result.get("steps") or () if isinstance(s, Mapping)]
    if steps:  # a phase that worked in steps: each tool call, without its arguments or output
        line["steps"] = [{k: s.get(k) for k in ("step", "tool", "ok", "ms", "tokens")} for s in steps]
    if record_content:
        content: dict[str, Any] = {"document": document, "instruction": instruction,
                                   "text": str(result.get("text") or "")[:_MAX_TEXT]}
        if result.get("diff"):
            content["diff"] = str(result["diff"])[:_MAX_TEXT]
        if isinstance(result.get("findings"), list):
            content["findings"] = result["findings"]
        if files:  # which files a change touched, and what the phase sent: paths only
            content["files"] = [{"path": f.get("path"), "created": bool(f.get("created"))} for f in files]
        if context:
            content["context"] = [{k: c.get(k) for k in ("path", "reason", "tokens")} for c in context]
        if step_details:
            content["steps"] = [{"tool": d.get("tool"), "arguments": str(d.get("arguments") or "")[:_MAX_STEP],
                                 "output": str(d.get("output") or "")[:_MAX_STEP]} for d in step_details]
        line["content"] = json.loads(redact(json.dumps(content), secrets))
    return {k: v for k, v in line.items() if v is not None}


@dataclass(slots=True)
class RunSummary(Jsonable):
    """The phases of one run id, for ``phasewise history``."""

    run_id: str
    time: str
    phases: list[dict[str, Any]]

    @json_property
    def ok(self) -> bool:
        return all(p.get("result") == "ok" for p in self.phases)

    @json_property(round=6)
    def cost_usd(self) -> float | None:
        costs = [p["costUsd"] for p in self.phases if isinstance(p.get("costUsd"), int | float)]
        return sum(costs) if costs else None

    @json_property(round=6)
    def saved_usd(self) -> float | None:
        """What the provider's prompt cache saved on this run (negative: cache writes cost more
        than they saved); None when no phase reported cached tokens."""
        saved = [p["savedUsd"] for p in self.phases if isinstance(p.get("savedUsd"), int | float)]
        return sum(saved) if saved else None

    @json_property(round=1)
    def total_ms(self) -> float:
        return sum(float(p.get("totalMs") or 0) for p in self.phases)


def parse_lines(texts: Iterable[str]) -> list[dict[str, Any]]:
    """The ledger lines that are JSON objects (a line cut short by a crash, or garbage, is skipped)."""
    out = []
    for text in texts:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


class NotALedger(PhasewiseError, OSError):
    """The file named for the run record holds something else: nothing is appended to it (an
    ``OSError`` too, like every other failure to write the record)."""


def _is_record(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a run record: its first line a ledger entry."""
    first = head.split(b"\n", 1)[0]
    return first.startswith(b'{"v":') or (len(first) == len(head) and not first.strip())


class Ledger:
    """Appends run records to one JSONL file; safe to share between threads and processes.

    Each line is written with one ``write`` on a file opened for appending, so concurrent
    writers (the server and a shell) interleave whole lines, never halves."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: Mapping[str, Any]) -> None:
        """Append one line; ``NotALedger`` (an ``OSError``) when the file holds something else."""
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                head = os.read(fd, 512)  # from the start: O_APPEND moves only the writes
                if head and not _is_record(head):
                    raise NotALedger(errno.EEXIST, "it holds something other than run records, so nothing was "
                                                   "appended (name a new file, or the default, in ledgerPath)")
                os.write(fd, data)
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every readable line, oldest first (a torn or foreign line is skipped)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return parse_lines(raw.splitlines())

    def runs(self, limit: int = 20) -> list[RunSummary]:
        """The latest ``limit`` runs, newest first, each with its phases in order."""
        grouped: dict[str, RunSummary] = {}
        for line in self.read():
            run_id = str(line.get("runId") or "?")
            summary = grouped.get(run_id)
            if summary is None:
                grouped[run_id] = summary = RunSummary(run_id, str(line.get("time") or ""), [])
            summary.phases.append(line)
        ordered = sorted(grouped.values(), key=lambda s: s.time, reverse=True)
        return ordered[: max(0, limit)]


class Recorder:
    """Records phase results for one set of settings; a ledger that cannot be written is logged,
    never allowed to fail the phase it describes."""

    def __init__(self, ledger_setting: str | None, *, record_content: bool, source: str,
                 environ: Mapping[str, str] | None = None) -> None:
        self.ledger = Ledger(ledger_path(ledger_setting, environ))
        self.record_content = record_content
        self.source = source
        self.failures: list[str] = []

    def record(self, result: Mapping[str, Any], *, protocol: str | None = None, workflow: str | None = None,
               instruction: str | None = None, document: str | None = None,
               step_details: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any] | None:
        if document is not None:
            from phasewise.phases.documents import uri_path

            document = uri_path(document)  # a file URI is recorded as its path, escapes decoded
        line = entry(result, source=self.source, workflow=workflow, record_content=self.record_content,
                     instruction=instruction, document=document, protocol=protocol, step_details=step_details)
        try:
            self.ledger.append(line)
        except OSError as exc:
            message = f"cannot write the run record to {self.ledger.path}: {exc.strerror or exc}"
            self.failures.append(message)
            log.warning("%s", message)
            return None
        return line
