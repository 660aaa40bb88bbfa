#!/usr/bin/env bash
# Vim 9 and ALE (Debian's vim and vim-ale) for tests/editors/test_vim_ale.py: a generic LSP
# client with no Phasewise plugin. Idempotent: installs only what is missing; needs root (CI) or
# passwordless sudo, and never reads stdin. tmux gives Vim a terminal to draw its screen in.
set -euo pipefail

have_ale() {
  command -v vim >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 &&
    [ -f /usr/share/vim/vimfiles/pack/dist-bundle/opt/ale/autoload/ale/codefix.vim ]
}

if have_ale; then
  echo "vim, tmux and ALE already present: $(vim --version | head -1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "skipping Vim/ALE set-up: not root and no passwordless sudo (the ALE test will skip)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "skipping Vim/ALE set-up: no apt-get here (the ALE test will skip)" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq vim vim-ale tmux >/dev/null; } </dev/null; then
  echo "warning: installing vim, vim-ale and tmux failed (the ALE test will skip)" >&2
  exit 0
fi
vim --version | head -1
