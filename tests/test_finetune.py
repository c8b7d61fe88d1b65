"""The whole of EfficientNet-Lite0 fine-tuned on the photos (``--set encoder=efficientnet-lite0``):
it starts from the ImageNet weights and reads a photo as the frozen backbone does, its batch
norms keep their ImageNet statistics, its layers train at a fraction of the learning rate, and
the run records the weights it started from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ivae.backbones import get_backbone
from ivae.backbones.efficientnet_lite0 import EfficientNetLite0Encoder
from ivae.cli import main
from ivae.head import encoder_summary
from ivae.models import build_model
from ivae.nets import Modality
from ivae.run import load_run
from ivae.train import TrainConfig, optimizer
from tests.tiny_run import make_tiny_dataset

OPTIONS = {"latent_dim": 3, "hidden": 16, "encoder": "efficientnet-lite0"}


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet-lite0", image_size=64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs on the tiny photos at 32 px, from the command line."""
    root = tmp_path_factory.mktemp("finetune")
    data = make_tiny_dataset(root / "data")
    out = root / "run"
    main(
        ["train", "--data", str(data), "--model", "implicit-ivae", "--out", str(out)]
        + ["--latent-dim", "3", "--epochs", "2", "--batch-size", "32", "--lr", "2e-3"]
        + ["--set", "encoder=efficientnet-lite0", "--set", "hidden=16", "--image-size", "32"]
    )
    return out


