#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the project, its tests' tools and a torch build
# that fits the machine. Safe to re-run.
#   bash deploy/setup.sh            # CPU torch unless an NVIDIA GPU is present
#   TORCH_SPEC="torch==2.13.0" bash deploy/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U pip

# torch first and pinned: an unpinned torch on a CPU machine pulls several GB of CUDA wheels.
if [ -z "${TORCH_SPEC:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    TORCH_SPEC="torch"          # the default (CUDA) build
  else
    TORCH_SPEC="torch==2.13.0"  # CPU build
  fi
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "installing $TORCH_SPEC ..."
  "${PIP[@]}" install "$TORCH_SPEC"
fi

echo "installing the project and its test tools ..."
"${PIP[@]}" install -e ".[test]"
if [ ! -x /usr/bin/chromium ]; then
  echo "note: Chromium is not installed, so the web chat's browser test will be skipped;" \
       "install it with: apt-get install chromium (.ci/run does)"
fi
echo "ready: . $VENV/bin/activate && chatir --help"
