"""The command line: run/plan/code/review on files, history, compare, doctor, models, settings files.

The simulator's catalogue providers (sim-claude: Anthropic protocol; sim-glm, sim-gpt: OpenAI
protocol) stand in for real ones. Most commands run in-process through ``cli.main``; the headline
``phasewise run`` also runs in a shell subprocess. Every ledger is a temp file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phasewise import cli
from phasewise.cli.demo import example_file
from phasewise.cli.headless import FileSession
from phasewise.sim import SimulatorThread
from phasewise.workflows.config import load_cli_settings, strip_jsonc
from phasewise.workflows.ledger import Ledger, ledger_path
from tests.helpers import server_env

ROUTES = {"plan": {"model": "sim-claude/claude-sim"}, "code": {"model": "sim-glm/glm-sim"},
          "review": {"model": "sim-gpt/gpt-sim"}}
INSTRUCTION = "rename find_item to find_by_sku"


@pytest.fixture
def work(tmp_path: Path, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the example file and a phasewise.json; env pointed at the simulator."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_AUTH_TOKEN")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHASEWISE_SIM_URL", sim.url)
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "state" / "runs.jsonl"))
    monkeypatch.setenv("COLUMNS", "160")
    project = tmp_path / "project"
    project.mkdir()
    (project / "inventory.py").write_text(example_file().read_text(encoding="utf-8"), encoding="utf-8")
    (project / "phasewise.json").write_text(json.dumps({"phases": ROUTES}), encoding="utf-8")
    return project


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out


def words(out: str) -> str:
    """Printed text as words, without rich's panel frames and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())


def ledger(tmp_path: Path) -> list[dict[str, Any]]:
    return Ledger(tmp_path / "state" / "runs.jsonl").read()


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


