"""One version for the server and every editor plugin (issue 24, item 6).

``phasewise.__version__`` is the source; the VS Code extension, the Neovim plugin, the Emacs
package and the mason entry carry copies that their own package managers read.
``scripts/set_version.py`` writes them all; these tests check that they agree, that the copies are
where that script looks for them, and that the Emacs file has the headers package.el reads.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import phasewise
from tests.helpers import ROOT


def _set_version() -> ModuleType:
    spec = importlib.util.spec_from_file_location("set_version", ROOT / "scripts" / "set_version.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_copy_of_the_version_is_the_servers() -> None:
    found = _set_version().versions()
    expected = phasewise.__version__
    wrong = {rel: copies for rel, copies in found.items() if not copies or set(copies) != {expected}}
    assert not wrong, f"versions other than {expected} (run `python scripts/set_version.py {expected}`): {wrong}"
    assert len(found["editors/vscode/package-lock.json"]) == 2
    # the parsed files agree with the patterns
    assert json.loads((ROOT / "editors/vscode/package.json").read_text())["version"] == expected
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "phasewise.__version__"}


def test_set_version_writes_every_copy(tmp_path: Path) -> None:
    module = _set_version()
    for rel in module.PLACES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    module.set_version("9.8.7rc1", root=tmp_path)
    assert module.versions(tmp_path) == {rel: ["9.8.7rc1"] * len(copies)
                                         for rel, copies in module.versions().items()}
    package = json.loads((tmp_path / "editors/vscode/package.json").read_text())
    assert package["version"] == "9.8.7rc1" and package["name"] == "phasewise"
    with pytest.raises(SystemExit, match="not a version"):
        module.set_version("v1", root=tmp_path)


def test_the_changelog_has_an_entry_for_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert f"## [{phasewise.__version__}]" in text


EMACS = shutil.which("emacs")


@pytest.mark.editor
@pytest.mark.skipif(EMACS is None, reason="no emacs (.ci/setup.d/20-emacs.sh installs it)")
def test_emacs_package_headers_are_what_package_el_reads() -> None:
    """package-vc-install and use-package :vc install the file as a package: package.el must read
    its name, summary, version, requirements and URL (``package-buffer-info``)."""
    el = ROOT / "editors" / "emacs" / "phasewise-eglot.el"
    probe = f"""(progn (require 'package) (require 'lisp-mnt)
      (with-temp-buffer
        (insert-file-contents "{el}")
        (let ((desc (package-buffer-info)))
          (princ (json-encode
                  (list (cons "name" (symbol-name (package-desc-name desc)))
                        (cons "summary" (package-desc-summary desc))
                        (cons "version" (package-version-join (package-desc-version desc)))
                        (cons "requires" (vconcat (mapcar (lambda (r) (vector (symbol-name (car r))
                                                                              (package-version-join (cadr r))))
                                                           (package-desc-reqs desc))))
                        (cons "url" (alist-get :url (package-desc-extras desc)))
                        (cons "lexical" (with-current-buffer (current-buffer)
                                          (goto-char (point-min))
                                          (and (re-search-forward "-\\\\*-.*lexical-binding: *t" (line-end-position) t)
                                               t))))))))))"""
    assert EMACS is not None
    done = subprocess.run([EMACS, "-Q", "--batch", "--eval", probe], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["name"] == "phasewise-eglot"
    assert info["summary"] == "Phasewise through Eglot"
    assert info["version"] == phasewise.__version__
    assert ["emacs", "28.1"] in info["requires"] and any(name == "eglot" for name, _ in info["requires"])
    assert info["url"] == "https://github.com/phasewise/phasewise"
    assert info["lexical"] is True
    lines = el.read_text(encoding="utf-8").rstrip("\n").splitlines()
    assert lines[0].startswith(";;; phasewise-eglot.el --- ") and lines[-1] == ";;; phasewise-eglot.el ends here"
