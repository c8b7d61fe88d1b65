"""Traversals by retrieval, said honestly: what each step asked for and what it shows.

There is no decoder, so a traversal moves one factor through quantiles of the data and shows
a real dish per step. A step can show a dish whose own value is far from the one asked for,
or the same dish as another step; these functions return both, so the studio can say so.

Two ways to pick a step's dish (``follow``):

- ``nearest``: the dish nearest to the requested point (the studio's weighted distance);
- ``data``: "stay on the data": among the dishes whose value of the factor lies in the
  step's band of quantiles, the one nearest to the start in the *other* factors. Each step
  then really moves the factor, by as little elsewhere as the data allows.

``allowed`` (an (N,) mask, e.g. one dish type) restricts either. ``along`` moves the other
factors with the traversed one by the data's own linear regression (``regression_slopes``),
so a requested point stays where dishes are when latents are correlated.

Codes ``z`` are (N, k) image codes of the index. Nothing here imports streamlit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ivae.index import Index
from ivae.words import STOP_WORDS, text_words

FOLLOW = ("nearest", "data")


@dataclass
class Traversal:
    """One factor's traversal. quantiles, requested_values: (S,); points: (S, k) the
    requested points; rows, distances: (S, m) the step's m dishes (first = the one shown;
    -1 / inf where a step has no dish) and their weighted distances to the requested point."""

    factor: int
    quantiles: np.ndarray
    points: np.ndarray
    rows: np.ndarray
    distances: np.ndarray

    @property
    def shown(self) -> np.ndarray:
        """(S,) the row shown at each step (-1: no dish)."""
        return self.rows[:, 0]

    def table(self, z: np.ndarray) -> pd.DataFrame:
        """One row per step: quantile, requested value, item shown, its own value of the
        factor, its distance to the requested point, the first step showing the same item
        (``repeat_of``, -1 for a first showing)."""
        shown = self.shown
        own = np.where(shown >= 0, np.asarray(z)[np.maximum(shown, 0), self.factor], np.nan)
        return pd.DataFrame(
            {
                "step": np.arange(len(shown)),
                "quantile": self.quantiles,
                "requested": self.points[:, self.factor],
                "item": shown,
                "shown": own,
                "distance": self.distances[:, 0],
                "repeat_of": repeats(shown),
            }
        )


def repeats(items: np.ndarray) -> np.ndarray:
    """(S,) for each step the first earlier step showing the same item, -1 when none (or
    when the step shows nothing)."""
    first: dict[int, int] = {}
    out = np.full(len(items), -1)
    for step, item in enumerate(np.asarray(items).tolist()):
        if item < 0:
            continue
        if item in first:
            out[step] = first[item]
        else:
            first[item] = step
    return out


def regression_slopes(z: np.ndarray) -> np.ndarray:
    """(k, k) ``B[j, i] = cov(z_i, z_j) / var(z_j)``: how much factor i moves, on average
    over the data, per unit of factor j (least squares); ``B[j, j] = 1``."""
    z = np.asarray(z, dtype=np.float64)
    centred = z - z.mean(axis=0)
    cov = centred.T @ centred / max(len(z) - 1, 1)  # (k, k)
    return cov / np.maximum(np.diag(cov), 1e-12)[:, None]


def coupled_point(
    point: np.ndarray, factor: int, value: float, slopes: np.ndarray | None = None
) -> np.ndarray:
    """``point`` with ``factor`` set to ``value``; with ``slopes`` (``regression_slopes``)
    the other factors move by their regression on it, as the data does on average."""
    out = np.array(point, dtype=np.float64)
    delta = float(value) - out[factor]
    if slopes is not None:
        out += slopes[factor] * delta
    out[factor] = value
    return out


def band_edges(index: Index, factor: int, quantiles: np.ndarray) -> np.ndarray:
    """(S, 2) value bands, one per step: from the midpoint (in percentiles) to the previous
    step's quantile to the midpoint to the next; the ends reach 0 and 100."""
    q = np.asarray(quantiles, dtype=float)
    mids = (q[:-1] + q[1:]) / 2
    edges = np.concatenate([[0.0], mids, [100.0]])
    values = index.quantiles(factor, edges)
    return np.stack([values[:-1], values[1:]], axis=1)


