"""The one version of Phasewise, written everywhere it must appear.

``server/phasewise/__init__.py``'s ``__version__`` is the source (the package's metadata reads it);
the editor plugins carry a copy each, because their package managers read it from their own files.
``python scripts/set_version.py 0.2.0`` writes a new version into all of them;
``python scripts/set_version.py`` prints where each copy stands. ``tests/test_versions.py`` checks
that they all agree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# file → the pattern around the version (group 1 before it, group 2 the version, group 3 after it)
PLACES: dict[str, re.Pattern[str]] = {
    "server/phasewise/__init__.py": re.compile(r'^(__version__ = ")([^"]+)(")$', re.M),
    "editors/vscode/package.json": re.compile(r'^(  "version": ")([^"]+)(",)$', re.M),
    # the lock file names the package's version twice (top level and its "" package)
    "editors/vscode/package-lock.json": re.compile(r'("name": "phasewise",\n\s*"version": ")([^"]+)(")'),
    "editors/nvim/lua/phasewise/init.lua": re.compile(r'^(M\.version = ")([^"]+)(")$', re.M),
    "editors/emacs/phasewise-eglot.el": re.compile(r"^(;; Version: )(\S+)()$", re.M),
    "editors/nvim/mason/package.yaml": re.compile(r"^(  id: pkg:pypi/phasewise@)(\S+)()$", re.M),
}
SOURCE = "server/phasewise/__init__.py"
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?$")  # PEP 440, as npm and package.el read it too


def versions(root: Path = ROOT) -> dict[str, list[str]]:
    """Every copy of the version, by file (a file whose pattern is not found has none)."""
    return {rel: [m.group(2) for m in pattern.finditer((root / rel).read_text(encoding="utf-8"))]
            for rel, pattern in PLACES.items()}


def set_version(version: str, root: Path = ROOT) -> None:
    if not VERSION.match(version):
        raise SystemExit(f"not a version: {version!r} (expected e.g. 0.2.0, 0.2.0rc1)")
    for rel, pattern in PLACES.items():
        path = root / rel
        text = path.read_text(encoding="utf-8")
        new, count = pattern.subn(lambda m: m.group(1) + version + m.group(3), text)
        if not count:
            raise SystemExit(f"{rel}: no version found where expected ({pattern.pattern})")
        path.write_text(new, encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv:
        set_version(argv[0])
    for rel, found in versions().items():
        print(f"{', '.join(found) or 'none':<12} {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
