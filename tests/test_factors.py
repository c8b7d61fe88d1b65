"""Factor-space maths behind the pages (ivae.factors), on small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ivae import factors
from ivae.index import Index


def make_index(z: np.ndarray, y_mean: np.ndarray | None = None) -> Index:
    n, k = z.shape
    return Index(
        ids=np.array([f"i{j}" for j in range(n)]),
        z=z.astype(np.float32),
        y_mean=(z if y_mean is None else y_mean).astype(np.float32),
        y_logvar=np.zeros((n, k), np.float32),
        map2d=z[:, :2].astype(np.float32),
    )


@pytest.fixture
def z():
    return np.random.default_rng(0).standard_normal((1000, 3)).astype(np.float32)


def test_ranges_percentiles_and_poles(z):
    ranges = factors.factor_ranges(z)
    assert ranges.shape == (3, 2) and np.all(ranges[:, 0] < ranges[:, 1])
    np.testing.assert_allclose(factors.percentiles(z, np.median(z, axis=0)), 50, atol=0.2)
    assert factors.percentiles(z, z.max(axis=0) + 1).tolist() == [100, 100, 100]
    low, high = factors.poles(z, 1, n=3)
    assert z[low[0], 1] == z[:, 1].min() and z[high[0], 1] == z[:, 1].max()


def test_search_weights_modes(z):
    scaled = z * np.array([1.0, 10.0, 0.1], np.float32)
    equal = factors.search_weights(scaled)
    np.testing.assert_allclose(equal * scaled.var(axis=0), 1, rtol=1e-5)  # standardised
    emphasise = factors.search_weights(scaled, moved=2, mode="emphasise")
    np.testing.assert_allclose(emphasise / equal, [1, 1, 4], rtol=1e-5)
    hold = factors.search_weights(scaled, moved=2, mode="hold")
    np.testing.assert_allclose(hold / equal, [4, 4, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        factors.search_weights(scaled, moved=0, mode="sideways")


def test_emptiness_levels(z):
    index = make_index(z)
    gaps = factors.typical_gap(index, factors.search_weights(z), sample=300)
    assert np.all(gaps > 0)
    assert factors.emptiness(0.0, gaps)[1] == "ok"
    assert factors.emptiness(float(gaps.max()) * 10, gaps) == (100.0, "empty")


def test_traversal_moves_only_one_factor(z):
    index = make_index(z.copy())  # the test changes the index's codes below
    strip = factors.traversal(index, z[0], factor=1, weights=np.ones(3), steps=5)
    assert len(strip) == 5 and strip["value"].is_monotonic_increasing
    assert z[strip["item"].iat[0], 1] < z[strip["item"].iat[-1], 1]
    np.testing.assert_allclose(strip["value"], np.percentile(z[:, 1], np.linspace(2, 98, 5)))
    index.z[:, 1] = 0.0  # the quantiles are the index's, computed once: a later move reuses them
    again = factors.traversal(index, z[0], factor=1, weights=np.ones(3), steps=5)
    np.testing.assert_array_equal(again["value"], strip["value"])


def test_agreement_known_answer(z):
    y_mean = z.copy()
    y_mean[:, 2] = np.random.default_rng(1).standard_normal(len(z))
    values = factors.agreement(z, y_mean)
    np.testing.assert_allclose(values[:2], 1.0, atol=1e-5)
    assert abs(values[2]) < 0.1


def test_minimal_pairs_finds_planted_pair():
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, (300, 3))
    z[10] = [0.0, -2.0, 0.0]  # alike in factors 0 and 2, far apart on factor 1
    z[20] = [0.0, 2.0, 0.0]
    pairs = factors.minimal_pairs(z, factor=1, n=3)
    assert (pairs["low"].iat[0], pairs["high"].iat[0]) == (10, 20)
    assert list(pairs.columns) == ["low", "high", "gap", "other_distance"]


@pytest.mark.parametrize(
    "low, high", [(-1.2345678, 0.999447226524353), (0.0, 1.0), (-3.3, -3.2999), (5.0, 5.0)]
)
def test_slider_grid_puts_both_ends_on_a_round_step(low, high):
    lo, hi, step = factors.slider_grid(low, high)
    assert lo <= low and hi >= high and step > 0
    assert float(f"{step:.1g}") == step
    for end in (lo, hi):
        assert abs(round(end / step) * step - end) < 1e-9


class ScoringRun:
    """The model's score as Run.score has it: (N, k) codes vs (M, k) Gaussians -> (N, M), the
    log-density of each code under each Gaussian (up to a constant)."""

    def score(self, z, mean, logvar):
        z, mean, logvar = (np.asarray(a, dtype=float) for a in (z, mean, logvar))
        d = (z[:, None, :] - mean[None]) ** 2 / np.exp(logvar)[None]
        return -0.5 * (d + logvar[None]).sum(axis=-1)


def test_recipe_to_images_ranks_by_the_models_score(z):
    index = make_index(z)
    target = z[123]
    rows, scores = factors.recipe_to_images(ScoringRun(), index, target, np.zeros(3), n=5)
    assert rows[0] == 123 and len(rows) == 5
    assert np.all(np.diff(scores) <= 0)  # best first
    expected = np.argsort(((z - target) ** 2).sum(axis=1), kind="stable")[:5]
    np.testing.assert_array_equal(rows, expected)


def test_image_to_recipes_ranks_recipe_priors(z):
    y_mean = np.random.default_rng(2).standard_normal(z.shape).astype(np.float32)
    index = make_index(z, y_mean)
    rows, scores = factors.image_to_recipes(ScoringRun(), index, y_mean[7], n=3)
    assert rows[0] == 7 and scores[0] == pytest.approx(0.0, abs=1e-6)


def test_best_scores_keeps_row_order_on_ties():
    rows, scores = factors.best_scores(np.array([1.0, 3.0, 3.0, 2.0]), 3)
    assert rows.tolist() == [1, 2, 3] and scores.tolist() == [3.0, 3.0, 2.0]
