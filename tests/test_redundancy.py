"""Known answers for the redundant-latent detector (ivae/redundancy.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ivae import redundancy as rd

NAMES = ["a", "b", "c", "d", "e", "f"]


def codes_with_copies(n: int = 4000, seed: int = 0) -> np.ndarray:
    """Six latents: a, b, c independent; d = a + noise; e = -b + noise; f independent."""
    rng = np.random.default_rng(seed)
    a, b, c, f = rng.normal(size=(4, n))
    d = 2.0 * a + 0.1 * rng.normal(size=n)  # a scaled copy
    e = -b + 0.1 * rng.normal(size=n)  # a sign-flipped copy
    return np.stack([a, b, c, d, e, f], axis=1)


def test_copied_latents_are_flagged_with_their_partner_and_sign():
    red = rd.redundancy(codes_with_copies())
    assert red.redundant.tolist() == [True, True, False, True, True, False]
    assert red.partner[3] == 0 and red.partner_r[3] > 0.99
    assert red.partner[4] == 1 and red.partner_r[4] < -0.99
    assert red.partner[0] == 3 and red.partner[1] == 4
    assert red.r2[[0, 1, 3, 4]].min() > 0.98
    assert red.r2[[2, 5]].max() < 0.01
    assert red.distinct == 4  # a (or d), b (or e), c, f
    assert rd.summary(red) == "6 latents, ~4 distinct factors"


def test_independent_latents_are_not_flagged():
    z = np.random.default_rng(1).normal(size=(3000, 8)) * np.arange(1, 9)
    red = rd.redundancy(z)
    assert not red.redundant.any()
    assert red.r2.max() < 0.02 and np.abs(red.partner_r).max() < 0.1
    assert red.distinct == 8 and rd.summary(red) == "8 latents, all distinct"


def test_a_mixture_of_several_latents_is_one_redundant_latent():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(5000, 4))
    mixed = base @ np.array([0.5, 0.5, 0.5, 0.5]) + 0.05 * rng.normal(size=5000)
    red = rd.redundancy(np.column_stack([base, mixed]))
    assert red.r2[4] > 0.99 and red.redundant[4]
    assert abs(red.partner_r[4]) < 0.6  # no single partner explains it
    assert red.distinct == 4


def test_exact_copy_and_constant_latent():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 500))
    red = rd.redundancy(np.column_stack([a, -a, b, np.full(500, 2.5)]))
    assert red.r2[:2].min() == pytest.approx(1.0)
    assert red.redundant.tolist() == [True, True, False, True]
    assert red.distinct == 2
    assert rd.describe(red, ["a", "b", "c", "d"]) == [
        "a ~ -b, r = -1.00: near copies (100% predictable from the other latents).",
        "d is constant: it carries nothing.",
    ]


def test_sentences_name_the_pair_with_its_sign():
    red = rd.redundancy(codes_with_copies())
    lines = rd.describe(red, NAMES)
    assert len(lines) == 2  # each copied pair once
    assert any(line.startswith("e ~ -b, r = -1.00") or "b ~ -e" in line for line in lines)
    assert rd.pair_label(red, NAMES, 3).startswith("d ~ a, r = 1.00")


def test_a_large_run_is_sampled_and_bad_codes_refused():
    z = codes_with_copies(n=3000)
    red = rd.redundancy(z, sample=1000)
    assert red.distinct == 4
    with pytest.raises(ValueError, match="shape"):
        rd.redundancy(np.zeros(5))
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="ivae index"):
        rd.redundancy(bad)
