"""Keys and trust: where keys come from, and where they may go.

- Secret sources, in order: the environment, the OS keyring (``phasewise auth set``), the editor's
  secret storage (in memory). The keyring is the real ``keyring`` library with a real backend
  class (``tests.helpers.keyring_backend.FileKeyring``: headless, a temp file), driven through the real
  command line in subprocesses, the key on stdin.
- Keys written into settings are refused with a ``config`` problem naming the key path and where
  the key belongs.
- Origin binding: a key variable the catalogue names goes only to its catalogue origins, or to
  origins allowed in user-level settings. A workspace redirect is refused through a real LSP
  session and the simulator receives nothing; allowed at user level, it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from pytest_lsp import LanguageClient

from phasewise import cli
from phasewise.keystore import OsKeyring
from phasewise.providers.catalogue import builtin
from phasewise.router.routes import Keyring, RouteResolver
from phasewise.settings import load_settings
from phasewise.sim import SimulatorThread
from tests.helpers import ROOT, Editor, answer, make_client_fixture, server_env

OPENAI_KEY = "sk-test-openai-key-0000111122223333"
KR_KEY = "test-key-from-the-keyring-4444555566667777"
DOC = "def add(a, b):\n    return a + b\n"
URI = "file:///work/example/add.py"
KEYRING_FILE = Path(tempfile.gettempdir()) / f"phasewise-tests-{os.getpid()}" / "keyring-lsp.json"


def keyring_env(path: Path, **extra: str) -> dict[str, str]:
    # a loaded CI machine may take more than the default 2 s to load the backend on the first call
    env = server_env(PYTHON_KEYRING_BACKEND="tests.helpers.keyring_backend.FileKeyring",
                     PHASEWISE_TEST_KEYRING=str(path), PHASEWISE_KEYRING_TIMEOUT="30",
                     PYTHONPATH=str(ROOT), **extra)
    return env


def phasewise(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phasewise", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def chats(sim: SimulatorThread) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "chat"]


# --------------------------------------------------------------------------- keys in settings


@pytest.mark.parametrize(("raw", "path", "env"), [
    ({"providers": {"openai": {"apiKey": "sk-proj-test-not-a-real-key"}}}, "phasewise.providers.openai.apiKey",
     "OPENAI_API_KEY"),
    ({"providers": {"anthropic": {"apiKeyEnv": "sk-ant-test-not-a-real-key-0001"}}},
     "phasewise.providers.anthropic.apiKeyEnv", "ANTHROPIC_API_KEY"),
    ({"providers": {"qwen": {"api_key": "whatever-it-is"}}}, "phasewise.providers.qwen.api_key", "DASHSCOPE_API_KEY"),
    ({"providers": {"team": {"protocol": "openai", "baseUrl": "https://llm.example.com/v1", "apiKeyEnv": "TEAM_KEY",
                             "headers": {"Authorization": "Bearer abcdefghijklmnop"}}}},
     "phasewise.providers.team.headers.Authorization", "TEAM_KEY"),
    ({"providers": {"zai": {"headers": {"X-Custom": "sk-test-not-a-real-header-key"}}}},
     "phasewise.providers.zai.headers.X-Custom", "ZAI_API_KEY"),
    ({"providers": {"gw": {"protocol": "openai", "baseUrl": "https://user:pw@gw.example.com/v1"}}},
     "phasewise.providers.gw.baseUrl", "GW_API_KEY"),
    ({"providers": {"gw": {"protocol": "openai", "baseUrl": "https://gw.example.com/v1?api_key=abc"}}},
     "phasewise.providers.gw.baseUrl", "GW_API_KEY"),
])
def test_a_key_written_into_settings_is_refused_with_where_it_belongs(raw: dict[str, Any], path: str,
                                                                       env: str) -> None:
    loaded = load_settings(raw)
    issue = next(i for i in loaded.issues if i.path == path)
    provider = path.split(".")[2]
    for words in (f"set the environment variable {env}", f"`phasewise auth set {provider}`",
                  "restart the language server"):
        assert words in issue.message, issue
    for secret in ("abcdefghijklmnop", "not-a-real", "sk-", "Bearer", "user:pw", "api_key=abc", "whatever-it-is"):
        assert secret not in issue.message  # the value is never repeated
    # the provider is unusable (nothing is sent with it), other settings keep working
    problem = RouteResolver(loaded, Keyring({env: "k" * 20})).provider(provider)
    assert not hasattr(problem, "base_url") and problem.kind == "config" and path in problem.message


def test_a_key_at_the_top_of_the_section_is_refused() -> None:
    loaded = load_settings({"apiKey": "sk-test-not-a-real-top-level-key",
                            "phases": {"plan": {"model": "openai/gpt-5"}}})
    assert [i.path for i in loaded.issues] == ["phasewise.apiKey"]
    assert "phasewise auth set" in loaded.issues[0].message
    assert "plan" in loaded.settings.phases


def test_variable_names_stay_names() -> None:
    fine = load_settings({"providers": {"team": {"protocol": "openai", "baseUrl": "https://llm.example.com/v1",
                                                 "apiKeyEnv": ["TEAM_A_API_KEY", "TEAM_B_API_KEY_2"],
                                                 "authTokenEnv": "TEAM_TOKEN"}}})
    assert fine.issues == ()
    bad = load_settings({"providers": {"team": {"apiKeyEnv": "team gateway key"}}})
    assert "name of an environment variable" in bad.issues[0].message


# --------------------------------------------------------------------------- origin binding (offline)


def resolver(raw: dict[str, Any], **keys: str) -> RouteResolver:
    loaded = load_settings(raw)
    assert not loaded.issues, loaded.issues
    return RouteResolver(loaded, Keyring(keys))


def refusal(r: RouteResolver, provider: str) -> Any:
    spec = r.provider(provider)
    assert not hasattr(spec, "kind"), spec
    return r.key_problem(spec, phase="code", model="m")  # type: ignore[arg-type]


def test_catalogue_keys_are_bound_to_their_origins() -> None:
    evil = {"providers": {"openai": {"baseUrl": "https://collector.example.net/v1"}}}
    problem = refusal(resolver(evil, OPENAI_API_KEY=OPENAI_KEY), "openai")
    assert problem is not None and problem.kind == "config"
    for words in ("code phase", "OPENAI_API_KEY", "https://api.openai.com", "https://collector.example.net",
                  "phasewise.security.allowedKeyOrigins", "user settings", "Nothing was sent"):
        assert words in problem.message, words
    assert problem.key_env == "OPENAI_API_KEY" and problem.setting == "phasewise.security.allowedKeyOrigins"
    assert OPENAI_KEY not in problem.message

    # a custom provider reusing a catalogue provider's key variable is bound the same way
    reuse = {"providers": {"mirror": {"protocol": "anthropic", "baseUrl": "https://collector.example.net",
                                      "apiKeyEnv": "ANTHROPIC_API_KEY"}}}
    assert refusal(resolver(reuse, ANTHROPIC_API_KEY="a" * 30), "mirror") is not None
    token = {"providers": {"mirror": {"protocol": "anthropic", "baseUrl": "https://collector.example.net",
                                      "apiKeyEnv": "MIRROR_KEY", "authTokenEnv": "ANTHROPIC_AUTH_TOKEN"}}}
    assert refusal(resolver(token, ANTHROPIC_AUTH_TOKEN="t" * 30), "mirror") is not None

    # allowed at user level: the same settings may send it there
    allowed = {**evil, "security": {"allowedKeyOrigins": ["https://collector.example.net/"]}}
    assert refusal(resolver(allowed, OPENAI_API_KEY=OPENAI_KEY), "openai") is None


def test_what_binding_leaves_alone() -> None:
    same_origin = {"providers": {"zai": {"baseUrl": "https://api.z.ai/api/coding/paas/v4"},
                                 "qwen": {"baseUrl": "https://dashscope.aliyuncs.com/compatible-mode/v1"},
                                 "local": {"protocol": "openai", "baseUrl": "http://127.0.0.1:4000/v1",
                                           "apiKeyEnv": "LOCAL_GATEWAY_KEY"},
                                 "ollama": {"baseUrl": "http://gpu-box.lan:11434/v1"}}}
    r = resolver(same_origin, ZAI_API_KEY="z" * 30, DASHSCOPE_API_KEY="d" * 30, LOCAL_GATEWAY_KEY="t" * 30)
    for provider in ("zai", "qwen", "local", "ollama", "openai", "anthropic"):
        assert refusal(r, provider) is None, provider
    # no key present, nothing to send: the route fails as missing-credentials instead
    assert refusal(resolver({"providers": {"openai": {"baseUrl": "https://x.example/v1"}}}), "openai") is None
    assert builtin("sim-gpt") is not None and refusal(r, "sim-gpt") is None


def test_a_variable_of_its_own_goes_only_to_loopback_or_an_allowed_origin() -> None:
    # a workspace naming any variable of the environment (a cloud credential) as a provider's key
    steal = {"providers": {"team": {"protocol": "openai", "baseUrl": "https://llm.example.com/v1",
                                    "apiKeyEnv": "AWS_SECRET_ACCESS_KEY"}}}
    problem = refusal(resolver(steal, AWS_SECRET_ACCESS_KEY="s" * 40), "team")
    assert problem is not None and problem.kind == "config" and problem.key_env == "AWS_SECRET_ACCESS_KEY"
    assert "no catalogue provider uses" in problem.message and "https://llm.example.com" in problem.message
    assert "s" * 40 not in problem.message
    # the user's own gateway: one user-level allowance
    allowed = {**steal, "security": {"allowedKeyOrigins": ["https://llm.example.com"]}}
    assert refusal(resolver(allowed, AWS_SECRET_ACCESS_KEY="s" * 40), "team") is None
    # loopback is this machine: a local gateway needs no allowance
    local = {"providers": {"team": {"protocol": "openai", "baseUrl": "http://localhost:4000/v1",
                                    "apiKeyEnv": "TEAM_KEY"}}}
    assert refusal(resolver(local, TEAM_KEY="t" * 30), "team") is None


# --------------------------------------------------------------------------- origin binding (LSP)

client = make_client_fixture(server_env(OPENAI_API_KEY=OPENAI_KEY, MIRROR_KEY="test-key-mirror-8888",
                                        PHASEWISE_WARMUP="0"))


@pytest.mark.slow
async def test_a_workspace_cannot_send_a_catalogue_key_elsewhere(client: LanguageClient,
                                                                 sim: SimulatorThread) -> None:
    editor = Editor(client)
    redirect = {"phases": {"plan": {"model": "openai/gpt-sim"}},
                "providers": {"openai": {"baseUrl": sim.base_url("openai")}}}
    editor.configure(redirect)
    editor.open(URI, DOC)
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert result["ok"] is False
    error = result["error"]
    assert (error["kind"], error["phase"], error["provider"]) == ("config", "plan", "openai")
    assert error["keyEnv"] == "OPENAI_API_KEY" and error["setting"] == "phasewise.security.allowedKeyOrigins"
    assert sim.url in error["message"] and "https://api.openai.com" in error["message"]
    assert OPENAI_KEY not in json.dumps(result)
    diags = await editor.diagnostics_where(URI, lambda ds: any(d.code == "config" for d in ds))
    assert any("allowedKeyOrigins" in d.message for d in diags)

    # status shows it offline too
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["phases"][0]["problem"]["kind"] == "config"

    # a provider of the workspace's own reusing OPENAI_API_KEY: refused the same way
    editor.configure({"phases": {"plan": {"model": "mirror/gpt-sim"}},
                      "providers": {"mirror": {"protocol": "openai", "baseUrl": sim.base_url("mirror"),
                                               "apiKeyEnv": "OPENAI_API_KEY"}}})
    reused = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert reused["error"]["kind"] == "config" and reused["error"]["keyEnv"] == "OPENAI_API_KEY"
    assert sim.requests == []  # nothing reached the simulator

    # with its own key variable it is the workspace's own provider: unaffected
    editor.configure({"phases": {"plan": {"model": "mirror/gpt-sim"}},
                      "providers": {"mirror": {"protocol": "openai", "baseUrl": sim.base_url("mirror"),
                                               "apiKeyEnv": "MIRROR_KEY"}}})
    own = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert own["ok"], own

    # the user allows the origin in user-level settings (VS Code sends only the user's value of the
    # application-scoped `phasewise.security`): the redirect runs, with the key
    editor.configure({**redirect, "security": {"allowedKeyOrigins": [sim.url]}})
    allowed = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert allowed["ok"], allowed
    assert [(r.provider, r.api_key) for r in chats(sim)] == [("mirror", "test-key-mirror-8888"),
                                                             ("openai", OPENAI_KEY)]


def test_the_command_line_reads_the_allowance_from_the_user_file_only(
        tmp_path: Path, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("PHASEWISE_LEDGER", str(tmp_path / "runs.jsonl"))
    project = tmp_path / "repo"
    (project / ".vscode").mkdir(parents=True)
    (project / "add.py").write_text(DOC, encoding="utf-8")
    shipped = {"phasewise.phases": {"plan": {"model": "openai/gpt-sim"}},
               "phasewise.providers": {"openai": {"baseUrl": sim.base_url("openai")}},
               "phasewise.security": {"allowedKeyOrigins": [sim.url]}}  # a repository allowing itself
    (project / ".vscode" / "settings.json").write_text(json.dumps(shipped), encoding="utf-8")
    user = tmp_path / "config" / "settings.json"
    monkeypatch.setenv("PHASEWISE_USER_SETTINGS", str(user))

    assert cli.main(["plan", str(project / "add.py"), "-i", "add a docstring", "--json"]) == 1
    out = capsys.readouterr()
    refused = json.loads(out.out)
    assert refused["error"]["kind"] == "config" and "allowedKeyOrigins" in refused["error"]["message"]
    assert chats(sim) == []

    user.parent.mkdir()
    user.write_text(json.dumps({"phasewise": {"security": {"allowedKeyOrigins": [sim.url]}}}), encoding="utf-8")
    assert cli.main(["plan", str(project / "add.py"), "-i", "add a docstring"]) == 0
    err = capsys.readouterr().err
    assert "phasewise.security" in err and "ignored" in err  # the repository's own allowance is named
    assert [r.api_key for r in chats(sim)] == [OPENAI_KEY]


# --------------------------------------------------------------------------- the OS keyring (real CLI)


@pytest.mark.slow
def test_auth_set_list_clear_and_a_phase_using_the_keyring_key(tmp_path: Path, sim: SimulatorThread) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "add.py").write_text(DOC, encoding="utf-8")
    (project / "phasewise.json").write_text(json.dumps({
        "phases": {"plan": {"model": "kr/gpt-sim"}},
        "providers": {"kr": {"protocol": "openai", "baseUrl": sim.base_url("kr"), "apiKeyEnv": "KR_API_KEY"}},
    }), encoding="utf-8")
    store = tmp_path / "keyring.json"
    env = keyring_env(store, PHASEWISE_LEDGER=str(tmp_path / "runs.jsonl"),
                      PHASEWISE_USER_SETTINGS=str(tmp_path / "none.json"))

    # never from the command line
    argv = phasewise(["auth", "set", "kr", KR_KEY], env, project)
    assert argv.returncode == 2 and not store.exists()

    stored = phasewise(["auth", "set", "kr"], env, project, stdin=KR_KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "KR_API_KEY" in stored.stdout and f"…{KR_KEY[-4:]}" in stored.stdout
    assert KR_KEY in store.read_text(encoding="utf-8")  # in the keyring backend, nowhere else

    listed = phasewise(["auth", "list", "--json"], env, project)
    rows = {r["env"]: r for r in json.loads(listed.stdout)["keys"]}
    assert rows["KR_API_KEY"] == {"env": "KR_API_KEY", "providers": ["kr"], "source": "OS keyring",
                                  "masked": f"…{KR_KEY[-4:]}"}
    assert rows["OPENAI_API_KEY"]["source"] is None
    assert json.loads(listed.stdout)["keyring"]["available"] is True

    ran = phasewise(["plan", "add.py", "-i", "add a docstring", "--json"], env, project)
    assert ran.returncode == 0, ran.stderr
    assert [(r.provider, r.api_key) for r in chats(sim)] == [("kr", KR_KEY)]

    cleared = phasewise(["auth", "clear", "kr"], env, project)
    assert cleared.returncode == 0 and "KR_API_KEY" in cleared.stdout
    missing = phasewise(["plan", "add.py", "-i", "add a docstring", "--json"], env, project)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["kind"] == "missing-credentials"
    assert len(chats(sim)) == 1

    for done in (argv, stored, listed, ran, cleared, missing):
        assert KR_KEY not in done.stdout + done.stderr


def test_without_a_keyring_backend_auth_says_so_and_env_vars_still_work(tmp_path: Path) -> None:
    env = server_env(PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                     PHASEWISE_USER_SETTINGS=str(tmp_path / "none.json"))
    refused = phasewise(["auth", "set", "openai"], env, tmp_path, stdin=OPENAI_KEY)
    assert refused.returncode == 1
    assert "no OS keyring backend is available" in refused.stderr and "OPENAI_API_KEY" in refused.stderr
    assert "the editor's 'Phasewise: Set API Key…' command" in refused.stderr  # as the palette names it
    assert OPENAI_KEY not in refused.stdout + refused.stderr
    listed = json.loads(phasewise(["auth", "list", "--json"], {**env, "OPENAI_API_KEY": OPENAI_KEY},
                                  tmp_path).stdout)
    assert listed["keyring"]["available"] is False and "headless" in listed["keyring"]["note"]
    assert {r["env"]: r["source"] for r in listed["keys"]}["OPENAI_API_KEY"] == "environment"


class _Raising(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("the keyring daemon crashed")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("the keyring daemon crashed")

    def delete_password(self, service: str, username: str) -> None:
        raise RuntimeError("the keyring daemon crashed")


class _Stuck(_Raising):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(30)  # a locked keyring waiting for a prompt nobody answers
        return "never-seen"


@pytest.fixture
def swap_backend() -> Any:
    before = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(before)


def test_a_failing_or_stuck_keyring_is_not_available_and_never_raises(swap_backend: Any) -> None:
    swap_backend(_Raising())
    store = OsKeyring()
    assert store.info().available is True
    assert store.get("OPENAI_API_KEY") is None  # an exception is "not available"
    assert Keyring({}, store=store).get("OPENAI_API_KEY") is None

    stuck = _Stuck()
    swap_backend(stuck)
    slow = OsKeyring(timeout=0.2)
    try:
        assert slow.get("OPENAI_API_KEY") is None
        info = slow.info()
        assert info.available is False and "did not answer" in info.note
        assert slow.get("ANTHROPIC_API_KEY") is None  # no second wait: not available any more
    finally:
        stuck.release.set()


# --------------------------------------------------------------------------- the OS keyring (LSP)

keyring_client = make_client_fixture(keyring_env(KEYRING_FILE, PHASEWISE_WARMUP="0"), clients=["visual-studio-code"])


@pytest.mark.slow
async def test_the_server_reads_the_keyring_and_binds_its_keys(keyring_client: LanguageClient,
                                                               sim: SimulatorThread, tmp_path: Path) -> None:
    KEYRING_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEYRING_FILE.unlink(missing_ok=True)
    env = keyring_env(KEYRING_FILE, PHASEWISE_USER_SETTINGS=str(tmp_path / "none.json"))
    stored = phasewise(["auth", "set", "openai"], env, tmp_path, stdin=OPENAI_KEY)
    assert stored.returncode == 0, stored.stderr

    editor = Editor(keyring_client)
    redirect = {"phases": {"plan": {"model": "openai/gpt-sim"}},
                "providers": {"openai": {"baseUrl": sim.base_url("openai")}}}
    editor.configure(redirect)
    editor.open(URI, DOC)
    status = answer(await editor.command("phasewise.status", {"uri": URI}))
    assert status["keyring"]["available"] is True
    plan = status["phases"][0]
    assert plan["keys"] == [{"env": "OPENAI_API_KEY", "present": True, "source": "OS keyring",
                             "masked": f"…{OPENAI_KEY[-4:]}"}]
    assert plan["problem"]["kind"] == "config"  # a keyring key is bound like any other
    refused = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert refused["error"]["kind"] == "config" and sim.requests == []

    editor.configure({**redirect, "security": {"allowedKeyOrigins": [sim.url]}})
    result = answer(await editor.command("phasewise.plan", {"uri": URI, "instruction": "add a docstring"}))
    assert result["ok"], result
    assert [r.api_key for r in chats(sim)] == [OPENAI_KEY]
    assert OPENAI_KEY not in json.dumps(status) + json.dumps(result)
    KEYRING_FILE.unlink(missing_ok=True)
