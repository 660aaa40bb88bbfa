"""The phase commands: ``phasewise.plan``, ``.code``, ``.review`` and ``.retry``.

A phase runs through ``execute``: the one phase runner (``workflows.runner``) with this feature's
``EdgeDoor``: progress (created without a client round trip), the phase service, the code phase's
edit (applied with ``workspace/applyEdit``, all or nothing, refused if the document moved on), its
problem or findings published as diagnostics, and one line in the run record (the runner's).
``phasewise.run`` (the workflows feature) runs its phases through the same runner and door.
The feature remembers each document's last arguments per phase, for ``phasewise.retry``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from lsprotocol import types

from phasewise.edge.commands import CommandError, NamedPhaseArgs, PhaseArgs, RetryArgs, register_command
from phasewise.edge.diagnostics import problem_range
from phasewise.edge.feature import Feature
from phasewise.edge.progress import PhaseProgress
from phasewise.edge.requests import ClientSilent, ask_client
from phasewise.edge.retry_wait import wait_for_limit
from phasewise.edge.shown import show_plan, wants_documents, workspace_folder

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.phases.commands import CommandQuestion, Reply
    from phasewise.phases.documents import Document, LineRange
    from phasewise.phases.service import PhaseInput, PhaseResult
    from phasewise.phases.workspace import Workspace
    from phasewise.router.router import Observer
    from phasewise.router.routes import PhaseRoute
    from phasewise.settings import LoadedSettings

log = logging.getLogger("phasewise")
PHASES = ("plan", "code", "review")
# Set in the task of a phase that answered "started" (``start_in_background``): its request id is
# answered, so ``$/cancelRequest`` for it cancels nothing; its progress token still does.
IN_BACKGROUND: ContextVar[bool] = ContextVar("phasewise_in_background", default=False)
UNDECLARED_APPLY_SECONDS = 10.0
APPLY_SECONDS = 1800.0  # a change shown for review waits this long for Apply or Discard, then is not applied
ASK_SECONDS = 120.0  # how long a question to run a workspace's command waits for the user


class PhasesFeature(Feature):
    def __init__(self, ls: PhasewiseServer) -> None:
        super().__init__(ls)
        self._last: dict[tuple[str, str], PhaseArgs] = {}  # (uri, phase) → its last arguments
        self._running: set[asyncio.Task[None]] = set()  # phases answered "started", running on

    def register(self) -> None:
        for phase in PHASES:
            self._register_phase(phase)
        register_command(self.ls, "phasewise.retry", RetryArgs, self.retry)
        register_command(self.ls, "phasewise.phase", NamedPhaseArgs, self.run_named)

    def _register_phase(self, phase: str) -> None:
        async def run(args: PhaseArgs) -> dict[str, Any]:
            return await self.run_command(phase, args)

        register_command(self.ls, f"phasewise.{phase}", PhaseArgs, run)

    async def run_named(self, args: NamedPhaseArgs) -> dict[str, Any]:
        """``phasewise.phase``: any phase by name (the built-in three and the user's own)."""
        loaded = await self.ls.settings_for(args.uri)
        names = self.ls.engine.resolver(loaded).phase_names()
        if args.phase not in names:
            raise CommandError(f"unknown phase {args.phase!r}: use one of {', '.join(names)} or declare it "
                               f"under `phasewise.phases.{args.phase}`")
        return await self.run_command(args.phase, args)

    def answers_at_once(self, args: PhaseArgs | RetryArgs) -> bool:
        """Whether a phase command answers "started" at once and runs on in the background: for a
        client without Phasewise's plugin (lsp-mode and bare Eglot wait for a command's answer with
        the editor frozen, then cancel it after 10 s), unless the arguments say ``wait: true``.
        A plugin gets the whole result as the answer, as before."""
        return self.ls.client_plugin() is None and not args.wait

    def start_in_background(self, phase: str, uri: str, work: Coroutine[Any, Any, dict[str, Any]],
                            run_id: str | None = None) -> dict[str, Any]:
        """Run ``work`` (a phase command, with its whole result) as a task of its own and answer
        now. The phase delivers as it always does (the edit, diagnostics, the plan document,
        progress, cancellable through its token); when it ends, one message says how it went."""
        task = asyncio.get_running_loop().create_task(self._background(phase, uri, work))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        started: dict[str, Any] = {"ok": True, "started": True, "phase": phase, "uri": uri,
                                   "message": f"Phasewise {phase} started: its progress, result and problems "
                                              f"arrive as they come"}
        if run_id:
            started["runId"] = run_id
        return started

    async def _background(self, phase: str, uri: str, work: Coroutine[Any, Any, dict[str, Any]]) -> None:
        IN_BACKGROUND.set(True)  # this task's own context: its requests' ids are answered already
        try:
            result = await work
        except CommandError as err:
            self._say(types.MessageType.Warning, f"Phasewise {phase} did not start: {err}")
            return
        except asyncio.CancelledError:
            self._say(types.MessageType.Info, f"Phasewise {phase}: cancelled")
            return
        except Exception as err:  # never a silent end: the client was told it started
            log.exception("phase %s in the background", phase)
            self._say(types.MessageType.Error, f"Phasewise {phase} failed inside Phasewise ({type(err).__name__}); "
                                               f"see the server's log")
            return
        self._say(*finished_message(phase, uri, result, self._shown_where(uri, result.get("shownAt"))))

    def _shown_where(self, uri: str, shown: Any) -> str | None:
        """Where a plan document was written, as the user finds it: relative to the workspace folder."""
        from pygls.uris import to_fs_path

        path = to_fs_path(shown) if isinstance(shown, str) else None
        folder = workspace_folder(self.ls, uri)
        if path is None:
            return None
        return str(Path(path).relative_to(folder)) if folder and Path(path).is_relative_to(folder) else path

    def _say(self, kind: types.MessageType, message: str) -> None:
        from phasewise.edge.diagnostics import plain_text

        self.ls.window_show_message(types.ShowMessageParams(type=kind, message=plain_text(message)))

    async def run_command(self, phase: str, args: PhaseArgs) -> dict[str, Any]:
        """One phase on a document, as a command: the contract's phase result (or, for a client
        without the plugin, "started", and the phase runs on: ``answers_at_once``)."""
        from phasewise.phases.service import PhaseInput, new_run_id
        from phasewise.settings import with_phase_model

        loaded = await self.ls.settings_for(args.uri)
        if args.model:
            loaded = with_phase_model(loaded, phase, args.model)
        route = self.ls.runner.route(loaded, phase)  # resolved once, here, for the whole phase
        if route.kind not in ("review", "qa"):  # a review or a qa phase needs no instruction
            args.require_instruction()
        doc = self.ls.document(args.uri)
        self._last[(args.uri, phase)] = args
        inp = PhaseInput(doc, args.instruction or "", args.line_range(), args.plan, users_words=args.users_words)
        if self.answers_at_once(args):
            inp.run_id = new_run_id()
            return self.start_in_background(phase, args.uri, self._whole(phase, inp, loaded, route), inp.run_id)
        return await self._whole(phase, inp, loaded, route)

    async def _whole(self, phase: str, inp: PhaseInput, loaded: LoadedSettings, route: PhaseRoute) -> dict[str, Any]:
        result = await self.execute(phase, inp, loaded, route=route, remember=False)
        return result.to_json()

    async def retry(self, args: RetryArgs) -> dict[str, Any]:
        """The document's last run of that phase, again (on ``model`` when given): any phase, the
        built-in three and the user's own, run alone or in a run."""
        last = self._last.get((args.uri, args.phase))
        if last is None:
            raise CommandError(f"nothing to retry: the {args.phase} phase has not run on that document since "
                               f"the server started")
        again = attrs.evolve(last, model=args.model or last.model, wait=True)
        if self.answers_at_once(args):
            return self.start_in_background(args.phase, args.uri, self._retry(args, again))
        return await self._retry(args, again)

    async def _retry(self, args: RetryArgs, again: PhaseArgs) -> dict[str, Any]:
        # a rate limit: wait (a visible, cancellable countdown) until it lifts, then run
        if (cancelled := await wait_for_limit(self.ls, args.uri, args.phase, again.model)) is not None:
            return cancelled
        return await self.run_command(args.phase, again)

    async def execute(self, phase: str, inp: PhaseInput, loaded: LoadedSettings, *,
                      route: PhaseRoute | None = None, workflow: str | None = None,
                      remember: bool = True) -> PhaseResult:
        """Run ``phase`` through the one phase runner, this feature as its door: progress, a code
        result applied with ``workspace/applyEdit``, the outcome published, the run recorded."""
        if inp.workspace is None:
            inp.workspace = self.workspace_of(inp.document.uri)
        door = EdgeDoor(self, remember=remember)
        return await self.ls.runner.phase(loaded, phase, inp, door, route=route, workflow=workflow)

    def remember(self, phase: str, inp: PhaseInput) -> None:
        """What ``phasewise.retry`` runs again for a phase that ran in a run (or any door but the
        phase commands, which remember their own arguments)."""
        rng = inp.range
        self._last[(inp.document.uri, phase)] = PhaseArgs(
            uri=inp.document.uri, instruction=inp.instruction, plan=inp.plan,
            origin="user" if inp.users_words else "document",
            range=None if rng is None else types.Range(types.Position(rng.start, 0), types.Position(rng.end, 0)))

    def workspace_of(self, uri: str) -> Workspace | None:
        """The workspace a phase on ``uri`` reads related files from: the client's workspace folders
        and open buffers, when the document lies inside one of the folders (else none: a file
        from elsewhere is worked on alone)."""
        from phasewise.edge.workspace_edit import workspace_of

        if workspace_folder(self.ls, uri) is None:
            return None
        ws = self.ls.workspace
        folder_uris = [f.uri for f in ws.folders.values()] or ([ws.root_uri] if ws.root_uri else [])
        return workspace_of(folder_uris, ws.text_documents, self.ls.index)

    def publish_outcome(self, doc: Document, rng: LineRange | None, result: PhaseResult) -> None:
        from phasewise.problems import ProblemKind

        book = self.ls.diagnostics
        uri = doc.uri
        where = problem_range(doc.lines, rng)
        if result.error is not None:
            if result.error.kind is not ProblemKind.CANCELLED:
                book.set_problem(uri, doc.lines, result.error, rng)
            return
        book.clear_problem(uri, result.phase)
        if result.fallback_used and result.attempts:
            first = result.attempts[0]
            book.set_note(
                uri, doc.lines, result.phase,
                f"The {result.phase} phase was served by the fallback {result.provider}/{result.model} "
                f"because {first.provider}/{first.model} failed ({first.outcome}).",
                where,
                {"phase": result.phase, "provider": result.provider, "model": result.model,
                 "attempts": [a.to_json() for a in result.attempts]},
            )
        if result.kind in ("review", "qa"):
            # each finding on the file it is about: the document, or another file the change touched;
            # a phase's findings replace only that phase's earlier ones (source phasewise-<phase>)
            by_file: dict[str, list[Any]] = {uri: []}
            for finding in result.findings:
                by_file.setdefault(finding.uri or uri, []).append(finding)
            for file_uri, found in by_file.items():
                lines = doc.lines if file_uri == uri else self._lines_of(file_uri)
                if lines is not None:
                    book.set_findings(file_uri, lines, found, result.run_id, result.phase)

    def _lines_of(self, uri: str) -> list[str] | None:
        try:
            return self.ls.document(uri).lines
        except CommandError:
            return None

    async def apply_code(self, result: PhaseResult, loaded: LoadedSettings,
                         progress: PhaseProgress | None = None) -> None:
        """Apply a code result's change, every file or none, if nothing moved on since the phase
        read it; with ``phases.code.confirm`` the edit asks the editor to show it first (and the
        progress says the phase now waits for the user, not for the provider)."""
        from phasewise.edge.workspace_edit import apply_change_set, asks_confirmation, open_documents
        from phasewise.problems import Problem, ProblemKind

        ls = self.ls
        changes = result.changes
        if not changes:
            result.applied = True  # nothing to change
            return
        own = loaded.settings.phases.get(result.phase)
        confirm = own.confirm if own is not None else True
        who = f"{result.provider}/{result.model}"

        ws_caps = ls.client_capabilities.workspace
        declared = bool(ws_caps and ws_caps.apply_edit)

        async def send(params: types.ApplyWorkspaceEditParams) -> object:
            # The user may take their time over the editor's preview, but not for ever. A client
            # that does not declare workspace/applyEdit may apply the edit and never answer (Vim's
            # ALE does): after a while the edit is taken as applied, and the log says so.
            try:
                return await ask_client(ls, "workspace/applyEdit", ls.workspace_apply_edit_async(params),
                                        APPLY_SECONDS if declared else UNDECLARED_APPLY_SECONDS)
            except ClientSilent as silent:
                if declared or silent.why.startswith("it answered"):
                    return types.ApplyWorkspaceEditResult(applied=False, failure_reason=str(silent))
                ls.log_line(f"Phasewise code ({who}): the editor did not answer workspace/applyEdit within "
                            f"{UNDECLARED_APPLY_SECONDS:.0f} s (it does not declare it); taken as applied")
                return types.ApplyWorkspaceEditResult(applied=True)

        if progress is not None:
            files = f"{len(changes.files)} file{'s' if len(changes.files) != 1 else ''}"
            progress.on_status(f"the change to {files} is shown for review: waiting for it to be applied or "
                               f"discarded" if asks_confirmation(ls.client_capabilities, confirm)
                               else f"applying the change to {files}")
        label = f"Phasewise {result.phase} ({who})" + (f" — {result.caveat}" if result.caveat else "")
        problem = await apply_change_set(
            send, changes, open_documents(ls.workspace.text_documents), ls.client_capabilities,
            confirm=confirm, label=label,
            encoding=types.PositionEncodingKind(ls.workspace.position_encoding or types.PositionEncodingKind.Utf16),
            provider=result.provider, model=result.model,
        )
        result.applied = problem is None
        if problem is None:
            ls.files_changed()  # the next phase's context sees the changed (and created) files at once
            return
        result.ok = False
        if problem.kind is ProblemKind.DOCUMENT_CHANGED and _declined(problem.message):
            # the user said no in the editor's preview: that is not a failure to show as a problem
            problem = Problem(ProblemKind.CANCELLED,
                              f"The code phase's change ({who}, {len(changes.files)} file"
                              f"{'s' if len(changes.files) != 1 else ''}) was declined in the editor; "
                              f"nothing was applied.", phase=result.phase, provider=result.provider,
                              model=result.model)
        result.error = problem



class EdgeDoor:
    """The LSP edge as the phase runner's door: a work-done progress (created without a client round
    trip, cancellable), the change sent with ``workspace/applyEdit``, the outcome as diagnostics, a
    plan document for clients without a plugin, and a line in the client's log."""

    source = "lsp"
    cancel_is_result = True  # the progress bar's Cancel (or $/cancelRequest) ends the phase as `cancelled`

    def __init__(self, feature: PhasesFeature, *, remember: bool = True) -> None:
        self.feature = feature
        self.ls = feature.ls
        self._request_id: object = None
        self._remember = remember

    def start(self, route: PhaseRoute, inp: PhaseInput) -> PhaseProgress:
        ls = self.ls
        main = route.main
        who = f"{main.provider}/{main.model}" if main else "unrouted"
        run_id = inp.run_id or ""
        # The token is created while the phase runs: no client round trip before the provider call.
        progress = PhaseProgress.creating(ls, run_id=run_id, phase=route.phase, uri=inp.document.uri)
        progress.route = who
        progress.begin(f"Phasewise {route.phase}: {who}")  # the plugins read the phase from this title
        if inp.round:
            progress.on_status(f"fix round {inp.round}: the checks failed, the {route.phase} phase goes again")
        ls.log_line(f"[{run_id}] {route.phase} phase starting on {who}")
        if self._remember:
            self.feature.remember(route.phase, inp)
        task = asyncio.current_task()
        assert task is not None
        # a phase in the background: its request was answered, only its progress token cancels it
        self._request_id = None if IN_BACKGROUND.get() else ls.protocol.msg_id
        ls.runs.add(self._request_id, progress.token, task)
        return progress

    def stop(self, observer: Observer) -> None:
        assert isinstance(observer, PhaseProgress)
        self.ls.runs.remove(self._request_id, observer.token)

    async def ask_command(self, question: CommandQuestion) -> Reply:
        """``window/showMessageRequest``: Allow once · Always for this workspace · Deny. A client
        that does not declare it, an error or an odd answer, or none within ``ASK_SECONDS``: not
        allowed."""
        from phasewise.phases.commands import ACTIONS, Reply, decision_of

        ls = self.ls
        window = ls.client_capabilities.window
        if window is None or window.show_message is None:
            return Reply("unanswered", "this editor cannot ask you (it does not declare window/showMessageRequest)")
        params = types.ShowMessageRequestParams(type=types.MessageType.Warning, message=f"Phasewise: {question.text}",
                                                actions=[types.MessageActionItem(title=a) for a in ACTIONS])
        ls.log_line(f"asking to run `{question.line}` (command `{question.name}`, {question.phase} phase)")
        try:
            picked = await ask_client(ls, "window/showMessageRequest",
                                      ls.window_show_message_request_async(params), ASK_SECONDS)
        except ClientSilent as silent:
            return Reply("unanswered", silent.why)
        title = getattr(picked, "title", None)
        decision = decision_of(title if isinstance(title, str) else None)
        return Reply(decision, "the question was dismissed" if picked is None else "an answer that is not one of "
                     "the choices" if decision == "unanswered" else "")

    async def apply(self, result: PhaseResult, loaded: LoadedSettings, observer: Observer) -> None:
        await self.feature.apply_code(result, loaded, observer if isinstance(observer, PhaseProgress) else None)

    async def finish(self, result: PhaseResult, inp: PhaseInput, loaded: LoadedSettings,
                     observer: Observer) -> None:
        ls = self.ls
        doc = inp.document
        self.feature.publish_outcome(doc, inp.range, result)
        if result.text and result.kind == "plan" and wants_documents(ls):
            result.shown_at = await show_plan(ls, doc, result.phase, inp.instruction, result,
                                              loaded.settings.plans_directory)
        served = f"{result.provider}/{result.model}"
        outcome = "ok" if result.ok else f"failed: {result.error.kind if result.error else '?'}"
        if result.ok and result.incomplete:  # ok, and cut at the output limit: result.note says what to do
            outcome += ", cut at the output limit"
        assert isinstance(observer, PhaseProgress)
        observer.end(f"{result.phase} {outcome} ({served})")
        ls.log_line(f"[{result.run_id}] {result.phase} phase {outcome}, served by {served} in "
                    f"{result.total_ms:.0f} ms")

    def said(self, message: str) -> None:
        self.ls.log_line(message)


def finished_message(phase: str, uri: str, result: dict[str, Any],
                     shown: str | None = None) -> tuple[types.MessageType, str]:
    """The one message a phase that answered "started" ends with (its result is also where it
    always is: the edit, the diagnostics, the plan document)."""
    from pathlib import PurePosixPath

    name = PurePosixPath(uri).name or uri
    who = f" ({result['provider']}/{result['model']})" if result.get("provider") else ""
    error = result.get("error") if isinstance(result.get("error"), dict) else None
    if result.get("cancelled") or (error and error.get("kind") == "cancelled"):
        said = error.get("message") if error else None
        return types.MessageType.Info, f"Phasewise {phase}{who}: {said or 'cancelled'}"
    if isinstance(result.get("phases"), list):  # a run: its phases, each delivered as it ended
        ran = ", ".join(str(p.get("phase")) for p in result["phases"] if isinstance(p, dict))
        if result.get("ok"):
            return types.MessageType.Info, f"Phasewise run on {name}: done ({ran})"
        said = error.get("message") if error else "a phase failed"
        return types.MessageType.Warning, f"Phasewise run on {name} stopped at {result.get('stoppedAt')}: {said}"
    if not result.get("ok"):
        said = error.get("message") if error else "it failed"
        return types.MessageType.Warning, f"Phasewise {phase}{who} failed on {name}: {said}"
    if "findings" in result:
        found = len(result.get("findings") or [])
        return types.MessageType.Info, (f"Phasewise {phase}{who}: {found} finding{'s' if found != 1 else ''} on "
                                        f"{name}" + (" (in the problems list)" if found else ""))
    if result.get("files") is not None:
        files = len(result.get("files") or [])
        done = "applied" if result.get("applied") else "not applied"
        return types.MessageType.Info, (f"Phasewise {phase}{who}: {done}, {files} file{'s' if files != 1 else ''}"
                                        if files else f"Phasewise {phase}{who}: no change to make")
    where = f", in {shown}" if shown else ""
    return types.MessageType.Info, f"Phasewise {phase}{who}: done{where}"


def _declined(message: str) -> bool:
    """Whether an editor's refusal reads as the user declining the change (VS Code's preview
    answers with no reason at all; Neovim's plugin says "cancelled by the user")."""
    lowered = message.lower()
    return any(word in lowered for word in ("cancel", "declin", "reject", "the user declined it"))
