"""The unfamiliarity score (deep nearest neighbours) and its threshold, with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ivae import familiarity
from ivae.familiarity import (
    FamiliarityError,
    FeatureSpace,
    fit_familiarity,
    kth_distance,
    load_familiarity,
    normalise,
    pass_threshold,
    read_familiarity,
    reference_rows,
    save_familiarity,
)
from ivae.index import NearestNeighbors

AXES = np.eye(3, dtype=np.float32)  # three unit reference points


def test_kth_distance_known_answers():
    theta = 0.3
    query = np.array([[np.cos(theta), np.sin(theta), 0.0]])
    reference = NearestNeighbors(AXES)
    # chord lengths on the unit circle: 2 sin(angle / 2)
    assert kth_distance(reference, query, 1)[0] == pytest.approx(2 * np.sin(theta / 2), abs=1e-5)
    angle_to_e2 = np.pi / 2 - theta
    assert kth_distance(reference, query, 2)[0] == pytest.approx(
        2 * np.sin(angle_to_e2 / 2), abs=1e-5
    )
    assert kth_distance(reference, query, 3)[0] == pytest.approx(np.sqrt(2), abs=1e-5)


def test_the_score_ignores_the_feature_scale():
    check = fit_familiarity(AXES * [2.0, 3.0, 4.0], AXES, k=1)
    point = np.array([[1.0, 1.0, 0.0]])
    expected = np.sqrt(2 - np.sqrt(2))  # |(1,1,0)/sqrt2 - e1|
    assert check.scores(point)[0] == pytest.approx(expected, abs=1e-3)
    assert check.scores(10 * point)[0] == pytest.approx(expected, abs=1e-3)


def test_normalise_gives_unit_rows_and_keeps_zero_rows():
    rows = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize("n, rate, passing", [(100, 0.95, 95), (2000, 0.95, 1900), (4, 0.5, 2)])
def test_the_threshold_passes_exactly_the_rate(n, rate, passing):
    scores = np.random.default_rng(0).permutation(np.linspace(0.1, 2.0, n))
    threshold = pass_threshold(scores, rate)
    assert int(np.sum(scores <= threshold)) == passing


def test_a_fitted_check_passes_95_percent_of_its_calibration_set():
    rng = np.random.default_rng(1)
    train, calibration = rng.normal(size=(300, 16)), rng.normal(size=(200, 16))
    check = fit_familiarity(train, calibration, k=5, backbone="toy", weights_hash="abc")
    flagged = check.unfamiliar(check.scores(calibration))
    assert int((~flagged).sum()) == 190


def test_a_far_point_is_unfamiliar_and_a_reference_point_is_not():
    rng = np.random.default_rng(2)
    cluster = 0.1 * np.abs(rng.normal(size=(200, 8))) + np.eye(8)[0]  # all near e1
    check = fit_familiarity(cluster[:150], cluster[150:], k=3)
    far = -np.eye(8)[:1]  # the opposite direction: distance 2 from every unit point near e1
    assert check.unfamiliar(check.scores(far))[0]
    assert check.scores(far)[0] == pytest.approx(2.0, abs=0.05)
    assert not check.unfamiliar(check.scores(cluster[:1]))[0]


def test_k_beyond_the_reference_is_refused():
    with pytest.raises(FamiliarityError, match="k = 4"):
        fit_familiarity(AXES, AXES, k=4)


def test_saved_and_read_back_scores_alike(tmp_path):
    rng = np.random.default_rng(3)
    check = fit_familiarity(rng.normal(size=(50, 6)), rng.normal(size=(20, 6)), k=2)
    save_familiarity(check, tmp_path / "familiarity.npz")
    again = read_familiarity(tmp_path / "familiarity.npz")
    queries = rng.normal(size=(7, 6))
    np.testing.assert_allclose(again.scores(queries), check.scores(queries))
    assert (again.k, again.threshold) == (2, check.threshold)


def test_reference_rows_are_a_seeded_sorted_subset():
    rows = reference_rows(1000, 100, seed=0)
    assert len(set(rows)) == 100 and np.all(np.diff(rows) > 0) and rows.max() < 1000
    np.testing.assert_array_equal(rows, reference_rows(1000, 100, seed=0))
    assert not np.array_equal(rows, reference_rows(1000, 100, seed=1))
    np.testing.assert_array_equal(reference_rows(30, 100), np.arange(30))
    assert set(reference_rows(1000, 50)) <= set(rows)  # nested: the bench measures prefixes


# --------------------------------------------------------------------------- a run's check


def mean_colour(photos) -> np.ndarray:
    """A stand-in feature space: each photo's mean colour and its square."""
    means = np.array([np.asarray(p, dtype=np.float32).mean(axis=(0, 1)) for p in photos])
    return np.concatenate([means, means**2 / 255.0], axis=1)


def toy_space() -> FeatureSpace:
    return FeatureSpace("toy", "0123", 16, mean_colour)


def fake_run(tmp_path: Path, n: int = 40) -> SimpleNamespace:
    """A run directory over a paired data set of n coloured squares (train/val/test)."""
    from PIL import Image
    from tiny_run import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data", n=n, size=16)
    assert Image.open(data / "images" / "0000.png").size == (16, 16)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"data": {"path": str(data)}}))
    return SimpleNamespace(path=tmp_path / "run", config={}, data_dir=lambda: data)


def test_build_and_load_a_runs_check(tmp_path, monkeypatch):
    monkeypatch.setattr(familiarity, "feature_space", lambda run, size=None: toy_space())
    run = fake_run(tmp_path)
    built = familiarity.build_familiarity(run, k=3, reference_size=20, progress=False)
    assert built.reference.shape == (20, 6) and built.backbone == "toy"
    loaded = load_familiarity(run, toy_space())
    assert loaded.threshold == built.threshold and loaded.k == 3


def test_a_missing_or_mismatched_check_says_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(familiarity, "feature_space", lambda run, size=None: toy_space())
    run = fake_run(tmp_path)
    with pytest.raises(FamiliarityError, match="ivae index"):
        load_familiarity(run, toy_space())
    familiarity.build_familiarity(run, k=2, reference_size=10, progress=False)
    other = FeatureSpace("toy", "ffff", 16, mean_colour)
    with pytest.raises(FamiliarityError, match="ffff.*ivae index"):
        load_familiarity(run, other)


def test_a_backbone_run_uses_its_cached_features_alike(tmp_path, monkeypatch):
    """A backbone run's data holds the photos' features already: the check built from them
    equals the one built from the image files."""
    from PIL import Image

    from ivae.data.paired import read_items

    monkeypatch.setattr(familiarity, "feature_space", lambda run, size=None: toy_space())
    files_run = fake_run(tmp_path)
    from_files = familiarity.build_familiarity(files_run, k=3, reference_size=20, progress=False)
    items = read_items(files_run.data_dir())
    photos = [Image.open(files_run.data_dir() / p).convert("RGB") for p in items["image"]]
    data = SimpleNamespace(x=mean_colour(photos), split=items["split"].to_numpy())
    cached_run = SimpleNamespace(
        path=files_run.path,
        config={"backbone": {"name": "toy"}},
        data_dir=files_run.data_dir,
        load_data=lambda path=None: data,
    )
    from_cache = familiarity.build_familiarity(cached_run, k=3, reference_size=20, progress=False)
    np.testing.assert_allclose(from_cache.reference, from_files.reference)
    assert from_cache.threshold == pytest.approx(from_files.threshold)
