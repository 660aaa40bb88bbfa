"""Issue 20: one phase runner behind every front door.

The runner with a door that records what it is asked (the simulator at the wire, so the real SDK
code runs): the route resolved once with its kind, the door's observer getting the phase's status,
a code change handed to ``apply`` only when the phase succeeded, a cancel ended as a ``cancelled``
result only where the door asks for it, every run recorded once, a pipeline's steps working on what
the door says.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from phasewise.phases.commands import CommandQuestion, Reply
from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.router.router import Engine, Observer
from phasewise.router.routes import Keyring, PhaseRoute
from phasewise.settings import LoadedSettings, load_settings
from phasewise.sim import SimulatorThread
from phasewise.workflows.ledger import Ledger
from phasewise.workflows.runner import PhaseRunner
from phasewise.workflows.runs import Step
from tests.helpers import SAMPLE_DOC

URI = "file:///work/example/store.py"


class Seen:
    def __init__(self) -> None:
        self.status: list[str] = []
        self.text = ""

    def on_text(self, delta: str) -> None:
        self.text += delta

    def on_status(self, message: str) -> None:
        self.status.append(message)


class RecordingDoor:
    source = "test"

    def __init__(self, *, cancel_is_result: bool = True, refuse: bool = False) -> None:
        self.cancel_is_result = cancel_is_result
        self.refuse = refuse
        self.events: list[tuple[str, Any]] = []
        self.observers: list[Seen] = []

    def start(self, route: PhaseRoute, inp: PhaseInput) -> Observer:
        self.events.append(("start", (route.phase, route.kind, route.main.label if route.main else None)))
        self.observers.append(Seen())
        return self.observers[-1]

    def stop(self, observer: Observer) -> None:
        self.events.append(("stop", None))

    async def ask_command(self, question: CommandQuestion) -> Reply:
        self.events.append(("ask", question.line))
        return Reply("unanswered", "a test door asks no one")

    async def apply(self, result: PhaseResult, loaded: LoadedSettings, observer: Observer) -> None:
        self.events.append(("apply", result.phase))
        result.applied = not self.refuse

    async def finish(self, result: PhaseResult, inp: PhaseInput, loaded: LoadedSettings, observer: Observer) -> None:
        self.events.append(("finish", (result.phase, result.ok, result.error.kind if result.error else None)))

    def said(self, message: str) -> None:
        self.events.append(("said", message))


def settings(sim: SimulatorThread, ledger: Path, **extra: Any) -> LoadedSettings:
    return load_settings({
        "phases": {"plan": {"model": "run/claude-sim"}, "code": {"model": "run/glm-sim"},
                   "review": {"model": "run/gpt-sim"}, "test": {"kind": "code", "model": "run/glm-sim"}},
        "providers": {"run": {"protocol": "openai", "baseUrl": sim.base_url("run", "openai"), "apiKeyEnv": "RUN_KEY"}},
        "ledgerPath": str(ledger), "retry": {"maxAttempts": 1}, **extra,
    })


@pytest.fixture
def runner() -> PhaseRunner:
    return PhaseRunner(PhaseService(Engine(Keyring(environ={"RUN_KEY": "test-key-runner-1a2b"}))))


def inp(instruction: str = "rename load to read_file", **kw: Any) -> PhaseInput:
    return PhaseInput(Document(URI, SAMPLE_DOC, 1, "python"), instruction, **kw)


async def test_a_phase_goes_through_the_door_once_and_is_recorded(runner: PhaseRunner, sim: SimulatorThread,
                                                                  tmp_path: Path) -> None:
    loaded = settings(sim, tmp_path / "runs.jsonl")
    door = RecordingDoor()
    code = await runner.phase(loaded, "code", inp(), door, workflow="w")
    assert code.ok and code.kind == "code" and code.applied is True
    assert [e for e, _ in door.events] == ["start", "apply", "stop", "finish"]
    assert door.events[0][1] == ("code", "code", "run/glm-sim")
    assert door.observers[0].text == code.text  # the door's observer saw the answer stream
    # a plan is never applied; a phase of one's own of code kind is
    door = RecordingDoor()
    plan = await runner.phase(loaded, "plan", inp(), door)
    assert plan.ok and [e for e, _ in door.events] == ["start", "stop", "finish"]
    door = RecordingDoor(refuse=True)
    test = await runner.phase(loaded, "test", inp(), door)
    assert test.kind == "code" and ("apply", "test") in door.events and test.applied is False
    lines = Ledger(tmp_path / "runs.jsonl").read()
    assert [(x["phase"], x["source"], x.get("workflow"), x["protocol"]) for x in lines] == [
        ("code", "test", "w", "openai"), ("plan", "test", None, "openai"), ("test", "test", None, "openai")]


async def test_a_failed_phase_is_not_applied_and_a_record_that_cannot_be_written_is_said(
        runner: PhaseRunner, sim: SimulatorThread, tmp_path: Path) -> None:
    not_a_ledger = tmp_path / "notes.txt"
    not_a_ledger.write_text("my notes\n")
    loaded = settings(sim, not_a_ledger)
    sim.add_fault(provider="run", status=400, body={"error": {"message": "no", "type": "invalid_request_error"}})
    door = RecordingDoor()
    result = await runner.phase(loaded, "code", inp(), door)
    assert not result.ok and result.error is not None and result.error.kind == "bad-request"
    assert "apply" not in [e for e, _ in door.events]
    said = [m for e, m in door.events if e == "said"]
    assert len(said) == 1 and "notes.txt" in said[0] and "run records" in said[0]
    assert not_a_ledger.read_text() == "my notes\n"


@pytest.mark.parametrize("as_result", [True, False])
async def test_a_cancel_ends_the_phase_as_the_door_asks(runner: PhaseRunner, sim: SimulatorThread, tmp_path: Path,
                                                        as_result: bool) -> None:
    loaded = settings(sim, tmp_path / "runs.jsonl")
    sim.add_fault(provider="run", stream="stall", after_chunks=2)
    door = RecordingDoor(cancel_is_result=as_result)
    task = asyncio.ensure_future(runner.phase(loaded, "plan", inp(), door))
    await sim.await_requests(1, provider="run")  # the request reached the provider: cancel mid-flight
    task.cancel()
    if as_result:
        result = await task
        assert result.error is not None and result.error.kind == "cancelled"
        assert [e for e, _ in door.events] == ["start", "stop", "finish"]
        assert json.loads((tmp_path / "runs.jsonl").read_text())["result"] == "cancelled"
    else:
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [e for e, _ in door.events] == ["start", "stop"]  # ended, not recorded
        assert not (tmp_path / "runs.jsonl").exists()


async def test_a_pipeline_runs_each_step_on_what_the_door_says(runner: PhaseRunner, sim: SimulatorThread,
                                                               tmp_path: Path) -> None:
    loaded = settings(sim, tmp_path / "runs.jsonl", pipeline=["plan", "code", "review"])
    door = RecordingDoor()
    asked: list[tuple[str, int]] = []

    def step_input(s: Step, done: Sequence[PhaseResult]) -> PhaseInput:
        asked.append((s.phase, len(done)))
        return inp(s.instruction, plan=s.plan, change=s.change, run_id=s.run_id, changed_files=s.files)

    outcome = await runner.run(loaded, "rename load to read_file", door, step_input)
    assert outcome.ok and [r.phase for r in outcome.results] == ["plan", "code", "review"]
    assert asked == [("plan", 0), ("code", 1), ("review", 2)]
    assert len({r.run_id for r in outcome.results}) == 1
    lines = Ledger(tmp_path / "runs.jsonl").read()
    assert [x["phase"] for x in lines] == ["plan", "code", "review"] and {x["workflow"] for x in lines} == {"run"}
