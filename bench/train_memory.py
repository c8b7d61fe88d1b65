"""Peak memory of one training epoch at 20k and 200k items: is it flat in the data size?

The data are vectors shaped like the backbone feature cache a photo run trains its head on
(F = 1280 float32 features per item, 5 KB; 200k items = 1 GB), stored as ``.npy`` and
memory-mapped, so the trainer's loader (ivae/loader.py) streams the train split from disk. The
same model (the implicit iVAE's network encoder, one epoch) trains at each size in a child
process; its peak resident size is the kernel's ``VmHWM`` (not ``ru_maxrss``, which Linux
carries over from the spawning process, here the one that wrote the data). For comparison the
same run with the array read into memory first (what the trainer held before the loader).

Vectors, not photos: decoding 200k kitchen photos takes hours on this machine's two cores.

    .venv/bin/python -m bench.train_memory [--sizes 20000 200000] [--features 1280]

Writes a table into docs/results.md between the ``train-memory`` markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, command, load_average, write_section

TARGET_RATIO = 1.3
CHILD = """
import json, resource, sys, time
import numpy as np
from ivae.data.dataset import Dataset
from ivae.train import TrainConfig, train

folder, mode, out = sys.argv[1:4]
x = np.load(folder + "/x.npy", mmap_mode="r" if mode == "streamed" else None)
arrays = np.load(folder + "/rest.npz")
data = Dataset(name="features", x=x, y=arrays["y"], x_kind="vector", y_kind="vector",
               split=arrays["split"], ids=np.arange(len(x)).astype(str),
               factors=arrays["factors"], factor_names=["a", "b", "c", "d"], source=folder)
options = {"latent_dim": 4, "hidden": 64, "encoder": "network", "jacobian": "none"}
start = time.monotonic()
train(data, out, "implicit-ivae", options, TrainConfig(epochs=1, batch_size=512), progress=False)
# VmHWM, this process's own high-water mark: Linux carries ru_maxrss over from the process
# that spawned this one (here the parent, which wrote the data), so it would count that
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
held = sum(a.nbytes for a in (data.y, data.split, data.ids, data.factors)) / 2**20
report = {"peak_mb": peak, "seconds": time.monotonic() - start, "held_mb": held}
print("REPORT " + json.dumps(report))
"""


def make_data(folder: Path, n: int, features: int) -> None:
    """x (n, F) float32 written in chunks (never whole in memory), y one-hot of 40 segments,
    4 ground-truth factors, the 80/10/10 split."""
    rng = np.random.default_rng(0)
    segment = rng.integers(0, 40, n)
    x = np.lib.format.open_memmap(folder / "x.npy", "w+", np.float32, (n, features))
    mixing = rng.standard_normal((4, features)).astype(np.float32)
    factors = (rng.standard_normal((n, 4)) * rng.uniform(0.5, 3, (40, 4))[segment]).astype(
        np.float32
    )
    for start in range(0, n, 10_000):
        x[start : start + 10_000] = np.tanh(factors[start : start + 10_000] @ mixing)
    x.flush()
    del x
    split = rng.choice(np.array(["train", "val", "test"]), n, p=[0.8, 0.1, 0.1])
    y = np.eye(40, dtype=np.float32)[segment]
    np.savez(folder / "rest.npz", y=y, split=split, factors=factors)


def measure(folder: Path, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), mode, out + "/run"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stderr[-2000:]}")
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def table(rows: list[dict], features: int) -> str:
    lines = [
        "| items | x on disk | y, ids, split, factors in memory | peak RSS, streamed "
        "| peak RSS, x read into memory | epoch, s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['items'] * features * 4 / 2**20:,.0f} MB | "
            f"{r['streamed']['held_mb']:,.0f} MB | "
            f"{r['streamed']['peak_mb']:,.0f} MB | {r['in_memory']['peak_mb']:,.0f} MB | "
            f"{r['streamed']['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--features", type=int, default=1280)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            make_data(Path(folder), n, args.features)
            row = {"items": n}
            for mode in ("streamed", "in_memory"):
                row[mode] = measure(Path(folder), mode)
                print(n, mode, row[mode], flush=True)
            rows.append(row)
    ratio = rows[-1]["streamed"]["peak_mb"] / rows[0]["streamed"]["peak_mb"]
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    first, last = rows[0]["streamed"], rows[-1]["streamed"]
    grown, held = last["peak_mb"] - first["peak_mb"], last["held_mb"] - first["held_mb"]
    per_item = last["held_mb"] * 2**20 / rows[-1]["items"]
    body = (
        "### Training memory: flat in the data size\n\n"
        f"Peak resident memory of one training epoch (implicit iVAE, network encoder, batch "
        f"512) on vectors shaped like the backbone feature cache ({args.features} float32 "
        f"features per item), memory-mapped and streamed by the trainer's loader, against the "
        f"same run with the array read into memory first. {platform.machine()}, "
        f"{platform.python_version()}, load average {load_average():.1f}.\n\n"
        f"{table(rows, args.features)}\n\n"
        f"Streamed, {rows[-1]['items']:,} items take {ratio:.2f}x the peak of "
        f"{rows[0]['items']:,} (target <= {TARGET_RATIO}: {verdict}); of the "
        f"{grown:,.0f} MB it grows, {held:,.0f} MB are the arrays the data set holds in memory "
        f"(y one-hot, ids, split, factors: {per_item:.0f} bytes per item). The train split "
        f"streams through the loader; validation and the final evaluation read the val and "
        f"test rows a batch at a time from the memory map (`Dataset.part` of a mapped x is a "
        f"`MappedRows`), and every read hands the mapped pages back: the file, not the process, "
        f"holds x. "
        f"Vectors rather than photos: decoding 200k photos takes hours on this machine."
        f"\n\nReproduce: `{command('bench.train_memory', argv)}`"
    )
    print(body)
    write_section("train-memory", body)


if __name__ == "__main__":
    main()
