"""Issue 22, items 1–3: named commands a phase that works in steps runs with ``run_command``, the one
trust check in front of them, and the safe child they run as; through the language server (a real
LSP client that answers ``window/showMessageRequest``) and the command line.

The simulator plays the agent: an instruction "run `NAME`" makes it call ``run_command {name}`` and
then quote the result. Commands the client pushes are a workspace's (asked); commands in the user
settings file (``PHASEWISE_USER_SETTINGS``) or in ``initializationOptions.userSettings`` are the
user's (unasked). "Always" lands in ``XDG_STATE_HOME`` (a temporary folder, outside the workspace).
A marker file proves a command ran; a FIFO tells the test the child's pid the moment it exists, and a
pidfd tells it the moment that process is gone: no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from phasewise import cli
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers import Editor, answer, server_env

pytestmark = pytest.mark.slow  # a language server per test, commands run as processes

BASE = Path(tempfile.mkdtemp(prefix="phasewise-commands-")).resolve()
ROOT = BASE / "shop"  # the workspace
STATE = BASE / "state"  # XDG_STATE_HOME: where "always" is remembered
USER_SETTINGS = BASE / "user-settings.json"
LEDGER = str(BASE / "runs.jsonl")
CANARIES = {"CMD_O_KEY": "canary-provider-key-7f3a91", "OPENAI_API_KEY": "canary-openai-key-5521c0",
            "GITHUB_TOKEN": "canary-github-token-9d2e44"}
ENV = server_env(**CANARIES, PHASEWISE_WARMUP="0", PHASEWISE_LEDGER=LEDGER, XDG_STATE_HOME=str(STATE),
                 PHASEWISE_USER_SETTINGS=str(USER_SETTINGS))
MARK = "env | tee marker.txt"  # proves it ran (the marker) and shows its environment (the output)
TREE = "sleep 300 & echo $! > child.fifo; wait"  # a child that outlives its shell unless the group is killed


def _fixture(*, asks: bool, init: dict[str, Any] | None = None) -> Any:
    @pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "phasewise", "serve"],
                                                  server_env=ENV))
    async def client(lsp_client: LanguageClient) -> AsyncIterator[LanguageClient]:
        capabilities = pytest_lsp.client_capabilities("visual-studio-code")
        if not asks and capabilities.window is not None:
            capabilities.window.show_message = None  # as Helix: no window/showMessageRequest
        ROOT.mkdir(parents=True, exist_ok=True)
        await lsp_client.initialize_session(types.InitializeParams(
            capabilities=capabilities, root_uri=ROOT.as_uri(), initialization_options=init))
        yield lsp_client
        await lsp_client.shutdown_session()

    return client


client = _fixture(asks=True)
plain_client = _fixture(asks=False, init={"userSettings": {"commands": {"declared": "echo declared-by-the-user"}}})


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, relative to it, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


class Asker:
    """The user at the editor: answers each question with ``reply`` and keeps what was asked."""

    def __init__(self, client: LanguageClient, reply: str | None) -> None:
        self.reply = reply
        self.asked: list[types.ShowMessageRequestParams] = []

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def ask(_: LanguageClient, params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
            self.asked.append(params)
            return types.MessageActionItem(title=self.reply) if self.reply else None


@pytest.fixture
def work(sim: SimulatorThread) -> Path:
    """A fresh workspace with one file, no remembered answers, an empty user settings file."""
    for folder in (ROOT, STATE):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    (ROOT / "app.py").write_text("def total(items):\n    return sum(items)\n", encoding="utf-8")
    USER_SETTINGS.write_text("{}", encoding="utf-8")
    return ROOT


def settings(sim: SimulatorThread, commands: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    return {
        "commands": commands,
        "phases": {"plan": {"model": "cmd-o/glm-sim", "agent": {"commands": allowed, "maxSteps": 5}}},
        "providers": {"cmd-o": {"protocol": "openai", "baseUrl": sim.base_url("cmd-o", "openai"),
                                "apiKeyEnv": "CMD_O_KEY", "models": {"glm-sim": {"toolCalling": True}}}},
    }


def opened(client: LanguageClient, sim: SimulatorThread, commands: dict[str, Any],
           allowed: list[str] | None = None) -> Editor:
    editor = Editor(client)
    editor.configure(settings(sim, commands, allowed if allowed is not None else list(commands)))
    uri = (ROOT / "app.py").as_uri()
    editor.open(uri, (ROOT / "app.py").read_text(encoding="utf-8"))
    return editor


async def run(editor: Editor, instruction: str, msg_id: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = answer(await editor.command(
        "phasewise.plan", {"uri": (ROOT / "app.py").as_uri(), "instruction": instruction}, msg_id=msg_id))
    return result


def step(result: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in result["steps"] if s["tool"] == "run_command")
    return found


def no_canary(*texts: str) -> None:
    for text in texts:
        for value in CANARIES.values():
            assert value not in text


def read_fifo(path: Path) -> int:
    with open(path, encoding="utf-8") as fifo:  # blocks until the command writes its child's pid
        return int(fifo.read().strip())


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Returns once process ``pid`` has exited (a pidfd turns readable), or fails."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} is still running"
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the trust check, over LSP


async def test_a_workspace_command_is_asked_allowed_once_run_and_its_environment_holds_no_key(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    asker = Asker(client, "Allow once")
    editor = opened(client, sim, {"mark": MARK})
    result = await run(editor, "run `mark`")
    assert result["ok"] is True, result.get("error")
    assert len(asker.asked) == 1
    question = asker.asked[0]
    assert "Run `env | tee marker.txt` in shop/?" in question.message
    assert [a.title for a in question.actions or ()] == ["Allow once", "Always for this workspace", "Deny"]
    ran = step(result)
    assert ran["ok"] is True and ran["summary"].startswith("run_command mark → exit 0 in ")
    marker = (work / "marker.txt").read_text(encoding="utf-8")
    assert "XDG_STATE_HOME=" in marker and "exit code 0" in result["text"] and "PATH=" in result["text"]
    no_canary(marker, result["text"], json.dumps(result))  # no key variable reached the child
    # once is once: the next run asks again
    await run(editor, "run `mark`")
    assert len(asker.asked) == 2


async def test_a_denied_command_does_not_run(client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    asker = Asker(client, "Deny")
    editor = opened(client, sim, {"mark": MARK})
    result = await run(editor, "run `mark`")
    assert len(asker.asked) == 1
    refused = step(result)
    assert refused["ok"] is False and "denied" in refused["summary"]
    assert "was not run: denied by the user. Nothing ran." in result["text"]
    assert not (work / "marker.txt").exists()


async def test_always_is_remembered_outside_the_workspace_and_not_asked_again(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    asker = Asker(client, "Always for this workspace")
    editor = opened(client, sim, {"mark": MARK})
    assert step(await run(editor, "run `mark`"))["ok"] is True
    remembered = json.loads((STATE / "phasewise" / "allowed-commands.json").read_text(encoding="utf-8"))
    assert remembered["workspaces"] == {str(work): [MARK]}
    # nothing kept in the workspace: its files are the document, the marker and the plan's document
    kept = files_in(work)
    assert [k for k in kept if not k.startswith(".phasewise/plans/")] == ["app.py", "marker.txt"], kept
    (work / "marker.txt").unlink()
    assert step(await run(editor, "run `mark`"))["ok"] is True
    assert len(asker.asked) == 1 and (work / "marker.txt").exists()
    # another command line under the same name is not what was allowed: asked again
    asker.reply = "Deny"
    editor.configure(settings(sim, {"mark": MARK + " > /dev/null"}, ["mark"]))
    assert step(await run(editor, "run `mark`"))["ok"] is False and len(asker.asked) == 2


async def test_a_user_level_command_runs_unasked(client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    asker = Asker(client, "Deny")
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"mark": MARK}}}), encoding="utf-8")
    editor = opened(client, sim, {}, ["mark"])  # the workspace names it for the phase, the user declared it
    result = await run(editor, "run `mark`")
    assert step(result)["ok"] is True and asker.asked == [] and (work / "marker.txt").exists()
    status = answer(await editor.command("phasewise.status", {"uri": (ROOT / "app.py").as_uri()}))
    assert status["commands"] == [{"name": "mark", "run": MARK, "timeoutSeconds": 300.0, "cwd": None,
                                   "origin": "user", "phases": ["plan"]}]
    assert next(p for p in status["phases"] if p["phase"] == "plan")["agent"]["commands"] == ["mark"]
    # the workspace changing the user's command makes it the workspace's: asked (and here denied)
    (work / "marker.txt").unlink()
    editor.configure(settings(sim, {"mark": {"run": MARK, "timeoutSeconds": 5}}, ["mark"]))
    assert step(await run(editor, "run `mark`"))["ok"] is False and len(asker.asked) == 1
    assert not (work / "marker.txt").exists()


async def test_a_client_without_show_message_request_is_refused_with_the_way_out(
        plain_client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    editor = opened(plain_client, sim, {"mark": MARK}, ["mark", "declared"])
    result = await run(editor, "run `mark`")
    refused = step(result)
    assert refused["ok"] is False and "not allowed" in refused["summary"]
    assert "does not declare window/showMessageRequest" in result["text"]
    assert "user-level settings" in result["text"] and not (work / "marker.txt").exists()
    # a command the client declared as the user's own (initializationOptions.userSettings) runs unasked
    declared = await run(editor, "run `declared`")
    assert step(declared)["ok"] is True and "declared-by-the-user" in declared["text"]


async def test_a_phase_runs_only_the_commands_in_its_list(client: LanguageClient, sim: SimulatorThread,
                                                          work: Path) -> None:
    asker = Asker(client, "Allow once")
    editor = opened(client, sim, {"mark": MARK, "other": "touch other.txt"}, ["mark"])
    result = await run(editor, "run `other`")
    refused = step(result)
    assert refused["ok"] is False and "not a command of this phase" in refused["summary"]
    assert asker.asked == [] and not (work / "other.txt").exists()


# --------------------------------------------------------------------------- the child


async def test_a_cancel_kills_the_command_and_the_processes_it_started(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    os.mkfifo(work / "child.fifo")
    Asker(client, "Allow once")
    editor = opened(client, sim, {"tree": TREE})
    running = asyncio.ensure_future(run(editor, "run `tree`", msg_id="commands-cancel-1"))
    pid = await asyncio.to_thread(read_fifo, work / "child.fifo")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="commands-cancel-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await running
    await asyncio.to_thread(wait_gone, pid)


async def test_a_timeout_kills_the_command_and_the_processes_it_started(
        client: LanguageClient, sim: SimulatorThread, work: Path) -> None:
    os.mkfifo(work / "child.fifo")
    Asker(client, "Allow once")
    editor = opened(client, sim, {"tree": {"run": TREE, "timeoutSeconds": 1}})
    running = asyncio.ensure_future(run(editor, "run `tree`"))
    pid = await asyncio.to_thread(read_fifo, work / "child.fifo")
    result = await running
    timed_out = step(result)
    assert timed_out["ok"] is False and "timed out" in timed_out["summary"]
    assert "killed after 1 s, its time limit" in result["text"]
    await asyncio.to_thread(wait_gone, pid)


async def test_output_is_capped_to_its_tail_and_says_so(client: LanguageClient, sim: SimulatorThread,
                                                        work: Path) -> None:
    Asker(client, "Allow once")
    editor = opened(client, sim, {"loud": "seq 1 200000; exit 1"})
    result = await run(editor, "run `loud`")
    failed = step(result)
    assert failed["ok"] is False and failed["summary"].startswith("run_command loud → exit 1 in ")
    assert "(output cut: its first " in result["text"] and "200000" in result["text"]
    assert "\n1\n" not in result["text"] and len(result["text"]) < 20_000


# --------------------------------------------------------------------------- the command line


def cli_project(sim: SimulatorThread, commands: dict[str, Any]) -> Path:
    (ROOT / "phasewise.json").write_text(json.dumps(settings(sim, commands, list(commands))), encoding="utf-8")
    return ROOT / "app.py"


def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CANARIES, "PHASEWISE_LEDGER": LEDGER, "XDG_STATE_HOME": str(STATE),
                        "PHASEWISE_USER_SETTINGS": str(USER_SETTINGS)}.items():
        monkeypatch.setenv(name, value)


def cli_plan(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict[str, Any]:
    code = cli.main(["plan", str(path), "-i", "run `mark`", "--workspace", str(ROOT), "--json", *extra])
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == 0, out
    return out


def test_the_command_line_refuses_a_workspace_command_in_a_script_and_runs_it_with_allow_commands(
        sim: SimulatorThread, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli_env(monkeypatch)
    path = cli_project(sim, {"mark": MARK})
    refused = cli_plan(capsys, path)
    assert step(refused)["ok"] is False and "--allow-commands" in refused["text"]
    assert not (work / "marker.txt").exists()
    ran = cli_plan(capsys, path, "--allow-commands")
    assert step(ran)["ok"] is True and (work / "marker.txt").exists()
    no_canary((work / "marker.txt").read_text(encoding="utf-8"), json.dumps(ran))
    assert not (STATE / "phasewise" / "allowed-commands.json").exists()  # allowed for that run only


def test_the_command_line_asks_on_a_terminal_and_remembers_always(
        sim: SimulatorThread, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli_env(monkeypatch)
    path = cli_project(sim, {"mark": MARK})

    class Terminal:
        asked = 0

        def isatty(self) -> bool:
            return True

        def readline(self) -> str:
            Terminal.asked += 1
            return "a\n"

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert step(cli_plan(capsys, path))["ok"] is True and Terminal.asked == 1
    assert step(cli_plan(capsys, path))["ok"] is True and Terminal.asked == 1  # remembered: not asked again


def test_the_command_line_runs_a_user_level_command_unasked(
        sim: SimulatorThread, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli_env(monkeypatch)
    USER_SETTINGS.write_text(json.dumps({"phasewise": {"commands": {"mark": MARK}}}), encoding="utf-8")
    path = cli_project(sim, {})
    data = json.loads((ROOT / "phasewise.json").read_text(encoding="utf-8"))
    data["phases"]["plan"]["agent"]["commands"] = ["mark"]
    (ROOT / "phasewise.json").write_text(json.dumps(data), encoding="utf-8")
    assert step(cli_plan(capsys, path))["ok"] is True and (work / "marker.txt").exists()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("raw", "path", "words"), [
    ({"commands": {"test": {"run": "pytest", "timeoutSeconds": 0}}}, "phasewise.commands.test.timeoutSeconds",
     "greater than 0"),
    ({"commands": {"test": {"run": "pytest", "cwd": "/etc"}}}, "phasewise.commands.test.cwd", "relative"),
    ({"commands": {"test": "pytest\nrm -rf x"}}, "phasewise.commands.test.run", "one command line"),
    ({"commands": {"two words": "pytest"}}, "phasewise.commands.two words", "command name"),
    ({"commands": {"test": {"run": "pytest", "shell": True}}}, "phasewise.commands.test.shell", "unknown setting"),
    ({"phases": {"code": {"agent": {"commands": ["lint"]}}}}, "phasewise.phases.code.agent.commands[0]",
     "unknown command 'lint'"),
])
def test_wrong_command_settings_name_their_key_and_the_rest_works(raw: dict[str, Any], path: str,
                                                                 words: str) -> None:
    loaded = load_settings({**raw, "commands": {**raw.get("commands", {}), "ok": "true"}})
    assert [i.path for i in loaded.issues] == [path] and words in loaded.issues[0].message
    assert loaded.settings.commands["ok"].run == "true" and loaded.command_origin("ok") == "workspace"
