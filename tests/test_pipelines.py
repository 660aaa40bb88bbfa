"""Issue 13: phases of your own (kind, instructions) reaching their models, and pipelines in order.

Through a real LSP client (VS Code's declared capabilities) to the simulator's wire: what each
phase's request carried is read back from the simulator's request log.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.sim import SimulatorThread
from tests.helpers import Editor, make_client_fixture, plain, server_env

pytestmark = pytest.mark.slow  # every test starts the language server and runs phases through it

KEYS = {"PIPE_KEY": "test-key-pipeline-3c4d5e6f"}
FOLDER = Path(tempfile.mkdtemp(prefix="phasewise-pipeline-")).resolve()
# the client's workspace folder holds the instructions (a document outside every folder gets none)
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0"), clients=["visual-studio-code"], root=FOLDER)
DOC = "def load(path):\n    return open(path).read()\n\n\ndef main():\n    return load('x')\n"
URI = (FOLDER / "store.py").as_uri()
INSTRUCTIONS = FOLDER / ".phasewise" / "test.md"


def settings(sim: SimulatorThread, **extra: Any) -> dict[str, Any]:
    model = "pipe/sim-fast"
    return {
        "phases": {
            "spec": {"kind": "plan", "model": model, "instructions": "Write the acceptance criteria first."},
            "plan": {"model": model}, "code": {"model": model}, "review": {"model": model},
            "test": {"kind": "code", "model": model, "instructions": "@.phasewise/test.md"},
        },
        "providers": {"pipe": {"protocol": "openai", "baseUrl": sim.base_url("pipe", "openai"),
                               "apiKeyEnv": "PIPE_KEY"}},
        **extra,
    }


def prompt(request: Any) -> str:
    return "\n".join(m["content"] for m in request.body["messages"])


async def test_a_phase_of_your_own_gets_its_instructions_and_its_kind(client: LanguageClient,
                                                                      sim: SimulatorThread) -> None:
    INSTRUCTIONS.parent.mkdir(exist_ok=True)
    INSTRUCTIONS.write_text("Put the tests in tests/, one per function.\n", encoding="utf-8")
    editor = Editor(client)
    editor.configure(settings(sim))
    editor.open(URI, DOC)
    spec = plain(await editor.command("phasewise.phase", {"phase": "spec", "uri": URI, "instruction": "load JSON"}))
    assert spec["ok"] and spec["kind"] == "plan", spec
    sent = prompt([r for r in sim.requests if r.endpoint == "chat"][-1])
    assert "Phasewise phase: spec (a plan phase)." in sent and "Write the acceptance criteria first." in sent
    # a code-kind phase of your own: instructions read from the file it names, answered as a change
    test = plain(await editor.command("phasewise.phase", {"phase": "test", "uri": URI,
                                                          "instruction": "rename load to read_file"}))
    assert test["ok"] and test["kind"] == "code" and test["applied"] is True, test
    sent = prompt([r for r in sim.requests if r.endpoint == "chat"][-1])
    assert "Phasewise phase: test (a code phase)." in sent and "Put the tests in tests/, one per function." in sent
    assert "def read_file(path)" in editor.texts[URI]
    # the built-in phases' results keep their shape: no kind written for them
    plan = plain(await editor.command("phasewise.plan", {"uri": URI, "instruction": "x"}))
    assert plan["ok"] and "kind" not in plan
    # status knows the phases of your own and their kinds
    status = plain(await editor.command("phasewise.status", {"uri": URI}))
    kinds = {p["phase"]: p.get("kind") for p in status["phases"]}
    assert kinds["spec"] == "plan" and kinds["test"] == "code" and kinds["review"] == "review"


async def test_a_missing_instructions_file_is_a_config_problem_and_nothing_is_sent(client: LanguageClient,
                                                                                  sim: SimulatorThread) -> None:
    editor = Editor(client)
    raw = settings(sim)
    raw["phases"]["test"]["instructions"] = "@no/such/file.md"
    editor.configure(raw)
    editor.open(URI, DOC)
    result = plain(await editor.command("phasewise.phase", {"phase": "test", "uri": URI, "instruction": "x"}))
    assert result["ok"] is False and result["error"]["kind"] == "config", result
    assert "no/such/file.md" in result["error"]["message"] and "Nothing was sent" in result["error"]["message"]
    assert [r for r in sim.requests if r.endpoint == "chat"] == []


async def test_a_five_phase_pipeline_runs_in_order_each_given_what_came_before(client: LanguageClient,
                                                                              sim: SimulatorThread) -> None:
    INSTRUCTIONS.parent.mkdir(exist_ok=True)
    INSTRUCTIONS.write_text("Put the tests in tests/.\n", encoding="utf-8")
    editor = Editor(client)
    editor.configure(settings(sim, pipeline=["spec", "plan", "code", "test", "review"]))
    editor.open(URI, DOC)
    run = plain(await editor.command("phasewise.run", {"uri": URI, "instruction": "rename load to read_file"}))
    assert run["ok"], run
    assert [p["phase"] for p in run["phases"]] == ["spec", "plan", "code", "test", "review"]
    assert len({p["runId"] for p in run["phases"]}) == 1
    chats = [r for r in sim.requests if r.endpoint == "chat"]
    assert [r.phase for r in chats] == ["spec", "plan", "code", "test", "review"]
    spec, plan, code, test, review = (prompt(r) for r in chats)
    assert "<plan>" not in spec                                  # the first phase gets nothing before it
    assert "## spec" not in plan and "<plan>" in plan            # plan gets the spec
    assert "## spec" in code and "## plan" in code               # code gets both plans
    assert "<change>" not in code and "<change>" in test        # test (code kind) gets the change so far
    assert "<change>" in review and "+def read_file(path)" in review
    assert "def read_file(path)" in editor.texts[URI]


async def test_a_pipeline_naming_an_unknown_phase_is_refused_precisely(client: LanguageClient,
                                                                       sim: SimulatorThread) -> None:
    from pygls.exceptions import JsonRpcException

    editor = Editor(client)
    editor.configure(settings(sim, pipeline=["plan", "docs", "review"]))
    editor.open(URI, DOC)
    try:
        await editor.command("phasewise.run", {"uri": URI, "instruction": "x"})
    except JsonRpcException as err:
        assert "unknown phase 'docs'" in err.message and "phasewise.phases.docs" in err.message
    else:
        raise AssertionError("a pipeline with an unknown phase ran")
    assert [r for r in sim.requests if r.endpoint == "chat"] == []
