"""The in-memory form every loader returns and every model trains on.

Its x (and y) may be memory-mapped (the decoded-image cache, the backbone feature cache):
then a split of it (``Dataset.part``) is a ``MappedRows``, the row numbers of the split over
the same map, read a batch at a time when indexed, so that held-out validation and evaluation
never copy a whole split into memory.

Rows of a map are read ``RELEASE_ROWS`` at a time and the mapped pages handed back after each
(``read_rows``): the kernel maps a page-cache folio whole, and a file just written (the
feature cache, the token cache) sits in folios of up to 2 MB, so one row of 2.5 KB can map
2 MB. A batch of 128 random rows of a fresh 200k-item feature cache mapped ~175 MB at once
(the photo data of bench/train_memory.py), a share of the file that grows with the data
until the batch's folios are all different.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

X_KINDS = ("vector", "image")
Y_KINDS = ("vector", "text")


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and what to do."""


def mapped(array) -> bool:
    """Whether ``array`` reads from a memory map (``np.load(mmap_mode=...)``, or rows of one)."""
    return isinstance(array, MappedRows) or isinstance(getattr(array, "_mmap", None), mmap.mmap)


def release(array) -> None:
    """Drop a memory map's resident pages from this process (the page cache keeps them): the
    pages a read touched, and those the kernel mapped around them, would otherwise count in
    the process's resident size until the whole file is resident."""
    mapping = getattr(array.array if isinstance(array, MappedRows) else array, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


RELEASE_ROWS = 8  # rows read from a map between two releases: at most ~8 folios mapped


def read_rows(array, *index: np.ndarray, dtype=None) -> np.ndarray:
    """``array[index]`` as a new ndarray (of ``dtype``): ``index``, one or more aligned integer
    arrays over the first axes (rows, and e.g. a view per row). From a memory map (or a
    ``MappedRows``) the rows are read ``RELEASE_ROWS`` at a time and the mapped pages released
    after each (the module's note); the values are those of ``array[index]``."""
    if isinstance(array, MappedRows):
        dtype = dtype or array.dtype
        array, index = array.array, (array.rows[index[0]], *index[1:])
    dtype = np.dtype(dtype or array.dtype)
    if not mapped(array):
        return np.asarray(array[index], dtype=dtype)  # an index array: already a copy
    out = np.empty((len(index[0]), *array.shape[len(index) :]), dtype)
    for start in range(0, len(out), RELEASE_ROWS):
        out[start : start + RELEASE_ROWS] = array[
            tuple(i[start : start + RELEASE_ROWS] for i in index)
        ]
        release(array)
    return out


class MappedRows:
    """Some rows of a memory-mapped array, read from the map only when indexed.

    array: (N, ...) a memory map (or a view of one); rows: (M,) int64 the rows taken, in
    order; dtype: what a read returns (the map's own unless given: float16 features are read
    as float32). Indexing the first axis (an int, slice, index array or mask over the M rows)
    returns an ndarray of those rows alone and releases the mapped pages again;
    ``np.asarray`` reads all M rows, a chunk at a time.
    """

    CHUNK = 4096

    def __init__(self, array: np.ndarray, rows: np.ndarray, dtype=None):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.dtype = np.dtype(dtype or array.dtype)
        self.shape = (len(self.rows), *array.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        rows = self.rows[first]
        out = read_rows(self.array, np.atleast_1d(rows), dtype=self.dtype)  # never a view
        out = out.reshape(out.shape[1:]) if np.ndim(rows) == 0 else out
        return out[(slice(None),) * np.ndim(rows) + rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=dtype or self.dtype)
        for start in range(0, len(self), self.CHUNK):
            out[start : start + self.CHUNK] = self[start : start + self.CHUNK]
        return out

    def take(self, pick: np.ndarray) -> MappedRows:
        return MappedRows(self.array, self.rows[pick], self.dtype)


def take_rows(array, pick: np.ndarray):
    """``array[pick]``; of a memory map, the rows it names without reading them."""
    if isinstance(array, MappedRows):
        return array.take(pick)
    if mapped(array):
        return MappedRows(array, np.arange(len(array))[pick])
    return array[pick]


@dataclass
class Dataset:
    """Paired data: a target modality ``x`` and the query modality ``y`` it is conditioned on.

    x: (N, D) float32 vectors, or (N, 3, S, S) uint8 images.
    y: (N, Dy) float32 vectors, or (N, L) int32 token ids (0 = padding) for text.
    Either may be memory-mapped, or a ``MappedRows`` over a map (read when indexed).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    x_kind: str
    y_kind: str
    split: np.ndarray  # (N,) str: train / val / test
    ids: np.ndarray  # (N,) str, unique
    factors: np.ndarray | None = None  # (N, n) float32 ground truth, evaluation only
    factor_names: list[str] = field(default_factory=list)
    nuisances: np.ndarray | None = None  # (N, m) ground truth the query does not describe
    nuisance_names: list[str] = field(default_factory=list)
    items: pd.DataFrame | None = None  # per-item metadata (title, text, image path, ...)
    vocab: object | None = None  # ivae.data.text.Vocab for text queries
    source: str = ""  # the path it was loaded from

    def __post_init__(self) -> None:
        if self.x_kind not in X_KINDS or self.y_kind not in Y_KINDS:
            raise DataError(f"{self.name}: unknown modality kinds {self.x_kind!r}/{self.y_kind!r}")
        n = len(self.x)
        for label, array in [("y", self.y), ("split", self.split), ("ids", self.ids)]:
            if len(array) != n:
                raise DataError(f"{self.name}: {label} has {len(array)} rows, x has {n}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask_or_index: np.ndarray) -> Dataset:
        """Rows selected by a boolean mask or an index array, everything kept aligned."""
        pick = np.asarray(mask_or_index)

        def take(a):
            return None if a is None else a[pick]

        return replace(
            self,
            x=take_rows(self.x, pick),
            y=take_rows(self.y, pick),
            split=self.split[pick],
            ids=self.ids[pick],
            factors=take(self.factors),
            nuisances=take(self.nuisances),
            items=None if self.items is None else self.items.iloc[pick].reset_index(drop=True),
        )

    def part(self, split: str) -> Dataset:
        """One split (``train``/``val``/``test``), or everything for ``all``."""
        if split == "all":
            return self
        return self.subset(self.split == split)
