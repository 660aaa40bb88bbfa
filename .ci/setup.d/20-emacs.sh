#!/usr/bin/env bash
# Emacs (emacs-nox), Eglot and lsp-mode for tests/editors/test_emacs.py. Idempotent: installs only
# what is missing; needs root (CI) or passwordless sudo, and never reads stdin.
set -euo pipefail

# Eglot is built in from Emacs 29; Debian's elpa-eglot lives in /usr/share/emacs/site-lisp/elpa,
# which `emacs -Q` leaves out of the package path unless told (the test does the same).
have_eglot() {
  command -v emacs >/dev/null 2>&1 &&
    emacs -Q --batch --eval "(progn (require 'package)
      (add-to-list 'package-directory-list \"/usr/share/emacs/site-lisp/elpa\")
      (package-initialize) (kill-emacs (if (and (locate-library \"eglot\") (locate-library \"lsp-mode\")) 0 1)))" \
      >/dev/null 2>&1
}

if have_eglot; then
  echo "emacs, eglot and lsp-mode already present: $(emacs --version | head -1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "skipping Emacs set-up: not root and no passwordless sudo (the Emacs test will skip)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "skipping Emacs set-up: no apt-get here (the Emacs test will skip)" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq emacs-nox elpa-eglot elpa-lsp-mode >/dev/null; } </dev/null; then
  echo "warning: installing emacs-nox, elpa-eglot and elpa-lsp-mode failed (the Emacs tests will skip)" >&2
  exit 0
fi
emacs --version | head -1
