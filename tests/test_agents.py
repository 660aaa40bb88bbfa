"""Issue 21: phases that work in steps, through the language server and a real LSP client.

The simulator plays the agent (``sim/agent.py``) on both protocols, so the real SDKs carry every
step; the workspace is a real git work tree on disk. A code agent searches, reads and edits two
files and its change arrives as one ``workspace/applyEdit``; plan and review phases are never given
``edit_file`` and a call to it has no effect; paths outside the workspace and credential files are
refused as tool results; the bounds (``maxSteps``, the repeat guard) end a phase incomplete with
nothing applied; a rate limit at step 3 is waited out; a fallback from an Anthropic model to an
OpenAI one at step 3 continues the same transcript; a cancel mid-step applies nothing; broken tool
arguments are answered and the loop goes on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

from phasewise.cli.demo import example_project
from phasewise.sim import SimulatorThread
from tests.helpers import PLUGIN_EXPERIMENTAL, Editor, answer, field_of, make_client_fixture, server_env

pytestmark = pytest.mark.slow  # a language server per test, several model calls per phase

LEDGER = str(Path(tempfile.mkdtemp(prefix="phasewise-agents-ledger-")) / "runs.jsonl")
KEYS = {"AGENT_A_KEY": "test-key-agent-anthropic-31", "AGENT_O_KEY": "test-key-agent-openai-32"}
ROOT = Path(tempfile.mkdtemp(prefix="phasewise-agents-")).resolve()
# a plugin's client (it declares experimental.phasewise): it is sent each step as it ends
client = make_client_fixture(server_env(**KEYS, PHASEWISE_WARMUP="0", PHASEWISE_LEDGER=LEDGER),
                             clients=["visual-studio-code"], experimental=PLUGIN_EXPERIMENTAL, root=ROOT)
RENAME = "rename find_item to find_by_sku"
CANARY = "CANARY-OUTSIDE-THE-WORKSPACE-77"


@pytest.fixture
def work(sim: SimulatorThread) -> Path:
    """The example project (inventory.py and its caller orders.py), fresh, as a git work tree."""
    for child in ROOT.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for f in example_project():
        shutil.copyfile(f, ROOT / f.name)
    (ROOT / ".env").write_text("API_TOKEN=CANARY-ENV-0042\n", encoding="utf-8")
    (ROOT.parent / f"{ROOT.name}-outside.txt").write_text(CANARY + "\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(ROOT)], check=True)
    return ROOT


def settings(sim: SimulatorThread, *, protocol: str = "openai", model: str | None = None, agent: Any = True,
             fallbacks: list[str] | None = None, **phase: Any) -> dict[str, Any]:
    provider = "agent-a" if protocol == "anthropic" else "agent-o"
    model = model or ("claude-sim" if protocol == "anthropic" else "glm-sim")
    providers = {
        "agent-a": {"protocol": "anthropic", "baseUrl": sim.base_url("agent-a", "anthropic"),
                    "apiKeyEnv": "AGENT_A_KEY", "models": {}},
        "agent-o": {"protocol": "openai", "baseUrl": sim.base_url("agent-o", "openai"),
                    "apiKeyEnv": "AGENT_O_KEY", "models": {}},
    }
    for p, m in ((provider, model), *((f.split("/", 1)[0], f.split("/", 1)[1]) for f in fallbacks or ())):
        providers[p]["models"][m] = {"toolCalling": True}
    entry = {"model": f"{provider}/{model}", "agent": agent, **phase}
    if fallbacks:
        entry["fallbacks"] = fallbacks
    return {"phases": {k: dict(entry) for k in ("plan", "code", "review")}, "providers": providers,
            "retry": {"maxAttempts": 2, "maxWaitSeconds": 5, "backoffBaseSeconds": 0}}


def last_run() -> dict[str, Any]:
    line: dict[str, Any] = json.loads(Path(LEDGER).read_text(encoding="utf-8").splitlines()[-1])
    return line


async def logged(client: LanguageClient, text: str) -> None:
    """Wait until the server has logged a line holding ``text`` (it logs a phase's end after recording it)."""
    while not any(text in m.message for m in client.log_messages):
        await asyncio.wait_for(client.wait_for_notification(types.WINDOW_LOG_MESSAGE), 30)


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


def declared(request: Any) -> list[str]:
    tools = request.body.get("tools") or []
    return [t.get("name") or (t.get("function") or {}).get("name") for t in tools]


def sent(sim: SimulatorThread) -> str:
    return "\n".join(json.dumps(r.body) for r in chats(sim))


async def run(editor: Editor, phase: str, instruction: str, **extra: Any) -> dict[str, Any]:
    uri = (ROOT / "inventory.py").as_uri()
    result: dict[str, Any] = answer(await editor.command(f"phasewise.{phase}", {"uri": uri, "instruction": instruction,
                                                                              **extra}))
    return result


def opened(client: LanguageClient, sim: SimulatorThread, **kw: Any) -> Editor:
    editor = Editor(client)
    editor.configure(settings(sim, **kw))
    editor.open((ROOT / "inventory.py").as_uri(), (ROOT / "inventory.py").read_text(encoding="utf-8"))
    return editor


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_code_agent_searches_reads_and_edits_two_files_applied_as_one_change(
        client: LanguageClient, sim: SimulatorThread, work: Path, protocol: str) -> None:
    editor = opened(client, sim, protocol=protocol)
    result = await run(editor, "code", RENAME)
    assert result["ok"] is True and result["applied"] is True, result.get("error")
    tools = [s["tool"] for s in result["steps"]]
    assert tools[0] == "search_files" and "read_file" in tools and tools.count("edit_file") >= 2
    assert all(s["ok"] for s in result["steps"]) and result["usage"]["inputTokens"] > 0
    assert [s["tool"] for s in last_run()["steps"]] == tools  # the run record keeps the steps
    # one edit, both files in it; the caller (not open) written by the editor
    assert len(editor.applied) == 1
    uris = {field_of(c, "text_document").uri for c in editor.applied[0].edit.document_changes or ()
            if hasattr(c, "text_document")}
    assert uris == {(work / "inventory.py").as_uri(), (work / "orders.py").as_uri()}
    assert "def find_by_sku(" in editor.texts[(work / "inventory.py").as_uri()]
    assert "find_item" not in (work / "orders.py").read_text(encoding="utf-8")
    # every step on this route, the transcript growing: each request after the first carries results
    steps = chats(sim)
    assert len(steps) >= 4 and {r.provider for r in steps} == {"agent-a" if protocol == "anthropic" else "agent-o"}
    assert "edit_file" in declared(steps[0])
    # the progress said which step it was at
    reports = [field_of(p, "message") for ps in client.progress_reports.values() for p in ps]
    assert any(m and m.startswith("step 1/25: search_files") for m in reports), reports
    # and each step reached the plugin as it ended (phasewise/step), the same steps the result lists
    assert [(n["phase"], n["runId"], n["uri"]) for n in editor.steps] == [
        ("code", result["runId"], (ROOT / "inventory.py").as_uri())] * len(result["steps"])
    assert [n["step"] for n in editor.steps] == [{**s, "of": 25} for s in result["steps"]]


async def test_plan_and_review_are_read_only_and_a_forced_edit_has_no_effect(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    before = (work / "inventory.py").read_text(encoding="utf-8")
    editor = opened(client, sim, model="glm-sim-rogue")  # its first call is edit_file, not given to it
    plan = await run(editor, "plan", "plan the rename of find_item")
    assert plan["ok"] is True and plan["text"].strip()
    first = plan["steps"][0]
    assert first["tool"] == "edit_file" and first["ok"] is False
    review = await run(editor, "review", "review it")
    assert review["ok"] is True and review["findings"]
    for request in chats(sim):
        assert "edit_file" not in declared(request), declared(request)
    assert (work / "inventory.py").read_text(encoding="utf-8") == before and editor.applied == []


@pytest.mark.parametrize(("instruction", "origin", "refused"), [
    ("read `../{outside}`", None, "outside the workspace"),
    ("read `.env`", "document", "credential"),
    ("write `~/.bashrc`", None, "home folder"),
])
async def test_paths_outside_and_credential_files_are_refused_as_tool_results(
        client: LanguageClient, sim: SimulatorThread, work: Path, instruction: str, origin: str | None,
        refused: str) -> None:
    editor = opened(client, sim)
    extra = {"origin": origin} if origin else {}
    result = await run(editor, "code", instruction.format(outside=f"{ROOT.name}-outside.txt"), **extra)
    step = result["steps"][0]
    assert step["ok"] is False and refused in step["summary"] + json.dumps(result["text"]), result
    assert CANARY not in sent(sim) and "CANARY-ENV" not in sent(sim) and editor.applied == []
    assert not (work / "~").exists()


async def test_the_users_own_words_may_name_a_credential_file(client: LanguageClient, sim: SimulatorThread,
                                                              work: Path) -> None:
    editor = opened(client, sim)
    result = await run(editor, "code", "read `.env`")  # typed by the user: no origin
    assert result["steps"][0]["ok"] is True and "CANARY-ENV" in sent(sim)


async def test_max_steps_ends_the_phase_incomplete_and_applies_nothing(client: LanguageClient, sim: SimulatorThread,
                                                                       work: Path) -> None:
    editor = opened(client, sim, agent={"maxSteps": 3})  # search, read, edit: no step left to finish
    result = await run(editor, "code", RENAME)
    assert result["ok"] is True and result["incomplete"] is True
    assert "phasewise.phases.code.agent.maxSteps" in result["note"] and "Nothing was applied" in result["note"]
    assert "+def find_by_sku" in result["diff"] and result["applied"] in (None, False)
    assert editor.applied == [] and "find_item" in (work / "orders.py").read_text(encoding="utf-8")
    assert len(chats(sim)) == 3


async def test_the_same_call_three_times_ends_the_loop(client: LanguageClient, sim: SimulatorThread,
                                                       work: Path) -> None:
    editor = opened(client, sim, model="glm-sim-loop")
    result = await run(editor, "plan", "plan the rename of find_item")
    assert result["incomplete"] is True and "3 times in a row" in result["note"]
    assert len(result["steps"]) == 2 and len(chats(sim)) == 3  # the third call was not run


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_rate_limit_at_step_3_is_waited_out_and_the_loop_goes_on(
        client: LanguageClient, sim: SimulatorThread, work: Path, protocol: str) -> None:
    editor = opened(client, sim, protocol=protocol)
    provider = "agent-a" if protocol == "anthropic" else "agent-o"
    preset = "anthropic.rate_limit_error" if protocol == "anthropic" else "openai.rate_limit"
    sim.add_fault(preset, provider=provider, skip=2, retry_after=0.2)
    result = await run(editor, "code", RENAME)
    assert result["ok"] is True and result["applied"] is True, result.get("error")
    outcomes = [a["outcome"] for a in result["attempts"]]
    assert "rate-limit" in outcomes and outcomes[-1] == "ok"
    assert "find_item" not in (work / "orders.py").read_text(encoding="utf-8")


async def test_a_fallback_at_step_3_continues_the_transcript_on_the_other_protocol(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    editor = opened(client, sim, protocol="anthropic", fallbacks=["agent-o/glm-sim"])
    sim.add_fault("anthropic.overloaded_error", provider="agent-a", skip=2, times=-1)
    result = await run(editor, "code", RENAME)
    assert result["ok"] is True and result["fallbackUsed"] is True and result["provider"] == "agent-o"
    steps = chats(sim)
    assert [r.provider for r in steps[:2]] == ["agent-a", "agent-a"]
    continued = [r for r in steps if r.provider == "agent-o"]
    # the fallback's first request carries the Anthropic steps' calls and results as OpenAI messages
    roles = [m["role"] for m in continued[0].body["messages"]]
    assert "tool" in roles and any(m.get("tool_calls") for m in continued[0].body["messages"])
    assert "find_item" not in (work / "orders.py").read_text(encoding="utf-8")


async def test_a_cancel_mid_step_applies_nothing(client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    editor = opened(client, sim)
    sim.add_fault(provider="agent-o", stream="stall", after_chunks=1, skip=1)
    running = editor.start("phasewise.code", {"uri": (work / "inventory.py").as_uri(), "instruction": RENAME},
                           "agent-cancel-1")
    await sim.await_requests(2, provider="agent-o")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="agent-cancel-1"))  # as an editor sends it
    assert await sim.await_client_close() is not None  # the step's request was closed upstream at once
    with pytest.raises(JsonRpcRequestCancelled):  # the command is answered RequestCancelled
        await running
    assert editor.applied == [] and "find_item" in (work / "orders.py").read_text(encoding="utf-8")
    # the editor had its answer at once; the phase's task ends, and is recorded, just after
    await logged(client, "code phase failed: cancelled")
    assert last_run()["result"] == "cancelled"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_broken_tool_arguments_are_answered_and_the_loop_goes_on(
        client: LanguageClient, sim: SimulatorThread, work: Path, protocol: str) -> None:
    model = "claude-sim-badargs" if protocol == "anthropic" else "glm-sim-badargs"
    editor = opened(client, sim, protocol=protocol, model=model)
    result = await run(editor, "code", RENAME)
    assert result["steps"][0]["ok"] is False and result["ok"] is True and result["applied"] is True


async def test_an_agent_needs_a_model_known_to_call_tools(client: LanguageClient, sim: SimulatorThread,
                                                          work: Path) -> None:
    editor = Editor(client)
    raw = settings(sim)
    raw["providers"]["agent-o"]["models"] = {}  # nothing says glm-sim calls tools
    editor.configure(raw)
    editor.open((work / "inventory.py").as_uri(), (work / "inventory.py").read_text(encoding="utf-8"))
    result = await run(editor, "code", RENAME)
    assert result["ok"] is False and result["error"]["kind"] == "capability"
    assert result["error"]["setting"] == "phasewise.phases.code.agent" and chats(sim) == []
    status = answer(await editor.command("phasewise.status", {"uri": (work / "inventory.py").as_uri()}))
    code = next(p for p in status["phases"] if p["phase"] == "code")
    assert code["agent"] == {"maxSteps": 25, "maxCostUsd": None,
                             "tools": ["read_file", "list_files", "search_files", "edit_file"], "commands": []}
    plan = next(p for p in status["phases"] if p["phase"] == "plan")
    assert plan["agent"]["tools"] == ["read_file", "list_files", "search_files"]


async def test_a_document_outside_every_folder_runs_as_one_request_and_says_so(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    loose = work.parent / f"{work.name}-loose.py"
    loose.write_text("def find_item(items):\n    return items[0]\n", encoding="utf-8")
    editor = Editor(client)
    editor.configure(settings(sim))
    editor.open(loose.as_uri(), loose.read_text(encoding="utf-8"))
    result = answer(await editor.command("phasewise.plan", {"uri": loose.as_uri(), "instruction": "plan it"}))
    assert result["ok"] is True and "steps" not in result and len(chats(sim)) == 1
    assert "only in a workspace folder" in result["note"] and "phasewise.phases.plan.agent" in result["note"]