def test_the_network_reads_a_photo_as_the_frozen_backbone_does(lite0):
    """Loaded with the ImageNet weights, the encoder's features of uint8 photos are the frozen
    backbone's (which normalises as the weights were trained): fine-tuning starts there."""
    network = EfficientNetLite0Encoder()
    network.load_pretrained(lite0.net.state_dict())
    photos = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        ours = network.eval()(torch.from_numpy(photos).permute(0, 3, 1, 2)).numpy()
        as_floats = network(torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(ours, lite0.features(photos), atol=1e-4)
    np.testing.assert_allclose(as_floats, ours, atol=1e-4)  # float photos in [0, 1] alike


def test_the_run_starts_from_the_imagenet_weights_and_records_them(run, lite0):
    config = json.loads((run / "config.json").read_text())
    assert config["pretrained"] == {
        "name": "efficientnet-lite0",
        "weights_hash": lite0.weights_hash,
    }
    assert config["data"]["x"]["shape"] == [3, 32, 32]
    trained = load_run(run).model.encoder[0].state_dict()
    imagenet = lite0.net.state_dict()
    # the weights moved from the ImageNet ones, the batch statistics did not
    assert not torch.equal(trained["_conv_stem.weight"], imagenet["_conv_stem.weight"])
    for key in ("_bn0.running_mean", "_blocks.7._bn1.running_var", "_bn1.running_mean"):
        torch.testing.assert_close(trained[key], imagenet[key])
    summary = encoder_summary(config)
    assert "efficientnet-lite0" in summary and lite0.weights_hash in summary
    assert "every layer fine-tuned" in summary and "32-px" in summary


def test_the_pretrained_layers_train_at_their_fraction_of_the_learning_rate(run):
    groups = torch.load(run / "last.pt", weights_only=False)["optimizer"]["param_groups"]
    assert [g["lr_ratio"] for g in groups] == [1.0, 0.1]
    assert groups[1]["lr"] == pytest.approx(0.1 * groups[0]["lr"])
    model = load_run(run).model
    network = {id(p) for p in model.encoder[0].parameters()}
    first, second = model.parameter_groups()
    assert {id(p) for p in second["params"]} == network
    assert not network & {id(p) for p in first["params"]}
    assert len(first["params"]) + len(second["params"]) == len(list(model.parameters()))


def test_a_model_on_other_encoders_has_one_group_at_the_learning_rate():
    x, y = Modality("image", (3, 32, 32)), Modality("vector", (4,))
    model = build_model("implicit-ivae", {"latent_dim": 3, "hidden": 16}, x, y)
    (group,) = optimizer(model, TrainConfig(lr=0.01)).param_groups
    assert group["lr"] == 0.01 and group["lr_ratio"] == 1.0


def test_the_batch_norms_stay_in_eval_mode_while_the_model_trains():
    x, y = Modality("image", (3, 32, 32)), Modality("vector", (4,))
    model = build_model("implicit-ivae", OPTIONS, x, y).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.encoder[1].training  # the head does train


def test_the_encoder_on_anything_but_photos_is_refused_in_a_sentence():
    x, y = Modality("vector", (1280,)), Modality("vector", (4,))
    with pytest.raises(
        ValueError, match="fine-tunes the network on the photos.*without --backbone"
    ):
        build_model("implicit-ivae", OPTIONS, x, y)
    with pytest.raises(ValueError, match="pretrained_lr_ratio must be 0"):
        build_model("implicit-ivae", {**OPTIONS, "pretrained_lr_ratio": -1}, x, y)


def test_the_command_line_refuses_a_backbone_beside_it_and_another_size_on_resume(run, capsys):
    beside = ["--backbone", "efficientnet-lite0", "--set", "encoder=efficientnet-lite0"]
    assert (
        main(["train", "--data", "unused", "--model", "implicit-ivae", "--out", "x", *beside]) == 2
    )
    assert "drop --backbone" in capsys.readouterr().err
    data = json.loads((run / "config.json").read_text())["data"]["path"]
    before = (run / "last.pt").read_bytes()
    again = ["train", "--data", data, "--model", "implicit-ivae", "--out", str(run), "--resume"]
    assert main([*again, "--image-size", "48"]) == 2
    assert "trained on 32-px photos (given --image-size 48)" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before


def test_a_resumed_run_goes_on_at_its_own_size_with_both_groups(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    data = json.loads((copy / "config.json").read_text())["data"]["path"]
    again = ["train", "--data", data, "--out", str(copy), "--resume"]  # the run's own model
    assert main([*again, "--epochs", "3", "--allow-changes"]) == 0
    assert len((copy / "history.csv").read_text().splitlines()) == 1 + 3
    state = torch.load(copy / "last.pt", weights_only=False)
    assert [g["lr_ratio"] for g in state["optimizer"]["param_groups"]] == [1.0, 0.1]
    assert json.loads((copy / "config.json").read_text())["data"]["x"]["shape"] == [3, 32, 32]


def test_the_kitchen_benchmark_trains_the_whole_network_row_on_the_photos(tmp_path):
    """bench/kitchen.py's rows for it (run on a GPU by bench/gpu_finetune.sh): the photos at
    the row's size, no features, and figures from a finished run."""
    from argparse import Namespace

    from bench.kitchen import BACKBONE_ROWS, one_run, row_features, run_dir

    rows = [row for row in BACKBONE_ROWS if row.encoder == "efficientnet-lite0"]
    assert [row.likelihood_weight for row in rows] == [0.0, 0.01]  # the Jacobian term off, on
    assert "whole efficientnet-lite0 fine-tuned" in rows[0].label(0)
    data_dir = make_tiny_dataset(tmp_path / "data", n=64)
    row = rows[0]._replace(epochs=1, image_size=32, augment="none")
    data, features, extraction = row_features(Namespace(backbone_data=str(data_dir)), row, {})
    assert data.x.shape[1:] == (3, 32, 32) and features is None and extraction == 0
    path = run_dir(tmp_path / "runs", data, "kitchen", row, 0)
    assert path.name.endswith("-finetuned-whole-px32-s0")
    figures = one_run(data, "kitchen", row, 0, path, features)
    assert 0 <= figures["mcc"] <= 1 and figures["seconds"] > 0


def test_the_model_report_page_names_the_weights_the_encoder_started_from(run, lite0):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    home = Path(__file__).resolve().parent.parent / "explorer" / "Home.py"
    assert main(["index", str(run)]) == 0
    at = AppTest.from_file(str(home), default_timeout=120)
    at.session_state["run_path"] = str(run)
    at.switch_page("../pages/model_report.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    encoder = [m.value for m in at.markdown if "Image encoder" in m.value]
    assert encoder and lite0.weights_hash in encoder[0] and "fine\\-tuned" in encoder[0]
