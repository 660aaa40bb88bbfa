"""Issue 13: Vim 9 with ALE, a generic LSP client with no Phasewise plugin, in a real terminal.

Vim runs inside tmux (so what the user sees can be captured) with ``tests/editors/scripts/vim_ale.vim``
as its vimrc: ALE starts ``python -m phasewise serve`` as an LSP linter for Python, lists the code
actions at a cursor under a ``# phasewise:`` comment, and picks the plan, review and code actions
from ``:ALECodeAction``'s own numbered menu. The script writes what it observed as JSON and
signals a tmux channel, which this test waits for. Vim, ALE and tmux come from
``.ci/setup.d/40-vim-ale.sh`` (Debian's vim, vim-ale, tmux).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phasewise.sim import SimulatorThread
from tests.helpers import server_env

SCRIPT = Path(__file__).resolve().parent / "scripts" / "vim_ale.vim"
VIM, TMUX = shutil.which("vim"), shutil.which("tmux")
ALE = Path("/usr/share/vim/vimfiles/pack/dist-bundle/opt/ale/autoload/ale/codefix.vim")

pytestmark = [pytest.mark.editor, pytest.mark.skipif(
    VIM is None or TMUX is None or not ALE.is_file(),
    reason="vim, tmux or ALE missing: run .ci/setup.d/40-vim-ale.sh (apt-get install vim vim-ale tmux)",
)]

DOC = """import os


# phasewise: rename load to read_file
def load(path, cache={}):
    try:
        return open(path).read()
    except:
        print("failed", path)
        return None


