"""Backbone runs (ivae.head): the encoder head trains on cached backbone features, records its
backbone, encodes photos through backbone + head, and refuses another backbone's features.

The backbone is EfficientNet-Lite0 with randomly initialised weights saved to a temporary
file (the ImageNet weights have their own known-answer tests, tests/test_backbones.py), on
32-px photos: the whole path, extraction included, in seconds.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import ivae
import ivae.head as head
import ivae.index
from ivae.backbones.efficientnet_lite0 import EfficientNetLite0
from ivae.cli import main
from ivae.data import load_dataset
from ivae.features import feature_cache
from ivae.run import RunError
from ivae.train import TrainConfig, Trainer, run_config, train
from tests.tiny_run import make_tiny_dataset

BACKBONE = "efficientnet-lite0"
FEATURES = EfficientNetLite0.feature_dim  # 1280


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Two randomly initialised weight files: the run's, and another backbone's."""
    folder = tmp_path_factory.mktemp("weights")
    files = SimpleNamespace(run=folder / "lite0-a.pth", other=folder / "lite0-b.pth")
    for seed, path in enumerate((files.run, files.other)):
        torch.manual_seed(seed)
        torch.save(EfficientNetLite0().state_dict(), path)
    return files


@pytest.fixture(scope="module")
def cached(tiny, weights):
    """The tiny set's features, extracted once (32 px): 8 views to train under flips and
    quarter turns, and the photos alone, which encoding and evaluation read."""
    feature_cache(tiny, BACKBONE, weights=weights.run, views=1, progress=False)
    return feature_cache(tiny, BACKBONE, weights=weights.run, views=8, progress=False)


def train_cli(tiny, weights, out, *extra) -> int:
    return main(
        ["train", "--data", str(tiny), "--model", "implicit-ivae", "--out", str(out)]
        + ["--latent-dim", "3", "--epochs", "2", "--batch-size", "32", "--quiet"]
        + ["--backbone", BACKBONE, "--backbone-weights", str(weights)]
        + ["--augment", "dihedral", "--set", "hidden=32", *extra]
    )


