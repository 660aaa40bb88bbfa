"""Issue 4: the Eglot recipe (``editors/emacs/phasewise-eglot.el``) in ``emacs -Q --batch``.

Emacs connects Eglot to ``python -m phasewise serve``, runs the plan phase against the simulator
(in this process) with the plan streaming into its buffer, and a code phase routed to a provider
whose key is missing, whose problem must arrive as a Flymake diagnostic with its quick fixes.
Emacs and Eglot come from ``.ci/setup.d/20-emacs.sh`` (Debian's emacs-nox and elpa-eglot).
"""

from __future__ import annotations

import json
import math
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
RECIPE = ROOT / "editors" / "emacs" / "phasewise-eglot.el"
EMACS = shutil.which("emacs")
DEBIAN_ELPA = "/usr/share/emacs/site-lisp/elpa"


def _eglot_found() -> bool:
    if EMACS is None:
        return False
    probe = (f'(progn (require \'package) (add-to-list \'package-directory-list "{DEBIAN_ELPA}") '
             '(package-initialize) (kill-emacs (if (locate-library "eglot") 0 1)))')
    return subprocess.run([EMACS, "-Q", "--batch", "--eval", probe], capture_output=True, timeout=60,
                          check=False).returncode == 0


pytestmark = [pytest.mark.editor, pytest.mark.skipif(
    not _eglot_found(),
    reason="emacs with Eglot not found: run .ci/setup.d/20-emacs.sh (apt-get install emacs-nox elpa-eglot)",
)]

DOC = SAMPLE_DOC  # the suites' one sample document
PLANNER_KEY = "test-key-planner-1111"
LATE_KEY = "test-key-typed-in-emacs-8888"
OPENAI_KEY = "test-key-openai-in-emacs-4242"


