"""``phasewise sim``: run the provider simulator in the foreground until Ctrl-C.

Prints a banner that says plainly this is a SIMULATOR, the base URLs to give either SDK, and
one line per answered request (never a key). Used for the README demo and for trying the
language server without any account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TextIO

from phasewise.sim.faults import preset_names
from phasewise.sim.server import SimRequest, Simulator

BANNER_RULE = "=" * 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasewise sim",
        description="Run the Phasewise provider SIMULATOR: fake OpenAI- and Anthropic-protocol providers "
                    "on one loopback port. Not a real model provider.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default 8765)")
    parser.add_argument("--first-token-ms", type=float, default=20.0, help="delay before the first token (ms)")
    parser.add_argument("--chunk-ms", type=float, default=2.0, help="delay between stream chunks (ms)")
    parser.add_argument("--name", action="append", default=None,
                        help="provider name(s) to show in the banner (any name works; default sim-openai, sim-claude)")
    parser.add_argument("--prompt-cache", action="append", default=None, metavar="NAME=SHAPE",
                        help="report prompt caching for provider NAME in a provider's usage shape "
                             "(anthropic, openai, zai, deepseek); repeatable")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument("--list-presets", action="store_true", help="print the fault presets and exit")
    return parser


def banner(sim: Simulator, names: list[str]) -> str:
    openai_name = names[0]
    anthropic_name = names[1] if len(names) > 1 else names[0]
    lines = [
        BANNER_RULE,
        "  PHASEWISE PROVIDER SIMULATOR  --  this is NOT a real model provider.",
        "  Answers are made up locally, by rule, from the prompt; nothing leaves this machine.",
        BANNER_RULE,
        f"Listening on {sim.url}",
        "Every first path segment is a simulated provider name; use any name you like.",
        f'  OpenAI protocol     base_url = {sim.base_url(openai_name, "openai")}',
        f'  Anthropic protocol  base_url = {sim.base_url(anthropic_name, "anthropic")}',
        "  API keys are optional (any key is accepted unless configured otherwise).",
        f"Control: GET {sim.url}/_sim/health   GET /_sim/requests   POST /_sim/faults   "
        "POST /_sim/reset   POST /_sim/config",
        f'  e.g. curl -X POST {sim.url}/_sim/faults -d \'{{"rules":[{{"fault":"anthropic.overloaded_error"}}]}}\'',
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _log_line(rec: SimRequest, out: TextIO) -> None:
    took = f"{(rec.finished_at - rec.started_at) * 1000:.0f} ms" if rec.finished_at else "-"
    mode = "stream" if rec.stream else "whole"
    phase = f" phase={rec.phase}" if rec.phase else ""
    print(f"[sim] {rec.id} {rec.provider} {rec.protocol or '-'} {rec.endpoint} model={rec.model or '-'}{phase} "
          f"{mode} -> {rec.outcome} ({took})", file=out, flush=True)


async def serve(args: argparse.Namespace, out: TextIO) -> int:
    sim = Simulator(
        first_token_ms=args.first_token_ms,
        chunk_interval_ms=args.chunk_ms,
        on_finish=None if args.quiet else (lambda rec: _log_line(rec, out)),
    )
    for item in args.prompt_cache or ():
        name, _, shape = item.partition("=")
        try:
            sim.configure(name.strip(), prompt_cache=shape.strip())
        except ValueError as exc:
            print(f"phasewise sim: --prompt-cache {item!r}: {exc}", file=sys.stderr)
            return 2
    try:
        await sim.start(args.host, args.port)
    except OSError as exc:
        print(f"phasewise sim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(banner(sim, args.name or ["sim-openai", "sim-claude"]), file=out, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print("\nSimulator stopped.", file=out, flush=True)
    return 0


def run_cli(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point for ``phasewise sim [--host H] [--port P] ...``; returns the exit status."""
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    if args.list_presets:
        print("\n".join(preset_names()), file=stream)
        return 0
    try:
        return asyncio.run(serve(args, stream))
    except KeyboardInterrupt:  # platforms without loop signal handlers
        return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(sys.argv[1:] if argv is None else argv))