@pytest.mark.slow
def test_run_in_a_shell_writes_the_file_and_three_ledger_lines(work: Path, tmp_path: Path,
                                                               sim: SimulatorThread) -> None:
    env = server_env(PHASEWISE_SIM_URL=sim.url, PHASEWISE_LEDGER=str(tmp_path / "state" / "runs.jsonl"))
    done = subprocess.run([sys.executable, "-m", "phasewise", "run", "inventory.py", "--instruction", INSTRUCTION,
                           "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and out["written"] is True and out["settings"] == str(work / "phasewise.json")
    assert [(p["phase"], p["provider"], out["protocols"][p["phase"]]) for p in out["phases"]] == [
        ("plan", "sim-claude", "anthropic"), ("code", "sim-glm", "openai"), ("review", "sim-gpt", "openai")]
    text = (work / "inventory.py").read_text(encoding="utf-8")
    assert "def find_by_sku(items, sku):" in text and "find_item" not in text
    assert not [p for p in work.iterdir() if p.name.startswith(".inventory.py.")]  # no temp file left
    lines = ledger(tmp_path)
    assert [(x["phase"], x["provider"], x["protocol"], x["result"], x["source"]) for x in lines] == [
        ("plan", "sim-claude", "anthropic", "ok", "cli"), ("code", "sim-glm", "openai", "ok", "cli"),
        ("review", "sim-gpt", "openai", "ok", "cli")]
    assert {x["runId"] for x in lines} == {out["runId"]}
    assert lines[1]["applied"] is True and lines[2]["findings"] == len(out["findings"])
    raw = (tmp_path / "state" / "runs.jsonl").read_text(encoding="utf-8")
    assert INSTRUCTION not in raw and "def find_by_sku" not in raw and "content" not in raw
    assert lines[1]["filesChanged"] == 1 and all(x["contextFiles"] > 0 for x in lines)
    assert "inventory.py" not in raw  # paths only with recordContent
    # the code phase got the plan, the review phase got the applied change
    reqs = chats(sim)
    assert "<plan>" in reqs[1].body["messages"][-1]["content"]
    assert "+def find_by_sku(items, sku):" in reqs[2].body["messages"][-1]["content"]


def test_run_dry_run_prints_the_diff_and_writes_nothing(work: Path, tmp_path: Path, sim: SimulatorThread,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = (work / "inventory.py").read_text(encoding="utf-8")
    code, out = run_cli(capsys, "run", str(work / "inventory.py"), "-i", INSTRUCTION, "--dry-run")
    assert code == 0
    assert (work / "inventory.py").read_text(encoding="utf-8") == before
    assert "+def find_by_sku(items, sku):" in out and "not written (--dry-run)" in out
    assert "sim-claude/claude-sim" in out and "anthropic" in out and "Review findings" in out
    # the review phase reviewed the would-be text
    assert "def find_by_sku(items, sku)" in chats(sim)[2].body["messages"][-1]["content"].split("<document", 1)[1]
    assert [x["applied"] for x in ledger(tmp_path) if x["phase"] == "code"] == [False]


def test_run_stops_at_a_failing_phase(work: Path, tmp_path: Path, sim: SimulatorThread,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings = {"phases": {**ROUTES, "code": {"model": "gated/glm-sim"}},
                "providers": {"gated": {"protocol": "openai", "baseUrl": sim.base_url("gated"),
                                        "apiKeyEnv": "GATED_API_KEY"}}}
    (work / "phasewise.json").write_text(json.dumps(settings), encoding="utf-8")
    before = (work / "inventory.py").read_text(encoding="utf-8")
    code, out = run_cli(capsys, "run", str(work / "inventory.py"), "-i", INSTRUCTION, "--json")
    assert code == 1
    result = json.loads(out)
    assert result["stoppedAt"] == "code" and result["error"]["kind"] == "missing-credentials"
    assert "GATED_API_KEY" in result["error"]["message"] and result["plan"]
    assert (work / "inventory.py").read_text(encoding="utf-8") == before
    assert [r.provider for r in chats(sim)] == ["sim-claude"]
    assert [(x["phase"], x["result"]) for x in ledger(tmp_path)] == [("plan", "ok"), ("code", "missing-credentials")]


def test_single_phases_and_a_plan_from_a_file(work: Path, tmp_path: Path, sim: SimulatorThread,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = str(work / "inventory.py")
    code, out = run_cli(capsys, "plan", path, "-i", INSTRUCTION, "--json")
    plan = json.loads(out)
    assert code == 0 and plan["provider"] == "sim-claude" and plan["protocol"] == "anthropic"
    (tmp_path / "plan.md").write_text(plan["text"], encoding="utf-8")
    code, out = run_cli(capsys, "code", path, "-i", INSTRUCTION, "--plan", f"@{tmp_path / 'plan.md'}",
                        "--range", "33:45")
    assert code == 0 and "+def find_by_sku(items, sku):" in out
    assert "<plan>" in chats(sim)[-1].body["messages"][-1]["content"]
    assert "def find_by_sku" in (work / "inventory.py").read_text(encoding="utf-8")
    code, out = run_cli(capsys, "review", path)
    assert code == 0 and "Bare `except:`" in out and "sim-gpt/gpt-sim" in out
    assert [x["phase"] for x in ledger(tmp_path)] == ["plan", "code", "review"]
    assert len({x["runId"] for x in ledger(tmp_path)}) == 3


def test_a_plan_cut_at_the_output_limit_says_so(work: Path, sim: SimulatorThread,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The plan is printed (it is still ok), followed by what cut it and how to raise the limit; ``--json``
    carries the same ``note`` and ``incomplete: true``."""
    routes = {**ROUTES, "plan": {**ROUTES["plan"], "maxOutputTokens": 30}}
    (work / "phasewise.json").write_text(json.dumps({"phases": routes}), encoding="utf-8")
    path = str(work / "inventory.py")
    code, out = run_cli(capsys, "plan", path, "-i", INSTRUCTION, "--json")
    plan = json.loads(out)
    assert code == 0 and plan["ok"] is True and plan["incomplete"] is True
    assert "at its output limit of 30 tokens: the plan ends where the answer was cut off" in plan["note"]
    assert "`phasewise.phases.plan.maxOutputTokens`" in plan["note"]
    code, out = run_cli(capsys, "plan", path, "-i", INSTRUCTION)
    said = words(out)
    assert code == 0 and " ".join(plan["text"].split()) in said
    assert "stopped answering the plan phase (claude-sim) at its output limit of 30 tokens" in said, said
    assert "`phasewise.phases.plan.maxOutputTokens`" in said
    assert said.index("at its output limit") > said.index(" ".join(plan["text"].split()))  # after the plan
    assert "ok (cut at the output limit)" in said  # the table's outcome
    report = work / "compare.md"
    code, out = run_cli(capsys, "compare", path, "--phase", "plan", "-i", INSTRUCTION, "--models",
                        "sim-claude/claude-sim", "--report", str(report))
    assert code == 0 and "at its output limit of 30 tokens" in words(out)
    assert "\n> Simulated Claude (sim-claude, Anthropic protocol) stopped answering the plan phase" in (
        report.read_text(encoding="utf-8"))


def test_history_shows_cost_per_phase_and_per_run(work: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "run", str(work / "inventory.py"), "-i", INSTRUCTION)[0] == 0
    assert run_cli(capsys, "review", str(work / "inventory.py"))[0] == 0
    code, out = run_cli(capsys, "history", "--json")
    assert code == 0
    history = json.loads(out)
    assert history["ledger"] == str(tmp_path / "state" / "runs.jsonl")
    review_run, full_run = history["runs"]
    assert [p["phase"] for p in full_run["phases"]] == ["plan", "code", "review"]
    assert [p["phase"] for p in review_run["phases"]] == ["review"]
    assert full_run["ok"] and full_run["costUsd"] == pytest.approx(sum(p["costUsd"] for p in full_run["phases"]))
    assert all(p["costUsd"] > 0 for p in full_run["phases"])  # the catalogue prices the sim models
    code, out = run_cli(capsys, "history")
    assert code == 0 and full_run["runId"] in out and "sim-claude/claude-sim" in out and "$" in out
    code, out = run_cli(capsys, "history", "--json", "--run", review_run["runId"])
    assert [r["runId"] for r in json.loads(out)["runs"]] == [review_run["runId"]]


def test_compare_reports_every_model_and_a_failure_is_a_row(work: Path, tmp_path: Path, sim: SimulatorThread,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "compare.md"
    models = "sim-claude/claude-sim,sim-gpt/gpt-sim,nowhere/gpt-sim"
    code, out = run_cli(capsys, "compare", str(work / "inventory.py"), "--phase", "review", "--models", models,
                        "--report", str(report), "--json")
    assert code == 0
    result = json.loads(out)
    assert [(r["model"], r["outcome"]) for r in result["rows"]] == [
        ("sim-claude/claude-sim", "ok"), ("sim-gpt/gpt-sim", "ok"), ("nowhere/gpt-sim", "config")]
    assert sorted(r.provider for r in chats(sim)) == ["sim-claude", "sim-gpt"]
    text = report.read_text(encoding="utf-8")
    assert "## Findings side by side" in text and "| sim-claude/claude-sim |" in text and "Unknown provider" in text
    code, out = run_cli(capsys, "compare", str(work / "inventory.py"), "--phase", "review", "--models", models)
    assert code == 0 and "first token" in out and "nowhere/gpt-sim" in out and "Report:" in out
    assert {x["workflow"] for x in ledger(tmp_path)} == {"compare"}


def test_code_compare_shows_diffs_and_never_writes(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (work / "inventory.py").read_text(encoding="utf-8")
    code, out = run_cli(capsys, "compare", str(work / "inventory.py"), "--phase", "code", "-i", INSTRUCTION,
                        "--models", "sim-glm/glm-sim", "--models", "sim-gpt/gpt-sim", "--json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert all("+def find_by_sku" in r["result"]["diff"] for r in rows)
    assert (work / "inventory.py").read_text(encoding="utf-8") == before


def test_doctor_passes_then_fails_on_an_unknown_model(work: Path, sim: SimulatorThread,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sim.configure("sim-gpt", models=["gpt-sim"])
    code, out = run_cli(capsys, "doctor", str(work), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert {p["provider"]: p["ok"] for p in report["providers"]} == {"sim-claude": True, "sim-glm": True,
                                                                      "sim-gpt": True}
    assert [p["status"] for p in report["phases"]] == ["ok", "ok", "ok"]
    code, out = run_cli(capsys, "doctor", str(work))
    assert code == 0 and "Every phase can run." in out and "sim-claude (simulated)" in out

    (work / "phasewise.json").write_text(json.dumps({"phases": {**ROUTES, "review": {"model": "sim-gpt/gpt-x"}}}),
                                         encoding="utf-8")
    code, out = run_cli(capsys, "doctor", str(work), "--json")
    assert code == 1
    report = json.loads(out)
    review = next(p for p in report["phases"] if p["phase"] == "review")
    assert review["status"] == "fail" and review["problem"]["kind"] == "model-not-found"
    # only the named provider is called; the other phases get their offline checks
    before = max(r.number for r in sim.requests)
    code, out = run_cli(capsys, "verify", str(work), "--provider", "sim-glm", "--json")
    assert code == 0 and [p["provider"] for p in json.loads(out)["providers"]] == ["sim-glm"]
    assert {r.provider for r in sim.requests if r.number > before} == {"sim-glm"}


def test_doctor_without_a_key_sends_nothing(work: Path, sim: SimulatorThread,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (work / "phasewise.json").unlink()  # defaults: every phase on Anthropic, no key set
    code, out = run_cli(capsys, "doctor", str(work), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["providers"][0]["problem"]["kind"] == "missing-credentials"
    assert {p["problem"]["kind"] for p in report["phases"]} == {"missing-credentials"}
    assert sim.requests == []


def test_models_lists_what_a_provider_serves(work: Path, sim: SimulatorThread,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sim.configure("sim-glm", models=["glm-sim", "glm-sim-air"])
    code, out = run_cli(capsys, "models", "sim-glm", "--json")
    assert code == 0
    found = json.loads(out)
    assert [m["id"] for m in found["models"]] == ["glm-sim", "glm-sim-air"]
    assert found["models"][0]["inCatalogue"] is True and found["models"][1]["inCatalogue"] is False
    code, out = run_cli(capsys, "models", "sim-claude")
    assert code == 0 and "sim-claude/" in out
    code, out = run_cli(capsys, "models", "no-such-provider", "--json")
    assert code == 1 and json.loads(out)["problem"]["kind"] == "config"


def test_settings_files_are_found_and_jsonc_is_read(tmp_path: Path, work: Path, sim: SimulatorThread,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (work / "phasewise.json").unlink()
    nested = work / "src" / "pkg"
    nested.mkdir(parents=True)
    (nested / "mod.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    (work / ".vscode").mkdir()
    (work / ".vscode" / "settings.json").write_text("""{
      // VS Code style: comments, dotted keys, trailing commas
      "editor.tabSize": 4,
      "phasewise.phases": {"plan": {"model": "sim-gpt/gpt-sim"},},
    }""", encoding="utf-8")
    (nested / ".vscode").mkdir()
    (nested / ".vscode" / "settings.json").write_text('{"editor.tabSize": 2}', encoding="utf-8")  # no section
    found = load_cli_settings(None, nested / "mod.py")
    assert found.path == work / ".vscode" / "settings.json"
    code, out = run_cli(capsys, "plan", str(nested / "mod.py"), "-i", "document f", "--json")
    assert code == 0 and json.loads(out)["provider"] == "sim-gpt"

    explicit = tmp_path / "team.json"
    explicit.write_text(json.dumps({"phasewise": {"phases": {"plan": {"model": "sim-glm/glm-sim"}}}}),
                        encoding="utf-8")
    code, out = run_cli(capsys, "plan", str(nested / "mod.py"), "-i", "document f", "--settings", str(explicit),
                        "--json")
    assert code == 0 and json.loads(out)["provider"] == "sim-glm"
    explicit.write_text('{"phases": {"plan": {"model": "sim-claude/claude-sim"}}}', encoding="utf-8")
    assert load_cli_settings(explicit).loaded.settings.phases["plan"].model is not None
    explicit.write_text('{"editor.tabSize": 2}', encoding="utf-8")
    code, _ = run_cli(capsys, "plan", str(nested / "mod.py"), "-i", "x", "--settings", str(explicit))
    assert code == 2
    assert strip_jsonc('{"a": "// not a comment", /* c */ "b": [1, 2,],}') == '{"a": "// not a comment",  "b": [1, 2]}'


def test_file_session_is_all_or_nothing(tmp_path: Path) -> None:
    from phasewise.phases.service import PhaseResult

    path = tmp_path / "f.py"
    path.write_text("a = 1\r\nb = 2\r\n", encoding="utf-8")
    path.chmod(0o640)
    session = FileSession(path)
    result = PhaseResult(ok=True, run_id="r", phase="code", provider="p", model="m", new_text="a = 1\r\nb = 3\r\n")
    session.apply(result)
    assert result.applied is True and path.read_bytes() == b"a = 1\r\nb = 3\r\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    path.write_text("changed by someone else\n", encoding="utf-8")
    again = PhaseResult(ok=True, run_id="r", phase="code", provider="p", model="m", new_text="x\n")
    session.apply(again)
    assert again.ok is False and again.error is not None and again.error.kind == "document-changed"
    assert path.read_text(encoding="utf-8") == "changed by someone else\n"


def test_ledger_location_and_content_switch(tmp_path: Path, work: Path, sim: SimulatorThread,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_path(None, {"XDG_STATE_HOME": "/x/state"}) == Path("/x/state/phasewise/runs.jsonl")
    assert ledger_path(None, {"HOME": "/home/u"}) == Path("/home/u/.local/state/phasewise/runs.jsonl")
    assert ledger_path(None, {"PHASEWISE_LEDGER": "/y/l.jsonl", "XDG_STATE_HOME": "/x"}) == Path("/y/l.jsonl")
    assert ledger_path("/z/s.jsonl", {"PHASEWISE_LEDGER": "/y/l.jsonl"}) == Path("/z/s.jsonl")
    own = tmp_path / "own.jsonl"
    # ledgerPath is the user's: a project's settings naming it are ignored, said, and the default used
    settings = {"phases": ROUTES, "ledgerPath": str(own), "recordContent": True}
    (work / "phasewise.json").write_text(json.dumps(settings), encoding="utf-8")
    assert run_cli(capsys, "plan", str(work / "inventory.py"), "-i", INSTRUCTION)[0] == 0
    assert not own.exists() and len(ledger(tmp_path)) == 1
    user_file = tmp_path / "user-settings.json"
    user_file.write_text(json.dumps({"phasewise": {"ledgerPath": str(own)}}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASEWISE_USER_SETTINGS", str(user_file))
        code = cli.main(["run", str(work / "inventory.py"), "-i", INSTRUCTION])
        err = capsys.readouterr().err
    assert code == 0 and "phasewise.ledgerPath" in err and "ignored in" in err and "user settings file" in err
    lines = Ledger(own).read()
    assert [x["content"]["instruction"] for x in lines] == [INSTRUCTION, INSTRUCTION,
                                                            "Review the change made for this request, and the "
                                                            f"code around it: {INSTRUCTION}"]
    assert "+def find_by_sku" in lines[1]["content"]["diff"]
    # the change's files and the context sent, by path (content on), besides their counts
    assert lines[1]["filesChanged"] == 1 and lines[1]["content"]["files"] == [
        {"path": "inventory.py", "created": False}]
    for line in lines:
        sent = line["content"]["context"]
        assert line["contextFiles"] == len(sent) > 0 and line["contextTokens"] == sum(c["tokens"] for c in sent)
        assert {"path", "reason", "tokens"} == set(sent[0])
    assert len(ledger(tmp_path)) == 1  # only the plan, run while the project's ledgerPath was ignored


def test_usage_errors_exit_2(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(work / "missing.py"), "-i", "x"]) == 2
    assert cli.main(["code", str(work / "inventory.py"), "-i", "x", "--range", "9:3"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["run", str(work / "inventory.py")])  # --instruction is required
    capsys.readouterr()


def test_review_table_lists_another_files_finding_under_that_file() -> None:
    """Issue 23, item 14: a finding on another file of the change is not a line of the reviewed file."""
    from rich.console import Console

    from phasewise.cli.render import review_table

    findings = [{"startLine": 3, "endLine": 3, "severity": "error", "message": "mutable default"},
                {"startLine": 0, "endLine": 0, "severity": "warning", "message": "stale import",
                 "path": "orders.py"}]
    console = Console(width=100, record=True)
    console.print(review_table(findings, "app.py"))
    rows = [line for line in console.export_text().splitlines() if "mutable" in line or "stale" in line]
    assert [row.split("│")[1:3] for row in rows] == [[" app.py    ", "    4 "], [" orders.py ", "    1 "]], rows
    console = Console(width=100, record=True)
    console.print(review_table(findings[:1], "app.py"))
    assert "file" not in console.export_text().splitlines()[2]  # one file: no file column


def test_compare_report_says_nothing_sent_for_a_row_that_sent_nothing() -> None:
    """Issue 23, item 14: a row stopped before any request shows no times or tokens (the contract's sent: false)."""
    from phasewise.phases.service import PhaseResult
    from phasewise.router.router import Attempt
    from phasewise.workflows.compare import CompareReport, CompareRow, compare_markdown

    held = PhaseResult(ok=False, run_id="r1", phase="plan", provider="p", model="m",
                       attempts=[Attempt(provider="p", model="m", outcome="rate-limit", sent=False)])
    served = PhaseResult(ok=True, run_id="r1", phase="plan", provider="p", model="n", text="plan", total_ms=1200,
                         input_tokens=30, output_tokens=12, attempts=[Attempt(provider="p", model="n", outcome="ok")])
    report = CompareReport(phase="plan", instruction="x", document="app.py", run_id="r1",
                           rows=[CompareRow("p/m", held), CompareRow("p/n", served)])
    text = compare_markdown(report)
    assert "| p/m | p/m | error | nothing sent | – | – | – |" in text, text
    assert "| p/n | p/n | ok | – | 1.20 s | 30 / 12 |" in text, text