@pytest.fixture(scope="module")
def eglot(sim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One Emacs session: plan on ``planner`` (key set), code on ``nokey`` (key missing)."""
    sim.reset()
    sim.configure("planner", chunk_interval_ms=25)  # a plan long enough to arrive in several chunks
    tmp = tmp_path_factory.mktemp("emacs")
    doc = tmp / "work" / "store.py"
    doc.parent.mkdir()
    doc.write_text(DOC)
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "nokey/glm-sim"}},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "nokey": {"protocol": "openai", "baseUrl": sim.base_url("nokey", "openai"),
                      "apiKeyEnv": "NOKEY_API_KEY"},
        },
    }
    cut = {**settings, "phases": {**settings["phases"], "plan": {"model": "planner/claude-sim", "maxOutputTokens": 30}}}
    redirect = {"phases": {"plan": {"model": "openai/gpt-sim"}},
                "providers": {"openai": {"baseUrl": sim.base_url("openai", "openai")}},
                # where Phasewise writes outside the project: the user's choice only
                "ledgerPath": str(tmp / "chosen-by-the-project.jsonl")}
    out = tmp / "observed.json"
    env = server_env(PLANNER_KEY=PLANNER_KEY, OPENAI_API_KEY=OPENAI_KEY, HOME=str(tmp),
                     XDG_STATE_HOME=str(tmp / "state"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({
        "recipe": str(RECIPE), "cmd": [sys.executable, "-m", "phasewise", "serve"], "settings": settings,
        "cut_settings": cut, "file": str(doc), "late_key": LATE_KEY, "redirect_settings": redirect,
        "redirect_origin": sim.url,
    })
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert EMACS is not None
    proc = subprocess.run([EMACS, "-Q", "--batch", "-l", str(SCRIPTS / "emacs_eglot.el")], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=120, check=False)
    observed: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in observed, (
        f"emacs failed ({proc.returncode}): {observed.get('error')}\nstderr: {proc.stderr[-3000:]}"
    )
    observed["chat"] = [(r.provider, r.model, r.phase, r.api_key == PLANNER_KEY, r.api_key == LATE_KEY)
                        for r in sim.requests if r.endpoint == "chat"]
    observed["plan_max_tokens"] = [r.body.get("max_tokens") for r in sim.requests
                                   if r.endpoint == "chat" and (r.provider, r.phase) == ("planner", "plan")]
    observed["openai_keys"] = [r.api_key == OPENAI_KEY for r in sim.requests if r.provider == "openai"]
    observed["key_on_disk"] = [str(p) for p in tmp.rglob("*") if p.is_file() and LATE_KEY.encode() in p.read_bytes()]
    return observed


def test_eglot_connects_and_a_plan_streams_from_its_provider(eglot: dict[str, Any]) -> None:
    assert eglot["managed"] is True
    assert eglot["server_version"] == __version__
    assert eglot["plan_ok"] is True and eglot["plan_provider"] == "planner"
    assert eglot["chat"][0] == ("planner", "claude-sim", "plan", True, False)
    assert eglot["stream_chunks"] >= 2
    assert eglot["streamed"] == eglot["plan_buffer"], "the streamed chunks add up to the whole plan"
    assert eglot["plan_text_matches"] is True, "the plan buffer holds the result's text"
    assert "load" in eglot["plan_buffer"]


def test_a_plan_cut_at_the_output_limit_shows_its_note_above_the_plan_and_warns(eglot: dict[str, Any]) -> None:
    assert eglot["plan_max_tokens"][1] == 30  # the second plan, re-routed with maxOutputTokens 30
    result = eglot["cut_result"]
    assert (result["ok"], result["incomplete"]) == (True, True)
    note = result["note"]
    assert note.startswith("planner stopped answering the plan phase (claude-sim) at its output limit of 30 "
                           "tokens: the plan ends where the answer was cut off."), note
    assert "Raise `phasewise.phases.plan.maxOutputTokens`" in note
    # *phasewise-plan*: the note as a Markdown quote above the plan (as the server's plan document has
    # it), in the `warning' face
    assert eglot["cut_plan_buffer"] == f"> {note}\n\n{result['text']}"
    assert eglot["cut_highlight"] == ["warning", len(f"> {note}")]
    # said in the echo area, in plain text (no backticks), after the phase's "done"; logged in *Warnings*
    plain = note.replace("`", "")
    assert "Raise phasewise.phases.plan.maxOutputTokens for" in plain
    assert eglot["cut_messages"][:2] == ["Phasewise plan: done (planner/claude-sim)", f"Phasewise: {plain}"]
    assert eglot["cut_warnings"] == f"Warning (phasewise): {plain}\n"
    # what `phasewise-code' is handed: the plan, not the note (the server's own run does the same)
    assert eglot["cut_handed"] == result["text"]


def test_missing_key_is_a_flymake_diagnostic_with_quick_fixes(eglot: dict[str, Any]) -> None:
    assert eglot["code_ok"] is False and eglot["code_error_kind"] == "missing-credentials"
    # the server's message is Markdown (`phasewise auth set nokey`): said in the echo area in plain text
    assert "run `phasewise auth set nokey` (OS keyring)" in eglot["code_error_message"]
    plain = eglot["code_error_message"].replace("`", "")
    assert eglot["code_messages"] == [f"Phasewise: {plain} (fixes: M-x eglot-code-actions)"], eglot["code_messages"]
    assert (eglot["diag_source"], eglot["diag_code"], eglot["diag_key_env"]) == (
        "phasewise", "missing-credentials", "NOKEY_API_KEY")
    assert "NOKEY_API_KEY" in eglot["diag_message"]
    assert eglot["text_after_failure"] == DOC  # nothing was changed
    assert "Set NOKEY_API_KEY (M-x phasewise-set-api-key)" in eglot["actions"]
    assert any(t.startswith("Retry the code phase") for t in eglot["actions"])
    assert eglot["passwd_prompt"] == "API key for nokey (NOKEY_API_KEY, kept in memory): "
    assert eglot["key_on_disk"] == []


def test_set_api_key_quick_fix_hands_the_key_to_the_server(eglot: dict[str, Any]) -> None:
    assert eglot["code_after_key_ok"] is True
    assert ("nokey", "glm-sim", "code", False, True) in eglot["chat"]


def test_a_project_cannot_allow_its_own_key_origin_only_the_user_can(eglot: dict[str, Any]) -> None:
    # the workspace configuration (what a .dir-locals.el can set) allowed the origin: ignored
    assert eglot["redirect_ok"] is False and eglot["redirect_kind"] == "config"
    assert eglot["redirect_setting"] == "phasewise.security.allowedKeyOrigins"
    # the same allowance in `phasewise-user-settings`: the key goes there
    assert eglot["allowed_ok"] is True and eglot["allowed_provider"] == "openai"
    assert eglot["openai_keys"] == [True]
    # the project's ledgerPath was dropped, and said once, naming the setting
    assert eglot["project_ledger_written"] is False
    assert "Ignored phasewise.ledgerPath from the workspace configuration" in eglot["warnings"], eglot["warnings"]


COMMENTED = (DOC.replace("\n\ndef load(", "\n\n# phasewise: rename load to read_file\ndef load(", 1)
             + '\n\nDEFAULTS = load("defaults.txt")\n')  # a use far from the def: a second edit


def test_any_phase_by_name_and_every_phase_among_eglots_code_actions(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 13: `phasewise-phase` (completed from the server) and `eglot-code-actions` at a cursor."""
    keys = {"PLANNER_KEY": PLANNER_KEY, "CODER_KEY": "test-key-coder-in-emacs-5151"}
    doc = tmp_path / "work" / "store.py"
    doc.parent.mkdir()
    doc.write_text(COMMENTED)
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"},
                   "review": {"model": "coder/glm-sim"},
                   "docs": {"kind": "plan", "model": "coder/glm-sim",
                            "instructions": "Write the docstrings this code lacks."}},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY"},
        },
    }
    comment_line = COMMENTED.splitlines().index("def load(path, cache={}):") + 1
    out = tmp_path / "observed.json"
    env = server_env(**keys, HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({
        "recipe": str(RECIPE), "cmd": [sys.executable, "-m", "phasewise", "serve"], "settings": settings,
        "file": str(doc), "comment_line": comment_line, "bare_line": 1,
    })
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert EMACS is not None
    proc = subprocess.run([EMACS, "-Q", "--batch", "-l", str(SCRIPTS / "emacs_phases.el")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    obs: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in obs, (
        f"emacs failed ({proc.returncode}): {obs.get('error')}\nstderr: {proc.stderr[-3000:]}")
    chat = [r for r in sim.requests if r.endpoint == "chat"]

    # M-x phasewise-phase: the names came from the server (yours included), the text to its buffer
    assert obs["phase_names"] == ["plan", "code", "review", "docs"]
    assert obs["prompts"] == ["Phasewise phase: ", "Phasewise docs: "]
    assert (obs["docs_ok"], obs["docs_phase"], obs["docs_text_matches"]) == (True, "docs", True)
    assert chat[0].provider == "coder" and "document what load returns" in str(chat[0].body["messages"])
    assert "load" in obs["docs_buffer"]

    # eglot-code-actions at the cursor: every phase, with its route and the comment's instruction
    assert {a["kind"]: a["title"] for a in obs["actions"]} == {
        "source.phasewise.plan": "Phasewise plan (planner/claude-sim): rename load to read_file",
        "refactor.rewrite.phasewise.code": "Phasewise code (coder/glm-sim): rename load to read_file",
        "source.phasewise.review": "Phasewise review (coder/glm-sim): rename load to read_file",
        "source.phasewise.docs": "Phasewise docs (coder/glm-sim): rename load to read_file",
    }
    assert {a["command"] for a in obs["actions"]} == {"phasewise.phase"}
    bare = {a["kind"]: a["title"] for a in obs["bare_actions"]}
    assert bare["source.phasewise.review"] == "Phasewise review (coder/glm-sim): Review this code"

    # picked from M-x eglot-code-actions' menu: the plan in *phasewise-plan*, ready for the code phase
    assert sorted(obs["menu"]) == sorted(a["title"] for a in obs["actions"])
    assert (obs["plan_ok"], obs["plan_provider"], obs["plan_text_matches"]) == (True, "planner", True)
    assert "load" in obs["plan_buffer"] and obs["plan_handed_to_code"] is True
    assert [(r.provider, r.phase) for r in chat[1:]] == [("planner", "plan"), ("coder", "code"), ("coder", "code")]
    assert "rename load to read_file" in str(chat[1].body["messages"])
    assert not (doc.parent / ".phasewise").exists(), "Eglot 1.9 has no showDocument: nothing is written"

    # the code action from the same menu: applied through Eglot's workspace/applyEdit, not saved
    assert (obs["code_ok"], obs["code_applied"]) == (True, True)
    assert obs["text_after_code"] == COMMENTED.replace("def load(", "def read_file(")  # the line at point
    assert obs["modified"] is True
    # over the region from the comment to the last line, the two lines left to rename are far apart:
    # one edit each in the document's edit, both applied by Eglot, the lines between untouched
    assert (obs["selection_ok"], obs["selection_applied"]) == (True, True)
    assert obs["text_edit_counts"] == [1, 2]
    assert obs["text_after_selection"] == re.sub(r"\bload\b", "read_file", COMMENTED)
    assert doc.read_text() == COMMENTED


def test_a_phase_that_works_in_steps_shows_its_steps_as_they_happen(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 21: plan and code as agents on the simulator, in a git work tree of the example project."""
    from phasewise.cli.demo import example_project

    root = tmp_path / "shop"
    root.mkdir()
    for f in example_project():
        shutil.copyfile(f, root / f.name)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    provider = {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY",
                "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"phases": {"plan": {"model": "coder/glm-sim", "agent": True},
                           "code": {"model": "coder/glm-sim", "agent": True}},
                "providers": {"coder": provider}}
    out = tmp_path / "observed.json"
    env = server_env(CODER_KEY="test-key-coder-in-emacs-5252", HOME=str(tmp_path),
                     XDG_STATE_HOME=str(tmp_path / "state"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({
        "recipe": str(RECIPE), "cmd": [sys.executable, "-m", "phasewise", "serve"], "settings": settings,
        "file": str(root / "inventory.py"), "instruction": "rename find_item to find_by_sku"})
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert EMACS is not None
    proc = subprocess.run([EMACS, "-Q", "--batch", "-l", str(SCRIPTS / "emacs_agent.el")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    obs: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in obs, (
        f"emacs failed ({proc.returncode}): {obs.get('error')}\nstderr: {proc.stderr[-3000:]}")

    def line(step: dict[str, Any]) -> str:
        mark = "" if step["ok"] else "✗ "
        return f"- {step['step']}/25 {mark}{step['summary']} · {math.floor(step['ms'] + 0.5)} ms"

    # the plan's steps above the plan in *phasewise-plan*, each there as it ended, before the answer
    plan = obs["plan_result"]
    lines = [line(s) for s in plan["steps"]]
    seen = [s for s in obs["steps"] if s["phase"] == "plan"]
    assert plan["ok"] is True and len(seen) == len(lines) >= 2
    for i, s in enumerate(seen):
        assert s["answered"] == 0 and s["shown"] and s["plan"].startswith("\n".join(lines[:i + 1]) + "\n\n"), s
    assert obs["plan_buffer"] == "\n".join(lines) + "\n\n" + plan["text"]
    assert obs["plan_handed"] == plan["text"]  # the code phase is handed the plan, not the steps

    # the code phase's steps in *phasewise-code steps*, as they happened; then the edit, through Eglot
    code = obs["code_result"]
    assert (code["ok"], code["applied"]) == (True, True)
    lines = [line(s) for s in code["steps"]]
    seen = [s for s in obs["steps"] if s["phase"] == "code"]
    assert len(seen) == len(lines) and [s["tool"] for s in code["steps"]].count("edit_file") >= 2
    for i, s in enumerate(seen):
        assert s["answered"] == 1 and s["shown"]
        assert s["code"] == "# code · inventory.py\n\n" + "".join(f"{x}\n" for x in lines[:i + 1]), s
    # Eglot asked before editing orders.py (no buffer visits it), every step on view
    assert "orders.py" in obs["asked"]
    assert obs["code_buffer_at_ask"] == "# code · inventory.py\n\n" + "".join(f"{x}\n" for x in lines)
    assert obs["code_buffer"].startswith("# code · inventory.py\n\n" + "".join(f"{x}\n" for x in lines)
                                         + "\n_code (coder/glm-sim): applied, 2 files_\n")
    assert obs["code_buffer"].rstrip("\n").endswith(code["text"].rstrip("\n"))
    assert "def find_by_sku(" in obs["text_after_code"]
    # Eglot changed orders.py in a buffer it opened for it, left for the user to save
    assert "find_by_sku" in obs["caller_after_code"] and "find_item" not in obs["caller_after_code"]
    assert obs["caller_modified"] is True and "find_item" in (root / "orders.py").read_text(encoding="utf-8")


def test_user_commands_run_unasked_a_projects_are_asked_in_the_minibuffer(
        sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 22, item 2: ``phasewise-user-settings``' ``:commands`` are the user's own (sent as
    ``userSettings``); the ones a project's ``.dir-locals.el`` adds are asked about in the minibuffer
    (the recipe declares ``window/showMessageRequest``, which Eglot 1.9 answers but does not
    declare): allowed once, run; denied, not run."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "app.py").write_text("def total(items):\n    return sum(items)\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    provider = {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY",
                "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"commands": {"once": "touch once.txt", "never": "touch never.txt", "blank": "touch blank.txt"},
                "phases": {"plan": {"model": "coder/glm-sim",
                                    "agent": {"commands": ["mark", "once", "never", "blank"], "maxSteps": 6}}},
                "providers": {"coder": provider}}
    out = tmp_path / "observed.json"
    state = tmp_path / "state"
    env = server_env(CODER_KEY="test-key-coder-in-emacs-5252", HOME=str(tmp_path), XDG_STATE_HOME=str(state),
                     XDG_CONFIG_HOME=str(tmp_path / "config"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({
        "recipe": str(RECIPE), "cmd": [sys.executable, "-m", "phasewise", "serve"], "settings": settings,
        "user_commands": {"mark": "touch marker.txt"}, "file": str(root / "app.py"),
        "instruction": "run `mark`, run `once`, run `never` and run `blank`"})
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert EMACS is not None
    # the user types: Allow once, Deny, and for the last question only RET (no answer is the default)
    proc = subprocess.run([EMACS, "-Q", "--batch", "-l", str(SCRIPTS / "emacs_commands.el")], env=env, cwd=tmp_path,
                          input="Allow once\nDeny\n\n", capture_output=True, text=True, timeout=120, check=False)
    obs: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in obs, (
        f"emacs failed ({proc.returncode}): {obs.get('error')}\nstderr: {proc.stderr[-3000:]}")

    assert obs["capabilities_window"]["showMessage"] == {"messageActionItem": {"additionalPropertiesSupport": False}}
    assert obs["initialization_options"] == {"userSettings": {"commands": {"mark": "touch marker.txt"}}}
    # asked for the project's commands only, each naming its exact command line
    asked = obs["asked"]
    assert [a["answer"] for a in asked] == ["Allow once", "Deny", ""], asked
    for question, line in zip(asked, ["touch once.txt", "touch never.txt", "touch blank.txt"], strict=True):
        assert f"Run `{line}` in shop/?" in question["prompt"]
        assert question["choices"] == ["Allow once", "Always for this workspace", "Deny"]
    assert (root / "marker.txt").exists(), "the user's command ran unasked"
    assert (root / "once.txt").exists(), "the project's command allowed once ran"
    assert not (root / "never.txt").exists(), "the denied command did not run"
    assert not (root / "blank.txt").exists(), "an empty answer allowed nothing"
    plan = obs["plan"]
    assert plan["ok"] is True
    runs = {s["summary"].split()[1].rstrip(":"): s["ok"] for s in plan["steps"] if s["tool"] == "run_command"}
    assert runs == {"mark": True, "once": True, "never": False, "blank": False}
    assert "denied by the user" in plan["text"] and "the question was dismissed" in plan["text"]
    assert not (state / "phasewise" / "allowed-commands.json").exists()  # nothing remembered "always"


def _lsp_mode_found() -> bool:
    if EMACS is None:
        return False
    probe = (f'(progn (require \'package) (add-to-list \'package-directory-list "{DEBIAN_ELPA}") '
             '(package-initialize) (kill-emacs (if (locate-library "lsp-mode") 0 1)))')
    return subprocess.run([EMACS, "-Q", "--batch", "--eval", probe], capture_output=True, timeout=60,
                          check=False).returncode == 0


@pytest.mark.skipif(not _lsp_mode_found(), reason="lsp-mode not found: run .ci/setup.d/20-emacs.sh (elpa-lsp-mode)")
def test_lsp_mode_from_the_readme_is_never_frozen_and_its_phases_finish(sim: SimulatorThread, tmp_path: Path) -> None:
    """Issue 23, items 1 and 2, in lsp-mode (no plugin): a code action's command is a synchronous
    request there, cancelled after 10 s. It is answered at once; the plan (slower than that would
    allow for) and the code change arrive afterwards; lsp-mode's ``[{}]`` settings answer is no answer."""
    sim.reset()
    sim.configure("planner", first_token_ms=3000)  # a plan that takes longer than a frozen editor should
    keys = {"PLANNER_KEY": PLANNER_KEY, "CODER_KEY": "test-key-coder-in-lsp-mode-6161"}
    root = tmp_path / "work"
    root.mkdir()
    doc = root / "store.py"
    doc.write_text(COMMENTED)
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"}},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY"},
        },
    }
    line = COMMENTED.splitlines().index("def load(path, cache={}):") + 1
    out = tmp_path / "observed.json"
    env = server_env(**keys, HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({
        "cmd": [sys.executable, "-m", "phasewise", "serve"], "settings": settings, "root": str(root),
        "file": str(doc), "plan_line": line, "code_line": line})
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert EMACS is not None
    proc = subprocess.run([EMACS, "-Q", "--batch", "-l", str(SCRIPTS / "emacs_lsp_mode.el")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180, check=False)
    obs: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert proc.returncode == 0 and "error" not in obs, (
        f"emacs failed ({proc.returncode}): {obs.get('error')} {obs.get('messages')}\nstderr: {proc.stderr[-3000:]}")

    # the routes given at start are in use: lsp-mode's [{}] answer to the settings pull did not reset them
    assert "Phasewise plan (planner/claude-sim): rename load to read_file" in obs["titles"], obs["titles"]
    assert "Phasewise code (coder/glm-sim): rename load to read_file" in obs["titles"]
    # the plan: answered at once, the editor free; the phase went on and its plan was written and named
    assert obs["plan_command_seconds"] < 2.0, obs
    assert not obs["plan_done_before_answer"]  # nothing of the plan had arrived when lsp-mode got its answer
    assert obs["plan_seconds"] >= 3.0
    assert obs["plan_message"].startswith("Phasewise plan (planner/claude-sim): done"), obs["plan_message"]
    assert obs["plan_file"] is True
    plan = (root / ".phasewise" / "plans" / "store.py-plan.md").read_text()
    assert "rename load to read_file" in plan and "planner/claude-sim" in plan
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.phase) for r in chat] == [("planner", "plan"), ("coder", "code")]
    # the code phase: answered at once, its change applied to the buffer through workspace/applyEdit
    assert obs["code_command_seconds"] < 2.0, obs
    assert obs["code_message"] == "Phasewise code (coder/glm-sim): applied, 1 file", obs["code_message"]
    assert obs["buffer_changed"] is True
    assert "def read_file(path, cache={}):" in obs["buffer"] and "def load(" not in obs["buffer"]
    assert doc.read_text() == COMMENTED  # in the buffer, not saved behind the user's back
