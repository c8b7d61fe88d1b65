"""The final alignment (ivae.alignment): it unmixes codes whose factors differ in how precisely
the query pins them, folds exactly into the model, and equals training with --align-steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import ivae
from ivae.alignment import (
    LR,
    AlignmentUnsupported,
    LinearAlignment,
    align,
    fit,
    fold,
    output_layers,
)
from ivae.data import load_dataset
from ivae.metrics import mcc
from ivae.models.base import build_model
from ivae.nets import Modality, dihedral_view
from ivae.train import TrainConfig, TrainingError, train


def test_the_ratio_unmixes_factors_that_the_query_pins_down_unequally():
    """Two factors whose spread given the query differs by segment (the identifying signal),
    seen through a 45-degree rotation: the map and the prior's layer trained by the ratio
    turn the codes back onto the factors."""
    rng = np.random.default_rng(0)
    segments, n = 12, 6000
    segment = rng.integers(0, segments, n)
    sd = np.exp(rng.uniform(np.log(0.1), np.log(1.0), (segments, 2)))
    factors = rng.normal(0, 1, (segments, 2))[segment] + sd[segment] * rng.normal(0, 1, (n, 2))
    rotation = np.array([[1, -1], [1, 1]]) / np.sqrt(2)
    z = torch.tensor(factors @ rotation.T, dtype=torch.float32)
    h = torch.tensor(np.eye(segments)[segment], dtype=torch.float32)  # the query: its segment
    assert mcc(factors, z.numpy())["mcc"] < 0.75
    torch.manual_seed(0)  # the prior's layer starts the same whatever ran before
    layer = nn.Linear(segments, 4)
    alignment = LinearAlignment(torch.eye(2), layer, (-6.0, 4.0))
    # 4000 steps: from 2 of 30 random starts of the layer, 2000 left the map at 0.935-0.963
    fit(alignment, z, h, steps=4000, lr=LR, batch_size=128, seed=0)
    with torch.no_grad():
        aligned = alignment.codes(z).numpy()
    assert mcc(factors, aligned)["mcc"] > 0.97


def _model(**options):
    torch.manual_seed(0)
    return build_model(
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16, "likelihood_weight": 0.0, **options},
        Modality("vector", (6,)),
        Modality("vector", (5,)),
    ).eval()


def test_folding_makes_the_model_compute_the_aligned_codes_and_the_trained_layer():
    model = _model()
    code_layer, prior_layer = output_layers(model)
    x, y = torch.randn(20, 6), torch.randn(20, 5)
    alignment = LinearAlignment(torch.eye(3), prior_layer, (model.prior.low, model.prior.high))
    with torch.no_grad():
        alignment.a.copy_(torch.randn(3, 3))
        alignment.b.copy_(torch.randn(3))
        alignment.layer.weight.add_(torch.randn_like(alignment.layer.weight))
        expected_z = alignment.codes(model.encode_x(x))
        features = []
        hook = prior_layer.register_forward_hook(lambda m, i, o: features.append(i[0]))
        model.encode_y(y)
        hook.remove()
        expected_prior = alignment.log_probs(model.encode_x(x), features[0])
    fold(model, alignment)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_x(x), expected_z, rtol=1e-5, atol=1e-5)
        got = model.score(model.encode_x(x), *model.encode_y(y))
    torch.testing.assert_close(got, expected_prior, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "x", "why"),
    [
        ({}, Modality("vector", (3,)), "flow"),  # square data: the coupling flow
        ({"posterior": "stochastic"}, Modality("vector", (6,)), "deterministic"),
    ],
)
def test_models_whose_codes_are_not_a_linear_layer_are_refused_by_name(options, x, why):
    model = build_model("implicit-ivae", {"latent_dim": 3, **options}, x, Modality("vector", (5,)))
    with pytest.raises(AlignmentUnsupported, match=why):
        output_layers(model)
    vae = build_model("vae", {"latent_dim": 3}, Modality("vector", (6,)), Modality("vector", (5,)))
    with pytest.raises(AlignmentUnsupported, match="implicit-ivae"):
        output_layers(vae)


def test_training_with_align_steps_is_training_then_aligning(toy_npz, tmp_path):
    data = load_dataset(toy_npz)
    options = {"latent_dim": 3, "hidden": 16}
    config = TrainConfig(epochs=2, batch_size=64, seed=3, device="cpu")
    aligned = TrainConfig(**{**config.__dict__, "align_steps": 150})
    metrics = train(data, tmp_path / "aligned", "implicit-ivae", options, aligned, progress=False)
    train(data, tmp_path / "plain", "implicit-ivae", options, config, progress=False)
    report = metrics["alignment"]
    assert report["steps"] == 150 and report["change"] > 0
    assert report["validation_ratio_before"] is not None
    saved = json.loads((tmp_path / "aligned" / "metrics.json").read_text())
    assert saved["alignment"]["steps"] == 150
    assert (
        json.loads((tmp_path / "aligned" / "config.json").read_text())["train"]["align_steps"]
        == 150
    )

    plain = ivae.load_run(tmp_path / "plain")
    align(plain.model, data, 150, LR, 64, seed=3)
    reference = ivae.load_run(tmp_path / "aligned").model.state_dict()
    for name, tensor in plain.model.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], msg=name)


def test_a_large_split_is_sampled_to_a_bounded_size_the_same_way_each_time(toy_npz):
    from ivae.alignment import sample

    data = load_dataset(toy_npz)
    train = data.part("train")
    np.testing.assert_array_equal(sample(data, "train", seed=0, limit=len(train)).x, train.x)
    picked = sample(data, "train", seed=0, limit=50)
    assert len(picked) == 50 and set(picked.split) == {"train"}
    np.testing.assert_array_equal(picked.x, sample(data, "train", seed=0, limit=50).x)
    rows = [np.flatnonzero((train.x == row).all(1))[0] for row in picked.x]
    assert rows == sorted(rows)  # in the split's order


def test_align_steps_on_a_flow_is_refused_before_training(toy_npz, tmp_path):
    from ivae.data.toy import generate_toy
    from ivae.data.vectors import save_npz

    square = save_npz(tmp_path / "square.npz", generate_toy(3, 3, 4, 40, seed=0))
    config = TrainConfig(epochs=1, batch_size=32, device="cpu", align_steps=10)
    with pytest.raises(TrainingError, match="--align-steps: .*flow"):
        train(load_dataset(square), tmp_path / "run", "implicit-ivae", {"latent_dim": 3}, config)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_the_codes_of_the_8_views_are_aligned_and_folded_as_one_code():
    """With symmetry='dihedral' the stage fits the mean of each photo's 8 views' codes, and
    the map folded into the encoder's last layer moves that mean: the map is affine."""
    torch.manual_seed(0)
    options = {"latent_dim": 3, "hidden": 8, "width": 8, "symmetry": "dihedral"}
    x, y = Modality("image", (3, 16, 16)), Modality("vector", (5,))
    model = build_model("implicit-ivae", options, x, y).eval()
    images = torch.rand(6, 3, 16, 16)
    prior_layer = output_layers(model)[1]
    alignment = LinearAlignment(torch.eye(3), prior_layer, (model.prior.low, model.prior.high))
    with torch.no_grad():
        alignment.a.copy_(torch.randn(3, 3))
        alignment.b.copy_(torch.randn(3))
        expected = alignment.codes(model.encode_x(images))
    fold(model, alignment)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_x(images), expected, rtol=1e-5, atol=1e-5)
        turned = dihedral_view(images, 3)
        torch.testing.assert_close(model.encode_x(turned), expected, rtol=1e-5, atol=1e-5)


