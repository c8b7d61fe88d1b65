"""The faiss path of ivae.index (ivae.ann) on small data, with the threshold lowered."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import ivae.ann as ann_module
import ivae.index as index_module
from ivae.factors import search_weights
from ivae.index import MissingIndexError, NearestNeighbors, build_index, load_index, read_index
from tests.test_index import FakeRun, brute_force


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 6)) * 3
    return (centres[rng.integers(0, 20, 5000)] + rng.standard_normal((5000, 6))).astype(np.float32)


@pytest.fixture
def low_threshold(monkeypatch):
    monkeypatch.setattr(ann_module, "ANN_THRESHOLD", 1000)


@pytest.fixture
def fast_map(monkeypatch):
    monkeypatch.setattr(index_module, "map_2d", index_module._pca_2d)


def no_build(*args, **kwargs):
    raise AssertionError("the approximate index was rebuilt")


@pytest.mark.parametrize("case", ["unweighted", "weighted", "exclude"])
def test_every_cell_probed_matches_exact(points, low_threshold, case):
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 2, 6) if case == "weighted" else None
    exclude = np.arange(0, 5000, 3) if case == "exclude" else None
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)  # builds the IVF on first use (above the threshold)
    assert nn.ann is not None and len(nn.ann) == len(points)
    nn.ann.nprobe = len(nn.ann.centres)  # every cell: the candidates are all the points
    for query in rng.standard_normal((10, 6)) * 3:
        found, distances = nn.search(query, n=8, weights=weights, exclude=exclude)
        expected, expected_d = brute_force(
            points, query, 8, weights, () if exclude is None else exclude
        )
        np.testing.assert_array_equal(found, expected)
        np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["equal", "emphasise", "hold"])
def test_default_probes_recall_the_studio_weightings(points, low_threshold, mode):
    rng = np.random.default_rng(2)
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)
    assert nn.ann.nprobe < len(nn.ann.centres)  # a real subset of the cells
    recalls = []
    for row in rng.choice(len(points), 50, replace=False):
        moved = int(rng.integers(6))
        query = points[row].copy()
        query[moved] += rng.uniform(-2, 2)
        weights = search_weights(points, moved=moved, mode=mode)
        assert len(nn.ann.candidates(query, weights)) < len(points)
        found, _ = nn.search(query, n=8, weights=weights)
        recalls.append(len(set(found) & set(brute_force(points, query, 8, weights)[0])) / 8)
    assert np.mean(recalls) >= 0.99


def test_exclusion_beyond_the_candidates_falls_back_to_exact(points, low_threshold):
    nn = NearestNeighbors(points)
    allowed = np.argsort(points[:, 0])[-3:]  # the three points furthest along factor 1
    banned = np.ones(len(points), dtype=bool)
    banned[allowed] = False
    found, _ = nn.search(points[np.argmin(points[:, 0])], n=5, exclude=banned)
    assert sorted(found) == sorted(allowed)  # n shrinks to what is left, all of it found


def test_at_the_threshold_search_is_exact_without_faiss(points, monkeypatch):
    monkeypatch.setattr(ann_module, "ANN_THRESHOLD", len(points))
    monkeypatch.setattr(ann_module, "build_ivf", no_build)
    nn = NearestNeighbors(points)
    found, _ = nn.search(points[3], n=4)
    assert nn.ann is None
    np.testing.assert_array_equal(found, brute_force(points, points[3], 4)[0])


@pytest.fixture
def built_run(tmp_path, fast_map, monkeypatch):
    monkeypatch.setattr(ann_module, "ANN_THRESHOLD", 100)  # FakeRun has 300 items
    run = FakeRun(tmp_path / "run")
    build_index(run, progress=False)
    return run


def test_saved_index_loads_without_rebuilding(built_run, monkeypatch):
    run = built_run
    for file in ann_module.ANN_FILES.values():
        assert (run.path / file).exists()
    monkeypatch.setattr(ann_module, "build_ivf", no_build)
    loaded = load_index(run)
    assert set(loaded.ann) == {"image", "recipe"}
    assert loaded.ann_meta["image"]["faiss_version"] and loaded.ann_meta["image"]["codes_digest"]
    for space, points in (("image", loaded.z), ("recipe", loaded.y_mean)):
        assert loaded.searcher(space).ann is loaded.ann[space]
        weights = search_weights(points, moved=1, mode="hold")
        for row in (5, 123, 299):
            found, _ = loaded.nearest(points[row], n=6, weights=weights, space=space)
            np.testing.assert_array_equal(found, brute_force(points, points[row], 6, weights)[0])


def _other_run(tmp_path):
    class OtherRun(FakeRun):
        def encode_x(self, x, progress=False):
            return x[:, : self.latent_dim] * -3.0

    other = OtherRun(tmp_path / "other")
    build_index(other, progress=False)
    return other


def _set_meta(run, drop=False, **changes):
    """Rewrite codes.npz with the image index's metadata changed (or all of it dropped)."""
    index = read_index(run.path / index_module.INDEX_FILE)
    index.ann_meta = {} if drop else index.ann_meta
    index.ann_meta.get("image", {}).update(changes)
    index_module.save_index(index, run.path / index_module.INDEX_FILE)


