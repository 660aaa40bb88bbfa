"""LSP handlers and commands: each takes the server first and hands off at once."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from phasewise.edge import fixes
from phasewise.edge.diagnostics import problem_range
from phasewise.edge.progress import PhaseProgress
from phasewise.edge.server import (
    SET_KEYS,
    CommandError,
    PhaseArgs,
    PhasewiseServer,
    parse_phase_args,
    warm_up_routes,
)

log = logging.getLogger("phasewise")

if TYPE_CHECKING:
    from phasewise.keystore import KeyStoreInfo
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseResult
    from phasewise.settings import LoadedSettings


def register(ls: PhasewiseServer) -> None:
    @ls.feature(types.INITIALIZE)
    def on_initialize(ls: PhasewiseServer, params: types.InitializeParams) -> None:
        ls.set_initialization_options(params.initialization_options)

    @ls.feature(types.INITIALIZED)
    async def on_initialized(ls: PhasewiseServer, params: types.InitializedParams) -> None:
        await warm_up_routes(ls)

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def on_config(ls: PhasewiseServer, params: types.DidChangeConfigurationParams) -> None:
        ls.settings_changed(params.settings)
        ls.diagnostics.recheck_soon()  # issue 12: problems the new settings fixed go (offline)

    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: PhasewiseServer, params: types.DidOpenTextDocumentParams) -> None:
        pass  # pygls keeps the document; registering makes the client send full text sync

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: PhasewiseServer, params: types.DidChangeTextDocumentParams) -> None:
        # issue 12: findings whose lines changed go; offline problems are checked again
        ls.diagnostics.document_changed(params.text_document.uri)

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def on_progress_cancel(ls: PhasewiseServer, params: types.WorkDoneProgressCancelParams) -> None:
        ls.runs.cancel_token(str(params.token))

    @ls.feature(SET_KEYS)
    def on_set_keys(ls: PhasewiseServer, params: Any) -> None:
        plain_params = as_plain(params) if params is not None else None
        keys = plain_params.get("keys") if isinstance(plain_params, dict) else None
        if not isinstance(keys, dict):
            log.warning("phasewise/setKeys without a {keys: {ENV: value}} object: ignored")
        else:
            ls.engine.keyring.set_memory({str(k): str(v or "") for k, v in keys.items()})
            ls.log_line(f"keys received in memory for: {', '.join(sorted(keys)) or 'none'}")
            ls.diagnostics.recheck_soon()  # issue 12: a "no key" problem the key fixed goes (offline)

    @ls.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def on_code_action(ls: PhasewiseServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return code_actions(ls, params)

    for phase in PHASES:
        _phase_command(ls, phase)

    from phasewise.edge import workflow_commands

    workflow_commands.register(ls)
    fixes.register(ls)  # issue 12: phasewise.showSettings, phasewise.showKeyHelp

    @ls.command("phasewise.status")
    async def status(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        uri = _opt_uri(args)
        return await status_report(ls, uri)

    @ls.command("phasewise.retry")
    async def retry(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        arg = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        if arg is None or not isinstance(arg.get("uri"), str) or arg.get("phase") not in PHASES:
            raise JsonRpcInvalidParams.of(ValueError("expected {uri, phase, model?}"))
        last = ls._last_args.get((arg["uri"], arg["phase"]))
        if last is None:
            raise JsonRpcInvalidParams.of(ValueError("nothing to retry for that document and phase"))
        again = dict(last)
        if isinstance(arg.get("model"), str):
            again["model"] = arg["model"]
        from phasewise.edge.retry_wait import wait_for_limit  # issue 12: wait until the limit lifts

        if (cancelled := await wait_for_limit(ls, arg["uri"], arg["phase"], again.get("model"))) is not None:
            return cancelled
        return await run_phase_command(ls, arg["phase"], again)


PHASES = ("plan", "code", "review")


def as_plain(value: Any) -> Any:
    """Custom-method params as plain dicts: pygls hands them over as namedtuples."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    return value


def _opt_uri(args: tuple[Any, ...]) -> str | None:
    if len(args) == 1 and isinstance(args[0], dict) and isinstance(args[0].get("uri"), str):
        return str(args[0]["uri"])
    return None


def _phase_command(ls: PhasewiseServer, phase: str) -> None:
    async def handler(ls: PhasewiseServer, *args: Any) -> dict[str, Any]:
        return await run_phase_command(ls, phase, args[0] if len(args) == 1 else list(args))

    ls.command(f"phasewise.{phase}")(handler)


