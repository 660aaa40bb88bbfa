"""Every request the server sends to a client, with a deadline and no trust in the reply.

A client may answer late, never, with an error, or with a reply that does not fit the method's
type (a ``null`` for ``window/showDocument``): none of these may hang a phase or fail it with a
stack trace. ``ask_client`` waits for one request's answer at most ``seconds`` (None: as long as
the user takes, for a question only the user answers) and turns silence and errors into
``ClientSilent``, whose message names the method and what went wrong; the caller decides what
that means (a plan not shown, settings from what was pushed, a change not applied). A reply that
pygls cannot read fails its request at once (``edge.stdio`` through ``_pygls_compat``) instead of
leaving it pending.

``PHASEWISE_REPLY_SECONDS`` caps every deadline (an editor on a slow link may need more than the
defaults; tests use a short one to exercise silence).

The wait is shielded: a phase cancelled meanwhile must not fail pygls on the late answer
(https://github.com/openlawlibrary/pygls/issues/621, fixed after 2.1.1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from phasewise.problems import PhasewiseError

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

T = TypeVar("T")
REPLY_SECONDS_ENV = "PHASEWISE_REPLY_SECONDS"


def deadline(seconds: float | None) -> float | None:
    """``seconds``, capped by ``PHASEWISE_REPLY_SECONDS`` when that is set to a positive number."""
    try:
        cap = float(os.environ.get(REPLY_SECONDS_ENV, "") or "nan")
    except ValueError:
        return seconds
    if not cap > 0:  # unset, NaN, zero or negative: the default
        return seconds
    return cap if seconds is None else min(seconds, cap)


class ClientSilent(PhasewiseError):
    """No usable answer from the client: silence past the deadline, an error, or an unreadable reply."""

    def __init__(self, method: str, why: str) -> None:
        super().__init__(f"the editor did not answer {method}: {why}")
        self.method = method
        self.why = why


class ClientReplyUnreadable(ClientSilent):
    """A reply the client sent that does not fit its request's type (set on the request's future)."""

    def __init__(self, why: str) -> None:
        super().__init__("a request", why)


async def ask_client(ls: PhasewiseServer | None, method: str, request: Awaitable[T], seconds: float | None) -> T:
    """The client's answer to ``request`` (``method``, for messages), within ``seconds``."""
    pending = asyncio.shield(request)
    seconds = deadline(seconds)
    try:
        if seconds is None:
            return await pending
        return await asyncio.wait_for(pending, seconds)
    except TimeoutError:
        raise ClientSilent(method, f"no answer within {seconds:.0f} s") from None
    except ClientReplyUnreadable as unreadable:
        raise ClientSilent(method, unreadable.why) from None
    except asyncio.CancelledError:
        raise
    except Exception as err:  # the client answered with an error
        raise ClientSilent(method, f"it answered with an error ({type(err).__name__}: {str(err)[:120]})") from None


__all__ = ["REPLY_SECONDS_ENV", "ClientReplyUnreadable", "ClientSilent", "ask_client", "deadline"]
