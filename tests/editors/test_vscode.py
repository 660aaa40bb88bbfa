"""Issues 4, 10, 12, 23 and 24, in real VS Code: the packed extension in code-server, opened by headless Chromium.

code-server (VS Code in a browser, run under node 24) gets the product ``.vsix`` installed and,
beside it, the test driver's (``editors/vscode/test/``, a separate extension that depends on
Phasewise and drives it through its exported API; nothing of it ships), a workspace whose
``.vscode/settings.json`` routes each phase to its own provider on the simulator, and
``PHASEWISE_TEST_REPORT``: on activation the driver runs its scripted session (the real palette
commands, input boxes answered by script, notifications recorded) and writes what VS Code showed
as JSON. The extension host starts only once a browser connects, hence Chromium.
``.ci/setup.d/10-vscode.sh`` installs all of it; without it the test skips locally and fails in CI.
The driver may ask for a screenshot of what Chromium shows (``shots/`` beside its report; with
``PHASEWISE_VSCODE_SHOTS=docs/screenshots`` copied there too), taken through Chromium's debugging
port with the puppeteer-core that ``editors/vscode/test/screenshots.py`` installs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from phasewise.sim import SimulatorThread
from tests.helpers import SAMPLE_CALLER, SAMPLE_DOC

pytestmark = pytest.mark.editor

ROOT = Path(__file__).resolve().parents[2]
EXT_DIR = ROOT / "editors" / "vscode"
VSIX = EXT_DIR / "phasewise.vsix"
DRIVER_VSIX = EXT_DIR / "phasewise-test-driver.vsix"
CACHE = Path(os.environ.get("PHASEWISE_VSCODE_CACHE", ROOT / ".ci" / ".cache" / "vscode"))
NODE = CACHE / "node24" / "node_modules" / "node" / "bin" / "node"
CODE_SERVER = CACHE / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
PUPPETEER = ROOT / ".ci" / ".cache" / "screenshots"  # puppeteer-core, as editors/vscode/test/screenshots.py installs it
SHOT_SCRIPT = Path(__file__).with_name("scripts") / "vscode_shot.mjs"
SETUP = ".ci/setup.d/10-vscode.sh"

SECRET = "e2e-coder-secret-7f3a9c"
CODER_ENV = "PW_E2E_CODER_KEY"
SESSION_SECONDS = 150
T = TypeVar("T")

DOC = SAMPLE_DOC  # the suites' one sample document
CALLER = SAMPLE_CALLER


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> list[str]:
    missing = []
    if not NODE.exists():
        missing.append(f"node 24 ({NODE})")
    if not CODE_SERVER.exists():
        missing.append(f"code-server ({CODE_SERVER})")
    if _chromium() is None:
        missing.append("chromium")
    if not VSIX.exists():
        missing.append(f"the packed extension ({VSIX})")
    if not DRIVER_VSIX.exists():
        missing.append(f"the packed test driver ({DRIVER_VSIX})")
    return missing


def _stale_vsix() -> list[str]:
    """Sources newer than their .vsix: the test would exercise an old build. The driver is
    type-checked against the extension's sources, so it is stale when they are newer too."""
    ext_sources = [EXT_DIR / "package.json", *sorted((EXT_DIR / "src").rglob("*.ts"))]
    driver = EXT_DIR / "test"
    driver_sources = [*ext_sources, driver / "package.json", *sorted((driver / "src").rglob("*.ts"))]
    stale = []
    for vsix, sources in ((VSIX, ext_sources), (DRIVER_VSIX, driver_sources)):
        built = vsix.stat().st_mtime
        stale += [str(p.relative_to(ROOT)) for p in sources if p.stat().st_mtime > built + 1]
    return sorted(set(stale))


