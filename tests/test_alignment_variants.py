"""The alignment variants' benchmark: with the prior's means following the map, the model it
folds into scores pairs as the variant does, and the means are exactly the map's image."""

from __future__ import annotations

import copy

import torch

import ivae
from bench.alignment_variants import MeansFollow
from ivae.alignment import LR, LinearAlignment, align, fold, output_layers
from ivae.data import load_dataset
from ivae.models.base import build_model
from ivae.nets import Modality
from ivae.train import TrainConfig, train


def small_model():
    torch.manual_seed(0)
    return build_model(
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16, "likelihood_weight": 0.0},
        Modality("vector", (6,)),
        Modality("vector", (5,)),
    ).eval()


def recipe_features(model, y: torch.Tensor) -> torch.Tensor:
    layer, features = output_layers(model)[1], []
    hook = layer.register_forward_hook(lambda m, i, o: features.append(i[0]))
    with torch.no_grad():
        model.encode_y(y)
    hook.remove()
    return features[0]


def test_at_the_identity_the_variant_is_the_stage():
    model = small_model()
    layer = output_layers(model)[1]
    span = (model.prior.low, model.prior.high)
    z, h = torch.randn(16, 3), recipe_features(model, torch.randn(16, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            MeansFollow(torch.eye(3), layer, span).log_probs(z, h),
            LinearAlignment(torch.eye(3), layer, span).log_probs(z, h),
        )


def test_the_folded_model_scores_pairs_as_the_variant_and_its_means_follow_the_map():
    model = small_model()
    layer = output_layers(model)[1]
    x, y = torch.randn(16, 6), torch.randn(16, 5)
    h = recipe_features(model, y)
    variant = MeansFollow(torch.eye(3), layer, (model.prior.low, model.prior.high))
    with torch.no_grad():
        variant.a.copy_(torch.randn(3, 3))
        variant.b.copy_(torch.randn(3))
        variant.layer.weight.add_(torch.randn_like(variant.layer.weight))  # its mean rows unused
        old_means = model.encode_y(y)[0]
        expected = variant.log_probs(model.encode_x(x), h)
    folded = copy.deepcopy(model)
    fold(folded, variant.as_stage())
    with torch.no_grad():
        z = folded.encode_x(x)
        mean, logvar = folded.encode_y(y)
        torch.testing.assert_close(mean, old_means @ variant.a.T + variant.b)
        scores = folded.score(z, mean, logvar)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


def test_the_stage_row_is_the_stage_that_training_runs(toy_npz, tmp_path, monkeypatch):
    import bench.alignment_variants as variants

    data = load_dataset(toy_npz)
    config = TrainConfig(epochs=1, batch_size=64, seed=3, device="cpu")
    train(data, tmp_path / "run", "implicit-ivae", {"latent_dim": 3, "hidden": 16}, config,
          progress=False)  # fmt: skip
    model = ivae.load_run(tmp_path / "run").model
    monkeypatch.setattr(variants, "CHECKPOINTS", (20, 60))
    (_, _, _), (steps, aligned, _) = variants.aligned_models(model, data, "stage", 3, 64)
    reference = ivae.load_run(tmp_path / "run").model
    align(reference, data, 60, LR, 64, seed=3)
    assert steps == 60
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(aligned.state_dict()[name], tensor, msg=name)