@pytest.fixture(scope="module")
def trained(tiny, weights, cached, tmp_path_factory):
    """A backbone run with eq. 1 on (likelihood weight 0.1: the exact k x F Jacobian)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert train_cli(tiny, weights.run, out, "--set", "likelihood_weight=0.1") == 0
    return out


def photos(tiny, n: int = 5) -> list[Image.Image]:
    return [Image.open(tiny / "images" / f"{i:04d}.png") for i in range(n)]


def test_a_backbone_run_records_its_backbone_and_encodes_photos_through_it(tiny, weights, trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["backbone"] == {
        "name": BACKBONE,
        "weights_hash": head.load_backbone(config["backbone"]).weights_hash,
        "image_size": 32,  # the data set's own size: photos are not upsampled
        "feature_dim": FEATURES,
        "weights": str(weights.run.resolve()),
    }
    assert config["data"]["x"] == {"kind": "vector", "shape": [FEATURES], "vocab_size": 0}
    history = (trained / "history.csv").read_text().splitlines()[0].split(",")
    assert "train_log_volume" in history  # eq. 1's 1/2 log det(J J^T) was in the objective
    run = ivae.load_run(trained)
    features = run.image_features(photos(tiny))
    assert features.shape == (5, FEATURES) and features.dtype == np.float32
    z = run.encode_x(photos(tiny))
    assert z.shape == (5, 3) and np.isfinite(z).all()
    np.testing.assert_allclose(z, run.encode_x(features), rtol=1e-5, atol=1e-6)
    pixels = np.stack([np.asarray(p.convert("RGB")) for p in photos(tiny)])  # (N, H, W, 3)
    np.testing.assert_allclose(z, run.encode_x(pixels), rtol=1e-4, atol=1e-5)


def test_index_and_evaluate_read_the_cached_features(tiny, cached, trained, capsys, monkeypatch):
    run = ivae.load_run(trained)
    monkeypatch.setattr(ivae.index, "map_2d", ivae.index._pca_2d)  # UMAP: slow, not tested here
    with monkeypatch.context() as no_extraction:
        no_extraction.setattr(type(run.image_backbone), "features", None)
        data = run.load_data()
        view0 = np.asarray(cached.features[:, 0], dtype=np.float32)
        np.testing.assert_array_equal(data.x, view0)
        assert main(["evaluate", str(trained), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["n_items"] == 24 and report["mcc"] is not None
        index = ivae.index.build_index(run, progress=False)
        np.testing.assert_allclose(index.z, run.encode_x(view0), rtol=1e-5, atol=1e-6)
    assert main(["index", str(trained)]) == 0  # the codes, and the Photo reader's check
    assert ivae.index.load_index(run).z.shape == (240, 3)


def test_features_of_another_backbone_are_refused(tiny, weights, trained, capsys):
    run = ivae.load_run(trained)
    with pytest.raises(RunError, match=rf"{BACKBONE} features of shape \(N, {FEATURES}\)"):
        run.encode_x(np.zeros((2, 2048), np.float32))  # e.g. ResNet-50's
    other = feature_cache(tiny, BACKBONE, weights=weights.other, progress=False)
    with pytest.raises(head.BackboneMismatch, match="another backbone than the run"):
        head.with_features(load_dataset(tiny, image_size=32), other, run.backbone)
    with pytest.raises(head.BackboneMismatch, match="weights_hash"):
        head.load_backbone({**run.backbone, "weights": str(weights.other)})
    # continuing the run on the other weights fails before any training, in one line
    code = train_cli(tiny, weights.other, trained, "--resume")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ivae: error:") and "\n" not in err
    assert "another backbone" in err and run.backbone["weights_hash"] in err


def test_each_step_draws_one_cached_view_per_item_and_a_resumed_step_replays_it(
    tiny, weights, cached, tmp_path
):
    data, views, _ = head.load_feature_data(tiny, BACKBONE, weights.run, progress=False, views=8)
    assert views.shape == (240, 8, FEATURES) and views.dtype == np.float16
    marked = np.zeros((240, 8, 4), np.float16)  # feature 0: the view, feature 1: the item
    marked[:, :, 0] = np.arange(8)
    marked[:, :, 1] = np.arange(240)[:, None]
    data.x = np.ascontiguousarray(marked[:, 0], dtype=np.float32)
    config = run_config(
        data, "implicit-ivae", {"latent_dim": 3}, TrainConfig(batch_size=32, augment="dihedral")
    )
    trainer = Trainer(data, tmp_path / "run", config, progress=False, views=marked)
    train_items = np.flatnonzero(data.split == "train")
    batches = [batch["x"] for _, batch in trainer.batches(epoch=0)]
    drawn = torch.cat(batches)  # (steps * B, 4)
    assert set(drawn[:, 0].int().tolist()) == set(range(8))  # every view, not only view 0
    assert set(drawn[:, 1].int().tolist()) <= set(train_items.tolist())  # train items only
    trainer.step = 2  # as after a restore in the middle of epoch 0
    resumed = [batch["x"] for _, batch in trainer.batches(epoch=0)]
    assert len(resumed) == len(batches) - 2
    assert all(torch.equal(a, b) for a, b in zip(batches[2:], resumed, strict=True))


def test_an_interrupted_backbone_run_resumes_to_the_same_weights(
    tiny, weights, cached, tmp_path, monkeypatch
):
    data, views, record = head.load_feature_data(
        tiny, BACKBONE, weights.run, progress=False, views=8
    )
    options = {"latent_dim": 3, "hidden": 32, "likelihood_weight": 0.1}
    config = TrainConfig(epochs=2, batch_size=32, augment="dihedral")

    def run(out, resume=False):
        train(data, out, "implicit-ivae", options, config, resume, False, views, record)

    run(tmp_path / "whole")
    step = Trainer.train_step

    def interrupted(self, batch):
        if self.epoch == 1 and self.step == 2:
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "parts")
    monkeypatch.setattr(Trainer, "train_step", step)
    run(tmp_path / "parts", resume=True)
    assert json.loads((tmp_path / "parts" / "config.json").read_text())["backbone"] == record
    whole, parts = (
        torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"]
        for name in ("whole", "parts")
    )
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


@pytest.mark.parametrize(
    "options, says",
    [
        ({"likelihood_weight": 0}, ["density ratio (eq. 3)", "no Jacobian term"]),
        ({"likelihood_weight": 0.1}, ["with its Jacobian term 1/2 log det(J Jᵀ), weight 0.1"]),
        ({"likelihood_weight": 0.1, "jacobian": "none"}, ["without its Jacobian", "no Jacobian"]),
        ({"likelihood_weight": 0, "frobenius_weight": 0.5}, ["||J||²_F, weight 0.5"]),
    ],
)
def test_the_model_report_states_the_objective_terms(options, says):
    from ivae.models.implicit_ivae import ImplicitIVAEConfig

    text = " | ".join(ImplicitIVAEConfig(**options).objective_terms())
    assert all(phrase in text for phrase in says), text
    jacobian_on = any(options.get(k, 0) > 0 for k in ("likelihood_weight", "frobenius_weight"))
    assert ("no Jacobian term" in text) == (not jacobian_on or options.get("jacobian") == "none")


def test_the_model_report_names_the_backbone(trained):
    config = ivae.load_run(trained).config
    text = head.encoder_summary(config)
    assert f"{BACKBONE} (pretrained, frozen; weights {config['backbone']['weights_hash']}" in text
    assert f"{FEATURES} features" in text
    pixels = {"data": {"x": {"kind": "image", "shape": [3, 64, 64]}}}
    assert head.encoder_summary(pixels) == "a CNN trained from scratch on 64-px photos"
    symmetric = {**pixels, "model_config": {"symmetry": "dihedral"}}
    assert head.encoder_summary(symmetric) == (
        "a CNN trained from scratch on 64-px photos; a photo's codes are the mean of its 8 "
        "flips' and quarter turns' codes"
    )


# ---- fine-tuning the last block ----------------------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tiny, weights, tmp_path_factory):
    """A run that trains EfficientNet-Lite0's last block with the head, eq. 1 on: its Jacobian
    is then taken with respect to the map entering that block (192 x 1 x 1 at 32 px)."""
    out = tmp_path_factory.mktemp("runs") / "finetuned"
    extra = ["--finetune-last-block", "--augment", "none", "--set", "likelihood_weight=0.1"]
    assert train_cli(tiny, weights.run, out, *extra) == 0
    return out


def test_a_finetuned_run_trains_the_last_block_from_its_pretrained_weights(
    tiny, weights, finetuned
):
    config = json.loads((finetuned / "config.json").read_text())
    assert config["backbone"]["name"] == "efficientnet-lite0-tail"
    assert config["backbone"]["feature_dim"] == 192  # the map entering the last block, 1 x 1
    assert config["model_config"]["encoder"] == "efficientnet-lite0-tail"
    assert "train_log_volume" in (finetuned / "history.csv").read_text().splitlines()[0]
    start = torch.load(weights.run, weights_only=True)
    trained = torch.load(finetuned / "model.pt", weights_only=True)["state_dict"]
    tail = {
        k.removeprefix("encoder.0."): v for k, v in trained.items() if k.startswith("encoder.0.")
    }
    assert tail and set(tail) <= set(start)
    moved = [k for k in tail if tail[k].is_floating_point() and not torch.equal(tail[k], start[k])]
    assert "_conv_head.weight" in moved  # the block trained ...
    kept = torch.corrcoef(torch.stack([tail["_conv_head.weight"].flatten(),
                                       start["_conv_head.weight"].flatten()]))[0, 1]  # fmt: skip
    assert kept > 0.9  # ... from the pretrained weights, not from a random start
    assert torch.equal(tail["_bn1.running_var"], start["_bn1.running_var"])  # statistics kept


def test_a_finetuned_run_encodes_photos_through_trunk_and_trained_tail(tiny, finetuned):
    run = ivae.load_run(finetuned)
    assert "last block, which trains with the head" in head.encoder_summary(run.config)
    features = run.image_features(photos(tiny))
    assert features.shape == (5, 192)
    z = run.encode_x(photos(tiny))
    assert z.shape == (5, 3) and np.isfinite(z).all()
    np.testing.assert_allclose(z, run.encode_x(features), rtol=1e-5, atol=1e-6)


def test_finetuning_is_refused_for_a_backbone_without_a_tail(tiny, weights, tmp_path, capsys):
    code = main(
        ["train", "--data", str(tiny), "--model", "implicit-ivae", "--out", str(tmp_path / "r")]
        + ["--quiet", "--backbone", "resnet50", "--finetune-last-block"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--finetune-last-block is available for" in err
    assert not (tmp_path / "r").exists()


def test_the_stages_backbone_fine_tunes_its_last_block_under_its_stage_means(
    tiny, weights, tmp_path
):
    """``--backbone efficientnet-lite0-stages --finetune-last-block``: the cache holds the map
    entering the last block and the frozen means of the stages before it (192 x 1 x 1 + 272 at
    32 px), and the encoder reads the stages backbone's 784 means, its last block trained."""
    out = tmp_path / "stages-finetuned"
    extra = ["--finetune-last-block", "--augment", "none", "--epochs", "1"]
    assert train_cli(tiny, weights.run, out, *extra, "--backbone", "efficientnet-lite0-stages") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["name"] == "efficientnet-lite0-stages-tail"
    assert config["backbone"]["feature_dim"] == 192 + 272
    assert config["model_config"]["encoder"] == "efficientnet-lite0-stages-tail"
    run = ivae.load_run(out)
    assert "last block, which trains with the head" in head.encoder_summary(run.config)
    z = run.encode_x(photos(tiny))
    assert z.shape == (5, 3) and np.isfinite(z).all()
    np.testing.assert_allclose(
        z, run.encode_x(run.image_features(photos(tiny))), rtol=1e-5, atol=1e-6
    )


