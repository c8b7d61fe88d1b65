"""The iVAE toy protocol: mixing matrices, modulation and validation."""

import numpy as np
import pytest

from ivae.data import toy
from ivae.data.toy import generate_toy, resample_toy, toy_mixing


@pytest.mark.parametrize(
    ("data_dim", "mixing", "draws"),
    [
        (5, "repeat", 1),  # square: the first matrix is reused by every later layer
        (8, "repeat", 2),  # non-square: the first is (5, 8), one (8, 8) is shared after it
        (5, "independent", 3),
        (8, "independent", 3),
    ],
)
def test_mixing_draws_the_expected_number_of_matrices(monkeypatch, data_dim, mixing, draws):
    calls = []
    original = toy._well_conditioned

    def counting(rng, rows, cols, tries=1000):
        calls.append((rows, cols))
        return original(rng, rows, cols, tries=50)

    monkeypatch.setattr(toy, "_well_conditioned", counting)
    arrays = toy.generate_toy(data_dim=data_dim, segments=4, per_segment=20, mixing=mixing)
    assert len(calls) == draws
    assert arrays["x"].shape == (80, data_dim)


def test_variance_modulation_follows_the_segment():
    arrays = toy.generate_toy(segments=3, per_segment=4000, seed=2)
    s, u = arrays["factors"], arrays["u"]
    stds = np.array([s[u == g].std(0) for g in range(3)])
    assert np.all((stds > 0.45) & (stds < 3.1))  # drawn from [0.5, 3]
    assert np.abs(s.mean(0)).max() < 0.1  # variance-only: every segment is centred
    assert stds.std(0).min() > 0.05  # the spread really differs between segments


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="mixing"):
        toy.generate_toy(mixing="shared")
    with pytest.raises(ValueError, match="at least sources"):
        toy.generate_toy(data_dim=3)


@pytest.mark.parametrize("mixing", ["repeat", "independent"])
def test_the_toy_mixing_maps_the_data_sets_own_sources_to_its_observations(mixing):
    options = {"segments": 4, "per_segment": 50, "seed": 3, "mixing": mixing}
    data = generate_toy(**options)
    x = toy_mixing(**options)(data["factors"].astype(np.float64))
    np.testing.assert_allclose(x, data["x"], rtol=1e-5, atol=1e-5)


def test_resampled_points_come_from_the_same_segments_and_mixing():
    options = {"segments": 4, "per_segment": 50, "seed": 3, "modulate": "mean-variance"}
    data = generate_toy(**options)
    fresh = resample_toy(options, 5000, fresh_seed=7)
    assert fresh["x"].shape == (4 * 5000, 5)
    same = (fresh["factors"][:, None] == data["factors"][None]).all(-1)
    assert not same.any()  # new draws
    np.testing.assert_allclose(
        fresh["x"],
        toy_mixing(**options)(fresh["factors"].astype(np.float64)),
        rtol=1e-5,
        atol=1e-5,
    )
    for segment in range(4):  # each segment's means and sds, as the data set's were drawn
        ours, theirs = (
            fresh["factors"][fresh["u"] == segment],
            data["factors"][data["u"] == segment],
        )
        assert np.allclose(ours.mean(0), theirs.mean(0), atol=4 * theirs.std(0) / np.sqrt(50))
        assert np.allclose(ours.std(0), theirs.std(0), rtol=0.4)
