"""Issue 22, item 5: a qa-kind phase runs the project's commands and says whether they passed.

Through the language server and a plugin's client, with the simulator at the wire: a qa phase runs
the real pytest on the example project; a failing test becomes a finding on the test file's line
(a `phasewise-qa` diagnostic there), `passed` is false and `checks` says what ran; fixed, it passes.
A qa phase is never given `edit_file`; one without commands is a settings problem before anything
is sent. The verdict is the commands', not only the model's (``take_verdict`` directly). On the
command line, a run `plan,code,qa` ends with the qa phase's verdict.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise.cli.demo import example_project
from phasewise.phases.agent_workspace import AgentWorkspace
from phasewise.phases.commands import CommandRun
from phasewise.phases.documents import Document
from phasewise.phases.qa import take_verdict
from phasewise.phases.results import PhaseInput, PhaseResult
from phasewise.phases.workspace import Workspace
from phasewise.sim import SimulatorThread
from tests.helpers import PLUGIN_EXPERIMENTAL, Editor, answer, make_client_fixture, server_env

pytestmark = pytest.mark.slow  # a language server per test, pytest run as a command

BASE = Path(tempfile.mkdtemp(prefix="phasewise-qa-")).resolve()
ROOT = BASE / "shop"
USER_SETTINGS = BASE / "user-settings.json"
ENV = server_env(QA_KEY="test-key-qa-6161", PHASEWISE_WARMUP="0", PHASEWISE_LEDGER=str(BASE / "runs.jsonl"),
                 XDG_STATE_HOME=str(BASE / "state"), PHASEWISE_USER_SETTINGS=str(USER_SETTINGS))
client = make_client_fixture(ENV, clients=["visual-studio-code"], experimental=PLUGIN_EXPERIMENTAL, root=ROOT)

TEST = shlex.join([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inventory.py"])
FAILING = '''from inventory import Item, find_item


def test_find_item():
    items = [Item("a-1", "Anvil", 3, 10.0)]
    assert find_item(items, "a-1").name == "Hammer"
'''
PASSING = FAILING.replace('"Hammer"', '"Anvil"')


@pytest.fixture
def work(sim: SimulatorThread) -> Path:
    """The example project and a test of it, a git work tree; `test` (pytest) a user-level command."""
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    for f in example_project():
        shutil.copyfile(f, ROOT / f.name)
    (ROOT / "test_inventory.py").write_text(FAILING, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(ROOT)], check=True)
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"test": TEST}}}), encoding="utf-8")
    return ROOT


def texts(folder: Path) -> dict[str, str]:
    """Each Python file of ``folder`` by name, as it is on disk."""
    return {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.py")}


def settings(sim: SimulatorThread, **qa: Any) -> dict[str, Any]:
    return {
        "phases": {"qa": {"model": "qa-o/glm-sim", "agent": {"commands": ["test"]}, **qa}},
        "providers": {"qa-o": {"protocol": "openai", "baseUrl": sim.base_url("qa-o", "openai"),
                               "apiKeyEnv": "QA_KEY", "models": {"glm-sim": {"toolCalling": True}}}},
    }


async def check(client: LanguageClient, sim: SimulatorThread, **qa: Any) -> tuple[Editor, dict[str, Any]]:
    editor = Editor(client)
    editor.configure(settings(sim, **qa))
    uri = (ROOT / "inventory.py").as_uri()
    editor.open(uri, (ROOT / "inventory.py").read_text(encoding="utf-8"))
    result: dict[str, Any] = answer(await editor.command("phasewise.phase", {"uri": uri, "phase": "qa"}))
    return editor, result


async def test_a_failing_test_is_a_finding_on_its_line_and_the_phase_did_not_pass(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    _, result = await check(client, sim)
    assert result["ok"] is True and result["phase"] == "qa", result.get("error")
    assert result["passed"] is False
    assert [(c["name"], c["ran"], c["ok"], c["exitCode"]) for c in result["checks"]] == [("test", True, False, 1)]
    # the finding is on the failing assertion's line of the test file (pytest said where)
    line = FAILING.splitlines().index('    assert find_item(items, "a-1").name == "Hammer"')
    tests = (work / "test_inventory.py").as_uri()
    assert [(f.get("path"), f["startLine"], f["severity"]) for f in result["findings"]] == [
        ("test_inventory.py", line, "error")]
    assert "`test` failed here" in result["findings"][0]["message"]
    assert "`test` exited 1." in result["note"]
    # shown where the user looks: a phasewise-qa diagnostic on that line of the test file
    shown = client.diagnostics.get(tests, [])
    assert [(d.source, d.range.start.line) for d in shown] == [("phasewise-qa", line)]
    # it only looked and ran: never offered edit_file, and nothing changed
    chats = [r for r in sim.requests if r.endpoint == "chat"]
    names = {(t.get("function") or {}).get("name") for r in chats for t in r.body.get("tools") or []}
    assert names == {"read_file", "list_files", "search_files", "run_command", "report_findings"}
    assert (work / "test_inventory.py").read_text(encoding="utf-8") == FAILING
    assert [s["tool"] for s in result["steps"]] == ["run_command"]


async def test_fixed_the_checks_pass(client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    (work / "test_inventory.py").write_text(PASSING, encoding="utf-8")
    _, result = await check(client, sim)
    assert (result["ok"], result["passed"], result["findings"]) == (True, True, [])
    assert [(c["name"], c["ok"], c["exitCode"]) for c in result["checks"]] == [("test", True, 0)]
    assert "note" not in result


async def test_a_qa_phase_without_commands_is_a_settings_problem_before_anything_is_sent(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    _, result = await check(client, sim, agent={"commands": ["tests"]})  # not a command of the settings
    assert result["ok"] is False and result["error"]["kind"] == "config"
    assert "`phasewise.phases.qa.agent.commands` names `tests`, which `phasewise.commands` does not define" in \
        result["error"]["message"]
    assert [r for r in sim.requests if r.endpoint == "chat"] == []


def test_the_verdict_is_the_commands_not_only_the_models(tmp_path: Path) -> None:
    """The model says it passed and reports nothing; the command failed: not passed, and the failure
    pytest names (FAILED path::test) becomes a finding on the test's line."""
    (tmp_path / "test_x.py").write_text("import x\n\n\ndef test_one():\n    assert x.f() == 2\n", encoding="utf-8")
    doc = Document((tmp_path / "x.py").as_uri(), "def f():\n    return 1\n")
    ws = AgentWorkspace(Workspace([tmp_path]))
    out = "F\nFAILED test_x.py::test_one - assert 1 == 2\n1 failed in 0.01s\n"
    result = PhaseResult(ok=False, run_id="r", phase="qa", kind="qa")
    take_verdict(result, {"passed": True, "findings": []}, PhaseInput(doc, ""), ws,
                 [CommandRun("test", True, 1, 0.2, output=out)], ["test", "lint"])
    assert result.passed is False
    assert [(f.path, f.start, f.message) for f in result.findings] == [
        ("test_x.py", 3, "`test` failed here: assert 1 == 2")]
    assert result.note == ("The model said the checks passed; the commands say otherwise. `test` exited 1. "
                           "Not run: `lint`.")
    # a failure the output does not locate: a finding on the document, with the output's last line
    result = PhaseResult(ok=False, run_id="r", phase="qa", kind="qa")
    take_verdict(result, {"findings": []}, PhaseInput(doc, ""), ws,
                 [CommandRun("lint", True, 2, 0.1, output="something is off\n")], ["lint"])
    assert [(f.path, f.start, f.message) for f in result.findings] == [(None, 0, "`lint` exited 2: something is off")]


