"""The feature cache: shape and order, the dihedral views, resuming after an interruption,
invalidation by a changed item table, a missing image, and the `ivae features` command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from ivae.backbones import get_backbone
from ivae.backbones.base import Backbone
from ivae.cli import main
from ivae.data.dataset import DataError
from ivae.data.paired import decode_image
from ivae.features import dihedral_view, feature_cache
from ivae.train import dihedral

SIZE = 32  # the smallest input EfficientNet-Lite0 takes: keeps the tests fast


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory):
    from ivae.data.kitchen import generate_kitchen

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return generate_kitchen(
        tmp_path_factory.mktemp("kitchen") / "k", n=20, image_size=SIZE, progress=False, workers=1
    )


@pytest.fixture
def data(kitchen, tmp_path):
    """A fresh copy, so each test starts without a cache."""
    return shutil.copytree(kitchen, tmp_path / "k")


def images_of(data, rows=None) -> torch.Tensor:
    items = pd.read_parquet(data / "items.parquet")
    rows = range(len(items)) if rows is None else rows
    arrays = [decode_image(data, items.id[r], items.image[r], SIZE) for r in rows]
    return torch.from_numpy(np.stack(arrays))


def test_cache_shape_order_and_meta(data):
    cache = feature_cache(data, "efficientnet-lite0", views=8, progress=False, chunk_size=8)
    assert cache.features.shape == (20, 8, 1280) and cache.features.dtype == np.float16
    assert isinstance(cache.features, np.memmap) and not cache.features.flags.writeable
    assert cache.ids == pd.read_parquet(data / "items.parquet")["id"].tolist()
    assert cache.directory == data / ".cache/features/efficientnet-lite0-57934424-32px-8v"
    meta = json.loads((cache.directory / "meta.json").read_text())
    assert meta["image_size"] == SIZE and meta["views"] == 8 and meta["weights_hash"] == "57934424"
    backbone = get_backbone("efficientnet-lite0", image_size=SIZE)
    x = images_of(data, [3, 17])
    for view in (0, 1, 6):
        expected = backbone.features(dihedral_view(x, view))
        np.testing.assert_allclose(cache.features[[3, 17], view], expected, rtol=2e-3, atol=2e-3)


def test_views_are_the_training_augmentations_in_order():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    assert torch.equal(dihedral_view(x, 0), x)
    ops = torch.randint(0, 8, (2,), generator=torch.Generator().manual_seed(5))
    drawn = dihedral(x, torch.Generator().manual_seed(5))  # the trainer's own draw
    for i, op in enumerate(ops.tolist()):
        assert torch.equal(drawn[i], dihedral_view(x[i : i + 1], op)[0])
    views = {dihedral_view(x, v)[0].numpy().tobytes() for v in range(8)}
    assert len(views) == 8  # eight different symmetries


def test_a_second_call_reads_the_cache(data, monkeypatch):
    first = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    monkeypatch.setattr(Backbone, "features", lambda *a, **k: pytest.fail("recomputed"))
    again = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    assert np.array_equal(first.features, again.features)


def test_an_interrupted_extraction_continues_where_it_stopped(data, monkeypatch):
    original, calls = Backbone.features, []

    def interrupted(self, images, batch_size=64):
        calls.append(len(images))
        if len(calls) == 3:  # the third chunk, after two were written
            raise KeyboardInterrupt
        return original(self, images, batch_size)

    monkeypatch.setattr(Backbone, "features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        feature_cache(data, "efficientnet-lite0", views=1, progress=False, chunk_size=6)
    key = "efficientnet-lite0-57934424-32px-1v"
    done = json.loads((data / ".cache/features" / key / "done.json").read_text())
    assert done == {"chunks": [0, 6], "unreadable": {}}
    calls.clear()
    resumed = feature_cache(data, "efficientnet-lite0", views=1, progress=False, chunk_size=6)
    assert calls == [6, 2]  # only the chunks at rows 12 and 18
    monkeypatch.setattr(Backbone, "features", original)
    backbone = get_backbone("efficientnet-lite0", image_size=SIZE)
    expected = backbone.features(images_of(data))
    np.testing.assert_allclose(resumed.features[:, 0], expected, rtol=2e-3, atol=2e-3)


def test_a_changed_item_table_recomputes_with_a_warning(data):
    feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    items = pd.read_parquet(data / "items.parquet")
    items.iloc[:15].to_parquet(data / "items.parquet", index=False)
    with pytest.warns(UserWarning, match="item table changed .*20 -> 15 items"):
        cache = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    assert cache.features.shape == (15, 1, 1280) and len(cache.ids) == 15


def test_a_missing_image_stops_with_one_line_naming_the_file(data):
    items = pd.read_parquet(data / "items.parquet")
    gone = data / items.image[11]
    gone.unlink()  # a corrupt one is skipped and counted instead: tests/test_corrupt_images.py
    with pytest.raises(DataError, match=str(gone)) as error:
        feature_cache(data, "efficientnet-lite0", views=1, progress=False, chunk_size=4)
    assert "\n" not in str(error.value) and "restore it or drop the row" in str(error.value)
    key = "efficientnet-lite0-57934424-32px-1v"
    done = json.loads((data / ".cache/features" / key / "done.json").read_text())
    assert done["chunks"] == [0, 4]  # the chunks before it are kept


def test_views_must_be_8_or_1(data):
    with pytest.raises(ValueError, match="views must be one of"):
        feature_cache(data, "efficientnet-lite0", views=4, progress=False)


def test_the_command(data, capsys):
    args = ["features", str(data), "--backbone", "efficientnet-lite0", "--views", "1", "--quiet"]
    assert main(args) == 0
    assert "20 items x 1 views x 1280 features" in capsys.readouterr().out
    assert main(["features", str(data), "--backbone", "vgg"]) == 2
    assert (
        "choose one of: efficientnet-lite0, efficientnet-lite0-stages, efficientnet-lite0-stats, "
        "efficientnet-lite0-tail, efficientnet-lite0-stages-tail, resnet50, cnn"
        in capsys.readouterr().err
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer without a GPU")
def test_asking_for_cuda_without_one_is_one_line_and_writes_nothing(data, capsys):
    args = ["features", str(data), "--backbone", "efficientnet-lite0", "--views", "1"]
    assert main([*args, "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available; use --device auto or cpu" in err
    assert "Traceback" not in err and not (data / ".cache" / "features").exists()
    assert main([*args, "--device", "cpu", "--quiet"]) == 0


def test_a_backbone_moved_to_a_device_gives_the_same_features():
    """Backbone.to: the network, its folded copy and the normalisation move together, and the
    features come back as a CPU array (on CUDA when there is one, else on the CPU again)."""
    backbone = get_backbone("efficientnet-lite0", image_size=SIZE)
    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    before = backbone.features(images)  # builds the folded copy on the CPU first
    device = "cuda" if torch.cuda.is_available() else "cpu"
    after = backbone.to(device).features(images)
    assert isinstance(after, np.ndarray) and backbone.mean.device.type == device
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-3)


def test_a_data_set_generated_again_with_another_seed_recomputes(data, tmp_path):
    """Same ids and image paths, other photos and recipes: the ids alone cannot tell."""
    from ivae.data.kitchen import generate_kitchen

    first = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    before = np.array(first.features)
    other = generate_kitchen(tmp_path / "other", n=20, image_size=SIZE, seed=1, progress=False,
                             workers=1)  # fmt: skip
    shutil.copytree(other, data, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".cache"))
    with pytest.warns(UserWarning, match="image paths or texts changed"):
        cache = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    assert not np.allclose(np.array(cache.features), before)
    expected = get_backbone("efficientnet-lite0", image_size=SIZE).features(images_of(data))
    np.testing.assert_allclose(cache.features[:, 0], expected, rtol=2e-3, atol=2e-3)


def test_a_photo_replaced_under_the_same_name_recomputes(data):
    feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    items = pd.read_parquet(data / "items.parquet")
    shutil.copyfile(data / items.image[1], data / items.image[0])  # photo 0 := photo 1
    with pytest.warns(UserWarning, match="a photo was replaced"):
        cache = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    np.testing.assert_array_equal(cache.features[0], cache.features[1])


def test_a_cache_from_before_the_content_digests_is_read_and_gains_them(data, monkeypatch):
    cache = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    meta_file = cache.directory / "meta.json"
    meta = json.loads(meta_file.read_text())
    older = {k: v for k, v in meta.items() if k not in ("content_digest", "images_digest")}
    meta_file.write_text(json.dumps(older))
    monkeypatch.setattr(Backbone, "features", None)  # extracting anything would fail
    again = feature_cache(data, "efficientnet-lite0", views=1, progress=False)
    np.testing.assert_array_equal(again.features, cache.features)
    assert json.loads(meta_file.read_text()) == meta
