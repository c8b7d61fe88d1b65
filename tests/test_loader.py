"""The training batches (ivae/loader.py): the seeded sampler, rows read a batch at a time from
memory-mapped arrays without the process keeping them, worker processes, a worker that dies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ivae.data.toy import write_toy
from ivae.data.vectors import load_npz
from ivae.distributed import World
from ivae.loader import EpochBatches, TrainRows, train_loader
from ivae.train import TrainConfig, train


def test_the_processes_slices_make_the_one_process_batch():
    one = list(EpochBatches(50, 8, seed=3, epoch=2))
    assert len(one) == 6 and all(len(index) == 8 for _, _, index in one)
    for rank in range(2):
        part = list(EpochBatches(50, 8, seed=3, epoch=2, world=World(rank, 2, rank)))
        for (_, step, index), (_, step_one, whole) in zip(part, one, strict=True):
            assert step == step_one
            assert torch.equal(index, whole[rank * 4 : (rank + 1) * 4])
    resumed = list(EpochBatches(50, 8, seed=3, epoch=2, start_step=4))
    assert [s for _, s, _ in resumed] == [4, 5]
    assert torch.equal(resumed[0][2], one[4][2])  # a resumed epoch replays its batches
    assert not torch.equal(one[0][2], next(iter(EpochBatches(50, 8, seed=3, epoch=3)))[2])


def resident_file_kb() -> int:
    """Resident pages of this process that belong to mapped files (/proc/self/status)."""
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


def test_rows_read_from_a_memory_map_are_not_kept_resident(tmp_path):
    n, dim = 4096, 4096  # 64 MB of float32
    np.save(tmp_path / "x.npy", np.arange(n * dim, dtype=np.float32).reshape(n, dim))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.zeros((n, 2), np.float32)
    rows = TrainRows(x, y, np.arange(0, n, 2))
    before = resident_file_kb()
    seen = 0
    for batch in train_loader(rows, EpochBatches(len(rows), 256, seed=0, epoch=0)):
        first = int(batch["index"][0])
        assert torch.equal(batch["x"][0], torch.from_numpy(np.array(x[2 * first])))
        seen += len(batch["x"])
    assert seen == n // 2
    assert resident_file_kb() - before < 16_000  # 32 MB were read
    np.asarray(x[::2]).sum()  # the same reads without handing the pages back
    assert resident_file_kb() - before > 24_000


def toy(tmp_path):
    options = {"sources": 3, "data_dim": 3, "segments": 10, "per_segment": 40}
    return load_npz(write_toy(tmp_path / "toy.npz", **options))


def test_workers_change_nothing_but_the_time(tmp_path):
    data = toy(tmp_path)
    config = TrainConfig(epochs=2, batch_size=32)
    options = {"hidden": 16, "flow_layers": 2}
    histories = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(data, out, "implicit-ivae", options, config, progress=False, workers=workers)
        histories.append(pd.read_csv(out / "history.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(*histories)


# A worker killed mid-epoch: run in a child process, because the DataLoader's SIGCHLD handler
# can still fire after the training has stopped, and must not reach the tests that follow.
WORKER_DIES = """
import os, signal, sys
import torch
from ivae.data.vectors import load_npz
from ivae.loader import TrainRows
from ivae.train import TrainConfig, TrainingError, train

read = TrainRows.__getitem__

def dies_at_epoch_two(self, key):
    if key[0] == 1 and key[1] == 3 and torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return read(self, key)

TrainRows.__getitem__ = dies_at_epoch_two
config = TrainConfig(epochs=2, batch_size=32, checkpoint_seconds=0.0)
try:
    train(load_npz(sys.argv[1]), sys.argv[2], "implicit-ivae", {"hidden": 16, "flow_layers": 2},
          config, progress=False, workers=1)
except TrainingError as error:
    # What the SIGCHLD handler runs when the dead worker's signal is handled late, here while
    # the error is still held: the stopped run must no longer be watched for dead workers.
    from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails
    _error_if_any_worker_fails()
    print(error)
    sys.exit(3)
"""


def test_a_worker_that_dies_stops_the_run_in_one_line_and_it_resumes(tmp_path):
    data = toy(tmp_path)
    out = tmp_path / "run"
    child = [sys.executable, "-c", WORKER_DIES, str(tmp_path / "toy.npz"), str(out)]
    done = subprocess.run(child, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    message = done.stdout.strip()
    assert "\n" not in message and "data-loading worker died" in message
    assert "--resume" in message and "fewer --workers" in message
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    train(data, out, "implicit-ivae", resume=True, progress=False)  # in-process reads
    assert len(pd.read_csv(out / "history.csv")) == 2 and (out / "model.pt").exists()


def test_a_held_out_split_of_a_memory_map_is_read_a_batch_at_a_time(tmp_path):
    from ivae.data.dataset import Dataset, MappedRows
    from ivae.evaluate import encode
    from ivae.models.base import build_model
    from ivae.nets import Modality

    n, dim = 4096, 4096  # 64 MB of float32
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((n, dim), np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.random.default_rng(1).random((n, 2), np.float32)
    split = np.where(np.arange(n) % 2, "val", "train")
    mapped, held = (
        Dataset("m", a, y, "vector", "vector", split, np.arange(n).astype(str))
        for a in (x, np.array(x))
    )
    val, val_held = mapped.part("val"), held.part("val")
    assert isinstance(val.x, MappedRows) and val.x.shape == val_held.x.shape
    assert np.array_equal(val.x[3:9], val_held.x[3:9]) and np.array_equal(val.x[7], val_held.x[7])
    assert np.array_equal(val.x[[5, 1], 2], val_held.x[[5, 1], 2])
    assert np.array_equal(val.part("all").subset(np.arange(4)).x, val_held.x[:4])
    model = build_model(
        "implicit-ivae", {"latent_dim": 2}, Modality("vector", (dim,)), Modality("vector", (2,))
    )
    before = resident_file_kb()
    codes = encode(model, val)
    assert resident_file_kb() - before < 16_000  # 32 MB were read
    assert all(np.array_equal(a, b) for a, b in zip(codes, encode(model, val_held), strict=True))
    assert np.array_equal(np.asarray(val.x), val_held.x)
