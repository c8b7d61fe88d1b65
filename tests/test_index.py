"""Exact nearest-neighbour search and the saved index, tested without a trained model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ivae.index as index_module
from ivae.index import (
    INDEX_FILE,
    MissingIndexError,
    NearestNeighbors,
    build_index,
    load_index,
    load_items,
    map_2d,
)


def brute_force(points, query, n, weights=None, exclude=()):
    weights = np.ones(points.shape[1]) if weights is None else weights
    d2 = (((points - query) ** 2) * weights).sum(axis=1)
    d2[list(exclude)] = np.inf
    order = np.argsort(d2, kind="stable")[:n]
    return order, np.sqrt(d2[order])


@pytest.fixture
def points():
    return np.random.default_rng(0).standard_normal((5000, 6)).astype(np.float32)


@pytest.mark.parametrize("block_size", [64, 777, 100000])
@pytest.mark.parametrize("weighted", [False, True])
def test_search_matches_brute_force(points, block_size, weighted):
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 2, 6) if weighted else None
    nn = NearestNeighbors(points, block_size=block_size)
    for _ in range(5):
        query = rng.standard_normal(6)
        indices, distances = nn.search(query, n=12, weights=weights)
        expected, expected_d = brute_force(points, query, 12, weights)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(distances, expected_d, rtol=1e-3, atol=1e-3)


def test_batch_queries_and_exclusion(points):
    nn = NearestNeighbors(points, block_size=1000)
    indices, distances = nn.search(points[:3], n=5)
    assert indices.shape == distances.shape == (3, 5)
    np.testing.assert_array_equal(indices[:, 0], [0, 1, 2])  # each point is its own nearest
    assert np.all(np.diff(distances, axis=1) >= 0)
    without, _ = nn.search(points[7], n=4, exclude=np.array([7]))
    assert 7 not in without
    np.testing.assert_array_equal(without, brute_force(points, points[7], 4, exclude=[7])[0])
    mask = np.ones(len(points), dtype=bool)
    mask[[3, 9]] = False
    only, _ = nn.search(points[0], n=10, exclude=mask)
    assert sorted(only) == [3, 9]  # n shrinks to what is left


def test_zero_weight_ignores_a_dimension(points):
    query = points[10].copy()
    query[2] += 100.0  # far away in dimension 2 only
    weights = np.ones(6)
    weights[2] = 0.0
    indices, _ = NearestNeighbors(points).search(query, n=1, weights=weights)
    assert indices[0] == 10


def test_bad_weights_are_refused(points):
    with pytest.raises(ValueError, match="non-negative"):
        NearestNeighbors(points).search(points[0], weights=-np.ones(6))


def test_map_2d_small_and_shape():
    z = np.random.default_rng(0).standard_normal((10, 4))
    assert map_2d(z).shape == (10, 2)  # too few points for UMAP: PCA


@pytest.mark.slow
def test_map_2d_umap():
    z = np.random.default_rng(0).standard_normal((200, 4))
    assert map_2d(z).shape == (200, 2)
    sampled = map_2d(z, sample=100)  # UMAP on 100 codes, the other 100 placed on its map
    assert sampled.shape == (200, 2) and np.all(np.isfinite(sampled))


class FakeRun:
    """The parts of ivae.run.Run the index uses: a linear 'encoder' on vectors."""

    def __init__(self, path: Path, k: int = 3):
        self.path = path
        self.latent_dim = k
        rng = np.random.default_rng(0)
        n = 300
        self.data = SimpleNamespace(
            x=rng.standard_normal((n, 5)).astype(np.float32),
            y=rng.standard_normal((n, 4)).astype(np.float32),
            ids=np.array([f"item{i}" for i in range(n)]),
            source="/data/fake",
        )
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.pt").write_bytes(b"weights v1")

    def load_data(self):
        return self.data

    def encode_x(self, x, progress=False):
        return x[:, : self.latent_dim] * 2.0

    def encode_y(self, y, progress=False):
        return y[:, : self.latent_dim], np.zeros((len(y), self.latent_dim))


@pytest.fixture
def fast_map(monkeypatch):
    """UMAP compiles with numba for a minute; the save/load logic does not need it."""
    monkeypatch.setattr(index_module, "map_2d", index_module._pca_2d)


def test_build_save_load_roundtrip(tmp_path, fast_map):
    run = FakeRun(tmp_path / "run")
    built = build_index(run, progress=False)
    assert (run.path / INDEX_FILE).exists()
    assert not list((run.path / "index").glob("*.tmp"))  # atomic write left nothing behind
    loaded = load_index(run)
    np.testing.assert_array_equal(loaded.ids, built.ids)
    np.testing.assert_allclose(loaded.z, run.data.x[:, :3] * 2.0, rtol=1e-6)
    assert loaded.map2d.shape == (300, 2) and loaded.data_source == "/data/fake"
    assert loaded.position("item5") == 5
    hits, _ = loaded.nearest(loaded.z[42], n=3)
    assert hits[0] == 42
    recipe_hits, _ = loaded.nearest(loaded.y_mean[17], n=1, space="recipe")
    assert recipe_hits[0] == 17


def test_saved_codes_are_memory_mapped_and_compressed_ones_still_read(tmp_path, fast_map):
    from ivae.io import save_npz

    run = FakeRun(tmp_path / "run")
    built = build_index(run, progress=False)
    loaded = load_index(run)
    for name in ("ids", "z", "y_mean", "y_logvar", "map2d"):
        assert isinstance(getattr(loaded, name), np.memmap), name
        np.testing.assert_array_equal(getattr(loaded, name), getattr(built, name))
    assert loaded.z.dtype == np.float32
    loaded.z[0] = 99.0  # copy-on-write: the saved index does not change
    assert load_index(run).z[0, 0] == built.z[0, 0]
    with np.load(run.path / INDEX_FILE) as f:  # the same arrays, zip-compressed
        save_npz(run.path / INDEX_FILE, {n: f[n] for n in f.files}, compressed=True)
    again = load_index(run)
    assert not isinstance(again.z, np.memmap)
    np.testing.assert_array_equal(again.z, built.z)
    np.testing.assert_array_equal(again.ids, built.ids)
    data = (run.path / INDEX_FILE).read_bytes()
    (run.path / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(MissingIndexError, match="unreadable.*ivae index"):
        load_index(run)


def test_many_queries_scan_in_bounded_blocks(points, monkeypatch):
    monkeypatch.setattr(index_module, "SCAN_ELEMENTS", 4096)  # 50 queries: blocks of 1024
    queries = np.random.default_rng(5).standard_normal((50, 6)).astype(np.float32)
    found, distances = NearestNeighbors(points).search(queries, n=3)
    for query, row, d in zip(queries, found, distances):
        expected, expected_d = brute_force(points, query, 3)
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_allclose(d, expected_d, rtol=1e-3, atol=1e-3)


def test_codes_off_the_sample_are_placed_among_their_neighbours():
    rng = np.random.default_rng(6)
    sample = rng.standard_normal((400, 4)).astype(np.float32)
    positions = sample[:, :2] * 10  # a map that keeps the first two factors
    placed = index_module.place_on_map(sample, sample, positions)
    np.testing.assert_allclose(placed, positions, atol=1e-3)  # a sampled code lands on itself
    others = rng.standard_normal((300, 4)).astype(np.float32) * 0.8
    error = np.abs(index_module.place_on_map(others, sample, positions) - others[:, :2] * 10)
    assert np.median(error) < 3.0  # near where the map puts their neighbours


def test_missing_and_stale_index_say_what_to_run(tmp_path, fast_map):
    run = FakeRun(tmp_path / "run")
    with pytest.raises(MissingIndexError, match="ivae index"):
        load_index(run)
    build_index(run, progress=False)
    (run.path / "model.pt").write_bytes(b"weights v2")
    with pytest.raises(MissingIndexError, match="different weights"):
        load_index(run)
    (run.path / INDEX_FILE).write_bytes(b"not a zip")
    with pytest.raises(MissingIndexError, match="unreadable"):
        load_index(run)


def test_load_items_aligns_to_index_ids(tmp_path):
    from ivae.data.paired import write_paired

    items = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "image": ["a.png", "b.png", "c.png"],
            "text": ["x", "y", "z"],
            "split": ["train", "val", "test"],
        }
    )
    for name in items["image"]:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    write_paired(tmp_path, items, {"name": "t", "factor_names": []})
    aligned = load_items(tmp_path, np.array(["c", "a", "b"]))
    assert aligned["id"].tolist() == ["c", "a", "b"]
    with pytest.raises(ValueError, match="ivae index"):
        load_items(tmp_path, np.array(["a", "zzz"]))
    same = load_items(tmp_path, np.array(["a", "b", "c"]))
    assert same["text"].tolist() == ["x", "y", "z"]


def test_items_are_memory_mapped_from_a_cache_that_follows_the_parquet(tmp_path):
    import pyarrow as pa

    from ivae.data.paired import write_paired

    items = pd.DataFrame(
        {
            "id": ["a", "b"],
            "image": ["a.png", "b.png"],
            "text": ["soup", "stew"],
            "split": ["train", "test"],
            "ingredients": [["salt", "beans"], ["beef"]],
        }
    )
    for name in items["image"]:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    write_paired(tmp_path, items, {"name": "t", "factor_names": []})
    loaded = load_items(tmp_path)
    cache = tmp_path / index_module.ITEMS_CACHE
    assert cache.is_file() and isinstance(loaded["text"].dtype, pd.ArrowDtype)
    assert list(loaded["ingredients"].iloc[0]) == ["salt", "beans"]
    written = cache.stat().st_mtime_ns
    load_items(tmp_path)
    assert cache.stat().st_mtime_ns == written  # reused, not rewritten
    items.loc[1, "text"] = "stew with more beans"
    write_paired(tmp_path, items, {"name": "t", "factor_names": []})
    assert load_items(tmp_path)["text"].tolist() == ["soup", "stew with more beans"]
    cache.write_bytes(b"garbage")  # a damaged cache is written again
    assert load_items(tmp_path)["id"].tolist() == ["a", "b"]
    assert pa.ipc.open_file(pa.memory_map(str(cache))).read_all().num_rows == 2
