"""``phasewise doctor``/``verify``, ``models``, ``history`` and ``cache``: what the providers and the run record say."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    from phasewise.router.router import Engine

from phasewise.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    console_for,
    near_of,
    print_json,
    settings_for,
    user_path,
    with_engine,
)

# ----------------------------------------------------------------------------- doctor, models, history


async def cmd_doctor(args: argparse.Namespace) -> int:
    from phasewise.cli.render import doctor_view
    from phasewise.workflows.doctor import doctor

    found = settings_for(args, near_of(args))
    console = console_for(args)

    async def body(engine: Engine) -> int:
        live = not args.json and console.is_terminal
        with console.status("checking providers…") if live else contextlib.nullcontext():
            report = await doctor(engine, found.loaded, providers=args.provider)
        if args.json:
            out = report.to_json()
            out["settings"] = str(found.path) if found.path else None
            print_json(out)
        else:
            console.print(f"[dim]settings: {found.origin}[/]")
            console.print(doctor_view(report))
        return EXIT_OK if report.ok else EXIT_FAILED

    return await with_engine(body)


async def cmd_models(args: argparse.Namespace) -> int:
    from phasewise.cli.render import models_view
    from phasewise.workflows.discovery import discover

    found = settings_for(args, near_of(args))
    console = console_for(args)

    async def body(engine: Engine) -> int:
        result = await discover(engine, found.loaded, args.provider)
        if args.json:
            print_json(result.to_json())
        else:
            console.print(models_view(result))
        return EXIT_OK if result.problem is None else EXIT_FAILED

    return await with_engine(body)


async def cmd_history(args: argparse.Namespace) -> int:
    from phasewise.cli.render import history_table
    from phasewise.workflows.ledger import Ledger, ledger_path

    path = user_path(args.ledger)
    if path is None:
        found = settings_for(args, Path.cwd())
        path = ledger_path(found.loaded.settings.ledger_path)
    ledger = Ledger(path)
    if args.stats:
        return _history_stats(args, path)
    runs = ledger.runs(limit=10**9 if args.run else args.limit)
    if args.run:
        runs = [r for r in runs if r.run_id == args.run]
    if args.json:
        print_json({"ledger": str(path), "runs": [r.to_json() for r in runs]})
        return EXIT_OK
    console = console_for(args)
    if not runs:
        console.print(f"No runs recorded in {path} yet.")
        return EXIT_OK
    console.print(history_table(runs))
    console.print(f"[dim]{path}[/]")
    return EXIT_OK


def _history_stats(args: argparse.Namespace, path: Path) -> int:
    from phasewise.cli.render import health_table
    from phasewise.router.routes import Keyring, RouteResolver
    from phasewise.workflows.health import health_report, read_tail

    found = settings_for(args, Path.cwd())
    health = health_report(read_tail(path), RouteResolver(found.loaded, Keyring(environ={})))
    if args.json:
        print_json({"ledger": str(path), **health})
        return EXIT_OK
    console = console_for(args)
    if not health["routes"]:
        console.print(f"No provider requests recorded in {path} yet.")
        return EXIT_OK
    console.print(health_table(health))
    console.print(f"[dim]{path}; flagged: most of the last {health['window']} requests failed[/]")
    return EXIT_OK


async def cmd_cache(args: argparse.Namespace) -> int:
    from phasewise.phases.response_cache import clear_responses

    root, removed = clear_responses()
    if args.json:
        print_json({"cache": str(root), "removed": removed})
    else:
        console_for(args).print(f"Removed {removed} cached answer{'s' if removed != 1 else ''} from {root}.")
    return EXIT_OK

