"""The ``phasewise`` command: ``serve`` (the language server) and the tools around it.

Every workflow command shares its code with the language server's command of the same name
(``phasewise.workflows``); here are only arguments, settings lookup and terminal output.
Exit status: 0 done, 1 a phase (or check) failed, 2 wrong arguments or settings file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasewise.problems import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from phasewise.phases.documents import LineRange
    from phasewise.router.router import Engine
    from phasewise.workflows.config import FoundSettings
    from phasewise.workflows.headless import FileSession, Headless
    from phasewise.workflows.render import ProgressBoard

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PHASE_HELP = {"plan": "write a plan for an instruction about FILE",
              "code": "change FILE as instructed (written atomically; --dry-run prints the diff)",
              "review": "review FILE and print the findings"}


class UsageError(InputError):
    """Arguments or a settings file that cannot be used (exit status 2)."""


# ----------------------------------------------------------------------------- arguments

def _common(p: argparse.ArgumentParser, *, settings: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    if settings:
        p.add_argument("--settings", metavar="PATH",
                       help="settings file: JSON with the `phasewise` section, or the section itself "
                            "(default: phasewise.json or .vscode/settings.json in the file's folder or a parent)")


def _file_phase(p: argparse.ArgumentParser, *, instruction_required: bool) -> None:
    p.add_argument("file", metavar="FILE", help="the file to work on")
    p.add_argument("--instruction", "-i", required=instruction_required, default="",
                   help="what to do" + ("" if instruction_required else " (optional)"))
    p.add_argument("--range", metavar="START:END", help="only lines START to END (1-based, inclusive)")
    p.add_argument("--workspace", metavar="DIR", help="the workspace folder whose files the phases may read and "
                   "change (default: the git work tree around FILE, else FILE's folder)")
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phasewise", description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Docs: docs/cli.md. Run `phasewise demo` for an offline tour.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the language server on stdio (the default)")
    sub.add_parser("sim", help="run the offline provider SIMULATOR", add_help=False)

    demo = sub.add_parser("demo", help="plan → code → review over an example file, through the language "
                                       "server, on three simulated providers (no keys, no network)")
    demo.add_argument("--json", action="store_true", help="print the run as JSON")
    demo.add_argument("--real", metavar="FILE", help="use your settings and keys on FILE (a copy is edited)")
    demo.add_argument("--instruction", "-i", help="instruction for --real (or the demo's own)")
    demo.add_argument("--settings", metavar="PATH", help="settings file for --real")

    run = sub.add_parser("run", help="plan → code → review on FILE, each phase on its own route")
    _file_phase(run, instruction_required=True)
    run.add_argument("--dry-run", action="store_true", help="write no file; print every file's diff")

    for phase in ("plan", "code", "review"):
        p = sub.add_parser(phase, help=PHASE_HELP[phase])
        _file_phase(p, instruction_required=phase != "review")
        if phase == "code":
            p.add_argument("--plan", help="a plan to follow (text, or @FILE to read it from a file)")
            p.add_argument("--dry-run", action="store_true", help="write no file; print every file's diff")

    compare = sub.add_parser("compare", help="one phase on several models side by side (nothing is applied)")
    _file_phase(compare, instruction_required=False)
    compare.add_argument("--phase", required=True, help="plan, code or review (or a phase of yours)")
    compare.add_argument("--models", required=True, action="append",
                         help="model references, comma separated: provider/model,provider/model (repeatable)")
    compare.add_argument("--report", metavar="PATH", help="where to write the Markdown report "
                                                          "(default: compare/ beside the run record)")

    for name in ("doctor", "verify"):
        d = sub.add_parser(name, help="check keys, models and latency of the providers in use, then every "
                                      "phase offline" + (" (same as doctor)" if name == "verify" else ""))
        d.add_argument("path", nargs="?", metavar="FILE_OR_FOLDER", help="where to look for settings "
                                                                         "(default: the current folder)")
        d.add_argument("--provider", action="append", help="check only this provider (repeatable)")
        _common(d)

    models = sub.add_parser("models", help="list the models a provider serves (GET /models)")
    models.add_argument("provider", metavar="PROVIDER")
    models.add_argument("path", nargs="?", metavar="FILE_OR_FOLDER", help="where to look for settings")
    _common(models)

    auth = sub.add_parser("auth", help="API keys in the OS keyring: set (from a hidden prompt or stdin), list "
                                       "(masked), clear")
    actions = auth.add_subparsers(dest="auth_command", metavar="ACTION")
    auth_set = actions.add_parser("set", help="store PROVIDER's key in the OS keyring; the key is read from a hidden "
                                              "prompt, or from stdin when piped (never from the command line)")
    auth_set.add_argument("provider", metavar="PROVIDER")
    auth_set.add_argument("--env", metavar="NAME", help="store it as this key variable (default: the provider's)")
    _common(auth_set)
    auth_list = actions.add_parser("list", help="every key variable Phasewise knows, where its key comes from "
                                                "(environment, OS keyring), masked")
    _common(auth_list)
    auth_clear = actions.add_parser("clear", help="remove PROVIDER's key (or every key: `all`) from the OS keyring")
    auth_clear.add_argument("provider", metavar="PROVIDER|all")
    auth_clear.add_argument("--env", metavar="NAME", help="remove this key variable instead of the provider's")
    _common(auth_clear)

    history = sub.add_parser("history", help="recent runs from the run record, with cost per phase and run")
    history.add_argument("--limit", "-n", type=int, default=10, help="how many runs (default 10)")
    history.add_argument("--run", metavar="RUN_ID", help="only this run")
    history.add_argument("--ledger", metavar="PATH", help="read this ledger (default: where runs are recorded)")
    history.add_argument("--stats", action="store_true",
                         help="provider health instead: requests, success rate, failures by kind, p50/p95 times")
    _common(history)
    cache = sub.add_parser("cache", help="Phasewise's local cache of answers (the `cache.responses` setting)")
    cache.add_argument("action", choices=["clear"], help="clear: remove every cached answer")
    _common(cache)
    return parser


# ----------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        from phasewise.sim import run_cli

        return run_cli(argv[1:])
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "auth":
        # never echoed: the extra word may well be a key, typed where it does not belong
        print(f"phasewise auth: {len(unknown)} unexpected argument(s), not shown. A key is never taken from the "
              f"command line (it would stay in your shell history and the process list): run `phasewise auth "
              f"set PROVIDER` and type it at the hidden prompt, or pipe it on stdin.", file=sys.stderr)
        return EXIT_USAGE
    if unknown and args.command not in (None, "serve"):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # serve tolerates e.g. --stdio
    if args.version:
        from phasewise import __version__

        print(f"phasewise {__version__}")
        return EXIT_OK
    if args.command in (None, "serve"):
        from phasewise.edge.setup import serve_stdio

        return serve_stdio()
    if args.command == "demo":
        from phasewise.demo import run_demo

        return run_demo(args)
    handler = COMMANDS[args.command]
    try:
        return asyncio.run(handler(args))
    except UsageError as err:
        print(f"phasewise {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"phasewise {args.command}: cancelled", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------- shared helpers

def _console(args: argparse.Namespace) -> Console:
    import os

    from rich.console import Console

    # Piped output is read by people too (CI logs): wider than rich's 80-column fallback.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, width=wide)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _settings(args: argparse.Namespace, near: Path | None) -> FoundSettings:
    from phasewise.workflows.config import SettingsFileError, load_cli_settings

    try:
        found = load_cli_settings(getattr(args, "settings", None), near)
    except SettingsFileError as err:
        raise UsageError(str(err)) from None
    if found.loaded.issues and not getattr(args, "json", False):
        for issue in found.loaded.issues:
            print(f"phasewise: settings ({found.origin}): {issue.describe()}", file=sys.stderr)
    return found


def _file(args: argparse.Namespace) -> Path:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    return path.resolve()


def _session(path: Path, *, dry_run: bool, workspace: str | None = None) -> FileSession:
    from phasewise.workflows.headless import FileSession

    root = Path(workspace).expanduser().resolve() if workspace else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--workspace {workspace}: no such folder")
    if root is not None and root not in path.parents:
        raise UsageError(f"{path} is not inside the workspace folder {root}")
    try:
        return FileSession(path, dry_run=dry_run, root=root)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path} as UTF-8 text: {exc}") from None


def _user_path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _range(args: argparse.Namespace) -> LineRange | None:
    from phasewise.phases.documents import LineRange

    raw = getattr(args, "range", None)
    if not raw:
        return None
    start, sep, end = str(raw).partition(":")
    try:
        a, b = int(start), int(end if sep else start)
    except ValueError:
        raise UsageError(f"--range expects START:END line numbers (1-based), got {raw!r}") from None
    if a < 1 or b < a:
        raise UsageError(f"--range {raw!r}: lines start at 1 and END may not come before START")
    return LineRange(a - 1, b - 1)


async def _with_engine(body: Callable[[Engine], Coroutine[Any, Any, int]]) -> int:
    from phasewise.router.router import Engine

    engine = Engine()
    try:
        return await body(engine)
    finally:
        await engine.aclose()


def _headless(engine: Engine, found: FoundSettings, board: ProgressBoard | None, workflow: str | None) -> Headless:
    from phasewise.workflows.headless import Headless
    from phasewise.workflows.ledger import Recorder

    settings = found.loaded.settings
    recorder = Recorder(settings.ledger_path, record_content=settings.record_content, source="cli")
    observer_for = board.observer if board is not None else None
    return Headless(engine, found.loaded, recorder, observer_for, workflow)


def _report_ledger_failures(headless: Headless) -> None:
    for failure in headless.recorder.failures:
        print(f"phasewise: warning: {failure}", file=sys.stderr)


# ----------------------------------------------------------------------------- run, plan, code, review

async def cmd_run(args: argparse.Namespace) -> int:
    from phasewise.workflows.render import ProgressBoard, run_summary

    path = _file(args)
    found = _settings(args, path)
    rng = _range(args)
    console = _console(args)
    session = _session(path, dry_run=args.dry_run, workspace=args.workspace)

    async def body(engine: Engine) -> int:
        board = ProgressBoard(console, enabled=not args.json)
        headless = _headless(engine, found, board, "run")
        with board.shown():
            outcome = await headless.run(session, args.instruction, rng=rng)
        protocols = {r.phase: headless.protocol_of(r.provider) for r in outcome.results}
        _report_ledger_failures(headless)
        if args.json:
            out = outcome.to_json()
            out.update({"file": str(path), "written": session.written, "dryRun": args.dry_run,
                        "writtenFiles": [str(p) for p in session.written_files],
                        "protocols": protocols, "settings": str(found.path) if found.path else None,
                        "ledger": str(headless.recorder.ledger.path)})
            _print_json(out)
        else:
            console.print(f"[dim]settings: {found.origin} · run record: {headless.recorder.ledger.path}[/]")
            run_summary(console, outcome, protocols, dry_run=args.dry_run, path=str(path))
        return EXIT_OK if outcome.ok else EXIT_FAILED

    return await _with_engine(body)


def _plan_arg(raw: str | None) -> str | None:
    if raw and raw.startswith("@"):
        try:
            return Path(raw[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the plan from {raw[1:]}: {exc.strerror or exc}") from None
    return raw


async def cmd_phase(args: argparse.Namespace) -> int:
    from phasewise.workflows.render import ProgressBoard, phase_details, phases_table

    phase = args.command
    path = _file(args)
    found = _settings(args, path)
    rng = _range(args)
    plan = _plan_arg(getattr(args, "plan", None))
    console = _console(args)
    session = _session(path, dry_run=bool(getattr(args, "dry_run", False)), workspace=args.workspace)

    async def body(engine: Engine) -> int:
        board = ProgressBoard(console, enabled=not args.json)
        headless = _headless(engine, found, board, None)
        with board.shown():
            result = await headless.phase(session, phase, args.instruction, rng=rng, plan=plan)
        _report_ledger_failures(headless)
        protocol = headless.protocol_of(result.provider)
        if args.json:
            out = result.to_json()
            out.update({"file": str(path), "protocol": protocol, "written": session.written,
                        "ledger": str(headless.recorder.ledger.path)})
            _print_json(out)
        else:
            phase_details(console, result)
            console.print(phases_table([result], {phase: protocol}, f"{phase} ({result.run_id})"))
        return EXIT_OK if result.ok else EXIT_FAILED

    return await _with_engine(body)


# ----------------------------------------------------------------------------- compare

async def cmd_compare(args: argparse.Namespace) -> int:
    from phasewise.phases.service import PhaseInput
    from phasewise.workflows.compare import compare, write_report
    from phasewise.workflows.render import ProgressBoard, compare_view

    path = _file(args)
    found = _settings(args, path)
    rng = _range(args)
    models = [m.strip() for group in args.models for m in group.split(",") if m.strip()]
    if not models:
        raise UsageError("--models needs at least one model reference provider/model")
    if args.phase != "review" and not args.instruction:
        raise UsageError(f"--instruction is required to compare the {args.phase} phase")
    console = _console(args)
    session = _session(path, dry_run=True)  # a comparison never writes the file

    async def body(engine: Engine) -> int:
        from phasewise.phases.service import PhaseService

        board = ProgressBoard(console, enabled=not args.json)
        headless = _headless(engine, found, None, "compare")
        with board.shown():
            report = await compare(PhaseService(engine), found.loaded, args.phase, models,
                                   PhaseInput(session.document(), args.instruction, rng),
                                   observer_for=lambda m: board.observer(args.phase, m))
        for row in report.rows:
            headless.recorder.record(row.result.to_json(), protocol=headless.protocol_of(row.result.provider),
                                     workflow="compare", instruction=args.instruction, document=str(path))
        _report_ledger_failures(headless)
        try:
            written = write_report(report, headless.recorder.ledger.path, _user_path(args.report))
        except OSError as exc:
            raise UsageError(f"cannot write the report: {exc.strerror or exc}") from None
        if args.json:
            out = report.to_json()
            out["reportPath"] = str(written)
            _print_json(out)
        else:
            console.print(compare_view(report))
            console.print(f"Report: {written}")
        return EXIT_OK if report.ok else EXIT_FAILED

    return await _with_engine(body)


# ----------------------------------------------------------------------------- doctor, models, history

def _near(args: argparse.Namespace) -> Path:
    raw = getattr(args, "path", None)
    return Path(raw).expanduser().resolve() if raw else Path.cwd()


async def cmd_doctor(args: argparse.Namespace) -> int:
    from phasewise.workflows.doctor import doctor
    from phasewise.workflows.render import doctor_view

    found = _settings(args, _near(args))
    console = _console(args)

    async def body(engine: Engine) -> int:
        live = not args.json and console.is_terminal
        with console.status("checking providers…") if live else contextlib.nullcontext():
            report = await doctor(engine, found.loaded, providers=args.provider)
        if args.json:
            out = report.to_json()
            out["settings"] = str(found.path) if found.path else None
            _print_json(out)
        else:
            console.print(f"[dim]settings: {found.origin}[/]")
            console.print(doctor_view(report))
        return EXIT_OK if report.ok else EXIT_FAILED

    return await _with_engine(body)


async def cmd_models(args: argparse.Namespace) -> int:
    from phasewise.workflows.discovery import discover
    from phasewise.workflows.render import models_view

    found = _settings(args, _near(args))
    console = _console(args)

    async def body(engine: Engine) -> int:
        result = await discover(engine, found.loaded, args.provider)
        if args.json:
            _print_json(result.to_json())
        else:
            console.print(models_view(result))
        return EXIT_OK if result.problem is None else EXIT_FAILED

    return await _with_engine(body)


async def cmd_history(args: argparse.Namespace) -> int:
    from phasewise.workflows.ledger import Ledger, ledger_path
    from phasewise.workflows.render import history_table

    path = _user_path(args.ledger)
    if path is None:
        found = _settings(args, Path.cwd())
        path = ledger_path(found.loaded.settings.ledger_path)
    ledger = Ledger(path)
    if args.stats:
        return _history_stats(args, path)
    runs = ledger.runs(limit=10**9 if args.run else args.limit)
    if args.run:
        runs = [r for r in runs if r.run_id == args.run]
    if args.json:
        _print_json({"ledger": str(path), "runs": [r.to_json() for r in runs]})
        return EXIT_OK
    console = _console(args)
    if not runs:
        console.print(f"No runs recorded in {path} yet.")
        return EXIT_OK
    console.print(history_table(runs))
    console.print(f"[dim]{path}[/]")
    return EXIT_OK


def _history_stats(args: argparse.Namespace, path: Path) -> int:
    from phasewise.router.routes import Keyring, RouteResolver
    from phasewise.workflows.health import health_report, read_tail
    from phasewise.workflows.render import health_table

    found = _settings(args, Path.cwd())
    health = health_report(read_tail(path), RouteResolver(found.loaded, Keyring(environ={})))
    if args.json:
        _print_json({"ledger": str(path), **health})
        return EXIT_OK
    console = _console(args)
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
        _print_json({"cache": str(root), "removed": removed})
    else:
        _console(args).print(f"Removed {removed} cached answer{'s' if removed != 1 else ''} from {root}.")
    return EXIT_OK


# ----------------------------------------------------------------------------- auth

def _key_env_for(provider: str, explicit: str | None, found: FoundSettings) -> str:
    """The variable PROVIDER's key is stored under: ``--env``, else the catalogue's (a project's
    settings cannot rename a catalogue provider's key), else the provider's ``apiKeyEnv``."""
    import re

    from phasewise.providers.catalogue import builtin

    if explicit:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", explicit):
            raise UsageError(f"--env expects an environment variable name such as {provider.upper()}_API_KEY")
        return explicit
    spec = builtin(provider)
    if spec is not None:
        envs = spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ())
        if not envs:
            raise UsageError(f"{spec.name} ({provider}) needs no key")
        return envs[0]
    ps = found.loaded.settings.providers.get(provider)
    named = ps.api_key_env if ps is not None else None
    if isinstance(named, list):
        named = named[0] if named else None
    if not named:
        raise UsageError(f"unknown provider {provider!r}: use a catalogue id, declare it (with apiKeyEnv) in your "
                         f"settings, or pass --env NAME")
    return named


def _read_key(provider: str, env: str) -> str:
    """The key from a hidden prompt (a terminal) or stdin (a pipe); never echoed."""
    import getpass

    if sys.stdin.isatty():
        try:
            value = getpass.getpass(f"API key for {provider} ({env}, stored in the OS keyring): ")
        except EOFError:
            value = ""
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise UsageError("no key given (type it at the prompt, or pipe it on stdin)")
    if any(c.isspace() for c in value):
        raise UsageError("the key contains whitespace: give one key, on one line")
    return value


def _known_key_envs(found: FoundSettings, stored: list[str]) -> dict[str, list[str]]:
    """Key variable → the providers that use it: the catalogue's, the settings', the stored ones."""
    from phasewise.providers.catalogue import BUILTIN

    out: dict[str, list[str]] = {}
    for spec in BUILTIN.values():
        for env in (*spec.key_envs, *((spec.auth_token_env,) if spec.auth_token_env else ())):
            out.setdefault(env, []).append(spec.id)
    for pid, ps in found.loaded.settings.providers.items():
        envs = [ps.api_key_env] if isinstance(ps.api_key_env, str) else list(ps.api_key_env or [])
        for env in envs:
            if pid not in out.setdefault(env, []):
                out[env].append(pid)
    for env in stored:
        out.setdefault(env, [])
    return out


async def cmd_auth(args: argparse.Namespace) -> int:
    from phasewise.keystore import KeyStoreError, OsKeyring
    from phasewise.router.routes import KeyRef, Keyring

    action = args.auth_command
    if action is None:
        raise UsageError("expected an action: set PROVIDER, list, or clear PROVIDER|all")
    found = _settings(args, Path.cwd())
    store = OsKeyring()
    info = store.info()
    if action == "set":
        env = _key_env_for(args.provider, args.env, found)
        if not info.available:
            print(f"phasewise auth set: {info.note}.\nSet {env} in the environment instead (e.g. in your shell "
                  f"profile), or use the editor's 'Phasewise: Set API key' command.", file=sys.stderr)
            return EXIT_FAILED
        value = _read_key(args.provider, env)
        try:
            store.set(env, value)
        except KeyStoreError as err:
            print(f"phasewise auth set: {err}. Set {env} in the environment instead.", file=sys.stderr)
            return EXIT_FAILED
        masked = KeyRef(env, value).masked()
        shadowed = bool(os.environ.get(env))
        if args.json:
            _print_json({"ok": True, "provider": args.provider, "env": env, "masked": masked,
                         "backend": info.backend, "shadowedByEnvironment": shadowed})
        else:
            print(f"Stored the key for {args.provider} as {env} ({masked}) in the OS keyring ({info.backend}).")
            if shadowed:
                print(f"Note: {env} is also set in the environment, which comes first.")
        return EXIT_OK
    if action == "list":
        stored = store.names() if info.available else []
        keyring = Keyring(dict(os.environ), store=store)
        rows: list[dict[str, Any]] = []
        for env, providers in sorted(_known_key_envs(found, stored).items()):
            ref = keyring.get(env)
            rows.append({"env": env, "providers": providers, "source": ref.source if ref else None,
                         "masked": ref.masked() if ref else None})
        if args.json:
            _print_json({"keyring": info.to_json(), "keys": rows})
            return EXIT_OK
        from rich.table import Table

        console = _console(args)
        table = Table(title="API keys (first found wins: environment, OS keyring, editor)", title_justify="left")
        for header in ("key variable", "providers", "source", "key"):
            table.add_column(header)
        for row in rows:
            table.add_row(str(row["env"]), ", ".join(row["providers"]) or "–", str(row["source"] or "not set"),
                          str(row["masked"] or "–"))
        console.print(table)
        console.print(f"OS keyring: {info.note}", style="dim" if info.available else "yellow")
        return EXIT_OK
    # clear
    if not info.available:
        print(f"phasewise auth clear: {info.note}; nothing to clear.", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.provider == "all" and not args.env:
            envs = sorted(set(store.names()) | set(_known_key_envs(found, []).keys()))
        else:
            envs = [_key_env_for(args.provider, args.env, found)]
        removed = [env for env in envs if store.delete(env)]
    except KeyStoreError as err:
        print(f"phasewise auth clear: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json({"ok": True, "removed": removed})
    elif removed:
        print(f"Removed from the OS keyring: {', '.join(removed)}.")
    else:
        print("Nothing stored in the OS keyring for " + ("any provider." if args.provider == "all" else
                                                          f"{args.provider} ({envs[0]})."))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": cmd_run, "plan": cmd_phase, "code": cmd_phase, "review": cmd_phase, "compare": cmd_compare,
    "doctor": cmd_doctor, "verify": cmd_doctor, "models": cmd_models, "history": cmd_history, "cache": cmd_cache,
    "auth": cmd_auth,
}
