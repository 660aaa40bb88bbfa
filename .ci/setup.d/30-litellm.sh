#!/usr/bin/env bash
# A real LiteLLM proxy for tests/test_litellm.py (a gateway in front of any phase).
# LiteLLM pins openai 2.x, so it gets a venv of its own: .ci/.cache/litellm-venv.
# Idempotent (a marker records what was installed) and quiet; a failed install only warns:
# the gateway test then skips, naming this script.
set -euo pipefail
cd "$(dirname "$0")/../.."

SPEC=${PHASEWISE_LITELLM_SPEC:-"litellm[proxy]==1.106.2"}
VENV=.ci/.cache/litellm-venv
MARKER=$VENV/.phasewise-installed
PY=${PYTHON:-python3}

if [ -x "$VENV/bin/litellm" ] && [ "$(cat "$MARKER" 2>/dev/null)" = "$SPEC" ]; then
  echo "litellm proxy already installed: $SPEC"
  exit 0
fi

mkdir -p .ci/.cache
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" >/dev/null; then
  echo "warning: cannot create $VENV (the LiteLLM test will skip)" >&2
  exit 0
fi
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SPEC" </dev/null >"$VENV/install.log" 2>&1; then
  echo "warning: installing $SPEC failed, see $VENV/install.log (the LiteLLM test will skip)" >&2
  rm -f "$VENV/bin/litellm"
  exit 0
fi
echo "$SPEC" >"$MARKER"
echo "litellm proxy installed: $SPEC"
