"""Multi-GPU check: ``ivae train`` in 1 and in N processes (torchrun, one GPU each), on the toy
data and on the kitchen photos' backbone features, with throughput, memory and MCC.

Steps, each a child process run as a user runs it (docs/design.md, "Training in several
processes (torchrun)"), in a temporary folder:

1. data: ``ivae data toy`` and ``ivae data kitchen --n ... --image-size ...``;
2. features: ``ivae features KITCHEN --backbone efficientnet-lite0 --views 1 --device DEV``,
   once (both kitchen runs read the cache);
3. per job (``toy``: ``--preset toy``; ``kitchen``: the encoder head on the features,
   ``--preset kitchen --backbone efficientnet-lite0 --augment none``), ``ivae train`` with 1
   process and, when N > 1, with ``torchrun --standalone --nproc_per_node=N``. Both use the same
   batch (the preset's, rounded up to a multiple of N), so the runs differ only in how the
   batch is split. On CUDA the trainer runs every step under bf16 autocast (``train_step``).

Per run: wall time; train pairs per second in the optimisation steps (train items x epochs
trained, the restarts' included, over ``history.csv``'s last ``seconds``: rank 0's step time,
cumulative); its speed-up over 1 process; ``metrics.json``'s test MCC and rank 0's peak CUDA
memory (``peak_device_memory_mb``); sampled every 0.5 s, the largest memory in use on any GPU
(``nvidia-smi``, every process on it included) and the resident memory of the run's whole
process tree (the launcher and every rank, summed).

    python -m bench.gpu_check [--device cuda|cpu] [--processes N] [--quick] [--out PATH]
        [--write-docs]

``bash bench/gpu_check.sh`` installs the project on a fresh CUDA machine, then runs this; the
default sizes take a few minutes on a GPU. ``--device cpu --quick`` is the smoke test (a minute
or two on two cores; tests/test_gpu_check.py). ``--write-docs`` writes docs/results.md between
the ``gpu-check`` markers.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.common import command, load_average, process_tree, write_section
from ivae.presets import PRESETS

BACKBONE = "efficientnet-lite0"
SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class Sizes:
    toy_flags: tuple[str, ...]  # `ivae data toy` options
    toy_epochs: int
    toy_restarts: int | None  # None: the preset's
    kitchen_items: int
    kitchen_image_size: int
    kitchen_epochs: int


# The default fits a lent GPU's 10 minutes per command with room to spare; --quick is for CPUs.
FULL = Sizes((), 20, None, 4000, 64, 5)
QUICK = Sizes(("--segments", "10", "--per-segment", "100"), 2, 1, 200, 32, 1)


@dataclass(frozen=True)
class Job:
    name: str
    data: Path
    flags: tuple[str, ...]  # `ivae train` options beyond data, output, device and batch
    batch_size: int  # the preset's
    train_items: int


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], help="default: cuda when torch sees it"
    )
    parser.add_argument("--processes", type=int, help="default: every GPU (on cpu: 2)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU smoke test")
    parser.add_argument("--out", type=Path, help="the JSON report (default $OUT/gpu_check.json)")
    parser.add_argument("--write-docs", action="store_true", help="write docs/results.md")
    args = parser.parse_args(argv)
    gpus = torch.cuda.device_count()
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            "torch sees no CUDA device; install a CUDA build of torch or pass --device cpu"
        )
    args.processes = args.processes or (gpus if args.device == "cuda" else 2)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.device == "cuda" and args.processes > gpus:
        parser.error(f"--processes {args.processes}: one process per GPU, and there are {gpus}")
    default_out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(".")
    args.out = args.out or default_out / "gpu_check.json"
    return args


# ---- child processes and what they use ---------------------------------------------------
def tree_rss_mb(root: int) -> float:
    """Resident memory of process ``root`` and all its descendants, in MB (from /proc)."""
    pages = 0
    for pid in process_tree(root):
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def gpu_used_mb() -> float | None:
    """The largest memory in use on any GPU, as nvidia-smi reports it (MB), or None."""
    query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
    try:
        found = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
        return max(float(line) for line in found.stdout.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


class Peaks(threading.Thread):
    """Samples a running child every 0.5 s: its process tree's resident memory and, on CUDA,
    nvidia-smi's memory in use; keeps the largest of each."""

    def __init__(self, pid: int, cuda: bool):
        super().__init__(daemon=True)
        self.pid, self.cuda, self.stop = pid, cuda, threading.Event()
        self.host_mb, self.gpu_mb = 0.0, None

    def run(self) -> None:
        while True:
            self.host_mb = max(self.host_mb, tree_rss_mb(self.pid))
            used = gpu_used_mb() if self.cuda else None
            if used is not None:
                self.gpu_mb = max(self.gpu_mb or 0.0, used)
            if self.stop.wait(SAMPLE_SECONDS):
                return


