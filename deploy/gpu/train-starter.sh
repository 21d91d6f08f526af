#!/usr/bin/env bash
# Train starter v2 (the joint recipe) on a GPU machine that has torch and transformers but not this project
# installed, e.g. a lent accelerator. Then, on your machine, put the results in WORK/joint and run
# `chatir starter build --work WORK` to export them into the package (see docs/starter-model.md).
#
#   bash deploy/gpu/train-starter.sh OUT_DIR [full|quick|tiny] [TIME_BUDGET_S]
#
# Needs beside the repo (both git-ignored): .carry/minilm (all-MiniLM-L6-v2: config, tokenizer, weights; fp16
# is fine) unless TEXT_BASE names another copy, and .whl/*.whl for Python packages the machine lacks
# (pydantic, pydantic-settings and their needs). The trained weights are also written in two pieces
# (trained-vision / trained-text .safetensors), each small enough for size-limited transfers.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:?usage: train-starter.sh OUT_DIR [full|quick|tiny] [TIME_BUDGET_S]}
SIZE=${2:-full}
BUDGET=${3:-420}
PY=${PYTHON:-python3}
if ! "$PY" -c "import pydantic, pydantic_settings" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
"$PY" -m training.joint "$OUT_DIR" --size "$SIZE" --device "${DEVICE:-auto}" \
  --text-base "${TEXT_BASE:-.carry/minilm}" --time-budget "$BUDGET" ${WORKERS:+--workers "$WORKERS"}
"$PY" - "$OUT_DIR" <<'PYEOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
out = Path(sys.argv[1])
state = load_file(out / "trained.safetensors")
text = {k: v for k, v in state.items() if k.startswith("text_model.")}
save_file(text, out / "trained-text.safetensors")
save_file({k: v for k, v in state.items() if k not in text}, out / "trained-vision.safetensors")
print("split", len(text), len(state) - len(text))
PYEOF
