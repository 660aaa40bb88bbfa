"""Workflow commands (run, compare, verify, models), model-id completion, and the run record.

The edge side of ``phasewise.workflows``: each handler turns LSP arguments into plain values,
calls the shared workflow (the same code the command line runs) and turns its answer back into
LSP: edits through ``handlers.execute_phase`` (so a run's phases behave exactly like the single
phase commands), problems as diagnostics, a work-done progress where the client has it.
Workflows are imported inside the handlers, after ``initialize``, like the rest of the core.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from phasewise.edge.diagnostics import line_range
from phasewise.edge.progress import PhaseProgress
from phasewise.edge.server import CommandError, PhaseArgs, PhasewiseServer, new_token, parse_phase_args

if TYPE_CHECKING:
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseResult
    from phasewise.settings import LoadedSettings

SETTINGS_FILES = ("settings.json", "phasewise.json", ".code-workspace")


def register(ls: PhasewiseServer) -> None:
    @ls.command("phasewise.run")
    async def run(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        return await run_command(ls, _one(args))

    @ls.command("phasewise.compare")
    async def compare(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        return await compare_command(ls, _one(args))

    @ls.command("phasewise.verify")
    async def verify(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        return await verify_command(ls, _one(args) if args else {})

    @ls.command("phasewise.models")
    async def models(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        return await models_command(ls, _one(args))

    @ls.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=['"', "/"], resolve_provider=False))
    async def completion(ls: PhasewiseServer, params: types.CompletionParams) -> types.CompletionList | None:
        return await model_id_completion(ls, params)


def _one(args: tuple[Any, ...]) -> Any:
    return args[0] if len(args) == 1 else list(args)


def _invalid(command: str, message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams.of(ValueError(f"{command}: {message}"))


def record_phase(ls: PhasewiseServer, args: PhaseArgs, result: PhaseResult, loaded: LoadedSettings) -> None:
    """Append one phase run to the run record (called by ``handlers.execute_phase``)."""
    from phasewise.problems import Problem
    from phasewise.workflows.ledger import Recorder

    settings = loaded.settings
    recorder = Recorder(settings.ledger_path, record_content=settings.record_content, source="lsp")
    protocol = None
    if result.provider:
        spec = ls.engine.resolver(loaded).provider(result.provider)
        protocol = None if isinstance(spec, Problem) else spec.protocol
    recorder.record(result.to_json(), protocol=protocol, instruction=args.instruction, document=args.uri)
    for failure in recorder.failures:
        ls.log_line(f"Phasewise run record: {failure}")


# ----------------------------------------------------------------------------- phasewise.run

async def run_command(ls: PhasewiseServer, raw: Any) -> dict[str, Any]:
    """plan → code → review, each phase through ``execute_phase`` on its own route, one run id."""
    from phasewise.edge.handlers import execute_phase
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseResult
    from phasewise.problems import Problem, ProblemKind
    from phasewise.workflows.runs import Step, run_plan_code_review, shifted

    try:
        args = parse_phase_args(raw, need_instruction=True)
        first = ls.document(args.uri)
    except CommandError as err:
        raise _invalid("phasewise.run", str(err)) from None
    loaded = await ls.settings_for(args.uri)
    code_text: list[str] = []

    async def step(s: Step) -> PhaseResult:
        try:
            doc = ls.document(args.uri)
        except CommandError as err:
            return PhaseResult(ok=False, run_id=s.run_id, phase=s.phase, error=Problem(
                ProblemKind.CONFIG, f"The {s.phase} phase of run {s.run_id} cannot read the document: {err}.",
                phase=s.phase))
        rng = args.range
        if s.phase == "review" and code_text:
            if doc.text != code_text[0]:
                # The editor applied the edit but has not synced it yet: review what was applied.
                doc = Document(doc.uri, code_text[0], None, doc.language)
            rng = shifted(args.range, first.text, doc.text)
        phase_args = PhaseArgs(args.uri, s.instruction, rng, s.plan, None)
        result = await execute_phase(ls, s.phase, phase_args, doc, loaded, run_id=s.run_id, change=s.change)
        if s.phase == "code" and result.ok and result.new_text is not None:
            code_text.append(result.new_text)
        return result

    outcome = await run_plan_code_review(step, args.instruction)
    done = "done" if outcome.ok else f"stopped at {outcome.stopped_at}"
    ls.log_line(f"[{outcome.run_id}] run {done}: "
                + ", ".join(f"{r.phase} on {r.provider}/{r.model}" for r in outcome.results))
    return outcome.to_json()


# ----------------------------------------------------------------------------- phasewise.compare

async def _progress(ls: PhasewiseServer, run_id: str, phase: str, uri: str | None, title: str) -> PhaseProgress:
    token = None
    if ls.supports_progress():
        token = new_token()
        try:
            await asyncio.shield(ls.work_done_progress.create_async(token))
        except Exception:
            token = None
    progress = PhaseProgress(ls, token=token, run_id=run_id, phase=phase, uri=uri)
    progress.begin(title)
    return progress


async def compare_command(ls: PhasewiseServer, raw: Any) -> dict[str, Any]:
    """One phase on several models, side by side; nothing is applied, nothing is published."""
    from phasewise.phases.service import PhaseInput, new_run_id
    from phasewise.workflows.compare import compare, write_report
    from phasewise.workflows.ledger import Recorder

    arg = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
    if not isinstance(arg, dict):
        raise _invalid("phasewise.compare", "expected {uri, instruction, phase, models, range?}")
    phase = arg.get("phase")
    models = arg.get("models")
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not isinstance(phase, str) or not phase:
        raise _invalid("phasewise.compare", "`phase` is required (plan, code, review or one of yours)")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise _invalid("phasewise.compare", "`models` must be a list of model references 'provider/model'")
    try:
        args = parse_phase_args(arg, need_instruction=phase != "review")
        doc = ls.document(args.uri)
    except CommandError as err:
        raise _invalid("phasewise.compare", str(err)) from None
    loaded = await ls.settings_for(args.uri)
    run_id = new_run_id()
    progress = await _progress(ls, run_id, phase, args.uri,
                               f"Phasewise compare: {phase} on {len(models)} models")
    task = asyncio.current_task()
    assert task is not None
    request_id = ls.protocol.msg_id
    ls.runs.add(request_id, progress.token, task)

    class Tracker:
        def __init__(self, model: str) -> None:
            self.model = model

        def on_text(self, delta: str) -> None:
            pass

        def on_status(self, message: str) -> None:
            progress.on_status(f"{self.model}: {message}")

    ls.log_line(f"[{run_id}] compare {phase} on {', '.join(models)}")
    try:
        report = await compare(ls.service, loaded, phase, list(models),
                               PhaseInput(doc, args.instruction, args.range, args.plan, None, run_id),
                               observer_for=Tracker)
    except asyncio.CancelledError:
        task.uncancel()
        progress.end("compare cancelled")
        return {"ok": False, "runId": run_id, "phase": phase, "rows": [], "cancelled": True}
    finally:
        ls.runs.remove(request_id, progress.token)
    settings = loaded.settings
    recorder = Recorder(settings.ledger_path, record_content=settings.record_content, source="lsp")
    for row in report.rows:
        recorder.record(row.result.to_json(), workflow="compare", instruction=args.instruction, document=args.uri)
    markdown = report.to_markdown()
    out = report.to_json()
    out["markdown"] = markdown
    try:
        path = write_report(report, recorder.ledger.path)
        out["reportPath"], out["reportUri"] = str(path), path.as_uri()
    except OSError as exc:
        ls.log_line(f"[{run_id}] compare report not written: {exc.strerror or exc}")
    progress.end(f"compare done: {sum(r.result.ok for r in report.rows)}/{len(report.rows)} models answered")
    return out


# ----------------------------------------------------------------------------- phasewise.verify

async def verify_command(ls: PhasewiseServer, arg: Any) -> dict[str, Any]:
    """Live checks of the providers in use (or named), then every phase's preflight; failing
    phases become problems on the document when one is given."""
    from phasewise.workflows.doctor import doctor

    if not isinstance(arg, dict):
        raise _invalid("phasewise.verify", "expected {uri?, providers?}")
    uri = arg.get("uri") if isinstance(arg.get("uri"), str) else None
    providers = arg.get("providers")
    if providers is not None and (not isinstance(providers, list) or not all(isinstance(p, str) for p in providers)):
        raise _invalid("phasewise.verify", "`providers` must be a list of provider ids")
    loaded = await ls.settings_for(uri)
    doc: Document | None = None
    if uri:
        try:
            doc = ls.document(uri)
        except CommandError:
            doc = None
    report = await doctor(ls.engine, loaded, providers=providers or None, document=doc)
    if uri and doc is not None:
        first = line_range(doc.lines, 0, 0)
        for check in report.phases:
            if check.status == "fail" and check.problem is not None:
                ls.diagnostics.set_problem(uri, doc.lines, check.problem, first)
            elif check.status == "ok":
                ls.diagnostics.clear_problem(uri, check.phase)
    for p in report.providers:
        state = "ok" if p.ok else f"failed: {p.problem.kind if p.problem else 'model check'}"
        ls.log_line(f"verify {p.provider} ({p.protocol or '?'}): {state}")
    if not report.ok:
        failing = ", ".join(c.phase for c in report.phases if c.status == "fail") or "named providers"
        ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Warning, message=f"Phasewise verify: cannot run {failing}; see the problems."))
    return report.to_json()


# ----------------------------------------------------------------------------- phasewise.models

async def models_command(ls: PhasewiseServer, arg: Any) -> dict[str, Any]:
    from phasewise.workflows.discovery import discover

    if not isinstance(arg, dict) or not isinstance(arg.get("provider"), str) or not arg["provider"]:
        raise _invalid("phasewise.models", "expected {provider, uri?}")
    uri = arg.get("uri") if isinstance(arg.get("uri"), str) else None
    loaded = await ls.settings_for(uri)
    found = await discover(ls.engine, loaded, arg["provider"])
    return found.to_json()


# ----------------------------------------------------------------------------- completion

def _is_settings_file(uri: str) -> bool:
    return uri.endswith(SETTINGS_FILES)


async def model_id_completion(ls: PhasewiseServer, params: types.CompletionParams) -> types.CompletionList | None:
    """Model references inside a settings file's ``"model"``/``"fallbacks"`` strings."""
    uri = params.text_document.uri
    if not _is_settings_file(uri):
        return None
    from phasewise.edge.uris import open_document  # issue 12: pygls files documents unquoted

    text_doc = open_document(ls.workspace, uri)
    if text_doc is None:
        return None
    from phasewise.problems import Problem
    from phasewise.providers.catalogue import known_ids
    from phasewise.workflows.discovery import model_completions

    lines = list(text_doc.lines)
    codec = ls.workspace.position_codec
    pos = codec.position_from_client_units(lines, params.position)
    if pos.line >= len(lines):
        return None
    before = "".join(lines[: pos.line]) + lines[pos.line][: pos.character]
    loaded = await ls.settings_for(_folder_uri(uri))
    resolver = ls.engine.resolver(loaded)
    providers = {}
    for pid in {*known_ids(), *loaded.settings.providers}:
        spec = resolver.provider(pid)
        if not isinstance(spec, Problem):
            providers[pid] = spec
    items = []
    for c in model_completions(before, providers, ls.engine.known_models):
        rng = codec.range_to_client_units(lines, types.Range(types.Position(pos.line, c.replace_from),
                                                             types.Position(pos.line, pos.character)))
        items.append(types.CompletionItem(
            label=c.label, kind=types.CompletionItemKind.Value, detail=c.detail,
            text_edit=types.TextEdit(range=rng, new_text=c.label),
        ))
    return types.CompletionList(is_incomplete=False, items=items)


def _folder_uri(uri: str) -> str:
    """The workspace folder a settings file configures (``…/.vscode/settings.json`` → ``…``)."""
    path = uri.rsplit("/", 1)[0]
    return path.rsplit("/", 1)[0] if path.endswith("/.vscode") else path
