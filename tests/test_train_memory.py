"""Training memory flat in the data size (docs/results.md, "Training memory"): rows of a memory
map read a few at a time, codes written into arrays allocated once, the token cache narrowed
in chunks, and the benchmark's fabricated photo-run data set taken by the trainer as it is."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

import ivae.data.dataset as dataset
from bench.train_memory import make_photo_data
from ivae.data.dataset import RELEASE_ROWS, MappedRows, read_rows
from ivae.data.text import _narrow
from ivae.encoding import encode_batched
from ivae.head import load_feature_data


def test_read_rows_gives_the_rows_of_the_index(tmp_path):
    array = np.arange(50 * 3 * 4, dtype=np.float16).reshape(50, 3, 4)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = np.array([7, 3, 49, 3, 0, 21, 22, 23, 24, 25, 1])
    for source in (array, mapped):
        np.testing.assert_array_equal(read_rows(source, rows), array[rows])
        views = read_rows(source, rows, rows % 3, dtype=np.float32)
        assert views.dtype == np.float32 and views.flags.c_contiguous
        np.testing.assert_array_equal(views, array[rows, rows % 3].astype(np.float32))
    part = MappedRows(mapped[:, 0], np.arange(10, 40), np.float32)
    expected = array[10:40, 0].astype(np.float32)
    mask = np.arange(30) % 4 == 1
    for key in (5, slice(2, 9), mask, np.array([29, 0, 3])):
        np.testing.assert_array_equal(part[key], expected[key])
    np.testing.assert_array_equal(part[3:5, 1:3], expected[3:5, 1:3])
    np.testing.assert_array_equal(np.asarray(part), expected)
    np.testing.assert_array_equal(read_rows(part, np.array([0, 29])), expected[[0, 29]])


def resident_file_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return 0


def test_a_map_is_released_every_few_rows(tmp_path, monkeypatch):
    """A file just written sits in large page-cache folios, which the kernel maps whole: one
    row read can map 2 MB. Between two releases at most RELEASE_ROWS rows are mapped."""
    n, dim = 2048, 8192  # float32: 32 KB a row, 64 MB
    np.save(tmp_path / "x.npy", np.ones((n, dim), np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.random.default_rng(0).permutation(n)[:128]
    mapped_kb, release = [], dataset.release

    def counted(array) -> None:
        mapped_kb.append(resident_file_kb())
        release(array)

    monkeypatch.setattr(dataset, "release", counted)
    before = resident_file_kb()
    assert read_rows(x, rows).sum() == 128 * dim
    assert len(mapped_kb) == 128 // RELEASE_ROWS
    assert max(mapped_kb) - before < 24_000  # 8 rows' folios; 128 rows could map 256 MB


class Halves:
    """A stand-in model: the code is the first half of x, the query's mean and log-variance
    the two halves of y."""

    config = SimpleNamespace(latent_dim=2)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * 2

    def encode_y(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y[:, :2].float(), y[:, 2:].float() - 1


def test_batched_codes_are_the_codes_of_the_whole_input():
    x = np.random.default_rng(0).standard_normal((23, 4)).astype(np.float32)
    y = np.arange(23 * 4, dtype=np.int32).reshape(23, 4)
    model = Halves()
    (z,) = encode_batched(model, "x", x, batch_size=5)
    np.testing.assert_array_equal(z, model.encode_x(torch.from_numpy(x)).numpy())
    mean, logvar = encode_batched(model, "y", y, batch_size=5)
    whole = model.encode_y(torch.from_numpy(y))
    assert mean.dtype == logvar.dtype == np.float32
    np.testing.assert_array_equal(mean, whole[0].numpy())
    np.testing.assert_array_equal(logvar, whole[1].numpy())
    empty = encode_batched(model, "y", y[:0], batch_size=5)
    assert [a.shape for a in empty] == [(0, 2), (0, 2)]


def test_the_token_cache_is_narrowed_in_chunks_to_the_same_ids(tmp_path):
    wide = np.random.default_rng(0).integers(0, 9, (37, 16)).astype(np.int32)
    np.save(tmp_path / "wide.npy", wide)
    _narrow(tmp_path / "wide.npy", tmp_path / "narrow.npy", 5, chunk=4)
    np.testing.assert_array_equal(np.load(tmp_path / "narrow.npy"), wide[:, :5])


def test_the_benchmarks_fabricated_photo_data_set_trains_without_a_photo(tmp_path):
    counts = make_photo_data(tmp_path, 300, pool=12)
    assert sum(counts.values()) == 300 and not (tmp_path / "images").exists()
    data, views, record = load_feature_data(tmp_path, "efficientnet-lite0", progress=False)
    assert views.shape == (300, 1, record["feature_dim"]) and data.y_kind == "text"
    assert int(np.sum(data.split == "train")) == counts["train"]
    np.testing.assert_array_equal(data.x[:3], views[:3, 0].astype(np.float32))