def launch(cmd: list[str], log: Path, cuda: bool = False) -> tuple[float, Peaks]:
    """Run ``cmd`` (output into ``log``) while sampling its memory: (wall seconds, peaks).
    A failure stops the check with the command and the end of its output."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        peaks = Peaks(child.pid, cuda)
        peaks.start()
        code = child.wait()
    peaks.stop.set()
    peaks.join()
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"gpu_check: `{' '.join(cmd)}` failed (exit {code}):\n{tail}")
    return time.perf_counter() - start, peaks


def ivae(*args: str) -> list[str]:
    return [sys.executable, "-m", "ivae", *args]


# ---- the steps ---------------------------------------------------------------------------
def train_items(path: Path) -> int:
    from ivae.data import load_dataset

    return int((load_dataset(path, images=False).split == "train").sum())


def prepare(work: Path, sizes: Sizes, device: str) -> tuple[list[Job], dict[str, float]]:
    """Make both data sets and the kitchen features: the jobs, and the seconds of each step."""
    toy, kitchen = work / "toy.npz", work / "kitchen"
    seconds = {}
    seconds["data toy"], _ = launch(
        ivae("data", "toy", "--out", str(toy), *sizes.toy_flags), work / "toy.log"
    )
    make = ivae("data", "kitchen", "--out", str(kitchen), "--n", str(sizes.kitchen_items))
    make += ["--image-size", str(sizes.kitchen_image_size)]
    seconds["data kitchen"], _ = launch(make, work / "kitchen.log")
    features = ivae("features", str(kitchen), "--backbone", BACKBONE, "--views", "1")
    features += ["--device", device, "--quiet"]
    seconds["features"], _ = launch(features, work / "features.log", device == "cuda")
    for step, took in seconds.items():
        print(f"{step}: {took:.1f} s", flush=True)
    restarts = () if sizes.toy_restarts is None else ("--restarts", str(sizes.toy_restarts))
    jobs = [
        Job(
            "toy",
            toy,
            ("--preset", "toy", "--epochs", str(sizes.toy_epochs), *restarts),
            PRESETS["toy"].batch_size,
            train_items(toy),
        ),
        Job(
            "kitchen",
            kitchen,
            (
                "--preset",
                "kitchen",
                "--backbone",
                BACKBONE,
                "--augment",
                "none",
                "--epochs",
                str(sizes.kitchen_epochs),
            ),
            PRESETS["kitchen"].batch_size,
            train_items(kitchen),
        ),
    ]
    return jobs, seconds


def train_command(job: Job, processes: int, device: str, batch: int, out: Path) -> list[str]:
    args = ["train", "--data", str(job.data), "--out", str(out), "--device", device]
    args += ["--batch-size", str(batch), "--quiet", *job.flags]
    if processes == 1:
        return ivae(*args)
    # torchrun's own module: the same launcher, found wherever this Python's packages are
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*torchrun, f"--nproc_per_node={processes}", "-m", "ivae", *args]


def epochs_trained(train: dict) -> int:
    """Epochs of optimisation steps, the discarded starts' included (what `seconds` times)."""
    extra = (train["restarts"] - 1) * train["restart_epochs"] if train["restarts"] > 1 else 0
    return train["epochs"] + extra


