#!/usr/bin/env bash
# Multi-GPU check for a machine with CUDA (a few minutes, under 8): installs the project, then
# `python -m bench.gpu_check`, which trains the toy model and the kitchen head on backbone
# features with 1 process and with torchrun over every GPU (bf16 autocast), and prints
# throughput, memory and MCC (bench/gpu_check.py says what each figure is).
#   bash bench/gpu_check.sh                        # writes $OUT/gpu_check.json, else ./gpu_check.json
#   bash bench/gpu_check.sh --write-docs           # also docs/results.md ("gpu-check" markers)
#   bash bench/gpu_check.sh --device cpu --quick   # the smoke test, no GPU needed
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
cpu=0 previous=
for arg in "$@"; do
  [[ $arg == --device=cpu || ($previous == --device && $arg == cpu) ]] && cpu=1
  previous=$arg
done
if [[ $cpu == 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }
  "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || "$PY" -m pip install -q torch
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
fi
"$PY" -m pip install -q -e . >/dev/null
exec "$PY" -m bench.gpu_check "$@"
