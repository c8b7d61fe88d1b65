"""Training batches streamed through a ``torch.utils.data.DataLoader``.

The trainer never copies the train split: ``TrainRows`` keeps the data set's own arrays (in
memory, or memory-mapped: the backbone feature cache, the decoded-image cache) and the row
numbers of the train items, and reads one batch's rows at a time, in the loader's workers
when there are any. After reading from a memory map it hands the mapped pages back to the
operating system (``madvise(MADV_DONTNEED)``; they stay in the page cache) every few rows
(``ivae.data.dataset.read_rows``), so the trainer's resident size does not grow with the
data: the file, not the process, holds the split.

``EpochBatches`` is the sampler: the order of an epoch depends on (seed, epoch) alone, a
permutation of the train items cut into batches of ``batch_size`` (the last partial batch
dropped), so a resumed epoch replays exactly from its step. Under torchrun each of the N
processes takes its own 1/N of every batch (ivae.distributed), so the batches, their order
and the steps per epoch do not depend on N: a run resumes with another number of processes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ivae.data.dataset import read_rows
from ivae.distributed import ALONE


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's order; a step's augmentation is drawn from ``* 7919 + step``."""
    return seed * 100_003 + epoch


class EpochBatches(Sampler):
    """Yields ``(epoch, step, index)`` for steps ``start_step ..``: ``index`` (B / N,) int64,
    this process's slice of the step's batch of train-split positions."""

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, start_step: int = 0, world=ALONE
    ):
        if batch_size % world.size:
            raise ValueError(
                f"--batch-size {batch_size} does not split evenly over {world.size} processes; "
                f"use a multiple of {world.size} (it is the batch of all processes together)"
            )
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start_step, self.world = start_step, world

    @property
    def steps(self) -> int:
        return self.n // self.batch_size

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self):
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=g)
        local = self.batch_size // self.world.size
        for step in range(self.start_step, self.steps):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.epoch, step, batch[self.world.rank * local : (self.world.rank + 1) * local]


class TrainRows(torch.utils.data.Dataset):
    """A batch of train items read from the whole data set's arrays.

    x: (N, ...) the data set's x; y: (N, ...) its y; rows: (N_train,) the rows of the train
    split, in order; views: (N, V, F) float16 cached features of every view (backbone runs
    under ``--augment dihedral``: each item's view is drawn per step), else None.
    """

    def __init__(self, x, y, rows: np.ndarray, views=None, seed: int = 0, world=ALONE):
        self.x, self.y, self.rows, self.views = x, y, np.asarray(rows), views
        self.seed, self.world = seed, world

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int, torch.Tensor]) -> dict[str, torch.Tensor]:
        epoch, step, index = key
        rows = self.rows[index.numpy()]
        x = self.views_of(rows, epoch, step) if self.views is not None else read_rows(self.x, rows)
        batch = {"x": torch.from_numpy(np.ascontiguousarray(x)), "index": index}
        batch["y"] = torch.from_numpy(read_rows(self.y, rows))  # released as it reads
        return batch

    def views_of(self, rows: np.ndarray, epoch: int, step: int) -> np.ndarray:
        """(B, F) float32: one of the V cached views of each item, drawn by (seed, epoch, step)
        (and the process under torchrun), so a resumed step replays it."""
        seed = epoch_seed(self.seed, epoch) * 7919 + step
        if self.world.size > 1:
            seed = seed * 1_000_003 + self.world.rank
        generator = torch.Generator().manual_seed(seed)
        view = torch.randint(0, self.views.shape[1], (len(rows),), generator=generator)
        return read_rows(self.views, rows, view.numpy(), dtype=np.float32)


def train_loader(
    rows: TrainRows,
    sampler: EpochBatches,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The DataLoader of one epoch. Each sampler element is a whole batch (``batch_size=None``),
    read in one indexing of the arrays. Its own generator: the trainer's RNG stream, which a
    stochastic model draws from, stays what it was without a loader."""
    return DataLoader(
        rows,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(sampler.seed),
        persistent_workers=False,
    )
