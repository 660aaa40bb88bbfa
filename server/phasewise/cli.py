"""The ``phasewise`` command: ``serve`` (the language server) and the tools around it."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="phasewise", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the language server on stdio (the default)")
    sub.add_parser("sim", help="run the offline provider SIMULATOR", add_help=False)
    if argv and argv[0] == "sim":
        from phasewise.sim import run_cli

        return run_cli(argv[1:])
    args, _ = parser.parse_known_args(argv)
    if args.version:
        from phasewise import __version__

        print(f"phasewise {__version__}")
        return 0
    if args.command in (None, "serve"):
        from phasewise.edge.server import serve_stdio

        return serve_stdio()
    parser.print_help()
    return 2
