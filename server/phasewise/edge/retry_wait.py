"""``phasewise.retry`` on a rate-limit problem waits until the limit lifts, then runs (issue 12).

"Retry the plan phase once the limit lifts (19:41:44, in 300 s)" means what it says: the retry
waits until then, with a visible countdown (work-done progress titled ``Phasewise <phase>:
waiting for the rate limit on <provider>/<model>``, cancellable; log lines, thinned, for a client
without progress), and then runs the phase. Cancelling the progress, or ``$/cancelRequest`` for
the command, stops the wait: nothing is sent and the result is the phase's ``cancelled`` one.

When the limit lifts is the later of what the router's cooldown still holds for that provider,
key and model and the problem's ``retryAt``. A retry on another model (a fallback) does not wait.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from phasewise.edge.progress import PhaseProgress

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer

STEP_SECONDS = 1.0


def seconds_until_lifted(ls: PhasewiseServer, problem: dict[str, Any], model: str | None = None) -> float:
    """Seconds until a retry of ``problem``'s route can be sent (0: now)."""
    if problem.get("kind") != "rate-limit" or problem.get("lifted"):
        return 0.0
    provider, on = problem.get("provider"), problem.get("model")
    if model is not None and model != f"{provider}/{on}":
        return 0.0  # a retry on another model: that limit does not hold it
    left = 0.0
    if isinstance(provider, str):
        key_env: str = problem["keyEnv"] if isinstance(problem.get("keyEnv"), str) else "no key"
        left = ls.engine.cooldowns.remaining(provider, key_env, on if isinstance(on, str) else None)
    at = problem.get("retryAt")
    if isinstance(at, str):
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            pass
        else:
            now = datetime.now(when.tzinfo) if when.tzinfo else datetime.now()
            left = max(left, (when - now).total_seconds())
    return max(0.0, left)


async def wait_for_limit(ls: PhasewiseServer, uri: str, phase: str, model: str | None = None) -> dict[str, Any] | None:
    """Wait until the rate limit behind ``phase``'s problem on ``uri`` lifts, counting down.

    Returns None when the retry may run now (after the wait, or with nothing to wait for), or
    the phase's cancelled result (JSON) when the wait was cancelled."""
    from phasewise.router.messages import clock_time, seconds_text

    problem = ls.diagnostics.problem_of(uri, phase)
    left = seconds_until_lifted(ls, problem, model) if problem else 0.0
    if left <= 0 or problem is None:
        return None
    from phasewise.phases.service import cancelled_result, new_run_id

    run_id = new_run_id()
    who = f"{problem.get('provider')}/{problem.get('model')}"
    progress = PhaseProgress.creating(ls, run_id=run_id, phase=phase, uri=uri)
    progress.begin(f"Phasewise {phase}: waiting for the rate limit on {who}")
    task = asyncio.current_task()
    assert task is not None
    request_id = ls.protocol.msg_id
    ls.runs.add(request_id, progress.token, task)
    ls.log_line(f"[{run_id}] {phase} retry waits {seconds_text(left)} for the rate limit on {who} "
                f"(until {clock_time(left)})")
    deadline = time.monotonic() + left
    try:
        while (left := deadline - time.monotonic()) > 0:
            # "retrying in" first: the number is what the user looks for (and it thins the log)
            progress.on_status(f"retrying in {seconds_text(left)} (at {clock_time(left)}): "
                               f"the rate limit on {who}")
            await asyncio.sleep(min(STEP_SECONDS, left))
    except asyncio.CancelledError:
        task.uncancel()
        progress.end(f"{phase} retry cancelled while waiting for the rate limit; nothing was sent")
        ls.log_line(f"[{run_id}] {phase} retry cancelled while waiting for the rate limit on {who}")
        loaded = await ls.settings_for(uri)
        result = cancelled_result(phase, run_id, ls.service.route(loaded, phase)).to_json()
        result["error"]["message"] = (f"The retry of the {phase} phase ({who}) was cancelled while it waited "
                                      f"for the rate limit to lift; nothing was sent.")
        return result
    finally:
        ls.runs.remove(request_id, progress.token)
    progress.end(f"the rate limit on {who} has lifted: retrying the {phase} phase now")
    return None
