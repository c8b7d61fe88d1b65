#!/usr/bin/env bash
# The next step for the real-photo targets on a CUDA machine (about 10 minutes on one GPU):
# the whole EfficientNet-Lite0 fine-tuned on the kitchen photos from its ImageNet weights,
# with the encoder head, the Jacobian term off and on (rows 11 and 12 of bench/kitchen.py's
# BACKBONE_ROWS), 3 seeds, into the kitchen backbone table of docs/results.md. On this
# project's 2-core CPU one epoch at 128 px takes about 35 minutes (bench/finetune_steps.py),
# so these rows are GPU-only.
#   bash bench/gpu_finetune.sh              # the table, and each run's figures under $OUT
#   SEEDS=1 ROWS=11 bash bench/gpu_finetune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || "$PY" -m pip install -q torch
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
"$PY" -m pip install -q -e . >/dev/null
[[ -f data/kitchen/dataset.json ]] || "$PY" -m ivae data kitchen --out data/kitchen --seed 0
# shellcheck disable=SC2086  # ROWS is a list of row numbers
"$PY" -m bench.kitchen --backbone-rows --rows ${ROWS:-11 12} --seeds "${SEEDS:-3}" --threads 8
dest=${OUT:-.}/gpu_finetune  # what comes back: the table and each run's record
mkdir -p "$dest"
cp docs/results.md "$dest/"
for run in runs/bench-kitchen/*finetuned-whole*; do
  [[ -f $run/metrics.json ]] || continue
  mkdir -p "$dest/$(basename "$run")"
  cp "$run"/{metrics.json,history.csv,config.json} "$dest/$(basename "$run")/"
done
