"""Screenshots of what a VS Code user sees, taken from code-server: ``docs/screenshots/*.png``.

    .venv/bin/python editors/vscode/test/screenshots.py [--out docs/screenshots]

Starts the provider simulator (in this process, slowed down so streaming and countdowns can be
seen), a workspace routed to it (plan on a model whose first answer is a rate limit with a
retry-after, code on a model that needs no key, review on one whose key is missing), code-server
with the packed extension (``editors/vscode/phasewise.vsix``; not the test driver), then
``screenshots.mjs``: puppeteer-core driving Debian's Chromium through the palette as a user would.
Needs what ``.ci/setup.d/10-vscode.sh`` installs (``PHASEWISE_VSCODE_CACHE`` says where);
puppeteer-core is installed from npm into ``.ci/.cache/screenshots`` on first use. Not run in CI:
rerun it when the UI changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # the tests' sample documents

from tests.helpers import SAMPLE_CALLER, SAMPLE_DOC  # noqa: E402

from phasewise.sim import SimulatorThread  # noqa: E402

EXT_DIR = ROOT / "editors" / "vscode"
VSIX = EXT_DIR / "phasewise.vsix"
CACHE = Path(os.environ.get("PHASEWISE_VSCODE_CACHE", ROOT / ".ci" / ".cache" / "vscode"))
NODE = CACHE / "node24" / "node_modules" / "node" / "bin" / "node"
CODE_SERVER = CACHE / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
PUPPETEER = ROOT / ".ci" / ".cache" / "screenshots"
PUPPETEER_VERSION = "25"
RATE_LIMIT_SECONDS = 15

# the editor tests' sample module (as app.py) and its caller (orders.py)
DOC, CALLER = SAMPLE_DOC, SAMPLE_CALLER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need() -> None:
    missing = [str(p) for p in (NODE, CODE_SERVER, VSIX) if not p.exists()]
    if not shutil.which("chromium"):
        missing.append("chromium")
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (run: bash .ci/setup.d/10-vscode.sh)")
    if not (PUPPETEER / "node_modules" / "puppeteer-core").exists():
        subprocess.run(["npm", "install", "--prefix", str(PUPPETEER), "--no-save", "--no-fund", "--no-audit",
                        "--loglevel=error", f"puppeteer-core@{PUPPETEER_VERSION}"], check=True)


def _workspace(root: Path, sim: SimulatorThread) -> Path:
    folder = root / "workspace"
    (folder / ".vscode").mkdir(parents=True)
    (folder / "app.py").write_text(DOC)
    (folder / "orders.py").write_text(CALLER)  # a caller of app.load, not open: the rename changes it too
    settings = {
        "phasewise.phases": {
            "plan": {"model": "sim-planner/claude-sim"},
            "code": {"model": "sim-coder/gpt-sim", "agent": True},  # it works in steps: its view lists them
            "review": {"model": "sim-reviewer/glm-sim"},
        },
        "phasewise.providers": {
            "sim-planner": {"protocol": "anthropic", "baseUrl": sim.base_url("sim-planner", "anthropic"),
                            "requiresKey": False},
            "sim-coder": {"protocol": "openai", "baseUrl": sim.base_url("sim-coder", "openai"), "requiresKey": False,
                          "models": {"gpt-sim": {"toolCalling": True}}},
            "sim-reviewer": {"protocol": "openai", "baseUrl": sim.base_url("sim-reviewer", "openai"),
                             "apiKeyEnv": "REVIEWER_API_KEY"},
        },
    }
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    subprocess.run(["git", "init", "-q", str(folder)], check=True)  # the code agent searches it with git grep
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    _need()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phasewise-shots-") as tmp, \
            SimulatorThread(first_token_ms=400, chunk_interval_ms=60) as sim:
        home = Path(tmp)
        # the first plan waits out a rate limit (screenshots.mjs queues the next one through /_sim/faults)
        sim.add_fault("anthropic.rate_limit_error", provider="sim-planner", retry_after=RATE_LIMIT_SECONDS)
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
        env.update({f"XDG_{d}_HOME": str(home / f"xdg-{d.lower()}") for d in ("CONFIG", "DATA", "CACHE", "STATE")})
        env["PATH"] = f"{NODE.parent}{os.pathsep}{env.get('PATH', '')}"
        user_data, extensions = home / "user-data", home / "extensions"
        base = [str(NODE), str(CODE_SERVER), "--user-data-dir", str(user_data), "--extensions-dir", str(extensions),
                "--disable-telemetry", "--disable-update-check"]
        config = home / "config.yaml"
        config.write_text("auth: none\n")
        base[2:2] = ["--config", str(config)]
        subprocess.run([*base, "--install-extension", str(VSIX)], env=env, check=True, capture_output=True)
        settings = {
            "phasewise.server.pythonPath": sys.executable,
            "workbench.startupEditor": "none", "workbench.tips.enabled": False, "telemetry.telemetryLevel": "off",
            "extensions.autoUpdate": False, "update.mode": "none", "chat.disableAIFeatures": True,
            "workbench.colorTheme": "Default Dark Modern", "window.commandCenter": False,
            "workbench.secondarySideBar.defaultVisibility": "hidden",
        }
        for scope in ("User", "Machine"):
            (user_data / scope).mkdir(parents=True, exist_ok=True)
            (user_data / scope / "settings.json").write_text(json.dumps(settings, indent=2))
        folder = _workspace(home, sim)
        port = _free_port()
        log = (home / "code-server.log").open("wb")
        server = subprocess.Popen([*base, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}",
                                   "--disable-workspace-trust", str(folder)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit(f"code-server did not start; log: {home / 'code-server.log'}")
                    time.sleep(0.2)
            shot_env = {**env, "PUPPETEER_PREFIX": str(PUPPETEER), "CHROMIUM": shutil.which("chromium") or "",
                        "RATE_LIMIT_SECONDS": str(RATE_LIMIT_SECONDS),
                        "SIM_FAULTS_URL": f"{sim.url.rstrip('/')}/_sim/faults"}
            done = subprocess.run([str(NODE), str(Path(__file__).with_name("screenshots.mjs")),
                                   f"http://127.0.0.1:{port}/?folder={folder}", str(args.out)], env=shot_env,
                                  check=False)
            return done.returncode
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
