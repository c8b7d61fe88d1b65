"""Factor-space maths behind the dashboard: ranges, percentiles, poles, search weights,
emptiness, traversals by retrieval and the image/recipe scores.

Codes ``z`` are (N, k) image factor values from the index. Nothing here imports streamlit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ivae.index import Index, NearestNeighbors


def slider_grid(low: float, high: float, steps: int = 200) -> tuple[float, float, float]:
    """(low, high, step) with a one-significant-digit step and both ends on its grid.

    A step with many decimals lets the browser send the maximum one unit in the last place
    above ``high``; Streamlit then rejects the value and resets the slider to its minimum.
    """
    step = float(f"{(float(high) - float(low)) / steps:.1g}") or 0.01
    return (
        round(math.floor(low / step) * step, 10),
        round(math.ceil(high / step) * step, 10),
        step,
    )


def factor_ranges(z: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """(k, 2) slider range per factor: the low and high percentiles of the data."""
    return np.stack([np.percentile(z, low, axis=0), np.percentile(z, high, axis=0)], axis=1)


def percentiles(z: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(k,) percentile (0-100) of each factor value among the data's codes."""
    z_sorted = np.sort(z, axis=0)
    ranks = [np.searchsorted(z_sorted[:, j], values[j]) for j in range(z.shape[1])]
    return 100.0 * np.asarray(ranks, dtype=float) / len(z)


def poles(z: np.ndarray, factor: int, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the n lowest and n highest items on one factor (most extreme first)."""
    order = np.argsort(z[:, factor], kind="stable")
    return order[:n], order[::-1][:n]


def search_weights(z: np.ndarray, moved: int | None = None, mode: str = "equal") -> np.ndarray:
    """(k,) distance weights: each factor standardised (1 / variance), then by ``mode``:

    ``equal`` all factors count alike; ``emphasise`` the moved factor counts 4x;
    ``hold`` the other factors count 4x, so results stay alike in them.
    """
    weights = 1.0 / np.maximum(z.var(axis=0), 1e-12)
    if moved is None or mode == "equal":
        return weights
    if mode not in ("emphasise", "hold"):
        raise ValueError(f"mode must be equal, emphasise or hold, got {mode!r}")
    boost = np.ones_like(weights)
    if mode == "emphasise":
        boost[moved] = 4.0
    else:
        boost[:] = 4.0
        boost[moved] = 1.0
    return weights * boost


def typical_gap(index: Index, weights: np.ndarray, sample: int = 2000, seed: int = 0) -> np.ndarray:
    """Nearest-other-item distances of a sample of items: what "close to a real dish" means."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(index), size=min(sample, len(index)), replace=False)
    _, distances = index.nearest(index.z[pick], n=2, weights=weights)
    return distances[:, 1]


def emptiness(distance: float, gaps: np.ndarray) -> tuple[float, str]:
    """How far a query is from the data compared with item-to-item gaps: (percentile, level)."""
    share = float(np.mean(gaps <= distance) * 100.0)
    level = "ok" if share < 90 else ("sparse" if share < 99 else "empty")
    return share, level


def traversal(
    index: Index,
    start: np.ndarray,
    factor: int,
    weights: np.ndarray,
    steps: int = 7,
    low: float = 2.0,
    high: float = 98.0,
) -> pd.DataFrame:
    """Move one factor through quantiles of the data, others fixed; the nearest real item at
    each step (there is no decoder: a traversal is a sequence of retrievals)."""
    quantiles = np.linspace(low, high, steps)
    values = index.quantiles(factor, quantiles)
    queries = np.repeat(np.asarray(start, dtype=np.float32)[None], steps, axis=0)
    queries[:, factor] = values
    hits, distances = index.nearest(queries, n=1, weights=weights)
    return pd.DataFrame(
        {"quantile": quantiles, "value": values, "item": hits[:, 0], "distance": distances[:, 0]}
    )


def best_scores(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the n highest scores, best first (ties keep row order), and those scores."""
    top = np.argsort(-np.asarray(scores), kind="stable")[:n]
    return top, scores[top]


def image_to_recipes(run, index: Index, z: np.ndarray, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The n recipes whose prior p(z|y) best matches an image code (the model's own score)."""
    scores = run.score(np.asarray(z, dtype=np.float32)[None], index.y_mean, index.y_logvar)[0]
    return best_scores(scores, n)


def recipe_to_images(
    run, index: Index, mean: np.ndarray, logvar: np.ndarray, n: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """The n images whose codes best fit a recipe's prior p(z|y) = N(mean, exp(logvar))."""
    scores = run.score(index.z, np.asarray(mean)[None], np.asarray(logvar)[None])[:, 0]  # (N,)
    return best_scores(scores, n)


def agreement(z: np.ndarray, y_mean: np.ndarray) -> np.ndarray:
    """(k,) Pearson correlation, per factor, of the image code and the recipe's prior mean."""
    zc, yc = z - z.mean(axis=0), y_mean - y_mean.mean(axis=0)
    denom = np.sqrt((zc**2).sum(axis=0) * (yc**2).sum(axis=0))
    return (zc * yc).sum(axis=0) / np.maximum(denom, 1e-12)


def minimal_pairs(
    z: np.ndarray, factor: int, n: int = 4, sample: int = 3000, seed: int = 0
) -> pd.DataFrame:
    """Pairs of items alike in every factor but ``factor`` and far apart on it.

    For a sample of items, the 8 nearest others ignoring ``factor`` (standardised distance);
    among the closest fifth of those pairs, the n with the largest gap on ``factor``.
    """
    scale = np.maximum(z.std(axis=0), 1e-12)
    zs = z / scale
    weights = np.ones(z.shape[1])
    weights[factor] = 0.0
    rng = np.random.default_rng(seed)
    anchors = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    # exact: a few thousand queries scan in blocks; above a million codes an approximate
    # index would otherwise be built on every call
    search = NearestNeighbors(zs, exact=True).search
    hits, others = search(zs[anchors], n=min(9, len(z)), weights=weights)
    a = np.repeat(anchors, hits.shape[1] - 1)
    b, other = hits[:, 1:].ravel(), others[:, 1:].ravel()
    gap = np.abs(zs[a, factor] - zs[b, factor])
    close = other <= np.quantile(other, 0.2)
    order = np.argsort(-np.where(close, gap, -np.inf), kind="stable")
    pairs, seen = [], set()
    for i in order:
        key = (min(a[i], b[i]), max(a[i], b[i]))
        if key in seen or not close[i] or len(pairs) == n:
            continue
        seen.add(key)
        low, high = sorted(key, key=lambda j: z[j, factor])
        pairs.append({"low": low, "high": high, "gap": gap[i], "other_distance": other[i]})
    return pd.DataFrame(pairs, columns=["low", "high", "gap", "other_distance"])
