"""`phasewise demo` (the README's first command): a real run through the language server, offline.

The demo is run as a user runs it, as a subprocess of the installed CLI; its ledger points at a
temp file so nothing is written to the home folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phasewise.cli.demo import example_file
from tests.helpers import server_env

pytestmark = pytest.mark.slow  # every test runs `phasewise demo`: a simulator, a server and a client


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server_env(PHASEWISE_LEDGER=str(tmp_path / "runs.jsonl"), COLUMNS="120")
    env.pop("PHASEWISE_SIM_URL", None)
    return subprocess.run([sys.executable, "-m", "phasewise", "demo", *args], capture_output=True, text=True,
                          env=env, timeout=150, check=False, cwd=tmp_path)


def test_demo_runs_three_phases_on_three_providers(tmp_path: Path) -> None:
    before = example_file().read_text(encoding="utf-8")
    done = _demo(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] is True and out["simulated"] is True
    served = [(p["phase"], p["provider"], p["protocol"]) for p in out["phases"]]
    assert served == [("plan", "sim-claude", "anthropic"), ("code", "sim-glm", "openai"),
                      ("review", "sim-gpt", "openai")]
    assert len({p["provider"] for p in out["phases"]}) == 3
    assert all(p["firstTokenMs"] is not None and p["totalMs"] for p in out["phases"])
    assert "+def find_by_sku(items, sku):" in out["diff"]
    assert out["editsApplied"] == 1
    messages = " ".join(f["message"] for f in out["findings"])
    assert "Bare `except:`" in messages and "Mutable default" in messages and "`is`" in messages
    assert out["reviewDiagnostics"] == len(out["findings"])
    # the demo edited a copy, never the packaged example
    copy = Path(out["file"])
    assert copy != example_file() and "def find_by_sku(" in copy.read_text(encoding="utf-8")
    assert example_file().read_text(encoding="utf-8") == before


def test_demo_says_it_is_the_simulator(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "SIMULATOR" in text
    for who in ("sim-claude / claude-sim over the Anthropic messages protocol",
                "sim-glm / glm-sim over the OpenAI chat-completions protocol",
                "sim-gpt / gpt-sim over the OpenAI chat-completions protocol"):
        assert who in text
    assert "+def find_by_sku(items, sku):" in text
    assert "review findings" in text and "Bare `except:`" in text
    assert "first token" in text


def test_demo_qa_fails_a_check_fixes_it_in_a_round_and_applies_one_change(tmp_path: Path) -> None:
    """``phasewise demo --qa``: the hasty coder forgets the caller, the example's test fails on a
    scratch copy, the fix round fixes the caller, the test passes; one edit lands at the end."""
    done = _demo(tmp_path, "--qa", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [(p["phase"], p.get("round", 0), p.get("passed")) for p in out["phases"]] == [
        ("plan", 0, None), ("code", 0, None), ("qa", 0, False), ("code", 1, None), ("qa", 1, True)]
    assert out["ok"] is True and out["passed"] is True and out["rounds"] == 1 and out["editsApplied"] == 1
    assert "+def find_by_sku(items, sku):" in out["diff"] and "+from inventory import Item, find_by_sku" in out["diff"]
    project = Path(out["file"]).parent
    assert subprocess.run([sys.executable, "-m", "unittest", "-q", "test_orders"], cwd=project,
                          capture_output=True, check=False).returncode == 0
    text = _demo(tmp_path, "--qa")
    assert "qa — fix round 1" in text.stdout and "the checks failed (test → exit 1)" in text.stdout
    assert "After 1 fix round the checks passed" in text.stdout
