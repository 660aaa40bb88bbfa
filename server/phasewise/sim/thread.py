"""The simulator in a daemon thread with its own event loop, for tests and demos.

A pytest-lsp test runs the language server (and its own loop) while the simulator answers in
this thread. Configuration and snapshots go straight to the simulator (it locks its state);
waiting runs in the simulator's loop and is offered both blocking (``wait_for_*``) and
awaitable from any other loop (``await_*``, via ``asyncio.wrap_future``), so nobody sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Self, TypeVar

from phasewise.sim.faults import FaultRule
from phasewise.sim.server import ClientClose, SimConnection, SimRequest, Simulator

T = TypeVar("T")


class SimulatorThread:
    """Runs a ``Simulator`` in a daemon thread; a context manager (sync or async)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.simulator = Simulator(**options)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the simulator thread is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="phasewise-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.simulator.start(self._host, self._port))
            except BaseException as exc:  # reported to start(), e.g. the port is taken
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self.simulator.stop())
                # Waits still pending in this loop (a test gave up on them) end here, quietly.
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator (closing stalled streams) and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        if thread.is_alive() and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self.simulator.stop(), loop)
            try:
                future.result(timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # ----------------------------------------------------------------- the simulator's API

    @property
    def url(self) -> str:
        return self.simulator.url

    @property
    def port(self) -> int:
        return self.simulator.port

    def base_url(self, name: str, protocol: str = "openai") -> str:
        return self.simulator.base_url(name, protocol)

    def add_fault(self, fault: str | Mapping[str, Any] | None = None, **kwargs: Any) -> FaultRule:
        return self.simulator.add_fault(fault, **kwargs)

    def add_rules(self, rules: Iterable[Mapping[str, Any]]) -> list[FaultRule]:
        return self.simulator.add_rules(rules)

    @property
    def faults(self) -> list[FaultRule]:
        return self.simulator.faults

    def set_fault_mix(self, rate: float, faults: Iterable[str | Mapping[str, Any]], *, seed: int = 0,
                      provider: str | None = None) -> None:
        self.simulator.set_fault_mix(rate, faults, seed=seed, provider=provider)

    @property
    def fault_mix_counts(self) -> dict[str, int]:
        return self.simulator.fault_mix_counts

    def configure(self, provider: str | None = None, **options: Any) -> None:
        self.simulator.configure(provider, **options)

    def reset(self) -> None:
        self.simulator.reset()

    @property
    def requests(self) -> list[SimRequest]:
        return self.simulator.requests

    @property
    def connections(self) -> list[SimConnection]:
        return self.simulator.connections

    @property
    def client_closes(self) -> list[ClientClose]:
        return self.simulator.client_closes

    # ----------------------------------------------------------------- waiting

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        loop = self._loop
        if loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("the simulator thread is not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("waiting from the simulator's own thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def wait_for_requests(
        self, n: int = 1, timeout: float = 10.0, *, provider: str | None = None, endpoint: str | None = None,
        finished: bool = False,
    ) -> list[SimRequest]:
        """Block until ``n`` matching requests arrived (``finished=True``: were answered)."""
        future = self._submit(self.simulator.await_requests(n, timeout, provider=provider, endpoint=endpoint,
                                                            finished=finished))
        result: list[SimRequest] = future.result(timeout + 5)
        return result

    def wait_for_client_close(self, timeout: float = 10.0, count: int = 1) -> ClientClose:
        """Block until the client closed a connection while a request on it was in flight."""
        result: ClientClose = self._submit(self.simulator.await_client_close(timeout, count)).result(timeout + 5)
        return result

    # Timeouts are in the signature on purpose: they bound the wait in the simulator's loop and
    # fail with a TimeoutError that lists what did arrive.
    async def await_requests(
        self, n: int = 1, timeout: float = 10.0, *, provider: str | None = None,
        endpoint: str | None = None, finished: bool = False,
    ) -> list[SimRequest]:
        """``wait_for_requests`` for a coroutine in another event loop (does not block that loop)."""
        future = self._submit(self.simulator.await_requests(n, timeout, provider=provider, endpoint=endpoint,
                                                            finished=finished))
        result: list[SimRequest] = await asyncio.wrap_future(future)
        return result

    async def await_client_close(self, timeout: float = 10.0, count: int = 1) -> ClientClose:
        """``wait_for_client_close`` for a coroutine in another event loop."""
        result: ClientClose = await asyncio.wrap_future(self._submit(self.simulator.await_client_close(timeout,
                                                                                                     count)))
        return result
