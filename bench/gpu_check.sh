#!/usr/bin/env bash
# GPU check for a machine with CUDA (under 8 minutes): installs the project, trains on the
# GPU and reports throughput next to the CPU, side by side in one run.
#   bash bench/gpu_check.sh            # writes gpu_check.json (and $OUT/gpu_check.json if set)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'" 2>/dev/null \
  || "$PY" -m pip install -q torch
"$PY" -m pip install -q -e . >/dev/null
work=$(mktemp -d)
"$PY" -m ivae data toy --out "$work/toy.npz" >/dev/null
"$PY" -m ivae data kitchen --out "$work/kitchen" --n 4000 --image-size 64 >/dev/null
"$PY" - "$work" <<'PY'
import json, os, sys, time
import torch
from ivae.data import load_dataset
from ivae.train import TrainConfig, train

work = sys.argv[1]
rows = []
for name, path, k, epochs in (("toy", f"{work}/toy.npz", 5, 20), ("kitchen", f"{work}/kitchen", 4, 5)):
    data = load_dataset(path)
    n_train = int((data.split == "train").sum())
    for device in ("cuda", "cpu"):
        if device == "cpu" and name == "kitchen":
            epochs = 1  # the CPU reference: one epoch is enough for a throughput figure
        start = time.perf_counter()
        metrics = train(data, f"{work}/run-{name}-{device}", "implicit-ivae", {"latent_dim": k},
                        TrainConfig(epochs=epochs, batch_size=256, device=device), progress=False)
        seconds = time.perf_counter() - start
        rows.append({"data": name, "device": device, "epochs": epochs,
                     "items_per_second": round(n_train * epochs / metrics["train_seconds"], 1),
                     "wall_seconds": round(seconds, 1), "test_mcc": metrics["mcc"]})
        print(rows[-1], flush=True)
report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "runs": rows}
for folder in (".", os.environ.get("OUT")):
    if folder:
        with open(os.path.join(folder, "gpu_check.json"), "w") as f:
            json.dump(report, f, indent=2)
print(json.dumps(report, indent=2))
PY