def measure(job: Job, processes: int, device: str, batch: int, work: Path) -> dict:
    out = work / f"run-{job.name}-{processes}"
    cmd = train_command(job, processes, device, batch, out)
    wall, peaks = launch(cmd, work / f"{out.name}.log", device == "cuda")
    train = json.loads((out / "config.json").read_text())["train"]
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "history.csv") as f:
        step_seconds = float(list(csv.DictReader(f))[-1]["seconds"])
    epochs = epochs_trained(train)
    return {
        "job": job.name,
        "processes": processes,
        "device": device,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "epochs": train["epochs"],
        "epochs_trained": epochs,
        "batch_size": batch,
        "train_items": job.train_items,
        "wall_seconds": round(wall, 1),
        "step_seconds": step_seconds,
        "pairs_per_second": round(job.train_items * epochs / step_seconds, 1),
        "peak_device_memory_mb": metrics.get("peak_device_memory_mb"),
        "peak_gpu_used_mb": peaks.gpu_mb,
        "peak_host_rss_mb": round(peaks.host_mb, 1),
        "mcc": metrics["mcc"],
    }


def even_batch(batch: int, processes: int) -> int:
    """``batch`` rounded up to a multiple of ``processes`` (the trainer refuses another)."""
    return math.ceil(batch / processes) * processes


def run_jobs(jobs: list[Job], processes: int, device: str, work: Path) -> list[dict]:
    runs = []
    for job in jobs:
        batch = even_batch(job.batch_size, processes)
        one = None
        for n in sorted({1, processes}):
            row = measure(job, n, device, batch, work)
            one = one or row
            row["speedup"] = round(row["pairs_per_second"] / one["pairs_per_second"], 2)
            runs.append(row)
            print(
                f"{job.name}, {n} process(es): {row['wall_seconds']} s, MCC {row['mcc']:.3f}",
                flush=True,
            )
    return runs


# ---- the report --------------------------------------------------------------------------
def cell(value, form: str = "{:.0f}") -> str:
    return "—" if value is None else form.format(value)


def table(runs: list[dict]) -> str:
    lines = [
        "| job | processes | device | precision | epochs | wall s | pairs/s in steps | speed-up "
        "| peak CUDA MB (rank 0) | peak GPU used MB (nvidia-smi) | peak host RSS MB | MCC |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['job']} | {r['processes']} | {r['device']} | {r['precision']} | {r['epochs']} "
            f"| {r['wall_seconds']:.1f} | {r['pairs_per_second']:,.0f} | {r['speedup']:.2f}x "
            f"| {cell(r['peak_device_memory_mb'])} | {cell(r['peak_gpu_used_mb'])} "
            f"| {cell(r['peak_host_rss_mb'])} | {cell(r['mcc'], '{:.3f}')} |"
        )
    return "\n".join(lines)


def machine(device: str) -> dict:
    cuda = device == "cuda"
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def report_text(report: dict) -> str:
    m = report["machine"]
    where = f"{m['gpus']} x {m['gpu']}" if m["gpu"] else f"CPU only ({m['cpu_count']} cores)"
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in report["setup_seconds"].items())
    return (
        f"{where}, torch {m['torch']}; load average {report['load_average']['before']:.2f} "
        f"before, {report['load_average']['after']:.2f} after. Setup: {setup}.\n\n"
        f"{table(report['runs'])}\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    before = load_average()
    print(f"device {args.device}, {args.processes} process(es){', quick' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        jobs, setup = prepare(Path(tmp), sizes, args.device)
        runs = run_jobs(jobs, args.processes, args.device, Path(tmp))
    report = {
        "command": command("bench.gpu_check", argv),
        "quick": args.quick,
        "machine": machine(args.device),
        "load_average": {"before": before, "after": load_average()},
        "setup_seconds": {k: round(v, 1) for k, v in setup.items()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report_text(report)}\nwrote {args.out}")
    if args.write_docs:
        body = (
            f"Regenerate: `{report['command']}` (`bash bench/gpu_check.sh` on a fresh machine).\n\n"
        )
        print(f"wrote {write_section('gpu-check', body + report_text(report))}")


if __name__ == "__main__":
    main()