def _with_model(loaded: LoadedSettings, phase: str, model: str) -> LoadedSettings:
    """Settings where ``phase`` uses ``model`` (a retry on a chosen fallback)."""
    from phasewise.settings import PhaseSettings, load_settings

    raw = loaded.settings.model_dump(by_alias=True, exclude_none=True, mode="json")
    current = loaded.settings.phases.get(phase) or PhaseSettings()
    entry = current.model_dump(by_alias=True, exclude_none=True, mode="json")
    entry["model"] = model
    entry["fallbacks"] = []
    raw.setdefault("phases", {})[phase] = entry
    return load_settings(raw)


async def run_phase_command(ls: PhasewiseServer, phase: str, raw_args: Any) -> dict[str, Any]:
    try:
        args = parse_phase_args(raw_args, need_instruction=phase != "review")
        doc = ls.document(args.uri)
    except CommandError as err:
        raise JsonRpcInvalidParams.of(ValueError(f"phasewise.{phase}: {err}")) from None
    ls._last_args[(args.uri, phase)] = raw_args if isinstance(raw_args, dict) else {}
    loaded = await ls.settings_for(args.uri)
    if args.model:
        loaded = _with_model(loaded, phase, args.model)
    result = await execute_phase(ls, phase, args, doc, loaded)
    return result.to_json()


async def execute_phase(ls: PhasewiseServer, phase: str, args: PhaseArgs, doc: Document,
                        loaded: LoadedSettings, *, run_id: str | None = None,
                        change: str | None = None) -> PhaseResult:
    from phasewise.phases.service import PhaseInput, cancelled_result, new_run_id

    service = ls.service
    run_id = run_id or new_run_id()
    phase_route = service.route(loaded, phase)
    main = phase_route.main
    who = f"{main.provider}/{main.model}" if main else "unrouted"
    # The token is created while the phase runs: no client round trip before the provider call.
    progress = PhaseProgress.creating(ls, run_id=run_id, phase=phase, uri=args.uri)
    token = progress.token
    progress.begin(f"Phasewise {phase}: {who}")
    ls.log_line(f"[{run_id}] {phase} phase starting on {who}")
    task = asyncio.current_task()
    request_id = ls.protocol.msg_id
    assert task is not None
    ls.runs.add(request_id, token, task)
    inp = PhaseInput(doc, args.instruction, args.range, args.plan, change, run_id)
    try:
        result = await service.run(loaded, phase, inp, progress)
        if phase == "code" and result.ok:
            await apply_code(ls, doc, result)
    except asyncio.CancelledError:
        task.uncancel()
        result = cancelled_result(phase, run_id, phase_route)
    finally:
        ls.runs.remove(request_id, token)
    publish_outcome(ls, args, doc, result)
    from phasewise.edge.workflow_commands import record_phase

    record_phase(ls, args, result, loaded)
    served = f"{result.provider}/{result.model}"
    outcome = "ok" if result.ok else f"failed: {result.error.kind if result.error else '?'}"
    progress.end(f"{phase} {outcome} ({served})")
    ls.log_line(f"[{run_id}] {phase} phase {outcome}, served by {served} in {result.total_ms:.0f} ms")
    return result


def _problem_range(doc: Document, args: PhaseArgs) -> types.Range:
    return problem_range(doc.lines, args.range)  # issue 12: the whole range the command ran on


def publish_outcome(ls: PhasewiseServer, args: PhaseArgs, doc: Document, result: PhaseResult) -> None:
    from phasewise.problems import ProblemKind

    uri = args.uri
    if result.error is not None:
        if result.error.kind is not ProblemKind.CANCELLED:
            ls.diagnostics.set_problem(uri, doc.lines, result.error, args.range)
        return
    ls.diagnostics.clear_problem(uri, result.phase)
    if result.fallback_used and result.attempts:
        first = result.attempts[0]
        ls.diagnostics.set_note(
            uri, doc.lines, result.phase,
            f"The {result.phase} phase was served by the fallback {result.provider}/{result.model} "
            f"because {first.provider}/{first.model} failed ({first.outcome}).",
            _problem_range(doc, args),
            {"phase": result.phase, "provider": result.provider, "model": result.model,
             "attempts": [a.to_json() for a in result.attempts]},
        )
    if result.phase == "review":
        ls.diagnostics.set_findings(uri, doc.lines, result.findings, result.run_id)


