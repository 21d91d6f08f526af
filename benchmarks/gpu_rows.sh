#!/usr/bin/env bash
# The GPU rows of docs/performance.md (issue #15, goal 6) in one short run: turn latency and indexing images/s
# for BLIP-base- and CLIP-B/16-sized models (random weights, the real architectures) in float32, float16 and
# bfloat16. About 5 minutes on one H100/H200 (most of it writing the photos and building the 100K store).
#
#   bash deploy/setup.sh                 # on the GPU machine: picks a CUDA torch when nvidia-smi works
#   bash benchmarks/gpu_rows.sh [OUT]    # tables in OUT (default: gpu-rows/)
#
# DEVICE, TURNS, IMAGES and CORPUS override the sizes (DEVICE=cpu TURNS=2 IMAGES=8 CORPUS=2000 tries the
# script on a CPU in about 5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-gpu-rows}"
PY="${PYTHON:-.venv/bin/python}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

if [ "$DEVICE" != "cpu" ]; then
  nvidia-smi | tee "$OUT_DIR/nvidia-smi.txt"
fi
"$PY" benchmarks/turn.py --device "$DEVICE" --models blip-base,clip-b16 --variants fp32,fp16,bf16 \
  --turns "${TURNS:-50}" --corpus "${CORPUS:-100000}" 2>&1 | tee "$OUT_DIR/turn.md"
"$PY" benchmarks/index.py --device "$DEVICE" --dtypes float32,float16,bfloat16 --models clip-b16,blip-base \
  --images "${IMAGES:-1000}" --variants bare,pipeline 2>&1 | tee "$OUT_DIR/index.md"
echo "tables in $OUT_DIR/"
