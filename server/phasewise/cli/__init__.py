"""The ``phasewise`` command: ``serve`` (the language server) and the tools around it.

Every workflow command shares its code with the language server's command of the same name
(``phasewise.workflows``); here are only arguments, settings lookup and terminal output.
Exit status: 0 done, 1 a phase (or check) failed, 2 wrong arguments or settings file.
The top layer: may import every other package (``edge`` for ``serve`` and the demo's client,
``sim`` for ``phasewise sim`` and the demo); only ``phasewise.__main__`` imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from phasewise.cli.auth import cmd_auth
from phasewise.cli.common import EXIT_OK, EXIT_USAGE, UsageError
from phasewise.cli.inspect import cmd_cache, cmd_doctor, cmd_history, cmd_models
from phasewise.cli.phases import cmd_compare, cmd_phase, cmd_run

PHASE_HELP = {"plan": "write a plan for an instruction about FILE",
              "code": "change FILE as instructed (written atomically; --dry-run prints the diff)",
              "review": "review FILE and print the findings"}

# ----------------------------------------------------------------------------- arguments

def _common(p: argparse.ArgumentParser, *, settings: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    if settings:
        p.add_argument("--settings", metavar="PATH",
                       help="settings file: JSON with the `phasewise` section, or the section itself "
                            "(default: phasewise.json or .vscode/settings.json in the file's folder or a parent)")


def _file_phase(p: argparse.ArgumentParser, *, instruction_required: bool, commands: bool = True) -> None:
    p.add_argument("file", metavar="FILE", help="the file to work on")
    p.add_argument("--instruction", "-i", required=instruction_required, default="",
                   help="what to do" + ("" if instruction_required else " (optional)"))
    p.add_argument("--range", metavar="START:END", help="only lines START to END (1-based, inclusive)")
    p.add_argument("--workspace", metavar="DIR", help="the workspace folder whose files the phases may read and "
                   "change (default: the git work tree around FILE, else FILE's folder)")
    if commands:
        p.add_argument("--allow-commands", action="store_true",
                       help="let the workspace settings' named commands run without asking, for this run "
                            "(commands from your user settings file always may; without this flag, a terminal asks "
                            "and a script refuses)")
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
    demo.add_argument("--qa", action="store_true", help="plan → code → qa with a fix round: the first check fails, "
                                                       "the code phase fixes it, the one change lands at the end")

    run = sub.add_parser("run", help="the pipeline (plan → code → review unless the settings' pipeline says "
                                     "otherwise) on FILE, each phase on its own route")
    _file_phase(run, instruction_required=True)
    run.add_argument("--dry-run", action="store_true", help="write no file; print every file's diff")
    run.add_argument("--pipeline", metavar="A,B,C", help="the phases to run, in order, e.g. spec,plan,code,test,review "
                                                         "(phases of your own are declared in the settings)")

    for phase in ("plan", "code", "review"):
        p = sub.add_parser(phase, help=PHASE_HELP[phase])
        _file_phase(p, instruction_required=phase != "review")
        if phase == "code":
            p.add_argument("--plan", help="a plan to follow (text, or @FILE to read it from a file)")
            p.add_argument("--dry-run", action="store_true", help="write no file; print every file's diff")

    compare = sub.add_parser("compare", help="one phase on several models side by side (nothing is applied)")
    _file_phase(compare, instruction_required=False, commands=False)
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
        from phasewise.cli.demo import run_demo

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


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": cmd_run, "plan": cmd_phase, "code": cmd_phase, "review": cmd_phase, "compare": cmd_compare,
    "doctor": cmd_doctor, "verify": cmd_doctor, "models": cmd_models, "history": cmd_history, "cache": cmd_cache,
    "auth": cmd_auth,
}