def test_the_8_views_change_no_training_step_and_the_aligned_run_is_their_stage(tmp_path):
    """What bench/symmetry.py rests on: a run trained with symmetry='dihedral' has the same
    weights as one without, until its final alignment, which then fits the views' means."""
    from tiny_run import make_tiny_dataset

    data = load_dataset(make_tiny_dataset(tmp_path / "data", n=120), image_size=32)
    options = {"latent_dim": 3, "hidden": 16, "width": 8}
    config = TrainConfig(epochs=1, batch_size=32, seed=1, device="cpu", augment="dihedral")
    aligned = TrainConfig(**{**config.__dict__, "align_steps": 40})
    symmetric = {**options, "symmetry": "dihedral"}
    train(data, tmp_path / "one", "implicit-ivae", options, config, progress=False)
    train(data, tmp_path / "eight", "implicit-ivae", symmetric, config, progress=False)
    train(data, tmp_path / "aligned", "implicit-ivae", symmetric, aligned, progress=False)
    one, eight = (ivae.load_run(tmp_path / name).model for name in ("one", "eight"))
    assert eight.config.symmetry == "dihedral"
    for name, tensor in one.state_dict().items():
        torch.testing.assert_close(tensor, eight.state_dict()[name], msg=name)

    one.config.symmetry = "dihedral"  # as bench/symmetry.py reads a run trained without it
    align(one, data, 40, LR, 32, seed=1)
    reference = ivae.load_run(tmp_path / "aligned").model.state_dict()
    for name, tensor in one.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], msg=name)