def test_a_run_plan_code_qa_ends_with_the_qa_verdict_on_the_command_line(sim: SimulatorThread, work: Path) -> None:
    (work / "test_inventory.py").write_text(PASSING.replace("find_item", "find_by_sku"), encoding="utf-8")
    (work / "phasewise.json").write_text(json.dumps({**settings(sim), "phases": {
        "plan": {"model": "qa-o/glm-sim"}, "code": {"model": "qa-o/glm-sim", "agent": True},
        "qa": {"model": "qa-o/glm-sim", "agent": {"commands": ["test"]}}}}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "phasewise", "run", str(work / "inventory.py"), "--json",
                           "-i", "rename find_item to find_by_sku", "--pipeline", "plan,code,qa"],
                          env=ENV, cwd=work, capture_output=True, text=True, timeout=120, check=False)
    out = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert [p["phase"] for p in out["phases"]] == ["plan", "code", "qa"]
    assert out["passed"] is True and out["phases"][2]["passed"] is True
    assert "def find_by_sku(" in (work / "inventory.py").read_text(encoding="utf-8")


def test_a_failed_check_sends_the_code_phase_back_and_the_run_ends_with_one_passing_change(
        sim: SimulatorThread, work: Path) -> None:
    """plan → code → qa with one fix round, on the command line: the hasty coder renames the module
    only, the test fails on the caller's import, the second round fixes the caller, the checks pass,
    and the one change (both files) is written at the end."""
    from phasewise.cli.demo import example_project as files

    (work / "test_inventory.py").unlink()
    shutil.copyfile(Path(files()[0]).parent / "test_orders.py", work / "test_orders.py")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "shop"],
                   check=True)
    unittest = shlex.join([sys.executable, "-m", "unittest", "-q", "test_orders"])
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"test": unittest}}}), encoding="utf-8")
    (work / "phasewise.json").write_text(json.dumps({**settings(sim), "fixRounds": 2, "phases": {
        "plan": {"model": "qa-o/glm-sim"}, "code": {"model": "qa-o/glm-sim-hasty", "agent": True},
        "qa": {"model": "qa-o/glm-sim", "agent": {"commands": ["test"]}}},
        "providers": {"qa-o": {**settings(sim)["providers"]["qa-o"],
                               "models": {"glm-sim": {"toolCalling": True}, "glm-sim-hasty": {"toolCalling": True}}}},
        "pipeline": ["plan", "code", "qa"]}), encoding="utf-8")
    before = {p.name: p.read_text(encoding="utf-8") for p in work.glob("*.py")}
    done = subprocess.run([sys.executable, "-m", "phasewise", "run", str(work / "inventory.py"), "--json",
                           "-i", "rename find_item to find_by_sku"],
                          env=ENV, cwd=work, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [(p["phase"], p.get("round", 0)) for p in out["phases"]] == [
        ("plan", 0), ("code", 0), ("qa", 0), ("code", 1), ("qa", 1)]
    first, last = out["phases"][2], out["phases"][4]
    assert first["passed"] is False and last["passed"] is True and out["passed"] is True and out["rounds"] == 1
    # the first check failed on the caller's import (orders.py still imports find_item)
    assert any(f.get("path", "").endswith("orders.py") for f in first["findings"]), first["findings"]
    # the first round changed the module only, the fix round the caller: one change of both, written at the end
    assert [f["path"] for f in out["phases"][1]["files"]] == ["inventory.py"]
    assert [f["path"] for f in out["phases"][3]["files"]] == ["orders.py"]
    assert sorted(f["path"] for f in out["files"]) == ["inventory.py", "orders.py"]
    after = {p.name: p.read_text(encoding="utf-8") for p in work.glob("*.py")}
    assert after["inventory.py"] == before["inventory.py"].replace("find_item", "find_by_sku")
    assert after["orders.py"] == before["orders.py"].replace("find_item", "find_by_sku")
    assert after["test_orders.py"] == before["test_orders.py"]
    assert subprocess.run([sys.executable, "-m", "unittest", "-q", "test_orders"], cwd=work,
                          capture_output=True, check=False).returncode == 0


async def test_through_the_editor_the_files_change_once_at_the_end_with_both_rounds(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    """phasewise.run through the language server: nothing is applied while the rounds go on (the
    first check sees the hasty change on a scratch copy, not in the editor); one workspace edit at
    the end holds the first round's change and the fix round's."""
    from phasewise.cli.demo import example_project as files

    (work / "test_inventory.py").unlink()
    shutil.copyfile(Path(files()[0]).parent / "test_orders.py", work / "test_orders.py")
    unittest = shlex.join([sys.executable, "-m", "unittest", "-q", "test_orders"])
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"test": unittest}}}), encoding="utf-8")
    base = settings(sim)
    base["providers"]["qa-o"]["models"]["glm-sim-hasty"] = {"toolCalling": True}
    editor = Editor(client)
    editor.configure({**base, "fixRounds": 1, "pipeline": ["code", "qa"], "phases": {
        "code": {"model": "qa-o/glm-sim-hasty", "agent": True, "confirm": False},
        "qa": {"model": "qa-o/glm-sim", "agent": {"commands": ["test"]}}}})
    uri = (work / "inventory.py").as_uri()
    editor.open(uri, (work / "inventory.py").read_text(encoding="utf-8"))
    before = texts(work)
    out: dict[str, Any] = answer(await editor.command("phasewise.run", {
        "uri": uri, "instruction": "rename find_item to find_by_sku"}))
    assert [(p["phase"], p.get("round", 0), p.get("passed")) for p in out["phases"]] == [
        ("code", 0, None), ("qa", 0, False), ("code", 1, None), ("qa", 1, True)]
    assert out["ok"] is True and out["passed"] is True and out["rounds"] == 1
    # one edit, at the end, with both rounds' files; the open module changed in the editor
    assert len(editor.applied) == 1
    changed = {c.text_document.uri for c in editor.applied[0].edit.document_changes or ()
               if hasattr(c, "text_document")}
    assert changed == {uri, (work / "orders.py").as_uri()}
    assert editor.texts[uri] == before["inventory.py"].replace("find_item", "find_by_sku")
    assert (work / "orders.py").read_text(encoding="utf-8") == before["orders.py"].replace("find_item", "find_by_sku")
    assert (work / "test_orders.py").read_text(encoding="utf-8") == before["test_orders.py"]