DEFAULTS = load("defaults.txt")
"""
KEYS = {"PLANNER_KEY": "test-key-planner-in-vim-1212", "CODER_KEY": "test-key-coder-in-vim-3434"}


def run_vim(tmp_path: Path, inputs: dict[str, Any], doc: Path) -> dict[str, Any]:
    """Vim in a detached tmux session of its own; wait for its signal, return what it observed."""
    socket = f"phasewise-test-{os.getpid()}-{tmp_path.name}"
    out = tmp_path / "observed.json"
    env = server_env(**KEYS, HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    env["PHASEWISE_TEST_INPUT"] = json.dumps({**inputs, "tmux": socket})
    env["PHASEWISE_TEST_OUT"] = str(out)
    assert VIM is not None and TMUX is not None
    tmux = [TMUX, "-L", socket, "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "phasewise", "-x", "110", "-y", "32",
                    f"{VIM} -Nu {SCRIPT} -i NONE {doc}"], env=env, cwd=tmp_path, check=True, timeout=30)
    try:
        done = subprocess.run([*tmux, "wait-for", "phasewise-done"], env=env, check=False, timeout=90).returncode == 0
    except subprocess.TimeoutExpired:
        done = False
    finally:
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "phasewise"], env=env, capture_output=True,
                                text=True, check=False, timeout=10).stdout
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True, check=False, timeout=10)
    assert done, f"vim did not finish; its screen:\n{screen}"
    observed: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no output written"}
    assert "error" not in observed, f"vim failed: {observed.get('error')}\nlast screen:\n{screen}\n{observed}"
    return observed


def test_ale_lists_and_runs_every_phase_from_its_code_action_menu(sim: SimulatorThread, tmp_path: Path) -> None:
    settings = {
        "phases": {"plan": {"model": "planner/claude-sim"}, "code": {"model": "coder/glm-sim"},
                   "review": {"model": "coder/glm-sim"}},
        "providers": {
            "planner": {"protocol": "anthropic", "baseUrl": sim.base_url("planner", "anthropic"),
                        "apiKeyEnv": "PLANNER_KEY"},
            "coder": {"protocol": "openai", "baseUrl": sim.base_url("coder", "openai"), "apiKeyEnv": "CODER_KEY"},
        },
    }
    root = tmp_path / "work"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'store'\n")  # what ALE's Python root finder looks for
    doc = root / "store.py"
    doc.write_text(DOC)
    plan_path = root / ".phasewise" / "plans" / "store.py-plan.md"
    comment_line = DOC.splitlines().index("def load(path, cache={}):") + 1  # 1-based, under the comment
    obs = run_vim(tmp_path, {"cmd": [sys.executable, "-m", "phasewise", "serve"],
                             "settings": settings, "comment_line": comment_line, "bare_line": 1,
                             "plan_path": str(plan_path)}, doc)
    chat = [r for r in sim.requests if r.endpoint == "chat"]
    assert (obs["filetype"], obs["linters"]) == ("python", ["phasewise"])

    # ALE's code actions at the cursor: every phase, its route and the comment's instruction
    titles = {
        "source.phasewise.plan": "Phasewise plan (planner/claude-sim): rename load to read_file",
        "refactor.rewrite.phasewise.code": "Phasewise code (coder/glm-sim): rename load to read_file",
        "source.phasewise.review": "Phasewise review (coder/glm-sim): rename load to read_file",
    }
    assert {a["kind"]: a["title"] for a in obs["actions"]} == titles
    assert {a["command"] for a in obs["actions"]} == {"phasewise.phase"}
    bare = {a["kind"]: a["title"] for a in obs["bare_actions"]}
    assert bare["source.phasewise.review"] == "Phasewise review (coder/glm-sim): Review this code"

    # :ALECodeAction's numbered menu, as the screen showed it; the plan picked by its number
    menu = obs["screens"]["menu"].splitlines()
    listed = [f"{n}) {a['title']}" for n, a in enumerate(obs["actions"], 1)]
    start = menu.index("Code Fixes:")
    assert menu[start + 1:start + 1 + len(listed)] == listed
    assert menu[start + 1 + len(listed)].startswith("Type number and <Enter> (empty cancels):")
    kinds = [a["kind"] for a in obs["actions"]]
    assert obs["plan_pick"] == kinds.index("source.phasewise.plan") + 1
    assert obs["review_pick"] == kinds.index("source.phasewise.review") + 1
    assert obs["code_pick"] == kinds.index("refactor.rewrite.phasewise.code") + 1
    assert [(r.provider, r.phase) for r in chat] == [("planner", "plan"), ("coder", "review"), ("coder", "code"),
                                                     ("coder", "code")]  # at the cursor, then over a selection
    assert [r.api_key for r in chat] == [KEYS["PLANNER_KEY"], KEYS["CODER_KEY"], KEYS["CODER_KEY"], KEYS["CODER_KEY"]]

    # ALE cannot open documents: the plan is written and a message names it, echoed by ALE
    done = "Phasewise plan (planner/claude-sim): done, in .phasewise/plans/store.py-plan.md"
    assert obs["shown"][:2] == [{"message": "Phasewise: wrote .phasewise/plans/store.py-plan.md", "type": 3},
                                {"message": done, "type": 3}]
    # ALE waits for no command's answer, but is answered at once all the same: each phase ends with a message
    assert {"message": "Phasewise review (coder/glm-sim): 1 finding on store.py (in the problems list)",
            "type": 3} in obs["shown"], obs["shown"]
    # the file named where ALE echoes it (by the first message, then by the last: whichever the screen caught)
    assert re.search(r"Info:phasewise: Phasewise(: wrote| plan \(planner/claude-sim\): done, in) "
                     r"\.phasewise/plans/store\.py-plan\.md", obs["screens"]["after_plan"]), obs["screens"]
    text = plan_path.read_text()
    assert text.startswith("# Phasewise plan: store.py\n\n- instruction: rename load to read_file\n"
                           "- served by: planner/claude-sim\n")
    assert obs["plan_buffer"] == text.rstrip("\n")
    assert "# Phasewise plan: store.py" in obs["screens"]["plan_open"]
    assert "window/showDocument" not in obs["methods"]  # ALE declares no showDocument

    # the review's findings are ALE's own diagnostics, shown beside the line
    assert obs["loclist"], "no review finding reached ALE"
    finding = obs["loclist"][0]
    assert finding["text"] and 1 <= finding["lnum"] <= len(DOC.splitlines())
    assert finding["text"][:40] in obs["screens"]["review"]

    # the code action: ALE applied the server's workspace/applyEdit to the buffer, not to the file
    assert "workspace/applyEdit" in obs["methods"]
    assert obs["text_after_code"] == DOC.replace("def load(", "def read_file(").rstrip("\n")  # its line only
    assert obs["modified"] is True and doc.read_text() == DOC
    assert "def read_file(path, cache={}):" in obs["screens"]["after_code"]
    # over the lines from the comment to the end, the two lines left to rename are far apart: one
    # edit each in the document's edit, the lines between untouched; ALE applied both
    assert obs["selection_pick"] == obs["code_pick"]
    assert obs["edit_counts"] == [[1], [2]]
    assert obs["text_after_selection"] == re.sub(r"\bload\b", "read_file", DOC).rstrip("\n")
    assert obs["lsp_errors"] == {}
