"""The files of a workspace folder, as the context gathering sees them: ``git ls-files`` (cached,
untracked, not ignored) with git's own fsmonitor hook off, else a walk that honours ``.gitignore``
through ``pathspec`` when it is installed. The session's ``WorkspaceIndex`` (``phases.index``) reuses
a list for ``LISTING_TTL`` seconds unless git's index changed. Folders such as ``.git``,
``node_modules`` and virtual environments are never listed."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path
from typing import Any

MAX_LIST = 200_000
SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", "dist", "build", ".mypy_cache",
                       ".ruff_cache", ".pytest_cache", ".tox", "target", ".idea", ".vscode", "site-packages"})
LISTING_TTL = 10.0  # seconds a folder's list is reused (by the session's index)


def list_folder(folder: Path) -> list[str]:
    """The folder's files, workspace-relative, as git sees them (or a walk honouring ``.gitignore``)."""
    try:
        done = subprocess.run(
            # core.fsmonitor off: a repository's own config must not make listing its files run a hook
            ["git", "-c", "core.fsmonitor=false", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, timeout=20, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0:
        names = [n for n in done.stdout.decode("utf-8", "replace").split("\0") if n]
        return [n for n in names if not (set(n.split("/")[:-1]) & SKIP_DIRS)][:MAX_LIST]
    ignore = _gitignore(folder)
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        base = Path(root).relative_to(folder).as_posix()
        for name in files:
            rel = name if base == "." else f"{base}/{name}"
            if ignore is None or not ignore(rel):
                out.append(rel)
        if len(out) >= MAX_LIST:
            break
    return sorted(out)


def _gitignore(folder: Path) -> Any:
    """A matcher of the folder's top-level ``.gitignore`` (pathspec when installed), or None."""
    path = folder / ".gitignore"
    if not path.exists():
        return None
    try:
        import pathspec
    except ImportError:
        patterns = [ln.strip().rstrip("/") for ln in path.read_text("utf-8", "replace").splitlines()
                    if ln.strip() and not ln.startswith(("#", "!"))]
        return lambda rel: any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], p)
                               or rel.startswith(p + "/") for p in patterns)
    lines = path.read_text("utf-8", "replace").splitlines()
    spec: Any
    try:
        spec = pathspec.PathSpec.from_lines("gitignore", lines)
    except (KeyError, LookupError):  # pathspec before 0.12 names it gitwildmatch
        spec = pathspec.PathSpec.from_lines("gitwildmatch", lines)
    return spec.match_file