@pytest.fixture(scope="module")
def prerequisites() -> None:
    missing = _missing()
    if missing:
        reason = f"VS Code test prerequisites missing: {', '.join(missing)} (run: bash {SETUP})"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason)
        pytest.skip(reason)
    stale = _stale_vsix()
    if stale:
        pytest.fail(f"the .vsix files are older than {', '.join(stale[:3])}: run `npm run package && "
                    f"npm run package:driver` in editors/vscode (or bash {SETUP})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(probe: Callable[[], T | None], timeout: float, what: str,
          alive: Callable[[], str | None] = lambda: None, interval: float = 0.1) -> T:
    """Bounded polling of a condition; fails early when ``alive`` reports a dead process."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        dead = alive()
        if dead:
            pytest.fail(f"waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ends a process this test started, with its children (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class CodeServer:
    """code-server with its own user data, extensions and config under ``home``."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.user_data = home / "user-data"
        self.extensions = home / "extensions"
        self.config = home / "config.yaml"
        self.env = env
        self.port = _free_port()
        self.debug_port = _free_port()  # Chromium's, for the screenshots the driver asks for
        self.log = home / "code-server.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        (self.user_data / "User").mkdir(parents=True, exist_ok=True)
        self.extensions.mkdir()
        self.config.write_text("auth: none\n")

    def base_args(self) -> list[str]:
        return [str(NODE), str(CODE_SERVER), "--config", str(self.config), "--user-data-dir", str(self.user_data),
                "--extensions-dir", str(self.extensions), "--disable-telemetry", "--disable-update-check"]

    def install(self, vsix: Path) -> None:
        done = subprocess.run([*self.base_args(), "--install-extension", str(vsix)], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and "successfully installed" in done.stdout, done.stdout + done.stderr

    def user_settings(self, settings: dict[str, Any]) -> None:
        # code-server is VS Code's remote set-up: machine-scoped settings (phasewise.server.*) are
        # read from the Machine file, the rest from User.
        (self.user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
        (self.user_data / "Machine").mkdir(exist_ok=True)
        (self.user_data / "Machine" / "settings.json").write_text(json.dumps(settings, indent=2))

    def start(self, folder: Path, *, trust: bool) -> str:
        args = [*self.base_args(), "--auth", "none", "--bind-addr", f"127.0.0.1:{self.port}"]
        if trust:
            args.append("--disable-workspace-trust")  # the folder opens trusted, no dialog
        proc = subprocess.Popen([*args, str(folder)], env=self.env, stdout=self.log.open("wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{self.port}"

        def healthy() -> bool | None:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    return True if r.status == 200 else None
            except OSError:
                return None

        _poll(healthy, 60, "code-server to listen", self.dead)
        return f"{url}/?folder={folder}"

    def open_browser(self, url: str) -> None:
        chrome = self.home / "chromium"
        args = [_chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={chrome}", "--window-size=1400,900",
                f"--remote-debugging-port={self.debug_port}", url]
        log = (self.home / "chromium.log").open("wb")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def screenshot(self, file: Path) -> str | None:
        """What the browser shows, as a PNG; why not, when it cannot be taken."""
        if not (PUPPETEER / "node_modules" / "puppeteer-core").exists():
            return f"no puppeteer-core in {PUPPETEER} (run editors/vscode/test/screenshots.py once)"
        done = subprocess.run([str(NODE), str(SHOT_SCRIPT), str(self.debug_port), str(file)],
                              env={**self.env, "PUPPETEER_PREFIX": str(PUPPETEER)}, capture_output=True, text=True,
                              timeout=60, check=False)
        return None if done.returncode == 0 else done.stderr[-500:]

    def dead(self) -> str | None:
        for proc in self.procs:
            if proc.poll() is not None:
                return f"{proc.args[0]} exited with {proc.returncode}; log tail:\n{self.tail()}"
        return None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)


def _editor_env(home: Path, report: Path) -> dict[str, str]:
    # No real provider keys leak in from the developer's shell; state stays under ``home``.
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    env.pop(CODER_ENV, None)
    env.update({
        "PHASEWISE_TEST_REPORT": str(report),
        "PHASEWISE_TEST_SECRET": SECRET,
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "XDG_CACHE_HOME": str(home / "xdg-cache"),
        "XDG_STATE_HOME": str(home / "xdg-state"),
        "PATH": f"{NODE.parent}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


def _workspace(root: Path, sim: SimulatorThread) -> Path:
    folder = root / "workspace"
    (folder / ".vscode").mkdir(parents=True)
    (folder / "app.py").write_text(DOC)
    (folder / "orders.py").write_text(CALLER)  # a caller of app.load, not open in the editor
    providers = {
        "e2e-planner": {"protocol": "anthropic", "baseUrl": sim.base_url("e2e-planner", "anthropic"),
                        "requiresKey": False},
        "e2e-coder": {"protocol": "openai", "baseUrl": sim.base_url("e2e-coder", "openai"), "apiKeyEnv": CODER_ENV},
        "e2e-reviewer": {"protocol": "openai", "baseUrl": sim.base_url("e2e-reviewer", "openai"),
                         "requiresKey": False},
    }
    settings = {
        "phasewise.phases": {
            "plan": {"model": "e2e-planner/claude-sim"},
            "code": {"model": "e2e-coder/glm-sim"},  # confirm: on, the default
            "review": {"model": "e2e-reviewer/gpt-sim"},
            # a plan-kind phase of the user's own, its answer cut at a small output limit
            "sketch": {"kind": "plan", "model": "e2e-planner/claude-sim", "maxOutputTokens": 30},
        },
        "phasewise.providers": providers,
        # a repository choosing where Phasewise writes outside it: application-scoped, so ignored
        "phasewise.ledgerPath": str(root / WORKSPACE_LEDGER),
    }
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    return folder


WORKSPACE_LEDGER = "chosen-by-the-workspace.jsonl"


USER_SETTINGS = {
    "phasewise.server.pythonPath": sys.executable,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "update.mode": "none",
    "chat.disableAIFeatures": True,
}


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if report.get("finished") else None


def _serve_screenshots(cs: CodeServer, report_path: Path, shots: Path) -> None:
    """Takes the screenshot the driver asks for (its report's ``shoot``) and tells it (``<name>.done``).
    ``PHASEWISE_VSCODE_SHOTS`` names a folder (docs/screenshots) to copy them to."""
    try:
        name = json.loads(report_path.read_text()).get("shoot")
    except (OSError, ValueError):
        return
    if not isinstance(name, str) or (shots / f"{name}.done").exists():
        return
    problem = cs.screenshot(shots / f"{name}.png")
    copy_to = os.environ.get("PHASEWISE_VSCODE_SHOTS")
    if problem is None and copy_to:
        shutil.copyfile(shots / f"{name}.png", Path(copy_to) / f"{name}.png")
    (shots / f"{name}.done").write_text(problem or "")


class Sessions:
    """Scripted editor sessions under ``root``, each in its own code-server; ``stop`` ends them all."""

    def __init__(self, root: Path, sim: SimulatorThread) -> None:
        self.root = root
        self.sim = sim
        self.servers: list[CodeServer] = []

    def run(self, name: str, *, trust: bool, settings: dict[str, Any] | None = None,
            workspace: Callable[[Path, SimulatorThread], Path] = _workspace,
            env: dict[str, str] | None = None,
            seconds: float = SESSION_SECONDS) -> tuple[dict[str, Any], CodeServer, Path]:
        """One session: ``workspace`` makes the folder it opens, ``env`` adds to the editor's
        environment (``PHASEWISE_TEST_SCENARIO``, ``PHASEWISE_TEST_FILE`` for the driver); it ends
        within ``seconds``."""
        home = self.root / name
        home.mkdir(exist_ok=True)  # a test may seed it (the extension's storage)
        report_path = home / "report.json"
        shots = home / "shots"
        shots.mkdir()
        cs = CodeServer(home, {**_editor_env(home, report_path), "PHASEWISE_TEST_SHOTS": str(shots),
                               "PHASEWISE_TEST_SIM_FAULTS": f"{self.sim.url.rstrip('/')}/_sim/faults", **(env or {})})
        self.servers.append(cs)
        cs.install(VSIX)
        cs.install(DRIVER_VSIX)
        cs.user_settings({**USER_SETTINGS, **(settings or {})})
        folder = workspace(home, self.sim)
        url = cs.start(folder, trust=trust)
        cs.open_browser(url)

        def finished() -> dict[str, Any] | None:
            _serve_screenshots(cs, report_path, shots)
            return _read_report(report_path)

        try:
            report = _poll(finished, seconds, "the extension's scripted session", cs.dead, interval=0.2)
        except BaseException:
            partial = report_path.read_text() if report_path.exists() else "(no report written)"
            print(f"partial report:\n{partial}\ncode-server log:\n{cs.tail(80)}")
            raise
        return report, cs, folder

    def stop(self) -> None:
        for cs in self.servers:
            cs.stop()


@pytest.fixture()
def editor_session(prerequisites: None, tmp_path: Path, sim: SimulatorThread) -> Iterator[Callable[..., Any]]:
    sessions = Sessions(tmp_path, sim)
    yield sessions.run
    sessions.stop()


def _is_preview(tab: dict[str, str]) -> bool:
    return tab["kind"].startswith("webview:") and "markdown.preview" in tab["kind"]


def test_nothing_of_the_tests_ships() -> None:
    if not VSIX.exists():
        pytest.skip(f"{VSIX} not packed (run: bash {SETUP})")
    with zipfile.ZipFile(VSIX) as vsix:
        names = vsix.namelist()
        ours = [n for n in names if n.startswith("extension/") and "/node_modules/" not in n]
        texts = {n: vsix.read(n).decode("utf-8", "replace") for n in ours if n.endswith((".js", ".json"))}
    assert not [n for n in ours if n.startswith("extension/test/") or "driver" in n or "scripted" in n.lower()], ours
    assert "extension/out/extension.js" in ours
    for name, text in texts.items():
        assert "PHASEWISE_TEST" not in text and "ScriptedPrompter" not in text, name


def test_extension_in_code_server(editor_session: Callable[..., Any], sim: SimulatorThread) -> None:
    started = time.monotonic()
    # the driver's rate-limit step waits out a 2 s retry-after; its cancel step stalls at the provider
    sim.add_fault("anthropic.rate_limit_error", provider="e2e-planner", model="limited-sim", retry_after=2)
    sim.add_fault({"delay_ms": 60_000}, provider="e2e-planner", model="stalled-sim")
    report, cs, folder = editor_session("trusted", trust=True)
    assert report.get("error") is None, report["error"]
    assert report["trusted"] is True
    assert report["serverState"] == "running", report
    assert report["launch"]["origin"] == "phasewise.server.pythonPath"

    # the status bar names every phase's provider and model, and the missing key
    bar = report["statusBarBefore"]
    assert all(m in bar for m in ("claude-sim", "glm-sim", "gpt-sim")), bar
    assert all(f"{phase}: {route}" in bar for phase, route in (
        ("plan", "e2e-planner/claude-sim"), ("code", "e2e-coder/glm-sim"), ("review", "e2e-reviewer/gpt-sim"))), bar
    # ... and a click offers the actions, under the palette's names
    offered = report["statusBarClick"]["offered"]
    for action in ("$(key) Set API Key…", "$(gear) Open Settings", "$(check-all) Verify Providers"):
        assert action in offered, offered
    assert any(label.endswith(" code") for label in offered), offered
    coder = next(p for p in report["statusBefore"]["phases"] if p["phase"] == "code")
    assert coder["keys"] == [{"env": CODER_ENV, "present": False, "source": None, "masked": None}]

    # plan: the palette command, its Markdown document filled from the stream
    plan = report["plan"]
    assert plan["result"]["ok"], plan["result"]
    assert (plan["result"]["provider"], plan["result"]["model"]) == ("e2e-planner", "claude-sim")
    assert plan["document"]["languageId"] == "markdown"
    assert plan["result"]["text"].strip()[:40] in plan["document"]["text"]
    assert "served by e2e-planner/claude-sim" in plan["document"]["text"]
    assert plan["streamedChunks"] >= 1
    # ... opened rendered (a Markdown preview tab), not as source
    assert len(plan["tabs"]) == 1 and _is_preview(plan["tabs"][0]), plan["tabs"]

    # code from the palette without its key: said before asking for the instruction, nothing sent
    preflight = report["preflight"]
    assert preflight["result"] is None and preflight["asked"] == [], preflight
    [notice] = preflight["notices"]
    assert notice["kind"] == "warning", notice
    assert notice["message"].startswith("Phasewise code cannot run on e2e-coder/glm-sim"), notice
    assert CODER_ENV in notice["message"] and "`" not in notice["message"]
    assert notice["actions"][0] == "Set API Key…", notice

    # code without its key: a problem diagnostic and its quick fixes, nothing sent
    missing = report["missingKey"]
    assert missing["result"]["ok"] is False
    assert missing["result"]["error"]["kind"] == "missing-credentials"
    assert missing["diagnostic"]["source"] == "phasewise"
    assert missing["diagnostic"]["code"] == "missing-credentials"
    assert CODER_ENV in missing["diagnostic"]["message"]
    fixes = {f["command"]: f for f in missing["quickFixes"]}
    assert fixes["phasewise.setApiKey"]["arguments"][0]["env"] == CODER_ENV
    assert "phasewise.retry" in fixes and "phasewise.openSettings" in fixes

    # the quick fix stored the key in SecretStorage and the server got it in memory
    assert report["keySet"] is True

    # the code phase's change to both files is shown as a diff before it lands ...
    discard = report["discard"]
    shown = discard["shown"]
    assert shown is not None, discard
    assert shown["label"] == "Phasewise code (e2e-coder/glm-sim)", shown
    assert shown["files"] == [{"path": "app.py", "created": False, "changes": True},
                              {"path": "orders.py", "created": False, "changes": True}], shown
    assert shown["question"].startswith("Review the change to app.py, orders.py, then Apply it"), shown
    assert "from app import read_file" in shown["proposed"] and "def read_file(path" in shown["proposed"]
    # ... in the multi-file diff editor: each file as it is, beside what it would become
    [tab] = discard["tabs"]
    assert tab["kind"] == "multidiff:file→phasewise-proposed,file→phasewise-proposed", discard["tabs"]
    assert tab["label"] == "Phasewise code (e2e-coder/glm-sim): proposed change (2 files)", tab
    # ... and discarding it changes nothing, closes the diff, and says so (not as a problem)
    assert discard["result"]["ok"] is False and discard["result"]["applied"] is False, discard["result"]
    assert discard["result"]["error"]["kind"] == "cancelled", discard["result"]
    assert discard["documentUnchanged"] and discard["callerUnchanged"], discard
    assert discard["pendingAfter"] is False and discard["diffTabsAfter"] == [], discard
    # ... and the file worked on is still open, and has the focus again (the plan still beside it)
    assert any("app.py" in g["tabs"] for g in discard["tabsAfter"]), discard["tabsAfter"]
    assert discard["activeAfter"] == (folder / "app.py").as_uri(), discard
    assert any("Preview app.py plan.md" in g["tabs"] for g in discard["tabsAfter"]), discard["tabsAfter"]
    assert [n["message"] for n in discard["notices"]] == [
        "The code phase's change (e2e-coder/glm-sim, 2 files) was declined in the editor; nothing was applied."
    ], discard["notices"]
    assert discard["problems"] == [], discard["problems"]

    # applied: both files at once, the open one and the caller that was not open
    code = report["code"]
    assert code["shownFiles"] == ["app.py", "orders.py"], code
    assert code["result"]["ok"], code["result"]
    assert code["result"]["provider"] == "e2e-coder"
    assert code["result"]["applied"] is True, code["result"]
    assert [f["path"] for f in code["result"]["files"]] == ["app.py", "orders.py"], code["result"]
    assert code["diffTabsAfter"] == [], code
    assert code["documentChanged"] and "def read_file(path" in code["text"]
    assert code["callerText"] is not None and "from app import read_file" in code["callerText"], code
    # ... and saved, both, as after a rename: nothing is left dirty in the background
    assert code["onDisk"] is not None, code
    assert code["dirtyAfter"] == [], code

    # app.py typed in while the next change was shown: Apply refuses all of it, and says why
    moved = report["moved"]
    assert moved["shown"] == ["app.py", "orders.py"] and moved["typedApplied"] is True, moved
    assert moved["result"]["ok"] is False and moved["result"]["applied"] is False, moved["result"]
    assert moved["result"]["error"]["kind"] == "document-changed", moved["result"]
    assert "app.py changed while the change was shown for review" in moved["result"]["error"]["message"], moved
    assert "fetch_file" not in moved["text"] and "fetch_file" not in moved["callerText"], moved
    assert moved["text"].startswith("# typed while the diff was open\n"), moved
    assert [p["code"] for p in moved["problems"] or []] == ["document-changed"], moved["problems"]

    # a change that creates a file: its diff against an empty side, the file created when applied
    created = report["created"]
    assert created["shown"] == [{"path": "tests/test_app.py", "created": True}], created
    assert [t["kind"] for t in created["tabs"]] == ["diff:phasewise-proposed→phasewise-proposed"], created["tabs"]
    assert created["result"]["ok"] and created["result"]["applied"] is True, created["result"]
    assert [(f["path"], f["created"]) for f in created["result"]["files"]] == [("tests/test_app.py", True)]
    assert created["text"] is not None and "def test_read_file_is_callable" in created["text"], created

    # the phase cancelled while its change is shown: the diff goes, nothing lands, a late Apply is a no-op
    gone = report["cancelledReview"]
    assert gone["shown"] == ["app.py", "orders.py", "tests/test_app.py"] and gone["cancelled"] == 1, gone
    assert gone["result"]["ok"] is False and gone["result"]["error"]["kind"] == "cancelled", gone["result"]
    assert gone["pendingGone"] and gone["lateApply"] is False and gone["diffTabs"] == [], gone
    assert gone["unchanged"], gone
    # "Run Phase…" picked the plan phase from the server's phases and ran it by name
    assert report["runPhase"] == {"ok": True, "phase": "plan", "provider": "e2e-planner"}, report.get("runPhase")
    # a plan-kind phase of the user's own gets its own plan view, rendered, which says the answer
    # was cut at the output limit (the result is still ok), and a warning says how to raise it
    sketch = report["sketch"]
    assert sketch["result"]["ok"] and sketch["result"]["incomplete"] is True, sketch["result"]
    assert "maxOutputTokens" in sketch["result"]["note"], sketch["result"]
    assert sketch["text"].startswith("# sketch: Sketch the module"), sketch["text"]
    assert "> **incomplete**: " in sketch["text"] and "phasewise.phases.sketch.maxOutputTokens" in sketch["text"]
    assert len(sketch["tabs"]) == 1 and _is_preview(sketch["tabs"][0]), sketch["tabs"]
    [warned] = [n for n in sketch["notices"] if n["kind"] == "warning"]
    assert warned["message"].startswith("Phasewise sketch: ") and "`" not in warned["message"], warned
    assert warned["actions"] == ["Open Settings"], warned
    assert code["problemCleared"]
    after = next(p for p in report["statusAfter"]["phases"] if p["phase"] == "code")
    assert after["keys"][0]["present"] and after["keys"][0]["source"] == "editor secret storage"
    assert SECRET not in json.dumps(report["statusAfter"])

    # review findings are ordinary diagnostics
    review = report["review"]
    assert review["result"]["ok"], review["result"]
    assert review["findings"] == len(review["result"]["findings"]) > 0
    assert any(d["source"] == "phasewise-review" for d in report["diagnostics"])

    # a rate limit: the notification counts down with the number first, the plan view says it waits
    limited = report["rateLimit"]
    assert limited["result"]["ok"], limited["result"]
    messages = [p["message"] for p in limited["progress"]]
    waits = [m for m in messages if "until retry" in m]
    assert waits and all(m[0].isdigit() for m in waits), messages
    assert all(p["title"] == "Phasewise plan: e2e-planner/limited-sim" for p in limited["progress"]), limited
    assert any(s.startswith("waiting for a rate limit to lift: retrying in") for s in limited["planStates"]), limited
    assert any(s.startswith("retrying") for s in limited["planStates"]), limited
    # ... and never the model's raw text
    assert not [m for m in messages if not re.match(
        r"(\d[\d.]* (ms|s|min).* until retry \(at |retrying now · |waiting for the first token…$|receiving the answer…$"
        r"|plan ok )", m)], messages
    assert len(limited["planTabs"]) == 1, limited["planTabs"]  # the same plan view, reused

    # a cancel: sent as window/workDoneProgress/cancel, answered `cancelled`, and said so
    cancel = report["cancel"]
    assert cancel["cancelled"] == 1, cancel
    assert cancel["result"]["ok"] is False and cancel["result"]["error"]["kind"] == "cancelled", cancel
    assert [n["message"] for n in cancel["notices"]] == [
        "Phasewise plan cancelled: nothing more was sent, nothing was changed."], cancel
    assert cancel["planStates"][-1] == "cancelled" and "cancelled" in cancel["planText"], cancel

    # a retry reuses the plan view: one plan tab after plan, rate limit, cancel and retry
    assert report["retry"]["result"]["ok"], report["retry"]
    assert len(report["retry"]["planTabs"]) == 1, report["retry"]["planTabs"]

    # the workflow commands, where the server has them: run's phases, verify's and compare's reports
    if "run" in report:
        assert report["run"]["ok"], report["run"]
        assert [(p["phase"], p["provider"]) for p in report["run"]["phases"]] == [
            ("plan", "e2e-planner"), ("code", "e2e-coder"), ("review", "e2e-reviewer")]
    if "verify" in report:
        assert report["verify"]["ok"], report["verify"]
        assert "## ✓ e2e-coder" in report["verify"]["document"]
        assert len(report["verify"]["tabs"]) == 1 and _is_preview(report["verify"]["tabs"][0]), report["verify"]
        assert SECRET not in report["verify"]["document"]
    if "compare" in report:
        assert [(r["provider"], r["ok"]) for r in report["compare"]["results"]] == [
            ("e2e-planner", True), ("e2e-reviewer", True)]
        assert "e2e-reviewer/gpt-sim" in report["compare"]["document"]

    # the output channel says who served each phase
    output = "\n".join(report["output"])
    for route in ("plan served by e2e-planner/claude-sim", "code served by e2e-coder/glm-sim",
                  "review served by e2e-reviewer/gpt-sim"):
        assert route in output, output

    # the output channel has the server's log lines once, at their own level: its info lines
    # (stderr and window/logMessage) once at info, the stderr copy at trace; its warnings as warnings
    entries = report["outputEntries"]
    shown = [e for e in entries if e["level"] != "trace"]
    assert not [e for e in shown if e["level"] == "error" and "phasewise INFO" in e["message"]], shown
    starting = [e for e in shown if "plan phase starting on e2e-planner/claude-sim" in e["message"]]
    assert starting and {e["level"] for e in starting} == {"info"}, starting
    assert max(Counter(e["message"] for e in starting).values()) == 1, starting  # each run's line once
    assert report["serverWarning"]["level"] == "warn", report["serverWarning"]
    assert report["serverWarning"]["message"].startswith("phasewise WARNING ")
    assert len([e for e in shown if "phasewise/setKeys without" in e["message"]]) == 1

    # what reached the providers: each phase its own, the key only from SecretStorage
    chats = [r for r in sim.requests if r.endpoint == "chat"]
    assert [(r.provider, r.phase) for r in chats][:7] == [  # code: discarded, applied, refused, a new file,
        ("e2e-planner", "plan"), *[("e2e-coder", "code")] * 5, ("e2e-reviewer", "review"),  # cancelled
    ]
    assert {r.api_key for r in chats if r.provider == "e2e-coder"} == {SECRET}
    # ... and was never written to settings or logs
    for path in [*cs.user_data.rglob("*.json"), folder / ".vscode" / "settings.json", *cs.user_data.rglob("*.log")]:
        assert SECRET not in path.read_text(errors="replace"), path
    assert not (folder.parent / WORKSPACE_LEDGER).exists()  # the workspace's ledgerPath was not honoured
    assert "def read_file(path" in (folder / "app.py").read_text()  # saved by the session
    assert "text = read_file(path)" in (folder / "orders.py").read_text()
    assert "from app import read_file" in (folder / "tests" / "test_app.py").read_text()
    print(f"VS Code session: {report['elapsedMs']} ms in the extension, {time.monotonic() - started:.1f} s in all")


def test_restricted_workspace_does_not_start_the_server(editor_session: Callable[..., Any],
                                                        sim: SimulatorThread) -> None:
    report, _, _ = editor_session("restricted", trust=False)
    assert report.get("error") is None, report["error"]
    assert report["trusted"] is False
    assert report["serverState"] == "untrusted"
    assert "Trust the workspace" in report["unavailable"]
    assert "restricted" in report["statusBarText"]
    assert sim.requests == []


def test_server_not_found_says_how_to_install_it(editor_session: Callable[..., Any], tmp_path: Path) -> None:
    python = tmp_path / "no-such-python"
    report, _, _ = editor_session("not-found", trust=True, settings={"phasewise.server.pythonPath": str(python)})
    assert report.get("error") is None, report["error"]
    assert report["serverState"] == "not-found"
    # the install command offered is one that works: the wheel the .vsix carries
    assert re.search(rf"{re.escape(str(python))} -m pip install \"[^\"]+/server/phasewise-[^\"]+\.whl\"",
                     report["unavailable"]), report["unavailable"]
    assert "phasewise.server.pythonPath" in report["unavailable"]
    assert "server not found" in report["statusBarText"]
    # issue 23, item 12: said once in the output channel; Open Settings opens the settings (on the
    # Remote tab in code-server, where machine settings are: screenshot server-not-found-settings)
    said = [line for line in report["output"] if "is not installed for" in line]
    assert len(said) == 1, report["output"]
    assert report["settingsTabs"], report


def test_server_not_found_says_where_it_looked_in_code_server(editor_session: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    """Issue 23, item 12: with no setting, no workspace .venv and no ``phasewise`` on PATH, the message
    names each place looked at and the setting to set."""
    report, _, folder = editor_session(
        "not-found-anywhere", trust=True, settings={"phasewise.server.pythonPath": ""},
        env={"PATH": f"{NODE.parent}{os.pathsep}/usr/bin{os.pathsep}/bin"})
    assert report.get("error") is None, report["error"]
    assert report["serverState"] == "not-found"
    said = report["unavailable"]
    assert "the setting phasewise.server.pythonPath (not set)" in said, said
    assert f"a .venv or venv in {folder} (there is none)" in said, said
    assert "phasewise on PATH (not there)" in said, said
    assert "set phasewise.server.pythonPath to a Python that has it" in said, said
    assert len([line for line in report["output"] if "was not found" in line]) == 1, report["output"]


NO_SERVER_PATH = f"{NODE.parent}{os.pathsep}/usr/bin{os.pathsep}/bin"  # no checkout .venv, no phasewise


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_from_the_not_found_notification_then_a_plan_runs_in_code_server(
        editor_session: Callable[..., Any], sim: SimulatorThread) -> None:
    """Issue 24, item 2: with no server anywhere (no setting, no workspace .venv, nothing on PATH),
    the "not found" notification offers Install; clicked, the extension makes a virtual environment
    in its own storage with python3 from PATH, installs the wheel its .vsix carries (dependencies
    from the package index) with a progress notification, starts the server, and a plan runs on it."""
    from phasewise import __version__

    assert shutil.which("phasewise", path=NO_SERVER_PATH) is None
    started = time.monotonic()
    report, cs, _ = editor_session(
        "install", trust=True, settings={"phasewise.server.pythonPath": ""},
        env={"PATH": NO_SERVER_PATH, "PHASEWISE_TEST_SCENARIO": "install"}, seconds=600)
    assert report.get("error") is None, report["error"]
    assert report["stateBefore"] == "not-found"
    assert "the extension's own environment (not made yet)" in report["unavailable"], report["unavailable"]
    offered = report["offered"]
    assert "was not found" in offered["message"] and offered["actions"][0] == "Install", offered

    env_dir = cs.user_data / "User" / "globalStorage" / "phasewise.phasewise" / "server-env"
    assert report["environment"] == str(env_dir)
    steps = report["installSteps"]
    # python3 from PATH (code-server's extension host adds the login shell's PATH: pyenv's here)
    assert re.fullmatch(r"creating a virtual environment with /\S+/python3 \(Python 3\.\d+\)…", steps[0]), steps
    assert steps[1] == f"installing phasewise {__version__} and its dependencies from the package index…", steps
    assert f"Processing phasewise-{__version__}-py3-none-any.whl" in steps, steps  # the wheel the .vsix carries
    assert any(s.startswith("Successfully installed") for s in steps), steps
    assert steps[-1] == f"phasewise {__version__} installed in {env_dir}", steps
    assert report["pipStepSeen"], report  # the notification showed pip's steps while it worked

    assert report["serverState"] == "running", report.get("unavailable")
    assert report["serverVersion"] == __version__
    assert report["launch"]["managed"] is True
    assert report["launch"]["command"] == str(env_dir / "bin" / "python")
    assert report["installedNotice"]["message"] == f"Phasewise {__version__} installed and running."
    plan = report["plan"]["result"]
    assert plan["ok"] is True and plan["provider"] == "e2e-planner", plan
    assert "served by" in report["plan"]["document"]
    assert any(r.provider == "e2e-planner" for r in sim.requests)
    # no version mismatch to report: the wheel is the extension's own version
    assert not [n for n in report["notices"] if "Update the server" in n["message"]], report["notices"]
    print(f"install: {report['installMs'] / 1000:.1f} s from the click to a running server; "
          f"{time.monotonic() - started:.1f} s for the whole session")


@pytest.mark.slow
def test_a_failed_install_says_why_and_install_stays_offered_in_code_server(
        editor_session: Callable[..., Any], tmp_path: Path) -> None:
    """Issue 24, item 2: when pip cannot get the dependencies (no index: pip's configuration files
    off, no index, an empty folder of wheels), the notification says pip failed and why; the server
    is still not found, and Install is offered again."""
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()
    report, cs, _ = editor_session(
        "install-fails", trust=True, settings={"phasewise.server.pythonPath": ""},
        env={"PATH": NO_SERVER_PATH, "PHASEWISE_TEST_SCENARIO": "install", "PIP_CONFIG_FILE": os.devnull,
             "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
             "PHASEWISE_TEST_SHOTS": ""}, seconds=300)  # no screenshots: install-server.png is a working install
    assert report.get("error") is None, report["error"]
    assert report["serverState"] == "not-found", report
    env_dir = cs.user_data / "User" / "globalStorage" / "phasewise.phasewise" / "server-env"
    failed = [n for n in report["notices"] if n["kind"] == "error" and "pip could not install" in n["message"]]
    assert len(failed) == 1, report["notices"]
    assert f"pip could not install the server into {env_dir} (" in failed[0]["message"], failed
    assert "pygls" in failed[0]["message"] and failed[0]["actions"] == ["Show Output"], failed
    assert "the extension's own environment (no working phasewise in it)" in report["unavailable"], report
    assert report["installSteps"][-1].startswith("Processing phasewise-"), report["installSteps"]


@pytest.mark.slow
def test_install_without_python_on_path_says_so_in_code_server(editor_session: Callable[..., Any],
                                                               tmp_path: Path) -> None:
    """Issue 24, item 2: Install with no python3 on PATH says that it needs Python, which version,
    and what to do; nothing is made. (``VSCODE_CLI=1``: the extension host keeps this PATH instead
    of taking the login shell's, which has python3.)"""
    report, cs, _ = editor_session(
        "install-no-python", trust=True, settings={"phasewise.server.pythonPath": ""},
        env={"PATH": str(NODE.parent), "VSCODE_CLI": "1", "PHASEWISE_TEST_SCENARIO": "install",
             "PHASEWISE_TEST_SHOTS": ""}, seconds=120)
    assert report.get("error") is None, report["error"]
    assert report["serverState"] == "not-found", report
    said = [n for n in report["notices"] if n["kind"] == "error" and "needs Python" in n["message"]]
    assert len(said) == 1, report["notices"]
    assert said[0]["message"].startswith(
        "Phasewise: installing the language server needs Python 3.11 or later, and there is no python3 on PATH."), said
    assert "set phasewise.server.pythonPath" in said[0]["message"], said
    assert report["installSteps"] == []
    assert not (cs.user_data / "User" / "globalStorage" / "phasewise.phasewise" / "server-env").exists()


OLD_VERSION = "0.0.9"


def _old_server(env_dir: Path) -> Path:
    """A virtual environment whose server says it is ``OLD_VERSION``: no pip and no packages of its own,
    it reads this checkout's (a ``.pth`` adds this interpreter's site-packages, with the editable
    install) and patches the version at start, unless a phasewise of its own is installed there (as
    the extension's Update does). Made in a second, not a minute of downloads. Its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=60)
    site = next(env_dir.glob("lib/python3*/site-packages"))
    (site / "checkout.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    (site / "sitecustomize.py").write_text(
        "import os\nimport phasewise\n\n"
        "if not phasewise.__file__.startswith(os.path.dirname(__file__)):\n"
        f"    phasewise.__version__ = {OLD_VERSION!r}\n")
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "phasewise", "--version"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout.strip() == f"phasewise {OLD_VERSION}", done.stdout + done.stderr
    return python


@pytest.mark.slow
def test_a_server_of_another_version_chosen_by_the_user_is_only_told_about_in_code_server(
        editor_session: Callable[..., Any], tmp_path: Path) -> None:
    """Issue 24, item 2: the server's version (initialize's serverInfo) differs from the extension's;
    the server is the user's (phasewise.server.pythonPath), so the extension says so and offers no
    update of it."""
    from phasewise import __version__

    python = _old_server(tmp_path / "old-server")
    report, _, _ = editor_session("version-user", trust=True, settings={"phasewise.server.pythonPath": str(python)},
                                  env={"PHASEWISE_TEST_SCENARIO": "version"})
    assert report.get("error") is None, report["error"]
    assert report["serverVersion"] == OLD_VERSION and report["serverState"] == "running"
    notice = report["versionNotice"]
    assert notice["kind"] == "warning" and notice["actions"] == [], notice
    assert (f"the language server (from phasewise.server.pythonPath) is {OLD_VERSION}, the extension {__version__}"
            in notice["message"]), notice
    assert f"phasewise-{__version__}-py3-none-any.whl" in notice["message"], notice
    assert "or clear phasewise.server.pythonPath" in notice["message"], notice


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_extensions_own_environment_of_another_version_is_offered_an_update_in_code_server(
        editor_session: Callable[..., Any], tmp_path: Path) -> None:
    """Issue 24, item 2: the extension's own environment holds a server of another version: the
    extension offers Update, which reinstalls the wheel its .vsix carries and restarts the server."""
    from phasewise import __version__

    home = tmp_path / "version-managed"
    env_dir = home / "user-data" / "User" / "globalStorage" / "phasewise.phasewise" / "server-env"
    env_dir.parent.mkdir(parents=True)
    python = _old_server(env_dir)
    report, _, _ = editor_session("version-managed", trust=True, settings={"phasewise.server.pythonPath": ""},
                                  env={"PATH": NO_SERVER_PATH, "PHASEWISE_TEST_SCENARIO": "version"},
                                  seconds=400)
    assert report.get("error") is None, report["error"]
    assert report["launchBefore"]["managed"] is True and report["launchBefore"]["version"] == f"phasewise {OLD_VERSION}"
    notice = report["versionNotice"]
    assert notice["message"] == (f"Phasewise: the language server in the extension's own environment is {OLD_VERSION}, "
                                 f"the extension {__version__}. Update the server to {__version__}?"), notice
    assert notice["actions"] == ["Update"] and notice["clicked"] == "Update", notice
    assert report["updated"] is True, report
    steps = report["updateSteps"]
    assert steps[0] == f"replacing the server in {env_dir} with phasewise {__version__}…", steps
    assert steps[-1] == f"phasewise {__version__} installed in {env_dir}", steps
    assert report["serverVersion"] == __version__ and report["launch"]["command"] == str(python)
    assert report["installedNotice"]["message"] == f"Phasewise {__version__} installed and running."
    # the update said once: the restarted server is the extension's version
    assert len([n for n in report["notices"] if ", the extension " in n["message"]]) == 1, report["notices"]


def _steps_workspace(root: Path, sim: SimulatorThread) -> Path:
    """The example project as a git work tree, its plan and code phases working in steps."""
    from phasewise.cli.demo import example_project

    folder = root / "shop"
    (folder / ".vscode").mkdir(parents=True)
    for f in example_project():
        shutil.copyfile(f, folder / f.name)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    provider = {"protocol": "openai", "baseUrl": sim.base_url("e2e-agent", "openai"), "requiresKey": False,
                "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"phasewise.phases": {"plan": {"model": "e2e-agent/glm-sim", "agent": True},
                                     "code": {"model": "e2e-agent/glm-sim", "agent": True}},
                "phasewise.providers": {"e2e-agent": provider}}
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    return folder


def _step_line(step: dict[str, Any]) -> str:
    """A step as the extension lists it in Markdown: Markdown's own characters escaped (a pattern's
    ``\\b``, a name's ``_``), the tool's time in whole milliseconds as JavaScript rounds."""
    summary = re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", step["summary"])
    return f"- {step['step']}/25 {summary} · {math.floor(step['ms'] + 0.5)} ms"


def test_a_phase_that_works_in_steps_shows_them_as_they_happen_in_code_server(
        editor_session: Callable[..., Any], sim: SimulatorThread) -> None:
    """Issue 21: the steps in the phase's view while it works; the change then previewed and applied."""
    sim.configure("e2e-agent", first_token_ms=300)  # each model call takes a moment: VS Code redraws between
    report, _, folder = editor_session("steps", trust=True, workspace=_steps_workspace,
                                       env={"PHASEWISE_TEST_SCENARIO": "steps", "PHASEWISE_TEST_FILE": "inventory.py"})
    assert "error" not in report, report.get("error")

    def shown_as_they_happened(phase: str, steps: list[dict[str, Any]], where: str) -> None:
        """Each step was in the view right after it came, under the ones before it; and VS Code showed
        them (the last model call's steps at least: the view may open after the first) before the phase
        answered."""
        lines = [_step_line(s) for s in steps]
        at_step = [v for v in report["atStep"] if v["phase"] == phase]
        assert len(at_step) == len(steps) and not any(v["answered"] for v in at_step)
        for i, v in enumerate(at_step):
            assert v["step"] == steps[i]["step"] and "\n\n" + "\n".join(lines[:i + 1]) + "\n\n" in v["text"], v
            assert v["text"].startswith(where)
        seen = [v["text"] for v in report["seen"] if v["phase"] == phase and not v["answered"]]
        assert any("\n\n" + "\n".join(lines) + "\n\n" in text for text in seen), seen

    plan = report["plan"]
    assert plan["result"]["ok"] is True and len(plan["result"]["steps"]) >= 2
    lines = [_step_line(s) for s in plan["result"]["steps"]]
    shown_as_they_happened("plan", plan["result"]["steps"], "# Plan: rename find_item to find_by_sku\n\n")
    # done: the steps stay above the plan in the view; the plan handed on is the plan alone
    assert "\n".join(lines) + "\n\n" + plan["result"]["text"] in plan["text"]
    assert plan["handedOn"] == plan["result"]["text"] and "search_files" not in plan["handedOn"]

    asked = report["asked"]
    code = report["code"]
    steps = code["result"]["steps"]
    tools = [s["tool"] for s in steps]
    assert tools[0] == "search_files" and "read_file" in tools and tools.count("edit_file") >= 2
    lines = [_step_line(s) for s in steps]
    shown_as_they_happened("code", steps, "# code · inventory.py\n\n_inventory.py · e2e-agent/glm-sim")
    # the change waits in a diff, the view beside it with every step; applied, the view says so
    assert asked["question"] and sorted(asked["files"]) == ["inventory.py", "orders.py"]
    assert "\n\n" + "\n".join(lines) + "\n\n" in asked["view"] and asked["rendered"] == asked["view"]
    assert "the change to 2 files is shown for review" in asked["view"].split("\n")[2]
    labels = [t["label"] for t in asked["tabs"]]
    assert any("inventory.py code.md" in label for label in labels), asked["tabs"]
    assert code["result"]["ok"] is True and code["result"]["applied"] is True
    assert code["text"].startswith("# code · inventory.py\n\n_code served by e2e-agent/glm-sim")
    assert "applied, 2 files_" in code["text"].split("\n")[2]
    assert code["text"].endswith("\n".join(lines) + "\n\n" + code["result"]["text"])
    assert "def find_by_sku(" in code["document"] and "find_item" not in code["caller"]
    assert "find_item" not in (folder / "orders.py").read_text(encoding="utf-8")


def _commands_workspace(root: Path, sim: SimulatorThread) -> Path:
    """A workspace whose ``.vscode/settings.json`` adds two commands (``once``, ``never``) to the one in
    the user's settings (``mark``); its plan phase may run all three."""
    folder = root / "shop"
    (folder / ".vscode").mkdir(parents=True)
    (folder / "app.py").write_text("def total(items):\n    return sum(items)\n")
    provider = {"protocol": "openai", "baseUrl": sim.base_url("e2e-agent", "openai"), "requiresKey": False,
                "models": {"glm-sim": {"toolCalling": True}}}
    settings = {"phasewise.commands": {"once": "touch once.txt", "never": "touch never.txt"},
                "phasewise.phases": {"plan": {"model": "e2e-agent/glm-sim",
                                              "agent": {"commands": ["mark", "once", "never"], "maxSteps": 6}}},
                "phasewise.providers": {"e2e-agent": provider}}
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    return folder


def test_user_settings_commands_run_unasked_a_workspaces_are_asked_in_code_server(
        editor_session: Callable[..., Any]) -> None:
    """Issue 22, item 2: ``phasewise.commands`` in the user's settings are declared as theirs
    (``userSettings``) and run unasked; the workspace's are asked about in a notification with the
    server's actions as buttons: allowed once, run; denied, not run (marker files)."""
    report, _, folder = editor_session("commands", trust=True, workspace=_commands_workspace,
                                       settings={"phasewise.commands": {"mark": "touch marker.txt"}},
                                       env={"PHASEWISE_TEST_SCENARIO": "commands"})
    assert "error" not in report, report.get("error")
    questions = report["questions"]
    assert [q["clicked"] for q in questions] == ["Allow once", "Deny"], questions
    for question, line in zip(questions, ["touch once.txt", "touch never.txt"], strict=True):
        assert question["kind"] == "warning" and f"Run `{line}` in shop/?" in question["message"]
        assert question["actions"] == ["Allow once", "Always for this workspace", "Deny"]
    assert (folder / "marker.txt").exists(), "the user's command ran unasked"
    assert (folder / "once.txt").exists(), "the workspace's command allowed once ran"
    assert not (folder / "never.txt").exists(), "the denied command did not run"
    plan = report["plan"]["result"]
    assert plan["ok"] is True
    runs = {s["summary"].split()[1].rstrip(":"): s["ok"] for s in plan["steps"] if s["tool"] == "run_command"}
    assert runs == {"mark": True, "once": True, "never": False}
    assert "denied by the user" in plan["text"]


# Issue 23's VS Code flows: one scripted session (the driver's "flows" scenario), one test per item.

def _flows_workspace(root: Path, sim: SimulatorThread) -> Path:
    """The sample and its caller; plan, code and review on the simulator with no keys needed, a
    review-kind phase of the user's own (``security``), and rate limits that fail at once
    (``retry.maxWaitSeconds`` 1 under the driver's 6 and 8 s retry-afters)."""
    folder = root / "workspace"
    (folder / ".vscode").mkdir(parents=True)
    (folder / "app.py").write_text(DOC)
    (folder / "orders.py").write_text(CALLER)
    providers = {
        "e2e-planner": {"protocol": "anthropic", "baseUrl": sim.base_url("e2e-planner", "anthropic"),
                        "requiresKey": False},
        "e2e-coder": {"protocol": "openai", "baseUrl": sim.base_url("e2e-coder", "openai"), "requiresKey": False},
        "e2e-reviewer": {"protocol": "openai", "baseUrl": sim.base_url("e2e-reviewer", "openai"),
                         "requiresKey": False},
    }
    settings = {
        "phasewise.phases": {
            "plan": {"model": "e2e-planner/claude-sim"},
            "code": {"model": "e2e-coder/glm-sim"},
            "review": {"model": "e2e-reviewer/gpt-sim"},
            "security": {"kind": "review", "model": "e2e-reviewer/gpt-sim"},
        },
        "phasewise.providers": providers,
        "phasewise.retry": {"maxWaitSeconds": 1},
    }
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    return folder


@pytest.fixture(scope="module")
def flows(prerequisites: None, tmp_path_factory: pytest.TempPathFactory, sim: SimulatorThread,
          ) -> Iterator[dict[str, Any]]:
    sim.reset()
    sim.add_fault("anthropic.rate_limit_error", provider="e2e-planner", model="limited-sim", retry_after=6)
    sessions = Sessions(tmp_path_factory.mktemp("flows"), sim)
    try:
        report, _, _ = sessions.run("flows", trust=True, workspace=_flows_workspace,
                                    settings={"workbench.secondarySideBar.defaultVisibility": "hidden"},
                                    env={"PHASEWISE_TEST_SCENARIO": "flows"})
        yield report
    finally:
        sessions.stop()


def test_a_rate_limits_quick_fix_counts_down_in_code_server(flows: dict[str, Any]) -> None:
    """Item 6: "Retry … once the limit lifts" shows its wait as a phase's: a countdown in the
    notification, the plan view waiting, never "receiving the answer…" or "streaming…"."""
    assert "error" not in flows, flows["error"]
    fix = flows["retryFix"]
    assert fix["failed"]["ok"] is False and fix["failed"]["error"]["kind"] == "rate-limit", fix["failed"]
    assert fix["fix"] and "once the limit lifts" in fix["fix"], fix["fixes"]
    waits = [p for p in fix["progress"] if p["state"] == "waiting"]
    assert len(waits) >= 2, fix["progress"]
    assert all(p["title"] == "Phasewise plan: waiting for the rate limit on e2e-planner/limited-sim" for p in waits)
    def seconds(message: str) -> float:
        m = re.fullmatch(r"(\d+) (s|ms) until retry \(at \d\d:\d\d:\d\d\)", message)
        assert m, message
        return int(m[1]) / (1000 if m[2] == "ms" else 1)

    numbers = [seconds(p["message"]) for p in waits]
    assert numbers == sorted(numbers, reverse=True) and numbers[0] > numbers[-1], numbers  # it counts down
    before_answer = [p for p in fix["progress"] if p["title"].startswith("Phasewise plan: waiting")]
    assert not [p for p in before_answer if p["state"] == "streaming"], before_answer
    assert "_app.py · e2e-planner/limited-sim · waiting for the rate limit to lift: retrying in " in (
        fix["viewWhileWaiting"]), fix["viewWhileWaiting"]
    assert "streaming…" not in fix["viewWhileWaiting"]
    assert any(s.startswith("waiting for the rate limit to lift") for s in fix["planStates"]), fix["planStates"]
    assert fix["result"]["ok"] is True, fix["result"]
    assert "_plan served by e2e-planner/limited-sim" in fix["view"], fix["view"]


def test_retry_is_offered_where_the_failure_shows_and_plan_offers_the_instruction_again(
        flows: dict[str, Any]) -> None:
    """Item 10: the failure's notification offers Retry (its countdown cancelled here); Retry Phase is
    in the palette; Plan then offers the last instruction, not an empty box."""
    assert "error" not in flows, flows["error"]
    first = flows["retryFix"]["failureNotices"]
    assert [n["actions"][0] for n in first if n["kind"] == "error"] == ["Retry"], first
    notice = flows["retryNotice"]
    assert notice["queued"], notice
    assert notice["failed"]["error"]["kind"] == "rate-limit", notice["failed"]
    failure = next(n for n in notice["notices"] if n["kind"] == "error")
    assert failure["clicked"] == "Retry" and failure["actions"][0] == "Retry", failure
    assert notice["waiting"] and notice["cancelled"] == 1, notice
    assert notice["cancelNotice"], notice["notices"]
    [asked] = notice["planAsked"]
    assert asked["value"] == "Plan while the limit holds", asked  # the last instruction given, offered again
    assert asked["title"] == "Phasewise plan · e2e-planner/claude-sim", asked
    assert notice["retryOffered"][0] == "plan" and "security" in notice["retryOffered"], notice["retryOffered"]
    package = json.loads((EXT_DIR / "package.json").read_text())
    hidden = [m for m in package["contributes"]["menus"]["commandPalette"] if m["command"] == "phasewise.retry"]
    assert all(m["when"] != "false" for m in hidden), hidden


def test_an_unsent_result_says_nothing_was_sent_in_code_server(flows: dict[str, Any]) -> None:
    """Item 14: a plan refused while the limit still holds sent nothing: its view says so, with no
    "0.0 s, 0 → 0 tokens"."""
    assert "error" not in flows, flows["error"]
    notice = flows["retryNotice"]
    assert notice["unsent"]["ok"] is False and notice["unsent"].get("sent") is False, notice["unsent"]
    view = notice["unsentView"]
    assert "_plan failed by e2e-planner/limited-sim, nothing sent_" in view, view
    assert "0 → 0 tokens" not in view and "0.0 s" not in view, view


def test_a_runs_plan_view_holds_the_plan_only_in_code_server(flows: dict[str, Any]) -> None:
    """Item 7: while the run's code change waits for Apply, the plan's view is finished and holds the
    plan alone; the code phase's answer never goes into it."""
    assert "error" not in flows, flows["error"]
    run = flows["run"]
    assert [(r["phase"], r["ok"]) for r in run["results"]] == [("plan", True), ("code", True), ("review", True)], run
    plan_text = run["results"][0]["text"]
    held = run["held"]
    assert held == run["rendered"], run  # VS Code showed what the extension held
    assert "SEARCH" not in held and "REPLACE" not in held and "streaming…" not in held, held
    assert held.endswith(plan_text), held
    assert "plan ok (e2e-planner/claude-sim)" in held.split("\n")[2], held
    assert run["after"].endswith(plan_text) and "_plan served by e2e-planner/claude-sim" in run["after"], run["after"]


def test_run_phase_with_a_phase_of_the_users_own_names_it_in_code_server(flows: dict[str, Any]) -> None:
    """Item 8: Run Phase with ``security`` (a review of the user's own) asks under its name and route,
    shows its findings, and Compare offers every phase."""
    assert "error" not in flows, flows["error"]
    own = flows["ownPhase"]
    assert own["picked"][:4] == ["plan", "code", "review", "security"], own["picked"]
    [asked] = own["asked"]
    assert asked["title"] == "Phasewise security · e2e-reviewer/gpt-sim", asked
    assert own["result"]["ok"] and own["result"]["phase"] == "security", own["result"]
    assert own["diagnostics"] and all(d["source"].startswith("phasewise-") for d in own["diagnostics"]), own
    assert "security" in own["compareOffered"], own["compareOffered"]


def test_settings_typed_wrong_raise_no_toast_and_mark_their_phase_in_code_server(flows: dict[str, Any]) -> None:
    """Item 11: in-between values of ``phases.code.model`` raise no notification; the code item names its
    problem, the other phases' items stay as they were; once fixed, none is marked."""
    assert "error" not in flows, flows["error"]
    settings = flows["settings"]
    assert not [n for n in settings["notices"] if "settings" in n["message"].lower()], settings["notices"]
    items = {i["phase"]: i for i in settings["items"]}
    assert items["code"]["painted"] and "no route" not in items["code"]["text"], items["code"]
    assert items["code"]["text"].startswith("$(error) code: "), items["code"]
    assert "phasewise.phases.code.model" in items["code"]["tooltip"], items["code"]
    assert not any(items[p]["painted"] for p in ("plan", "review", "security")), items
    assert settings["restored"] and not any(i["painted"] for i in settings["restored"]), settings["restored"]
    # ... and settings.json says it at the key, among its own diagnostics
    [problem] = [d for d in settings["diagnostics"] if d.get("source") == "phasewise-settings"]  # (and VS Code's
    # own schema check, for a value the schema can tell is wrong)
    assert problem["source"] == "phasewise-settings" and problem["message"].startswith("phasewise.phases.code.model: ")
    assert '"model"' in settings["settingsText"].splitlines()[problem["line"]], problem
    assert not [d for d in settings["clearedDiagnostics"] if d.startswith("phasewise.")], settings


def test_verify_report_fits_half_a_screen_in_code_server(flows: dict[str, Any]) -> None:
    """Item 14: Verify's report is headings and short lines, no six-column table."""
    assert "error" not in flows, flows["error"]
    document = flows["verify"]
    shown = document.split("<details>")[0]
    assert "## ✓ e2e-planner" in shown and "## Phases" in shown, shown
    assert not [line for line in shown.splitlines() if line.startswith("|")], shown
