"""Metrics as pure functions on held-out arrays (never averaged over training batches).

MCC follows Khemakhem et al. 2020 (Sec. 6): the mean absolute correlation between true and
learned factors after a Hungarian matching. Retrieval follows the Recipe1M protocol
(Salvador et al., CVPR 2017): median rank and recall@K over random subsets.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata


def correlation_matrix(true: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """(N, n), (N, k) -> (n, k) signed Pearson correlations; constant columns give 0."""
    a = true - true.mean(0)
    b = learned - learned.mean(0)
    norms = np.linalg.norm(a, axis=0)[:, None] * np.linalg.norm(b, axis=0)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / norms
    return np.nan_to_num(corr, nan=0.0)


def match_factors(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching maximising total |corr|: (true indices, latent indices)."""
    return linear_sum_assignment(-np.abs(corr))


def mcc(true: np.ndarray, learned: np.ndarray, method: str = "pearson") -> dict:
    """Mean correlation coefficient and its parts.

    Returns ``{"mcc": float, "per_factor": (n,) |corr| of each true factor's match (nan if
    unmatched), "matching": (n,) latent index or -1, "correlation": (n, k) signed}``.
    """
    if not (np.isfinite(true).all() and np.isfinite(learned).all()):
        raise ValueError(
            "mcc: the true factors or the codes hold NaN or infinite values; a correlation "
            "with them is undefined (not 0): drop or fill those rows first"
        )
    if method == "spearman":
        true, learned = rankdata(true, axis=0), rankdata(learned, axis=0)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    corr = correlation_matrix(np.asarray(true, float), np.asarray(learned, float))
    rows, cols = match_factors(corr)
    per_factor = np.full(corr.shape[0], np.nan)
    matching = np.full(corr.shape[0], -1)
    per_factor[rows] = np.abs(corr[rows, cols])
    matching[rows] = cols
    return {
        "mcc": float(np.abs(corr[rows, cols]).mean()),
        "per_factor": per_factor,
        "matching": matching,
        "correlation": corr,
    }


def ranks_of_true_pairs(scores: np.ndarray) -> np.ndarray:
    """(M, M) scores, row i = query i against all candidates, true match on the diagonal ->
    (M,) 1-based rank of the true match (ties count against it)."""
    true = scores.diagonal()[:, None]
    return (scores > true).sum(1) + (scores == true).sum(1)  # the true one counts itself


def recall_summary(ranks: np.ndarray) -> dict:
    return {
        "medr": float(np.median(ranks)),
        **{f"r{k}": float(100.0 * np.mean(ranks <= k)) for k in (1, 5, 10)},
    }


def retrieval(score_fn, n: int, subset_size: int = 1000, repeats: int = 10, seed: int = 0) -> dict:
    """Recipe1M protocol. ``score_fn(index) -> (m, m)`` scores image i vs recipe j of the subset.

    Draws ``repeats`` subsets of ``subset_size`` (all n, once, if n is smaller), ranks the
    true pair both ways, and averages medR and R@{1,5,10} (percent) over subsets.
    """
    rng = np.random.default_rng(seed)
    size = min(subset_size, n)
    repeats = repeats if n > subset_size else 1
    results = {"x_to_y": [], "y_to_x": []}
    for _ in range(repeats):
        index = rng.choice(n, size=size, replace=False) if size < n else np.arange(n)
        scores = score_fn(index)
        results["x_to_y"].append(recall_summary(ranks_of_true_pairs(scores)))
        results["y_to_x"].append(recall_summary(ranks_of_true_pairs(scores.T)))
    mean = {d: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for d, rs in results.items()}
    return {**mean, "subset_size": int(size), "repeats": int(repeats)}


def nuisance_leakage(nuisances: np.ndarray, learned: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """(N, m) nuisances the query never describes, (N, k) codes, the matched latent indices ->
    (m,) the largest |corr| of any matched latent with each nuisance (0 = no leakage)."""
    latents = np.asarray(latents)
    latents = latents[latents >= 0]
    if len(latents) == 0:
        return np.zeros(nuisances.shape[1])
    return np.abs(correlation_matrix(nuisances, learned[:, latents])).max(1)
