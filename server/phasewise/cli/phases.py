"""``phasewise run``, ``plan``, ``code``, ``review`` and ``compare`` on files, without an editor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    from phasewise.cli.headless import FileSession
    from phasewise.router.router import Engine

from phasewise.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    console_for,
    file_arg,
    headless_for,
    print_json,
    range_arg,
    report_ledger_failures,
    session_for,
    settings_for,
    user_path,
    with_engine,
)

# ----------------------------------------------------------------------------- run, plan, code, review

async def cmd_run(args: argparse.Namespace) -> int:
    from phasewise.cli.render import ProgressBoard, run_summary

    path = file_arg(args)
    found = settings_for(args, path)
    rng = range_arg(args)
    console = console_for(args)
    session = session_for(path, dry_run=args.dry_run, workspace=args.workspace)
    pipeline = [p.strip() for p in (args.pipeline or "").split(",") if p.strip()] or None
    known = {"plan", "code", "review", *found.loaded.settings.phases}
    if pipeline and (unknown := [p for p in pipeline if p not in known]):
        raise UsageError(f"--pipeline names {', '.join(unknown)}, which are not phases: use plan, code, review or "
                         f"phases declared in the settings (phasewise.phases.<name>)")
    wrong = [i.describe() for i in found.loaded.issues if i.path.startswith("phasewise.pipeline")]
    if pipeline is None and wrong:
        raise UsageError("the settings' pipeline cannot run: " + "; ".join(wrong))

    async def body(engine: Engine) -> int:
        board = ProgressBoard(console, enabled=not args.json)
        headless = headless_for(engine, found, board, "run", allow_commands=args.allow_commands)
        with board.shown():
            outcome = await headless.run(session, args.instruction, rng=rng, pipeline=pipeline)
        protocols = {r.phase: headless.protocol_of(r.provider) for r in outcome.results}
        report_ledger_failures(headless)
        if args.json:
            out = outcome.to_json()
            out.update({"file": str(path), "written": session.written, "dryRun": args.dry_run,
                        "writtenFiles": [str(p) for p in session.written_files],
                        "protocols": protocols, "settings": str(found.path) if found.path else None,
                        "ledger": str(headless.recorder.ledger.path), **workspace_json(session)})
            print_json(out)
        else:
            console.print(f"[dim]settings: {found.origin} · run record: {headless.recorder.ledger.path}[/]")
            console.print(f"[dim]workspace: {session.root_note}[/]", highlight=False)
            run_summary(console, outcome, protocols, dry_run=args.dry_run, path=str(path))
        return EXIT_OK if outcome.ok else EXIT_FAILED

    return await with_engine(body)


def workspace_json(session: FileSession) -> dict[str, str | None]:
    """The folder the command took as the workspace (None: the file alone) and how it was chosen."""
    return {"workspace": str(session.root) if session.root else None, "workspaceNote": session.root_note}


def _plan_arg(raw: str | None) -> str | None:
    if raw and raw.startswith("@"):
        try:
            return Path(raw[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the plan from {raw[1:]}: {exc.strerror or exc}") from None
    return raw


async def cmd_phase(args: argparse.Namespace) -> int:
    from phasewise.cli.render import ProgressBoard, phase_details, phases_table

    phase = args.command
    path = file_arg(args)
    found = settings_for(args, path)
    rng = range_arg(args)
    plan = _plan_arg(getattr(args, "plan", None))
    console = console_for(args)
    session = session_for(path, dry_run=bool(getattr(args, "dry_run", False)), workspace=args.workspace)

    async def body(engine: Engine) -> int:
        board = ProgressBoard(console, enabled=not args.json)
        headless = headless_for(engine, found, board, None, allow_commands=args.allow_commands)
        with board.shown():
            result = await headless.phase(session, phase, args.instruction, rng=rng, plan=plan)
        report_ledger_failures(headless)
        protocol = headless.protocol_of(result.provider)
        if args.json:
            out = result.to_json()
            out.update({"file": str(path), "protocol": protocol, "written": session.written,
                        "ledger": str(headless.recorder.ledger.path), **workspace_json(session)})
            print_json(out)
        else:
            console.print(f"[dim]workspace: {session.root_note}[/]", highlight=False)
            phase_details(console, result, path.name)
            console.print(phases_table([result], {phase: protocol}, f"{phase} ({result.run_id})"))
        return EXIT_OK if result.ok else EXIT_FAILED

    return await with_engine(body)


# ----------------------------------------------------------------------------- compare

async def cmd_compare(args: argparse.Namespace) -> int:
    from phasewise.cli.render import ProgressBoard, compare_view
    from phasewise.phases.service import PhaseInput
    from phasewise.workflows.compare import compare, write_report

    path = file_arg(args)
    found = settings_for(args, path)
    rng = range_arg(args)
    models = [m.strip() for group in args.models for m in group.split(",") if m.strip()]
    if not models:
        raise UsageError("--models needs at least one model reference provider/model")
    if args.phase != "review" and not args.instruction:
        raise UsageError(f"--instruction is required to compare the {args.phase} phase")
    console = console_for(args)
    session = session_for(path, dry_run=True)  # a comparison never writes the file

    async def body(engine: Engine) -> int:
        board = ProgressBoard(console, enabled=not args.json)
        headless = headless_for(engine, found, None, "compare")
        with board.shown():
            report = await compare(headless.service, found.loaded, args.phase, models,
                                   PhaseInput(session.document(), args.instruction, rng, users_words=True),
                                   observer_for=lambda m: board.observer(args.phase, m))
        door = headless.door(session)
        for row in report.rows:
            headless.runner.record(found.loaded, row.result, door, workflow="compare", instruction=args.instruction,
                                   document=session.path.as_uri())
        report_ledger_failures(headless)
        try:
            written = write_report(report, headless.recorder.ledger.path, user_path(args.report))
        except OSError as exc:
            raise UsageError(f"cannot write the report: {exc.strerror or exc}") from None
        if args.json:
            out = report.to_json()
            out["reportPath"] = str(written)
            print_json(out)
        else:
            console.print(compare_view(report))
            console.print(f"Report: {written}")
        return EXIT_OK if report.ok else EXIT_FAILED

    return await with_engine(body)

