"""A real LiteLLM proxy as a gateway in front of every phase (docs/gateways.md).

The proxy runs from its own venv (it pins openai 2.x), made by ``.ci/setup.d/30-litellm.sh``,
on a free loopback port, with ``mock_response`` models: no upstream provider, no network. The
phases reach it as the catalogue's ``litellm`` provider with a ``baseUrl`` override, through
the real OpenAI SDK, streaming, with the team's gateway key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasewise import cli
from tests.helpers import ROOT

LITELLM = ROOT / ".ci" / ".cache" / "litellm-venv" / "bin" / "litellm"
pytestmark = [pytest.mark.gateway, pytest.mark.slow, pytest.mark.skipif(
    not LITELLM.exists(),
    reason="the LiteLLM proxy is not installed: run .ci/setup.d/30-litellm.sh (makes .ci/.cache/litellm-venv)")]

MASTER_KEY = "sk-phasewise-test-gateway"  # a made-up key the local proxy is started with
PLAN = "1. Change `answer` to return 2.\n2. Run the tests."
CODE = {"summary": "answer now returns 2", "edits": [{"start_line": 2, "end_line": 2, "new_text": "    return 2"}]}
REVIEW = {"summary": "one finding", "findings": [
    {"start_line": 1, "end_line": 1, "severity": "information", "message": "answer has no docstring"}]}


def _config() -> str:
    def model(name: str, reply: str) -> str:
        return (f"  - model_name: {name}\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
                f"      api_key: not-used\n      mock_response: {json.dumps(reply)}\n")

    return ("model_list:\n" + model("gw-plan", PLAN)
            + model("gw-code", "Done.\n\n```json\n" + json.dumps(CODE) + "\n```")
            + model("gw-review", "Reviewed.\n\n```json\n" + json.dumps(REVIEW) + "\n```")
            + f"general_settings:\n  master_key: {MASTER_KEY}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("litellm")
    (home / "config.yaml").write_text(_config(), encoding="utf-8")
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "NO_COLOR": "1"}
    proc = subprocess.Popen([str(LITELLM), "--config", str(home / "config.yaml"), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=home, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:  # drains the pipe for the proxy's whole life, so it never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Uvicorn running on" in line:  # logged once the socket is bound (startup completes before)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(180) and proc.poll() is None, "LiteLLM did not start:\n" + "".join(lines[-30:])
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/health/liveliness", timeout=30) as answer:
            assert answer.status == 200
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_every_phase_through_the_litellm_gateway(gateway: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", MASTER_KEY)
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "runs.jsonl"))
    source = tmp_path / "answer.py"
    source.write_text("def answer():\n    return 1\n", encoding="utf-8")
    price = {"inputPricePerMtok": 1.0, "outputPricePerMtok": 4.0}
    settings = {
        "providers": {"litellm": {"baseUrl": f"{gateway}/v1",
                                  "models": {m: price for m in ("gw-plan", "gw-code", "gw-review")}}},
        "phases": {"plan": {"model": "litellm/gw-plan"},
                   "code": {"model": "litellm/gw-code", "editFormat": "text"},
                   "review": {"model": "litellm/gw-review", "editFormat": "text"}},
    }
    (tmp_path / "phasewise.json").write_text(json.dumps(settings), encoding="utf-8")
    # The catalogue binds LITELLM_API_KEY to http://localhost:4000: the user (not the project) allows the gateway.
    user_settings = tmp_path / "config" / "settings.json"
    user_settings.parent.mkdir()
    user_settings.write_text(json.dumps({"phasewise": {"security": {"allowedKeyOrigins": [gateway]}}}),
                             encoding="utf-8")
    monkeypatch.setenv("PHASEWISE_USER_SETTINGS", str(user_settings))

    assert cli.main(["doctor", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    gw = report["providers"][0]
    assert gw["provider"] == "litellm" and gw["keyAccepted"] is True and gw["keyEnv"] == "LITELLM_API_KEY"
    assert {m["model"]: m["how"] for m in gw["models"]} == {"gw-plan": "listed", "gw-code": "listed",
                                                             "gw-review": "listed"}

    assert cli.main(["run", str(source), "-i", "make answer return 2", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert [(p["phase"], p["provider"], p["model"]) for p in run["phases"]] == [
        ("plan", "litellm", "gw-plan"), ("code", "litellm", "gw-code"), ("review", "litellm", "gw-review")]
    assert run["plan"].strip() == PLAN
    assert source.read_text(encoding="utf-8") == "def answer():\n    return 2\n"
    assert run["findings"] == [{"startLine": 0, "endLine": 0, "severity": "information",
                                "message": "answer has no docstring"}]
    lines = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(x["provider"], x["protocol"], x["result"]) for x in lines] == [("litellm", "openai", "ok")] * 3
    assert MASTER_KEY not in (tmp_path / "runs.jsonl").read_text(encoding="utf-8")
