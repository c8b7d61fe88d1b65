"""A corrupt or truncated photo met mid-way is skipped and counted, never a crash that loses
the work: in the decoded-image cache, the feature cache, the Recipe1M import and training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from ivae.cli import main
from ivae.data.dataset import DataError
from ivae.data.paired import SKIPPED, load_paired
from ivae.features import feature_cache

SIZE = 32
BAD = (7, 13)  # rows whose photo is truncated: in the middle, in different feature chunks


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory):
    from ivae.data.kitchen import generate_kitchen

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return generate_kitchen(
        tmp_path_factory.mktemp("kitchen") / "k", n=24, image_size=SIZE, progress=False, workers=1
    )


def truncate(path) -> None:
    """Keep the first half of a JPEG: the header reads, the scan data ends early."""
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.fixture
def damaged(kitchen, tmp_path):
    """A fresh copy of the kitchen set with the photos of rows BAD truncated."""
    data = shutil.copytree(kitchen, tmp_path / "k")
    items = pd.read_parquet(data / "items.parquet")
    for row in BAD:
        truncate(data / items.image[row])
    return data


def test_the_image_cache_skips_and_counts_a_truncated_jpeg(damaged, capsys):
    data = load_paired(damaged, image_size=16)
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    items = pd.read_parquet(damaged / "items.parquet")
    assert len(lines) == 2 and str(damaged / items.image[BAD[0]]) in lines[0]
    assert "image file is truncated" in lines[0] and lines[1].endswith("2 skipped so far")
    assert [i for i, s in enumerate(data.split) if s == SKIPPED] == list(BAD)
    assert data.x[BAD[0]].max() == 0 and data.x[BAD[0] + 1].max() > 0  # the next one decoded
    assert sorted(data.split[data.split != SKIPPED]) == sorted(np.delete(items.split, BAD))
    stamp = json.loads((damaged / ".cache/images-16.json").read_text())
    assert sorted(map(int, stamp["unreadable"])) == list(BAD)
    again = load_paired(damaged, image_size=16)  # from the cache: the same rows, said once
    assert (again.split == SKIPPED).sum() == 2
    assert "2 image(s)" in capsys.readouterr().err


def test_a_missing_image_is_still_an_error(damaged):
    items = pd.read_parquet(damaged / "items.parquet")
    (damaged / items.image[3]).unlink()
    with pytest.raises(DataError, match="missing; restore it or drop the row"):
        load_paired(damaged, image_size=16)


def test_feature_extraction_skips_and_counts_a_truncated_jpeg(damaged, capsys):
    cache = feature_cache(damaged, "efficientnet-lite0", views=1, progress=False, chunk_size=4)
    assert sorted(cache.unreadable) == list(BAD) and "2 skipped so far" in capsys.readouterr().err
    features = np.asarray(cache.features[:, 0], dtype=np.float32)
    assert not features[list(BAD)].any() and np.abs(features).sum(1)[[0, 8, 23]].min() > 0
    done = json.loads((cache.directory / "done.json").read_text())
    assert done["chunks"] == list(range(0, 24, 4)) and sorted(done["unreadable"]) == ["13", "7"]


def test_an_interrupted_extraction_keeps_its_count(damaged, monkeypatch):
    from ivae import features

    real, calls = features.chunk_features, []

    def stop_in_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "chunk_features", stop_in_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        feature_cache(damaged, "efficientnet-lite0", views=1, progress=False, chunk_size=4)
    monkeypatch.setattr(features, "chunk_features", real)
    cache = feature_cache(damaged, "efficientnet-lite0", views=1, progress=False, chunk_size=4)
    assert sorted(cache.unreadable) == list(BAD)  # row 7 from the first pass, 13 from this one


def test_training_leaves_a_skipped_photo_out_and_reports_it(damaged, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(damaged), "--model", "implicit-ivae", "--out", str(run)]
    args += ["--epochs", "1", "--batch-size", "4", "--latent-dim", "2", "--quiet"]
    assert main([*args, "--set", "hidden=8"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_images"] == 2
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 1 and np.isfinite(history.train_loss).all()
    assert "2 skipped so far" in capsys.readouterr().err


def test_a_backbone_run_decodes_no_image_cache_and_leaves_a_skipped_photo_out(damaged):
    """The head reads features: its photos are decoded once, by the extraction, whose
    unreadable rows are then in no split (at Recipe1M+ size the image cache is ~150 GB)."""
    from ivae.head import load_feature_data

    data, _, _ = load_feature_data(damaged, "efficientnet-lite0", progress=False)
    assert not list(damaged.glob(".cache/images-*"))  # no decoded-image cache was written
    assert [i for i, s in enumerate(data.split) if s == SKIPPED] == list(BAD)
    assert data.x.shape == (24, 1280)


def test_the_recipe1m_import_skips_and_counts_a_truncated_jpeg(tmp_path, capsys):
    from tests.test_recipe1m import FIXTURE, run

    images = shutil.copytree(FIXTURE / "images", tmp_path / "images")
    bad = images / "test/b/9/f/3/b9f3e1d2c4.jpg"
    truncate(bad)
    report = run(tmp_path / "out", images_dir=images)
    assert report["unreadable_image_files"] == 1 and report["rows"] == 3
    err = capsys.readouterr().err
    assert str(bad) in err and "1 skipped so far" in err
    info = json.loads((tmp_path / "out/dataset.json").read_text())
    assert info["skipped"]["unreadable_image_files"] == 1 and info["image_size"] == 16


@pytest.mark.parametrize("workers", ["1", "2"])
def test_photos_decoded_in_other_processes_are_the_same_and_so_are_the_skipped_rows(
    damaged, monkeypatch, capsys, workers
):
    """The image cache decodes blocks of rows in ``IVAE_DECODE_WORKERS`` processes: the rows
    come back in order, a truncated photo is skipped with its own row and file, and the
    photos equal those decoded one at a time in this process."""
    import ivae.data.paired as paired

    monkeypatch.setattr(paired, "DECODE_ROWS", 5)  # 24 rows: 5 blocks, the last short
    monkeypatch.setenv("IVAE_DECODE_WORKERS", workers)
    data = load_paired(damaged, image_size=16)
    items = pd.read_parquet(damaged / "items.parquet")
    one_by_one = [
        paired.decode_image(damaged, items.id[r], items.image[r], 16) if r not in BAD else 0
        for r in range(len(items))
    ]
    np.testing.assert_array_equal(np.asarray(data.x), np.stack(np.broadcast_arrays(*one_by_one)))
    assert [i for i, s in enumerate(data.split) if s == SKIPPED] == list(BAD)
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert str(damaged / items.image[BAD[0]]) in lines[0] and lines[1].endswith("2 skipped so far")


def test_a_missing_image_met_by_another_process_is_the_same_error(damaged, monkeypatch):
    import ivae.data.paired as paired

    monkeypatch.setattr(paired, "DECODE_ROWS", 5)
    monkeypatch.setenv("IVAE_DECODE_WORKERS", "2")
    items = pd.read_parquet(damaged / "items.parquet")
    (damaged / items.image[17]).unlink()
    with pytest.raises(DataError, match=r"row id .*missing; restore it or drop the row"):
        load_paired(damaged, image_size=16)
    assert not list((damaged / ".cache").glob("images-16.npy"))  # no cache with a hole in it


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_worker_count_is_one_sentence(damaged, monkeypatch, value):
    monkeypatch.setenv("IVAE_DECODE_WORKERS", value)
    with pytest.raises(DataError, match="IVAE_DECODE_WORKERS=.*whole number of processes"):
        load_paired(damaged, image_size=16)


def test_the_decoding_processes_are_shared_out_among_torchruns_processes(monkeypatch):
    import os

    from ivae.data.paired import decode_workers

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("IVAE_DECODE_WORKERS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert decode_workers() == max(1, min(16, cores))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))
    assert decode_workers() == 1
    monkeypatch.setenv("IVAE_DECODE_WORKERS", "3")  # given: taken as it is
    assert decode_workers() == 3
