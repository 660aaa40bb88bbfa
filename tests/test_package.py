"""The package as a user gets it: `python -m build`, the wheel installed in a fresh virtual
environment outside the repository, then `phasewise --version` and `phasewise demo` run from there.

The sdist is built first and the wheel from it (what `python -m build` does), so a file missing
from either fails here. Dependencies come from the package index through pip's cache; nothing of
the repository is importable in the new environment, and the commands run with their working
directory outside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest

import phasewise

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _clean_env(tmp: Path) -> dict[str, str]:
    """The user's environment without this repository's virtual environment or sources, and with the
    run record, caches and settings in ``tmp``; no provider keys (the demo needs none)."""
    venv = os.environ.get("VIRTUAL_ENV")
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PHASEWISE_SIM_URL")
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(ROOT) and not (venv and p.startswith(venv))]
    env["PATH"] = os.pathsep.join(path)
    env.update(PHASEWISE_LEDGER=str(tmp / "runs.jsonl"), XDG_CACHE_HOME=str(tmp / "cache"),
               XDG_STATE_HOME=str(tmp / "state"), PHASEWISE_USER_SETTINGS=str(tmp / "no-user-settings.json"),
               PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", COLUMNS="120")
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``'s sdist and wheel, in a folder outside the repository."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A fresh virtual environment outside the repository with the wheel installed: its bin folder,
    a working directory outside the repository, and the environment to run in."""
    home = tmp_path_factory.mktemp("user")
    assert not home.resolve().is_relative_to(ROOT)
    env = _clean_env(home)
    venv = home / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=home, env=env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    (wheel,) = dist.glob("phasewise-*.whl")
    # pip's own cache and index settings (the user's) stay; --no-compile: the demo compiles what it imports
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
          str(wheel)], cwd=home, env=env, timeout=600)
    work = home / "work"
    work.mkdir()
    yield bin_dir, work, env


def test_wheel_and_sdist_carry_metadata_and_the_demo_files(dist: Path) -> None:
    (wheel,) = dist.glob(f"phasewise-{phasewise.__version__}-py3-none-any.whl")
    (sdist,) = dist.glob(f"phasewise-{phasewise.__version__}.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"phasewise-{phasewise.__version__}.dist-info"
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    examples = {f"phasewise/examples/{n}" for n in ("inventory.py", "orders.py", "test_orders.py")}
    assert examples <= names, "the demo's example project is missing from the wheel"
    assert {"phasewise/py.typed", f"{info}/licenses/LICENSE"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert meta["Name"] == "phasewise" and meta["Version"] == phasewise.__version__
    assert meta["License-Expression"] == "MIT" and meta["Requires-Python"]
    assert meta["Summary"] and meta["Description-Content-Type"] == "text/markdown" and meta.get_payload().strip()
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and any(c.startswith("Development Status") for c in classifiers)
    assert "phasewise = phasewise.cli:main" in entry_points
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
            "server/phasewise/examples/inventory.py"} <= members


def test_installed_wheel_runs_the_demo_outside_the_repository(installed: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, work, env = installed
    exe = str(bin_dir / "phasewise")
    where = _run([str(bin_dir / "python"), "-c", "import phasewise; print(phasewise.__file__)"], cwd=work, env=env)
    assert not Path(where.stdout.strip()).resolve().is_relative_to(ROOT), where.stdout
    version = _run([exe, "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"phasewise {phasewise.__version__}"
    done = _run([exe, "demo", "--json"], cwd=work, env=env, timeout=300)
    out = json.loads(done.stdout)
    assert out["ok"] is True and out["simulated"] is True
    assert [p["phase"] for p in out["phases"]] == ["plan", "code", "review"]
    assert out["editsApplied"] == 1 and out["findings"]
    # the demo edited its copy in a temporary folder, not anything under the working directory
    assert not Path(out["file"]).resolve().is_relative_to(ROOT)
    assert (Path(env["PHASEWISE_LEDGER"])).exists()
