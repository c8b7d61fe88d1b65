"""Known answers for MCC and the retrieval metrics."""

from __future__ import annotations

import numpy as np
import pytest

from ivae.metrics import mcc, ranks_of_true_pairs, recall_summary, retrieval


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_permuted_and_rescaled_sources_score_one(rng, method):
    s = rng.standard_normal((2000, 4))
    learned = s[:, [2, 0, 3, 1]] * np.array([3.0, -0.5, 10.0, -2.0]) + 7.0
    result = mcc(s, learned, method)
    assert result["mcc"] == pytest.approx(1.0, abs=1e-9)
    assert list(result["matching"]) == [1, 3, 0, 2]


def test_monotone_transforms_score_one_under_spearman_only(rng):
    s = rng.standard_normal((2000, 2))
    learned = np.exp(2 * s)  # strictly monotone, far from linear
    assert mcc(s, learned, "spearman")["mcc"] == pytest.approx(1.0)
    assert mcc(s, learned, "pearson")["mcc"] < 0.9


def test_independent_noise_scores_near_zero(rng):
    s, noise = rng.standard_normal((20000, 3)), rng.standard_normal((20000, 3))
    assert mcc(s, noise)["mcc"] < 0.03


def test_a_half_mixed_factor_scores_its_correlation(rng):
    s = rng.standard_normal((50000, 2))
    learned = np.stack([s[:, 0], (s[:, 1] + s[:, 0]) / np.sqrt(2)], 1)
    result = mcc(s, learned)
    assert result["per_factor"] == pytest.approx([1.0, 1 / np.sqrt(2)], abs=0.02)


def test_more_latents_than_factors_matches_each_factor_once(rng):
    s = rng.standard_normal((1000, 2))
    learned = np.concatenate([rng.standard_normal((1000, 3)), s], 1)
    result = mcc(s, learned)
    assert result["mcc"] == pytest.approx(1.0) and list(result["matching"]) == [3, 4]


def test_constant_latent_gives_zero_not_nan(rng):
    s = rng.standard_normal((100, 2))
    result = mcc(s, np.ones((100, 2)))
    assert result["mcc"] == 0.0


def test_ranks_of_a_perfect_and_a_reversed_score_matrix():
    perfect = np.eye(5)
    assert list(ranks_of_true_pairs(perfect)) == [1, 1, 1, 1, 1]
    reversed_ = -np.eye(5)  # the true pair scores lowest
    assert list(ranks_of_true_pairs(reversed_)) == [5, 5, 5, 5, 5]


def test_ties_count_against_the_true_pair():
    assert list(ranks_of_true_pairs(np.zeros((4, 4)))) == [4, 4, 4, 4]


def test_recall_summary_known_answer():
    summary = recall_summary(np.array([1, 2, 6, 11]))
    assert summary == {"medr": 4.0, "r1": 25.0, "r5": 50.0, "r10": 75.0}


def test_retrieval_protocol_perfect_scores_and_subsets():
    result = retrieval(lambda index: np.eye(len(index)), n=2500, subset_size=1000, repeats=3)
    assert result["x_to_y"] == {"medr": 1.0, "r1": 100.0, "r5": 100.0, "r10": 100.0}
    assert result["subset_size"] == 1000 and result["repeats"] == 3


def test_retrieval_random_scores_are_at_chance(rng):
    result = retrieval(lambda index: rng.standard_normal((len(index), len(index))), n=1000)
    assert result["repeats"] == 1 and 400 < result["y_to_x"]["medr"] < 600
    assert result["x_to_y"]["r10"] < 3.0


def test_nuisance_leakage_known_answers(rng):
    from ivae.metrics import nuisance_leakage

    n = rng.standard_normal((5000, 2))
    clean = rng.standard_normal((5000, 3))
    leaky = clean.copy()
    leaky[:, 1] = n[:, 0]  # a matched latent that follows the first nuisance exactly
    assert nuisance_leakage(n, clean, np.array([0, 1, 2])).max() < 0.05
    assert nuisance_leakage(n, leaky, np.array([0, 1, 2]))[0] == pytest.approx(1.0)
    assert nuisance_leakage(n, leaky, np.array([0, 2])).max() < 0.05  # latent 1 is unmatched