async def test_a_last_round_that_still_fails_offers_the_change_marked_as_failing(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    """No fix round allowed: the hasty change fails its check, and is still offered (here applied
    without a preview), its edit's label and the code result's note saying the checks fail."""
    from phasewise.cli.demo import example_project as files

    (work / "test_inventory.py").unlink()
    shutil.copyfile(Path(files()[0]).parent / "test_orders.py", work / "test_orders.py")
    unittest = shlex.join([sys.executable, "-m", "unittest", "-q", "test_orders"])
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"test": unittest}}}), encoding="utf-8")
    base = settings(sim)
    base["providers"]["qa-o"]["models"]["glm-sim-hasty"] = {"toolCalling": True}
    editor = Editor(client)
    editor.configure({**base, "pipeline": ["code", "qa"], "phases": {
        "code": {"model": "qa-o/glm-sim-hasty", "agent": True},
        "qa": {"model": "qa-o/glm-sim", "agent": {"commands": ["test"]}}}})
    uri = (work / "inventory.py").as_uri()
    editor.open(uri, (work / "inventory.py").read_text(encoding="utf-8"))
    out: dict[str, Any] = answer(await editor.command("phasewise.run", {
        "uri": uri, "instruction": "rename find_item to find_by_sku"}))
    assert [(p["phase"], p.get("passed")) for p in out["phases"]] == [("code", None), ("qa", False)]
    assert out["passed"] is False and "rounds" not in out
    code = out["phases"][0]
    assert code["applied"] is True and code["note"].startswith("The checks fail on this change: the run's change "
                                                                "is offered anyway")
    assert len(editor.applied) == 1
    assert editor.applied[0].label == "Phasewise code (qa-o/glm-sim-hasty) — the checks fail"
