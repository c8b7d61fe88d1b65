"""How far to trust a typed recipe query: which of its words the model knows, where its
conditional prior sits among the data's recipe priors, and its image–recipe scores as
percentiles of the scores of real matching pairs.

A text the model cannot read still gets a prior (the one its unknown-word tokens lead to),
often narrower than a real recipe's, and its best photos can score higher than a real
recipe's: a raw score says nothing about whether the query was understood. Counting the
known words says that; ranking a score among the val/test split's own (photo, recipe)
pairs says what the score is worth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivae.data.text import tokenize

MIN_KNOWN = 5  # fewer known words than this, or under half the words known: a warning
MIN_SHARE = 0.5
CALIBRATION_SPLITS = ("val", "test")  # pairs the model did not train on


@dataclass(frozen=True)
class Reading:
    """The words of a query and whether the run's vocabulary holds each."""

    tokens: list[str]
    known: list[bool]

    @property
    def n_known(self) -> int:
        return int(sum(self.known))

    @property
    def share(self) -> float:
        return self.n_known / len(self.tokens) if self.tokens else 0.0

    @property
    def unknown(self) -> list[str]:
        return sorted({t for t, k in zip(self.tokens, self.known) if not k})

    @property
    def level(self) -> str:
        """``none`` (no known word), ``few`` (a warning) or ``ok``."""
        if self.n_known == 0:
            return "none"
        return "few" if self.n_known < MIN_KNOWN or self.share < MIN_SHARE else "ok"


def read_words(vocab, text: str) -> Reading:
    """The tokens of ``text`` as the model's tokenizer cuts them, each known or not."""
    tokens = tokenize(text)
    return Reading(tokens, [t in vocab.index for t in tokens])


def pair_scores(run, z: np.ndarray, mean: np.ndarray, logvar: np.ndarray, batch: int = 512):
    """(N,) the model's score of each photo code against its own recipe's prior (the diagonal
    of ``run.score``), computed a block at a time."""
    out = np.empty(len(z), dtype=np.float64)
    for start in range(0, len(z), batch):
        end = min(start + batch, len(z))
        block = run.score(z[start:end], mean[start:end], logvar[start:end])  # (B, B)
        out[start:end] = np.diagonal(block)
    return out


def calibration_rows(splits: np.ndarray, at_most: int = 20_000, seed: int = 0) -> np.ndarray:
    """Index rows of the held-out pairs (val and test; every row when there are none), a
    seeded sample of ``at_most`` when there are more."""
    splits = np.asarray(splits).astype(str)
    rows = np.flatnonzero(np.isin(splits, CALIBRATION_SPLITS))
    if len(rows) == 0:
        rows = np.arange(len(splits))
    if len(rows) > at_most:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=at_most, replace=False))
    return rows


def percentile_of(reference: np.ndarray, values) -> np.ndarray:
    """Percent (0-100) of ``reference`` (sorted ascending) at or below each value."""
    reference = np.asarray(reference)
    ranks = np.searchsorted(reference, np.asarray(values, dtype=float), side="right")
    return 100.0 * ranks / max(len(reference), 1)


def column_percentiles(sorted_columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(k,) percent of each column of ``sorted_columns`` (N, k; each sorted) at or below
    ``values[j]``: a recipe's prior mean or spread among the data's recipe priors."""
    return np.array(
        [percentile_of(sorted_columns[:, j], values[j]) for j in range(sorted_columns.shape[1])]
    )


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 62nd, 100th."""
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