def traverse(
    index: Index,
    start: np.ndarray,
    factor: int,
    weights: np.ndarray,
    steps: int = 7,
    follow: str = "nearest",
    allowed: np.ndarray | None = None,
    slopes: np.ndarray | None = None,
    neighbours: int = 1,
    low: float = 2.0,
    high: float = 98.0,
) -> Traversal:
    """Move ``factor`` through ``steps`` quantiles (``low``..``high`` percent) of the data
    from ``start`` (k,) and retrieve ``neighbours`` real dishes per step (see the module's
    docstring for ``follow``, ``allowed`` and ``slopes``)."""
    if follow not in FOLLOW:
        raise ValueError(f"follow must be one of {', '.join(FOLLOW)}, got {follow!r}")
    quantiles = np.linspace(low, high, steps)
    values = index.quantiles(factor, quantiles)
    points = np.stack([coupled_point(start, factor, v, slopes) for v in values])
    points = points.astype(np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if follow == "nearest":
        rows, distances = _nearest(index, points, weights, neighbours, allowed)
    else:
        rows, distances = _in_bands(index, points, factor, quantiles, weights, neighbours, allowed)
        rows, distances = _refill(index, points, weights, rows, distances)
    return Traversal(factor, quantiles, points, rows, distances)


def _nearest(index, points, weights, n, allowed) -> tuple[np.ndarray, np.ndarray]:
    exclude = None if allowed is None else ~np.asarray(allowed, dtype=bool)
    rows, distances = index.nearest(points, n=n, weights=weights, exclude=exclude)
    return _pad(rows, distances, n)


def _in_bands(index, points, factor, quantiles, weights, n, allowed) -> tuple:
    """Per step: the n dishes of the step's band nearest to its requested point in the
    other factors (the traversed one weighs nothing inside its band)."""
    bands = band_edges(index, factor, quantiles)
    values = np.asarray(index.z[:, factor])
    others = weights.copy()
    others[factor] = 0.0
    rows = np.full((len(points), n), -1)
    for step, (lo, hi) in enumerate(bands):
        last = step == len(bands) - 1  # the top band keeps its upper edge (the maximum)
        inside = (values >= lo) & ((values <= hi) if last else (values < hi))
        if allowed is not None:
            inside &= np.asarray(allowed, dtype=bool)
        hits = _nearest_among(index.z, np.flatnonzero(inside), points[step], others, n)
        rows[step, : len(hits)] = hits
    return rows, np.full(rows.shape, np.inf)


def _nearest_among(z, candidates, query, weights, n) -> np.ndarray:
    """The n candidate rows nearest ``query`` under ``weights``, nearest first: an exact
    scan of the band alone (a seventh of the codes), not of every code with the rest
    excluded: 7 steps at a million codes in 236 ms instead of 988 (load 12, 2 cores)."""
    gaps = np.take(z, candidates, axis=0) - query  # (C, k)
    d2 = (gaps * gaps) @ weights
    if len(candidates) > n:
        top = np.argpartition(d2, n - 1)[:n]
        candidates, d2 = candidates[top], d2[top]
    return candidates[np.argsort(d2, kind="stable")]


def _refill(index, points, weights, rows, distances) -> tuple[np.ndarray, np.ndarray]:
    """The weighted distance of each found dish to its step's requested point."""
    z = np.asarray(index.z)
    for step in range(len(rows)):
        found = rows[step] >= 0
        gaps = z[rows[step, found]] - points[step]
        distances[step, found] = np.sqrt((gaps**2) @ weights)
    return rows, distances


def _pad(rows, distances, n) -> tuple[np.ndarray, np.ndarray]:
    """(S, n) arrays even when fewer than n dishes are allowed (-1 / inf fill the rest)."""
    out_rows = np.full((len(rows), n), -1)
    out_d = np.full((len(rows), n), np.inf)
    out_rows[:, : rows.shape[1]] = rows
    out_d[:, : rows.shape[1]] = distances
    return out_rows, out_d


def traversal_grid(index: Index, start: np.ndarray, weights_for, **options) -> list[Traversal]:
    """Every factor's traversal from one start (factors x steps: the traversal grid of
    disentanglement_lib, by retrieval). ``weights_for(factor)`` gives each row's weights;
    ``options`` go to ``traverse``."""
    k = index.z.shape[1]
    return [traverse(index, start, j, weights_for(j), **options) for j in range(k)]


# --------------------------------------------------------------------------- what else changes


def column_stats(columns: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Each column's mean and standard deviation over all dishes (a pass over every value:
    computed once, e.g. cached by the page, not on every traversal)."""
    out = {}
    for name, values in columns.items():
        values = np.asarray(values, dtype=np.float64)
        out[name] = (float(values.mean()), float(values.std()))
    return out


def standardised_means(
    rows: np.ndarray,
    columns: dict[str, np.ndarray],
    stats: dict[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """(S, C) per step, the mean of each column over the step's dishes ``rows`` (S, m),
    in standard deviations of that column over all dishes (0 = the data's mean); ``stats``
    (``column_stats``) saves the pass over every value."""
    stats = stats or column_stats(columns)
    out = {}
    valid = rows >= 0
    for name, values in columns.items():
        mean, std = stats[name]
        taken = np.where(valid, np.asarray(values)[np.maximum(rows, 0)], np.nan)
        out[name] = (np.nanmean(taken, axis=1) - mean) / (std or 1.0)
    return pd.DataFrame(out)


def shares(labels_per_step: list[list[str]]) -> pd.DataFrame:
    """(S, L) share of each label among each step's dishes (e.g. the dish type)."""
    counts = [Counter(map(str, labels)) for labels in labels_per_step]
    names = sorted(set().union(*counts))
    return pd.DataFrame(
        [{name: c[name] / max(sum(c.values()), 1) for name in names} for c in counts]
    )


# words of any recipe's method, which say nothing about where a traversal goes
RECIPE_WORDS = frozenset(
    "cup cups tbsp tsp teaspoon tablespoon tablespoons teaspoons ingredients instructions "
    "serve minutes add".split()
)
_LEFT_OUT = STOP_WORDS | RECIPE_WORDS


def word_shares(texts_per_step: list[list[str]], top: int = 6) -> pd.DataFrame:
    """(S, top) share of each step's recipes containing a word, for the ``top`` words whose
    share changes most along the traversal (largest spread between steps): what the recipe
    words say changes where the data has no labels."""
    sets = [[text_words(t, _LEFT_OUT) for t in texts] for texts in texts_per_step]
    vocab = sorted(set().union(*(s for step in sets for s in step)))
    share = np.array(
        [[sum(w in s for s in step) / max(len(step), 1) for w in vocab] for step in sets]
    )  # (S, V)
    if share.size == 0:
        return pd.DataFrame(index=range(len(sets)))
    spread = share.max(axis=0) - share.min(axis=0)
    pick = np.argsort(-spread, kind="stable")[:top]
    return pd.DataFrame(share[:, pick], columns=[vocab[i] for i in pick])
