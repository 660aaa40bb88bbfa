"""Warm-up after ``initialize``: the core and the SDKs the settings route to, off the event loop.

The first phase should not pay for importing an SDK (0.3–0.7 s) or for finding out whether an
OS keyring exists (0.2 s on a headless machine); ``initialize`` must not pay for them either.
``PHASEWISE_WARMUP=0`` turns it all off (tests use it to show ``initialize`` needs no SDK):
everything then happens on first use.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

log = logging.getLogger("phasewise")


def warm_up_on() -> bool:
    return os.environ.get("PHASEWISE_WARMUP", "1") != "0"


def warm_up(sdks: Iterable[str] = ("anthropic", "openai"), done: Callable[[list[str]], object] | None = None) -> None:
    """Import the core and the SDKs the settings route to (``sdks``: module names) on a worker
    thread, and find out whether an OS keyring exists. An SDK no route uses is not imported
    (anthropic is 54 MiB resident, openai 27 MiB): a phase that needs it later imports it then,
    on a worker thread (``router.ensure_sdk``)."""
    if not warm_up_on():
        return
    wanted = sorted(sdks)

    def run() -> None:
        import importlib

        from phasewise.keystore import preload

        preload()
        try:
            for name in wanted:
                importlib.import_module(name)
            import phasewise.phases.service
            import phasewise.providers.openai_chat  # noqa: F401
        except Exception as exc:  # a broken install shows up when a phase runs, with its reason
            log.warning("warm-up import failed: %s", exc)
            return
        # The SDKs bring some 175,000 long-lived objects, and every full garbage collection
        # walked them all: a stall of every request and stream, now and then. Frozen (after one
        # last collection), they are never scanned again.
        gc.collect()
        gc.freeze()
        if done is not None:
            done(wanted)

    threading.Thread(target=run, name="phasewise-warmup", daemon=True).start()


async def warm_up_routes(ls: PhasewiseServer) -> None:
    """``warm_up`` for the SDKs of the protocols the workspace's settings route to (every phase,
    fallbacks included); both when the settings cannot be read."""
    if not warm_up_on():
        return  # before the settings pull: nothing to warm
    from phasewise.router.router import SDK_MODULES, route_protocols

    try:
        protocols = route_protocols(ls.engine.resolver(await ls.settings_for(None)))
    except Exception as exc:  # never in the way of serving: warm everything instead
        log.warning("warm-up could not read the routes (%s): importing both SDKs", type(exc).__name__)
        protocols = set(SDK_MODULES)
    loop = asyncio.get_running_loop()

    def done(names: list[str]) -> None:
        message = f"warm-up done: SDKs loaded for the routed protocols: {', '.join(names) or 'none'}"
        loop.call_soon_threadsafe(ls.log_line, message)

    warm_up((SDK_MODULES[p] for p in sorted(protocols) if p in SDK_MODULES), done)