def _truncate(run, _):
    path = run.path / ann_module.ANN_FILES["image"]
    path.write_bytes(path.read_bytes()[:-100])


BAD_INPUT = {
    "missing": (lambda run, _: (run.path / ann_module.ANN_FILES["image"]).unlink(), "is missing"),
    "truncated": (_truncate, "truncated"),
    "another run": (
        lambda run, tmp: shutil.copy(
            _other_run(tmp).path / ann_module.ANN_FILES["image"],
            run.path / ann_module.ANN_FILES["image"],
        ),
        "other codes",
    ),
    "same size, other bytes": (
        lambda run, _: (run.path / ann_module.ANN_FILES["image"]).write_bytes(
            bytes((run.path / ann_module.ANN_FILES["image"]).stat().st_size)
        ),
        "other codes",
    ),
    "another faiss": (lambda run, _: _set_meta(run, faiss_version="0.1.0"), "faiss 0.1.0"),
    "another format": (lambda run, _: _set_meta(run, format=0), "format 0"),
    "no metadata": (lambda run, _: _set_meta(run, drop=True), "older version"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_saved_index_is_refused_in_one_line(built_run, tmp_path, monkeypatch, case):
    spoil, expected = BAD_INPUT[case]
    spoil(built_run, tmp_path)
    monkeypatch.setattr(ann_module, "build_ivf", no_build)
    with pytest.raises(MissingIndexError) as caught:
        load_index(built_run)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert str(built_run.path / ann_module.ANN_FILES["image"]) in message
    assert f"`ivae index {built_run.path}`" in message


def test_cells_are_probed_under_the_query_weights(low_threshold):
    """Four tight clusters on the axes; from (2, 2.4) the nearest is (0, 3) unweighted but
    (3, 0) when factor 2 barely counts, and with one cell probed only a probe that uses the
    weights can find it."""
    rng = np.random.default_rng(3)
    centres = np.array([[3, 0], [0, 3], [-3, 0], [0, -3]], dtype=np.float32)
    points = np.repeat(centres, 500, axis=0) + rng.normal(0, 0.1, (2000, 2)).astype(np.float32)
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)
    nn.ann.nprobe = 1
    query = np.array([2.0, 2.4], dtype=np.float32)
    weights = np.array([1.0, 0.01], dtype=np.float32)
    plain = nn.ann.members(nn.ann.first_cells(query, None))
    weighted = nn.ann.members(nn.ann.first_cells(query, weights))
    assert np.all((plain >= 500) & (plain < 1000))  # cluster (0, 3)
    assert np.all(weighted < 500)  # cluster (3, 0)
    assert np.all(nn.search(query, n=8, weights=weights)[0] < 500)


def test_cell_boxes_hold_their_members_tightly(points, low_threshold):
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)
    cells = nn.ann
    for cell in range(len(cells.centres)):
        members = points[cells.members(np.array([cell]))] * cells.scale
        if len(members) == 0:
            assert np.all(np.isinf(cells.low[cell])) and np.all(np.isinf(cells.high[cell]))
            continue
        np.testing.assert_allclose(cells.low[cell], members.min(axis=0), rtol=1e-6)
        np.testing.assert_allclose(cells.high[cell], members.max(axis=0), rtol=1e-6)


@pytest.mark.parametrize("mode", ["equal", "emphasise", "hold"])
def test_box_bound_makes_one_probed_cell_exact(points, low_threshold, mode):
    """One cell probed, then every cell whose box is nearer than the 8th best found: the
    answer is the exact one (no cap on the second round)."""
    rng = np.random.default_rng(4)
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)
    nn.ann.nprobe, nn.ann.max_cells = 1, len(nn.ann.centres)
    for row in rng.choice(len(points), 30, replace=False):
        moved = int(rng.integers(6))
        query = points[row].copy()
        query[moved] += rng.uniform(-2, 2)
        weights = search_weights(points, moved=moved, mode=mode)
        found, distances = nn.search(query, n=8, weights=weights)
        expected, expected_d = brute_force(points, query, 8, weights)
        np.testing.assert_array_equal(np.sort(found), np.sort(expected))
        np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)


def test_second_round_stops_at_its_cap(points, low_threshold):
    nn = NearestNeighbors(points)
    nn.search(points[0], n=1)
    nn.ann.nprobe, nn.ann.max_cells = 1, 3
    query = np.zeros(6, dtype=np.float32)
    first = nn.ann.first_cells(query, None)
    more = nn.ann.cells_within(query, None, np.inf, first)
    assert len(more) == 2 and not set(more) & set(first)
    nn.ann.max_cells = 1
    assert len(nn.ann.cells_within(query, None, np.inf, first)) == 0
    assert len(nn.search(query, n=8)[0]) == 8
