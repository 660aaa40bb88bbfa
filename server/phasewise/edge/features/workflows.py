"""Workflow commands (run, compare, verify, models) and model-id completion in settings files.

The edge side of ``phasewise.workflows``: each handler turns LSP arguments into plain values,
calls the shared workflow (the same code the command line runs) and turns its answer back into
LSP: a run's phases through ``PhasesFeature.execute`` (so they behave exactly like the single
phase commands), problems as diagnostics, a work-done progress where the client has it.
Workflows are imported inside the handlers, after ``initialize``, like the rest of the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from phasewise.edge.commands import CommandError, CompareArgs, ModelsArgs, PhaseArgs, VerifyArgs, register_command
from phasewise.edge.diagnostics import line_range
from phasewise.edge.feature import Feature
from phasewise.edge.features.phases import PhasesFeature
from phasewise.edge.progress import CREATE_SECONDS, PhaseProgress, new_token
from phasewise.edge.requests import ClientSilent, ask_client

if TYPE_CHECKING:
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseResult

SETTINGS_FILES = ("settings.json", "phasewise.json", ".code-workspace")


class WorkflowsFeature(Feature):
    def register(self) -> None:
        ls = self.ls
        register_command(ls, "phasewise.run", PhaseArgs, self.run)
        register_command(ls, "phasewise.compare", CompareArgs, self.compare)
        register_command(ls, "phasewise.verify", VerifyArgs, self.verify)
        register_command(ls, "phasewise.models", ModelsArgs, self.models)

        @ls.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=['"', "/"], resolve_provider=False))
        async def completion(params: types.CompletionParams) -> types.CompletionList | None:
            return await self.model_id_completion(params)

    # ------------------------------------------------------------------------- phasewise.run

    async def run(self, args: PhaseArgs) -> dict[str, Any]:
        """The pipeline (plan → code → review unless the settings say otherwise) through the one phase
        runner and the phases feature's door, each phase on its own route, one run id."""
        from phasewise.edge.features.phases import EdgeDoor
        from phasewise.phases.documents import Document
        from phasewise.phases.service import PhaseInput, PhaseResult
        from phasewise.problems import Problem, ProblemKind
        from phasewise.workflows.runs import Step, shifted

        ls = self.ls
        args.require_instruction()
        first = ls.document(args.uri)
        loaded = await ls.settings_for(args.uri)
        if wrong := [i.describe() for i in loaded.issues if i.path.startswith("phasewise.pipeline")]:
            raise CommandError("the settings' pipeline cannot run: " + "; ".join(wrong).replace("`", ""))
        phases = ls.get_feature(PhasesFeature)

        def step_input(s: Step, done: Sequence[PhaseResult]) -> PhaseInput | PhaseResult:
            try:
                doc = ls.document(args.uri)
            except CommandError as err:
                return PhaseResult(ok=False, run_id=s.run_id, phase=s.phase, error=Problem(
                    ProblemKind.CONFIG, f"The {s.phase} phase of run {s.run_id} cannot read the document: {err}.",
                    phase=s.phase))
            rng = args.line_range()
            code_text = [r.new_text for r in done if r.kind == "code" and r.ok and r.new_text is not None]
            if s.kind != "code" and code_text:
                if doc.text != code_text[-1]:
                    # The editor applied the edit but has not synced it yet: work on what was applied.
                    doc = Document(doc.uri, code_text[-1], None, doc.language)
                rng = shifted(rng, first.text, doc.text)
            return PhaseInput(doc, s.instruction, rng, s.plan, s.change, s.run_id, changed_files=s.files,
                              workspace=phases.workspace_of(args.uri), users_words=args.users_words)

        async def whole() -> dict[str, Any]:
            outcome = await ls.runner.run(loaded, args.instruction or "", EdgeDoor(phases), step_input)
            done = "done" if outcome.ok else f"stopped at {outcome.stopped_at}"
            ls.log_line(f"[{outcome.run_id}] run {done}: "
                        + ", ".join(f"{r.phase} on {r.provider}/{r.model}" for r in outcome.results))
            return outcome.to_json()

        if phases.answers_at_once(args):  # a client without the plugin: "started", the run goes on
            return phases.start_in_background("run", args.uri, whole())
        return await whole()

    # ------------------------------------------------------------------------- phasewise.compare

    async def _progress(self, run_id: str, phase: str, uri: str | None, title: str) -> PhaseProgress:
        ls = self.ls
        token = None
        if ls.supports_progress():
            token = new_token()
            try:
                await ask_client(ls, "window/workDoneProgress/create", ls.work_done_progress.create_async(token),
                                 CREATE_SECONDS)
            except ClientSilent:
                token = None
        progress = PhaseProgress(ls, token=token, run_id=run_id, phase=phase, uri=uri)
        progress.begin(title)
        return progress

    async def compare(self, args: CompareArgs) -> dict[str, Any]:
        """One phase on several models, side by side; nothing is applied, nothing is published."""
        from phasewise.edge.features.phases import EdgeDoor
        from phasewise.phases.service import PhaseInput, new_run_id
        from phasewise.workflows.compare import compare, write_report

        ls = self.ls
        phase, models = args.phase, args.model_list()
        loaded = await ls.settings_for(args.uri)
        if ls.runner.route(loaded, phase).kind not in ("review", "qa"):  # as a phase: they need no instruction
            args.require_instruction()
        doc = ls.document(args.uri)
        run_id = new_run_id()
        progress = await self._progress(run_id, phase, args.uri, f"Phasewise compare: {phase} on {len(models)} models")
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

        instruction = args.instruction or ""
        ls.log_line(f"[{run_id}] compare {phase} on {', '.join(models)}")
        try:
            report = await compare(ls.service, loaded, phase, list(models),
                                   PhaseInput(doc, instruction, args.line_range(), args.plan, None, run_id,
                                              users_words=args.users_words),
                                   observer_for=Tracker)
        except asyncio.CancelledError:
            task.uncancel()
            progress.end("compare cancelled")
            return {"ok": False, "runId": run_id, "phase": phase, "rows": [], "cancelled": True}
        finally:
            ls.runs.remove(request_id, progress.token)
        door = EdgeDoor(ls.get_feature(PhasesFeature), remember=False)  # a comparison is not retried
        for row in report.rows:
            ls.runner.record(loaded, row.result, door, workflow="compare", instruction=instruction, document=args.uri)
        out = report.to_json()
        out["markdown"] = report.to_markdown()
        try:
            path = write_report(report, ls.runner.recorder(loaded, door.source).ledger.path)
            out["reportPath"], out["reportUri"] = str(path), path.as_uri()
        except OSError as exc:
            ls.log_line(f"[{run_id}] compare report not written: {exc.strerror or exc}")
        progress.end(f"compare done: {sum(r.result.ok for r in report.rows)}/{len(report.rows)} models answered")
        return out

    # ------------------------------------------------------------------------- phasewise.verify

    async def verify(self, args: VerifyArgs) -> dict[str, Any]:
        """Live checks of the providers in use (or named), then every phase's preflight; failing
        phases become problems on the document when one is given."""
        from phasewise.workflows.doctor import doctor

        ls = self.ls
        uri = args.uri
        loaded = await ls.settings_for(uri)
        doc: Document | None = None
        if uri:
            try:
                doc = ls.document(uri)
            except CommandError:
                doc = None
        report = await doctor(ls.engine, loaded, providers=args.providers or None, document=doc)
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

    # ------------------------------------------------------------------------- phasewise.models

    async def models(self, args: ModelsArgs) -> dict[str, Any]:
        from phasewise.workflows.discovery import discover

        loaded = await self.ls.settings_for(args.uri)
        found = await discover(self.ls.engine, loaded, args.provider)
        return found.to_json()

    # ------------------------------------------------------------------------- completion

    async def model_id_completion(self, params: types.CompletionParams) -> types.CompletionList | None:
        """Model references inside a settings file's ``"model"``/``"fallbacks"`` strings."""
        ls = self.ls
        uri = params.text_document.uri
        if not uri.endswith(SETTINGS_FILES):
            return None
        text_doc = ls.workspace.text_documents.get(uri)
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
