"""The provider simulator in a process of its own, and the bench's handle on it.

Run as a script, it serves ``phasewise.sim.Simulator`` on a loopback port, prints one JSON line
``{"url": ...}`` and serves until its standard input closes. A separate process keeps the fake
provider's work off every measured event loop and off the measured process's CPU time slices as
far as two cores allow.

Two bench-only additions: an instruction containing ``[tokens=N]`` makes the plan answer exactly N
words long, so a stream's length (and with ``chunk_interval_ms`` its duration) is known; and one
containing ``[steps=N]``, sent to a phase that works in steps, makes the agent call one tool a step
for N steps (``read_file``, ``search_files``, ``list_files`` in turn, each call's arguments new, so
the repeat guard never stops it), then answer a line of text: a loop of known length.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

TOKENS_RX = re.compile(r"\[tokens=(\d+)\]")
STEPS_RX = re.compile(r"\[steps=(\d+)\]")


def long_plan(words: int) -> str:
    """``words`` words of plan text, twelve a line, numbered so every line differs."""
    lines: list[str] = []
    n = 0
    while n < words:
        take = min(12, words - n)
        lines.append(" ".join(f"w{n + i}" for i in range(take)))
        n += take
    return "\n".join(lines) + "\n"


def _patch_answers() -> None:
    from phasewise.sim import answers

    original = answers.plan_text

    def plan_text(prompt: Any, provider: str, model: str) -> str:
        m = TOKENS_RX.search(prompt.instruction or "")
        return long_plan(int(m.group(1))) if m else original(prompt, provider, model)

    answers.plan_text = plan_text


def step_call(k: int, document: str | None) -> tuple[str, dict[str, Any]]:
    """The agent's ``k``-th call (0-based) in a ``[steps=N]`` loop: its tool and arguments."""
    if k % 3 == 0 and document:
        return "read_file", {"path": document, "startLine": 1 + k % 40, "endLine": 31 + k % 40}
    if k % 3 == 1:
        return "search_files", {"pattern": rf"def func_{k * 37}\b"}
    return "list_files", {"glob": f"f{k}*.py"}


def _patch_agent() -> None:
    from phasewise.sim import agent
    from phasewise.sim.answers import Answer, ToolUse

    original = agent.reply

    def reply(prompt: Any, history: Any, declared: Any, callable: Any, provider: str, model: str,
              *more: Any, **named: Any) -> Any:  # what the simulator passes beyond these goes on as it came
        m = STEPS_RX.search(prompt.instruction or "")
        if m is None or not {"read_file", "search_files", "list_files"} <= set(callable):
            return original(prompt, history, declared, callable, provider, model, *more, **named)
        if len(history) >= int(m.group(1)):
            return Answer(text=f"Done after {len(history)} tool calls.\n")
        name, arguments = step_call(len(history), prompt.document.path if prompt.document else None)
        return Answer(calls=(ToolUse.of(name, arguments),))

    agent.reply = reply


async def _serve(options: dict[str, Any]) -> None:
    from phasewise.sim import Simulator

    _patch_answers()
    _patch_agent()
    sim = Simulator(**options)
    await sim.start("127.0.0.1", 0)
    print(json.dumps({"url": sim.url}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.buffer.read)  # returns at EOF: the bench is done
    finally:
        await sim.stop()


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    asyncio.run(_serve(options))


class SimProcess:
    """Starts ``simproc.py`` and talks to its ``/_sim`` control surface."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._http: Any = None

    async def start(self) -> SimProcess:
        import httpx2

        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, json.dumps(self.options),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the simulator process did not start")
        self.url = json.loads(line)["url"]
        self._http = httpx2.AsyncClient(base_url=self.url, timeout=30)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def base_url(self, name: str, protocol: str = "openai") -> str:
        return f"{self.url}/{name}/v1" if protocol == "openai" else f"{self.url}/{name}"

    async def _post(self, path: str, body: Any) -> Any:
        r = await self._http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    async def configure(self, provider: str | None = None, **options: Any) -> None:
        await self._post("/_sim/config", {"provider": provider, **options} if provider else options)

    async def add_fault(self, fault: dict[str, Any], **rule: Any) -> None:
        await self._post("/_sim/faults", {"rules": [{"fault": fault, **rule}]})

    async def clear_faults(self) -> None:
        (await self._http.delete("/_sim/faults")).raise_for_status()

    async def reset(self) -> None:
        await self._post("/_sim/reset", {})

    async def client_closes(self) -> list[dict[str, Any]]:
        r = await self._http.get("/_sim/connections")
        r.raise_for_status()
        closes: list[dict[str, Any]] = r.json()["client_closes"]
        return closes

    async def requests(self) -> list[dict[str, Any]]:
        """Every request since the last reset, as the simulator recorded it (bodies included)."""
        r = await self._http.get("/_sim/requests")
        r.raise_for_status()
        found: list[dict[str, Any]] = r.json()["requests"]
        return found

    async def last_request(self) -> dict[str, Any]:
        r = await self._http.get("/_sim/requests")
        r.raise_for_status()
        found: dict[str, Any] = r.json()["requests"][-1]
        return found

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> SimProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


if __name__ == "__main__":
    main()
