#!/usr/bin/env bash
# The next step for the real-photo targets on a CUDA machine: the whole EfficientNet-Lite0
# fine-tuned on the kitchen photos from its ImageNet weights, with the encoder head: row 11
# of bench/kitchen.py's BACKBONE_ROWS (the Jacobian term off), then row 12 (on), 3 seeds each,
# into the kitchen backbone table of docs/results.md. On this project's 2-core CPU an epoch
# at 128 px takes about 35 minutes (bench/finetune_steps.py), so these rows are GPU-only.
#
# Training stops after BUDGET seconds (default 540) wherever it is; a run cut short resumes
# from its last.pt when the script runs again on the same machine, and finished runs are kept.
# Whatever finished is tabulated, and the table and each run's record are copied under $OUT.
#   bash bench/gpu_finetune.sh
#   SEEDS=1 ROWS=11 BUDGET=300 bash bench/gpu_finetune.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || "$PY" -m pip install -q torch
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'" || exit 1
"$PY" -m pip install -q -e . >/dev/null || exit 1
[[ -f data/kitchen/dataset.json ]] || "$PY" -m ivae data kitchen --out data/kitchen --seed 0 || exit 1
seeds=${SEEDS:-3} rows=${ROWS:-11 12}
# shellcheck disable=SC2086  # rows is a list of row numbers
timeout "${BUDGET:-540}" "$PY" -m bench.kitchen --backbone-rows --rows $rows --seeds "$seeds" \
  --threads 8
echo "training: exit status $? (124: the budget ran out)"
# shellcheck disable=SC2086
"$PY" -m bench.kitchen --backbone-rows --rows $rows --seeds "$seeds" --threads 8 --report-only
dest=${OUT:-.}/gpu_finetune
mkdir -p "$dest"
cp docs/results.md "$dest/"
for run in runs/bench-kitchen/*finetuned-whole*; do
  [[ -f $run/metrics.json ]] || continue
  mkdir -p "$dest/$(basename "$run")"
  cp "$run"/{metrics.json,history.csv,config.json} "$dest/$(basename "$run")/"
done
ls "$dest"
