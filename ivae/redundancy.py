"""Redundant latents: which latents the others predict, on the codes alone (no labels).

A model asked for k latents may spend several of them on one direction of the data (a latent
and a near sign-flipped copy of it) or on a combination of others. Three figures say so:

- per latent, R^2 of its linear regression on all the other latents, from the correlation
  matrix C: R^2_j = c_j^T C_{-j}^+ c_j (c_j: column j of C without its diagonal entry);
- per latent, its closest partner: the other latent with the largest |Pearson r|, with sign;
- the number of distinct factors: greedily drop the latent with the largest R^2 from the
  latents kept, while that R^2 is at least ``threshold``; what is left is counted.

The threshold, 0.8, is the variance-inflation-factor cut-off of 5 (VIF = 1 / (1 - R^2)) that
regression practice uses for "this predictor is largely a combination of the others"
(James et al., An Introduction to Statistical Learning, 3.3.3). Dropping one latent at a time
counts a copied pair once (after one of the pair goes, the other's R^2 falls) and a latent
that is a mixture of several others once. The alternative, counting eigenvalues of C above a
cut-off, needs a second threshold and does not say which latents are the redundant ones;
``eigenvalues`` are kept in the result for the model report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.8  # R^2 from the others at or above which a latent is redundant (VIF >= 5)
SAMPLE = 200_000  # codes the correlations are computed on (a seeded sample above this)


@dataclass(frozen=True)
class Redundancy:
    """What the codes say about redundant latents. Arrays are per latent, (k,)."""

    correlation: np.ndarray  # (k, k) Pearson r between latents; 0 off-diagonal for a constant
    r2: np.ndarray  # (k,) R^2 of each latent regressed linearly on all the others
    partner: np.ndarray  # (k,) int: the other latent with the largest |r| (-1 when k == 1)
    partner_r: np.ndarray  # (k,) that latent's signed r
    redundant: np.ndarray  # (k,) bool: r2 >= threshold, or a constant latent
    constant: np.ndarray  # (k,) bool: the latent does not vary over the codes
    kept: np.ndarray  # (d,) int: the latents left by the greedy elimination, ascending
    eigenvalues: np.ndarray  # (k,) eigenvalues of the correlation matrix, descending
    threshold: float

    @property
    def distinct(self) -> int:
        """The number of distinct factors: latents left after dropping the predictable ones."""
        return len(self.kept)


def redundancy(
    z: np.ndarray, threshold: float = THRESHOLD, sample: int = SAMPLE, seed: int = 0
) -> Redundancy:
    """Redundancy of the latents of codes ``z`` (N, k): see the module docstring."""
    z = np.asarray(z)
    if z.ndim != 2 or len(z) < 3:
        raise ValueError(f"codes must be (N, k) with N >= 3, got shape {z.shape}")
    if len(z) > sample:  # correlations settle long before a million rows
        rows = np.sort(np.random.default_rng(seed).choice(len(z), size=sample, replace=False))
        z = z[rows]
    z = z.astype(np.float64)
    if not np.isfinite(z).all():
        raise ValueError("codes hold NaN or infinite values; rebuild the index (ivae index RUN)")
    corr, constant = _correlation(z)
    r2 = np.array([_r2_from_others(corr, j) for j in range(corr.shape[0])])
    r2[constant] = 1.0  # a constant latent carries nothing the others lack
    partner, partner_r = _partners(corr)
    kept = _eliminate(corr, constant, threshold)
    eigenvalues = np.sort(np.linalg.eigvalsh(corr))[::-1]
    return Redundancy(
        correlation=corr,
        r2=r2,
        partner=partner,
        partner_r=partner_r,
        redundant=(r2 >= threshold) | constant,
        constant=constant,
        kept=kept,
        eigenvalues=eigenvalues,
        threshold=threshold,
    )


def _correlation(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, k) Pearson correlation, constant latents uncorrelated with all; (k,) constant mask."""
    centred = z - z.mean(axis=0)
    std = centred.std(axis=0)
    constant = std <= 1e-12 * np.maximum(np.abs(z).max(axis=0), 1.0)
    scaled = centred / np.where(constant, 1.0, std)
    scaled[:, constant] = 0.0
    corr = scaled.T @ scaled / len(z)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0), constant


def _r2_from_others(corr: np.ndarray, j: int, among: np.ndarray | None = None) -> float:
    """R^2 of latent j on the latents ``among`` (default: all others), from correlations."""
    others = np.delete(np.arange(len(corr)), j) if among is None else among[among != j]
    if len(others) == 0:
        return 0.0
    c = corr[others, j]
    # pinv: an exact copy among the others makes their correlation matrix singular
    return float(
        np.clip(c @ np.linalg.pinv(corr[np.ix_(others, others)], hermitian=True) @ c, 0, 1)
    )


def _partners(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = len(corr)
    if k == 1:
        return np.array([-1]), np.array([0.0])
    off = np.abs(corr) - 2.0 * np.eye(k)  # the diagonal never wins
    partner = off.argmax(axis=1)
    return partner, corr[np.arange(k), partner]


def _eliminate(corr: np.ndarray, constant: np.ndarray, threshold: float) -> np.ndarray:
    """Drop constant latents, then one at a time the latent the kept ones predict best."""
    kept = np.flatnonzero(~constant)
    while len(kept) > 1:
        r2 = np.array([_r2_from_others(corr, j, kept) for j in kept])
        worst = int(r2.argmax())
        if r2[worst] < threshold:
            break
        kept = np.delete(kept, worst)
    return kept


def partner_text(red: Redundancy, names: list[str], j: int) -> str:
    """``-savoriness, r = -0.94``: latent j's closest partner, signed."""
    p = int(red.partner[j])
    if p < 0:
        return "no other latent"
    r = float(red.partner_r[j])
    return f"{'-' if r < 0 else ''}{names[p]}, r = {r:.2f}"


def pair_label(red: Redundancy, names: list[str], j: int) -> str:
    """``factor 7 ~ -savoriness, r = -0.94``: latent j and its closest partner."""
    return f"{names[j]} ~ {partner_text(red, names, j)}"


def describe(red: Redundancy, names: list[str]) -> list[str]:
    """One plain sentence per redundant latent, the most predictable first; a pair of near
    copies (each the other's closest partner, r^2 >= threshold) is one sentence."""
    lines, said = [], set()
    for j in np.lexsort((-red.r2, red.constant)):  # constant latents last
        if not red.redundant[j] or j in said:
            continue
        if red.constant[j]:
            lines.append(f"{names[j]} is constant: it carries nothing.")
            continue
        share = f"{100 * red.r2[j]:.0f}% predictable from the other latents"
        p = int(red.partner[j])
        if red.partner_r[j] ** 2 >= red.threshold:  # the partner alone explains it
            said.update({int(j), p} if red.partner[p] == j else {int(j)})
            lines.append(f"{pair_label(red, names, j)}: near copies ({share}).")
        else:
            lines.append(f"{names[j]}: {share} (closest: {partner_text(red, names, j)}).")
    return lines


def summary(red: Redundancy) -> str:
    """``8 latents, ~6 distinct factors``."""
    k = len(red.r2)
    if red.distinct == k:
        return f"{k} latents, all distinct"
    return f"{k} latents, ~{red.distinct} distinct factors"