async def apply_code(ls: PhasewiseServer, doc: Document, result: PhaseResult) -> None:
    """Apply a code result if the document is unchanged since the phase started; all or nothing."""
    from phasewise.edge.uris import open_document  # issue 12: pygls files documents unquoted
    from phasewise.problems import Problem, ProblemKind

    current = open_document(ls.workspace, doc.uri)
    changed = (
        (current is None and doc.version is not None)
        or (current is not None and (current.version != doc.version or current.source != doc.text))
    )
    if doc.version is None and current is None:
        try:
            changed = ls.document(doc.uri).text != doc.text
        except Exception:
            changed = True
    if changed:
        result.ok, result.applied = False, False
        result.error = Problem(
            ProblemKind.DOCUMENT_CHANGED,
            f"The document changed while the code phase ({result.provider}/{result.model}) was "
            f"running, so its edit was not applied (nothing was changed). Run the phase again.",
            phase="code", provider=result.provider, model=result.model,
        )
        return
    if not result.edits or result.new_text is None:
        result.applied = True
        return
    edit = minimal_edit(ls, doc, result.new_text)
    if ls.supports_document_changes():
        workspace_edit = types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
            edits=[edit],
        )])
    else:
        workspace_edit = types.WorkspaceEdit(changes={doc.uri: [edit]})
    reason = "the document changed"
    try:
        response = await asyncio.shield(ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=workspace_edit, label=f"Phasewise code ({result.provider}/{result.model})"
        )))
        result.applied = bool(getattr(response, "applied", False))
        reason = getattr(response, "failure_reason", None) or reason
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # an editor without workspace/applyEdit, or one that answers with an error
        result.applied = False
        said = getattr(exc, "message", None) or type(exc).__name__
        reason = f"it answered workspace/applyEdit with an error ({said})"
    if not result.applied:
        result.ok = False
        result.error = Problem(
            ProblemKind.DOCUMENT_CHANGED,
            f"The editor refused the code phase's edit ({result.provider}/{result.model}): "
            f"{reason}. Nothing was applied.",
            phase="code", provider=result.provider, model=result.model,
        )


def _common_length(old: str, new: str, limit: int, end: Callable[[str, int], str]) -> int:
    """Length of the longest common end (``end`` cuts a prefix or a suffix), by bisection:
    string comparisons run in C, a character loop in Python blocked the loop 26 ms on 200 KB."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if end(old, mid) == end(new, mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def minimal_edit(ls: PhasewiseServer, doc: Document, new_text: str) -> types.TextEdit:
    """One TextEdit turning ``doc.text`` into ``new_text``: the span between common ends."""
    old = doc.text
    limit = min(len(old), len(new_text))
    a = _common_length(old, new_text, limit, lambda s, n: s[:n])
    b = _common_length(old, new_text, limit - a, lambda s, n: s[len(s) - n:])
    lines = old.split("\n")

    def pos(offset: int) -> types.Position:
        line = old.count("\n", 0, offset)
        col = offset - (old.rfind("\n", 0, offset) + 1)
        return types.Position(line, col)

    rng = types.Range(pos(a), pos(len(old) - b))
    rng = ls.workspace.position_codec.range_to_client_units(lines, rng)
    return types.TextEdit(range=rng, new_text=new_text[a : len(new_text) - b])


def code_actions(ls: PhasewiseServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    return fixes.code_actions(ls, params)  # issue 12: moved to edge/fixes.py


async def _keyring_info(ls: PhasewiseServer) -> KeyStoreInfo:
    """Asked once off the loop (a keyring may be slow to answer), then known: no thread hop."""
    known = ls.engine.keyring.store_info_known()
    if known is not None:
        return known
    return await asyncio.to_thread(ls.engine.keyring.store_info)


async def status_report(ls: PhasewiseServer, uri: str | None) -> dict[str, Any]:
    """The resolved route of every phase and the problems found offline (no network)."""
    from phasewise.phases.documents import Document
    from phasewise.phases.service import PhaseInput

    loaded = await ls.settings_for(uri)
    resolver = ls.engine.resolver(loaded)
    try:
        doc = ls.document(uri) if uri else Document("untitled:status", "")
    except CommandError:
        doc = Document(uri or "untitled:status", "")
    phases = []
    for phase in resolver.phase_names():
        view = resolver.describe(resolver.phase(phase))
        problem = ls.service.preflight(loaded, phase, PhaseInput(doc, "status"))
        view["problem"] = problem.to_json() if problem else None
        phases.append(view)
    from phasewise import __version__

    return {
        "version": __version__,
        "phases": phases,
        "settingsIssues": [{"path": i.path, "message": i.message} for i in loaded.issues],
        "keysInMemory": sorted(ls.engine.keyring.memory_envs()),
        "keyring": (await _keyring_info(ls)).to_json(),
        "sdksImported": sorted(m for m in ("openai", "anthropic") if m in sys.modules),
    }
