"""The in-memory form every loader returns and every model trains on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

X_KINDS = ("vector", "image")
Y_KINDS = ("vector", "text")


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and what to do."""


@dataclass
class Dataset:
    """Paired data: a target modality ``x`` and the query modality ``y`` it is conditioned on.

    x: (N, D) float32 vectors, or (N, 3, S, S) uint8 images.
    y: (N, Dy) float32 vectors, or (N, L) int64 token ids (0 = padding) for text.
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
            x=self.x[pick],
            y=self.y[pick],
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
