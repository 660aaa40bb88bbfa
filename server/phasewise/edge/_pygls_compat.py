"""Every use of a private pygls name, in one place, each with the upstream defect it works around.

pygls is pinned to the minor version these were written against (``pyproject.toml``), and
``tests/test_pygls_compat.py`` fails loudly if one of the private signatures used here changes
(``check_private_signatures``). Everything else in the edge uses pygls's public API only: the
key masking of everything sent goes through ``set_writer`` (``edge.stdio.RedactingWriter``), the
hardened stdin reader through ``structure_message``/``handle_message``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("phasewise")

# The private names used below and the parameters each had when this module was written.
PRIVATE_SIGNATURES: dict[str, tuple[str, ...]] = {
    "_handle_cancel_notification": ("self", "msg_id"),
    "_execute_handler": ("self", "msg_id", "handler", "callback", "args", "kwargs"),
}
PRIVATE_ATTRIBUTES = ("_request_futures", "_result_types")
CLIENT_PRIVATE_ATTRIBUTES = ("_server",)


class CompatProtocol(LanguageServerProtocol):
    """pygls's protocol with two defects worked around; a subclass adds the product's hooks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called with the id of every ``$/cancelRequest`` (set by the server).
        self.on_cancel_request: Callable[[int | str], None] | None = None

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        """A ``$/cancelRequest`` for ``workspace/executeCommand`` fails the request but leaves the
        command's own task running to its end (pygls runs commands inside the built-in
        executeCommand generator, under a fresh id): the server's hook cancels that task.
        Upstream: https://github.com/openlawlibrary/pygls/issues/517 (cancellation of requests
        pygls has already started); the executeCommand path has no fix upstream as of 2.1.1."""
        if not isinstance(msg_id, int | str):  # a request id is a number or a string; anything else cancels nothing
            log.warning("$/cancelRequest for an id that no request can have: %s", type(msg_id).__name__)
            return
        super()._handle_cancel_notification(msg_id)
        if self.on_cancel_request is not None:
            self.on_cancel_request(msg_id)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None,
                         kwargs: Any = None) -> None:
        """pygls files every coroutine handler's task under ``msg_id`` and removes only a request's
        own id: a command (run under a fresh uuid) or an async notification handler stayed there
        with its result, about 3 KiB a phase run. Each entry now goes when its task is done.
        Upstream: the same leak for outgoing requests is https://github.com/openlawlibrary/pygls/issues/608;
        this one (incoming handlers, ``pygls/protocol/json_rpc.py`` ``_execute_handler`` in 2.1.1)
        has no issue of its own yet."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        futures = self._request_futures
        future = futures.get(msg_id)
        if future is None:
            return

        def forget(done: Any) -> None:
            if futures.get(msg_id) is done:
                del futures[msg_id]

        future.add_done_callback(forget)


def fail_pending_request(protocol: LanguageServerProtocol, msg_id: Any, error: Exception) -> bool:
    """Fail the server's own request ``msg_id`` with ``error``: pygls drops a reply it cannot read
    (a ``null`` where the method's type wants an object) and leaves the request pending for ever.
    Upstream: no issue yet (``structure_message`` raises, ``_handle_response`` is never reached).
    Whether there was such a request."""
    future = protocol._request_futures.pop(msg_id, None)
    protocol._result_types.pop(msg_id, None)
    if future is None or future.done():
        return False
    future.set_exception(error)
    return True


def client_process(client: Any) -> Any:
    """The server process a pygls ``LanguageClient`` started with ``start_io`` (None before):
    pygls keeps it in a private attribute and offers no public way to reach it (``edge.client`` reads
    its stderr and waits for it to exit, for the demo; pytest-lsp reads it the same way). No upstream
    issue yet."""
    return client._server


def check_private_signatures(protocol: LanguageServerProtocol) -> list[str]:
    """What changed in pygls since this module was written: a private method with other
    parameters, or a private attribute of ``protocol`` that is gone. Empty when all is as expected."""
    changed = []
    for name, expected in PRIVATE_SIGNATURES.items():
        method = getattr(LanguageServerProtocol, name, None)
        if method is None:
            changed.append(f"LanguageServerProtocol.{name} no longer exists")
            continue
        found = tuple(inspect.signature(method).parameters)
        if found != expected:
            changed.append(f"LanguageServerProtocol.{name}{found} (expected {expected})")
    for attr in PRIVATE_ATTRIBUTES:
        if not isinstance(getattr(protocol, attr, None), dict):
            changed.append(f"LanguageServerProtocol().{attr} is no longer a dict")
    return changed


__all__ = [
    "CLIENT_PRIVATE_ATTRIBUTES",
    "PRIVATE_ATTRIBUTES",
    "PRIVATE_SIGNATURES",
    "CompatProtocol",
    "check_private_signatures",
    "client_process",
    "fail_pending_request",
]
