"""A phase that works in steps: the model looks around the workspace through tools, step by step,
each step routed like a phase, until it answers, bounded.

``AgentLoop.run`` sends the phase's request with the agent's tools declared (``phases.tools``:
``read_file``, ``list_files``, ``search_files`` and, for a code phase only, ``edit_file``; a review
also gets ``report_findings``, its way to finish), then, while the model calls tools: runs each call
against the phase's ``AgentWorkspace`` (every path through the workspace's gate; a call to a tool
that was not declared, or with broken arguments, gets an error result and has no effect), sends the
transcript back with the results (``providers.turns``), and asks again. Every step goes through the
router (``Router.serve``): key rotation, rate-limit waits, overload backoff and fallbacks work inside
the loop as for one request; after a fallback the loop stays on the route that answered, and the
transcript is rendered in its protocol.

It ends when the model answers without a tool call (a plan's text, a code phase's summary), when a
review calls ``report_findings``, or at a bound: ``maxSteps`` model calls, ``maxCostUsd``, or the same
call three times in a row. A bound ends the phase ``incomplete`` with a note naming it and its
setting; a code phase then applies nothing (its staged change is still shown as a diff). A code
phase's staged edits become the phase's one change (``AgentWorkspace.changes``), applied by the
front door at once, as any code phase's.
May not import: edge, workflows, sim.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from phasewise.phases.edits import line_edits
from phasewise.phases.prompts import ToolSpec
from phasewise.phases.results import PhaseInput, PhaseResult
from phasewise.phases.tools import AgentWorkspace, Tool, call_tool
from phasewise.providers.base import ChatRequest, Usage
from phasewise.providers.catalogue import ModelInfo
from phasewise.providers.pricing import cost
from phasewise.providers.turns import AssistantTurn, ResultsTurn, ToolCall, ToolResult, Turn
from phasewise.router.router import Observer, Preflight, Router, Served
from phasewise.router.routes import PhaseRoute, Route
from phasewise.serial import Jsonable, json_rule
from phasewise.settings import AgentSettings

REPEATS = 3  # the same call this many times in a row ends the loop


@dataclass(slots=True)
class AgentStep(Jsonable):
    """One tool call of the loop as the result lists it: ``{step, tool, summary, ok, ms, tokens}``
    (``tokens``: the model call's that made it, on its first call; ``ms``: the tool's run)."""

    step: int
    tool: str
    summary: str
    ok: bool
    ms: float = field(metadata=json_rule(round=1))
    tokens: int = 0
    arguments: str = field(default="", metadata=json_rule(skip=True))  # for the run record, with content
    output: str = field(default="", metadata=json_rule(skip=True))


@runtime_checkable
class StepObserver(Protocol):
    """An observer that also shows each step as it happens (a plugin's phase view): ``of`` is the
    phase's ``maxSteps``."""

    def on_step(self, step: AgentStep, of: int) -> None: ...


@dataclass(slots=True)
class LoopOutcome:
    """How the loop ended: the last answer and the route that gave it, every attempt of every step,
    the tool calls made, each model call's tokens with the model that made it (priced by the result,
    call by call), and the bound reached (if one was)."""

    served: Served | None = None
    steps: list[AgentStep] = field(default_factory=list)
    usage: list[tuple[Usage, ModelInfo]] = field(default_factory=list)
    bound: str | None = None  # a note naming the bound and its setting
    fallback_used: bool = False
    first_token_ms: float | None = None
    attempts: list[Any] = field(default_factory=list)

    @property
    def cost_usd(self) -> float | None:
        """What the steps cost so far (None while no step's model has known prices)."""
        priced = [c for u, info in self.usage if (c := cost(info, u.input_tokens, u.output_tokens,
                                                             u.cache_read_tokens, u.cache_write_tokens)) is not None]
        return sum(priced) if priced else None


Build = Callable[[Route, tuple[Turn, ...]], ChatRequest]


class AgentLoop:
    """One phase's loop; see the module docstring."""

    def __init__(self, *, phase: str, kind: str, settings: AgentSettings, tools: Sequence[Tool],
                 finish: ToolSpec | None, ws: AgentWorkspace, router: Router, phase_route: PhaseRoute,
                 build: Build, check: Preflight, observer: Observer) -> None:
        self.phase, self.kind, self.settings = phase, kind, settings
        self.tools = list(tools)
        self.finish = finish  # a review's report_findings: calling it ends the loop
        self.ws = ws
        self.router, self.check, self.observer = router, check, observer
        self.phase_route = phase_route
        self.build = build
        self.turns: list[Turn] = []
        self.out = LoopOutcome()  # so far: read it when a step fails

    @property
    def declared(self) -> tuple[Any, ...]:
        return (*self.tools, *((self.finish,) if self.finish is not None else ()))

    def _setting(self, name: str) -> str:
        return f"phasewise.phases.{self.phase}.agent.{name}"

    async def run(self) -> LoopOutcome:
        """The loop to its end; ``RouteFailed`` when a step could not be served (``self.out`` then
        holds what came before)."""
        out = self.out
        current = self.phase_route
        last: tuple[str, str] | None = None
        repeats = 0
        for step in range(1, self.settings.max_steps + 1):
            served = await self.router.serve(current, self._request(tuple(self.turns)), self.check, self.observer)
            out.served = served
            out.attempts += served.attempts
            c = served.completion
            if out.first_token_ms is None:
                out.first_token_ms = c.first_token_ms
            out.usage.append((c.usage, served.route.info))
            if served.fallback_used:
                out.fallback_used = True
                current = self._from(current, served.route)  # the rest of the loop stays where it was served
            calls = c.tool_calls
            if self.finish is not None and any(call.name == self.finish.name for call in calls):
                found = next(call for call in calls if call.name == self.finish.name)
                out.served = dataclasses.replace(served, completion=dataclasses.replace(
                    c, tool_input=found.input, tool_input_raw=found.arguments))
                return out
            if not calls:
                return out
            tokens = c.usage.input_tokens + c.usage.output_tokens
            results: list[ToolResult] = []
            for call in calls:
                signature = (call.name, _normal(call))
                repeats = repeats + 1 if signature == last else 1
                last = signature
                if repeats >= REPEATS:
                    out.bound = (f"The {self.phase} phase stopped: the model made the same call ({call.name} "
                                 f"{call.arguments[:120]}) {REPEATS} times in a row.")
                    return out
                started = time.perf_counter()
                outcome = await call_tool(call.name, call.input, self.tools, self.ws)
                ms = (time.perf_counter() - started) * 1000
                out.steps.append(AgentStep(step, call.name, outcome.summary, outcome.ok, ms, tokens,
                                           call.arguments, outcome.content))
                tokens = 0
                results.append(ToolResult(call.id, outcome.content, is_error=not outcome.ok))
                self.observer.on_status(f"step {step}/{self.settings.max_steps}: {outcome.summary}")
                if isinstance(self.observer, StepObserver):
                    self.observer.on_step(out.steps[-1], self.settings.max_steps)
            self.turns += [AssistantTurn(c.text, tuple(calls)), ResultsTurn(tuple(results))]
            limit = self.settings.max_cost_usd
            if limit is not None and out.cost_usd is not None and out.cost_usd >= limit:
                out.bound = (f"The {self.phase} phase stopped at its cost bound: ${out.cost_usd:.4f} spent of "
                             f"${limit:g} (`{self._setting('maxCostUsd')}`).")
                return out
        out.bound = (f"The {self.phase} phase stopped after {self.settings.max_steps} steps without finishing "
                     f"(`{self._setting('maxSteps')}`).")
        return out

    def _request(self, turns: tuple[Turn, ...]) -> Callable[[Route], ChatRequest]:
        """The next step's request on a route: the phase's request and the transcript so far."""
        return lambda route: self.build(route, turns)

    @staticmethod
    def _from(phase_route: PhaseRoute, route: Route) -> PhaseRoute:
        """``phase_route`` from ``route`` on (the route a fallback served the step on)."""
        routes = phase_route.routes
        at = next((i for i, r in enumerate(routes) if r.label == route.label), 0)
        return dataclasses.replace(phase_route, routes=routes[at:])


def _normal(call: ToolCall) -> str:
    """A call's arguments in one form, so a repeat is seen whatever the key order or spacing."""
    if call.input is not None:
        return json.dumps(call.input, sort_keys=True)
    return call.arguments.strip()


# What each kind of phase is told when it works in steps (after the phase's own instructions).
AGENT_TEXT: dict[str, str] = {
    "code": (
        "Work in steps with the tools. Search and read what you need first (read_file shows each line as "
        "its number, a tab, then the line's text: quote the text, never the number). Make every change "
        "with edit_file: `search` is the exact lines to replace, copied from read_file, `replace` the new "
        "lines; an empty `search` on a new path creates that file. Your edits are staged and shown to the "
        "user as one change when you finish. When the change is complete, answer with a short summary of "
        "it and no tool call."),
    "plan": (
        "You may look around the workspace with the tools (read_file, list_files, search_files) before you "
        "answer; you cannot change files. When you know enough, answer with the plan as text and no tool "
        "call."),
    "review": (
        "Look at the code with the tools as you need (read_file, list_files, search_files); you cannot change "
        "files. Finish by calling report_findings with your findings."),
    "qa": (
        "Run every command you are given with run_command, the tests first. Where one fails, read the code its "
        "output points at (read_file) as you need; you cannot change files. Finish by calling report_findings: "
        "`passed` true only when every command succeeded, and one finding per failure on the file (`path`, "
        "workspace-relative) and lines its output names, in the command's own words."),
}


def apply_outcome(result: PhaseResult, out: LoopOutcome, ws: AgentWorkspace, inp: PhaseInput) -> None:
    """The loop's tokens, cost, steps and (for a code phase) staged change, in ``result``. A bound
    reached: ``incomplete`` with its note, and a code phase keeps its diff but applies nothing."""
    for usage, info in out.usage:  # each step priced with the model that made it (a fallback's own prices)
        result.add_usage(usage, info)
    result.steps = list(out.steps)
    result.attempts = out.attempts
    result.fallback_used = out.fallback_used
    result.first_token_ms = out.first_token_ms
    if out.served is not None:
        result.provider, result.model = out.served.route.provider, out.served.route.model
    if out.bound is not None:
        result.incomplete = True
        result.note = out.bound + (" Nothing was applied; the staged change is in the result's diff."
                                   if result.kind == "code" else "")
    if result.kind != "code":
        return
    changes = ws.changes()
    result.diff = changes.diff if changes else None
    if out.bound is not None or not changes:
        return
    result.changes = changes
    mine = changes.by_uri(inp.document.uri)
    result.new_text = mine.after if mine else inp.document.text
    result.edits = line_edits(inp.document.text, result.new_text) if mine else []


__all__ = ["AGENT_TEXT", "AgentLoop", "AgentStep", "LoopOutcome", "apply_outcome"]