def test_the_stats_backbone_trains_a_head_and_reads_photos_through_it(tiny, weights, tmp_path):
    """``--backbone efficientnet-lite0-stats``: the head reads every stage's mean and standard
    deviation (1568), and a photo's code is the same from pixels as from its features."""
    out = tmp_path / "stats"
    extra = ["--augment", "none", "--epochs", "1"]
    assert train_cli(tiny, weights.run, out, *extra, "--backbone", "efficientnet-lite0-stats") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["name"] == "efficientnet-lite0-stats"
    assert config["data"]["x"]["shape"] == [1568]
    run = ivae.load_run(out)
    features = run.image_features(photos(tiny))
    assert features.shape == (5, 1568) and (features[:, 784:] >= 0).all()  # deviations
    np.testing.assert_allclose(run.encode_x(photos(tiny)), run.encode_x(features), rtol=1e-5)


def test_a_backbone_run_ends_with_the_final_alignment(tiny, weights, tmp_path):
    """``--align-steps`` on a head over backbone features: the map is folded into the head's
    last layer, so photos and their features still give the same codes."""
    out = tmp_path / "aligned"
    extra = ["--augment", "none", "--epochs", "1", "--align-steps", "30"]
    assert train_cli(tiny, weights.run, out, *extra) == 0
    alignment = json.loads((out / "metrics.json").read_text())["alignment"]
    assert alignment["steps"] == 30 and alignment["change"] > 0
    run = ivae.load_run(out)
    features = run.image_features(photos(tiny))
    np.testing.assert_allclose(run.encode_x(photos(tiny)), run.encode_x(features), rtol=1e-5)
