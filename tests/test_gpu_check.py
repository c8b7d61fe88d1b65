"""bench/gpu_check.py on the CPU (the smoke test of the multi-GPU check): both jobs train with
1 process and with 2 under torchrun, and the report holds a finite MCC and a throughput."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_cpu_check_trains_both_jobs_in_one_and_two_processes(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--processes", "2"]
    cmd += ["--quick", "--out", str(out)]
    # one thread per process: on two shared cores, threads that wait on each other crawl
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    runs = {(r["job"], r["processes"]): r for r in report["runs"]}
    assert set(runs) == {(job, n) for job in ("toy", "kitchen") for n in (1, 2)}
    for run in runs.values():
        assert math.isfinite(run["mcc"])
        assert run["pairs_per_second"] > 0 and run["peak_host_rss_mb"] > 0
        assert run["precision"] == "fp32" and run["peak_device_memory_mb"] is None
    assert "| toy | 2 | cpu | fp32 |" in done.stdout


def test_epochs_trained_count_the_discarded_starts():
    train = {"epochs": 20, "restarts": 2, "restart_epochs": 2}
    assert gpu_check.epochs_trained(train) == 22
    assert gpu_check.epochs_trained({**train, "restarts": 1}) == 20


def test_batch_splits_evenly_and_torchrun_launches_the_processes(tmp_path):
    job = gpu_check.Job("toy", tmp_path / "toy.npz", ("--preset", "toy"), 256, 100)
    plain = gpu_check.train_command(job, 1, "cpu", 256, tmp_path / "run")
    assert plain[1:4] == ["-m", "ivae", "train"] and "torch.distributed.run" not in plain
    assert gpu_check.even_batch(256, 3) == 258 and gpu_check.even_batch(128, 8) == 128
    spread = gpu_check.train_command(job, 3, "cuda", 258, tmp_path / "run")
    assert "--nproc_per_node=3" in spread and spread[spread.index("--batch-size") + 1] == "258"


def test_tree_memory_counts_the_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert gpu_check.tree_rss_mb(os.getpid()) > gpu_check.tree_rss_mb(child.pid) > 0
    finally:
        child.kill()
        child.wait()
