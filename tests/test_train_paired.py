"""Every registered model trains on the image/text data sets (kitchen and shapes), saves a
run, and reads it back through the Python API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ivae
from ivae.data import load_dataset
from ivae.data.kitchen import generate_kitchen
from ivae.data.shapes import generate_shapes
from ivae.models import REGISTRY
from ivae.train import TrainConfig, train

GENERATORS = {"kitchen": generate_kitchen, "shapes": generate_shapes}


@pytest.fixture(scope="module", params=sorted(GENERATORS))
def paired(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    GENERATORS[request.param](path, n=60, image_size=32, seed=0, progress=False)
    return request.param, load_dataset(path, image_size=32)


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_every_model_trains_on_image_text_data(paired, model, tmp_path):
    name, data = paired
    assert data.x.shape[1:] == (3, 32, 32) and data.x.dtype == np.uint8
    assert data.y_kind == "text" and data.factors is not None
    metrics = train(
        data,
        tmp_path / "run",
        model,
        {"latent_dim": 3, "hidden": 32},
        TrainConfig(epochs=1, batch_size=16),
        progress=False,
    )
    assert metrics["model"] == model and metrics["latent_dim"] == 3
    assert np.isfinite(metrics["mcc"]) and metrics["retrieval"]["subset_size"] > 0
    run = ivae.load_run(tmp_path / "run")
    items = data.items.head(4)
    z = run.encode_x(data.x[:4])
    mean, logvar = run.encode_y(list(items["text"]))  # raw text through the saved vocabulary
    assert z.shape == mean.shape == logvar.shape == (4, 3)
    assert np.isfinite(run.score(z, mean, logvar)).all()


def test_dihedral_augmentation_applies_the_eight_symmetries_of_the_square():
    from ivae.train import dihedral

    image = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)
    batch = image.repeat(256, 1, 1, 1)
    out = dihedral(batch, torch.Generator().manual_seed(0))
    symmetries = {
        torch.rot90(image, k, (2, 3)).flip(3).numpy().tobytes()
        if flip
        else torch.rot90(image, k, (2, 3)).numpy().tobytes()
        for k in range(4)
        for flip in (False, True)
    }
    seen = {img.numpy().tobytes() for img in out.unsqueeze(1)}
    assert len(symmetries) == 8 and seen == symmetries  # every symmetry, nothing else
    assert torch.equal(out, dihedral(batch, torch.Generator().manual_seed(0)))  # seeded
    assert torch.equal(batch[0], image[0])  # the input is left as it was


def test_augmented_training_and_a_wider_image_encoder(paired, tmp_path):
    _, data = paired
    train(
        data,
        tmp_path / "run",
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 32, "width": 8},
        TrainConfig(epochs=1, batch_size=16, augment="dihedral"),
        progress=False,
    )
    run = ivae.load_run(tmp_path / "run")
    assert run.config["train"]["augment"] == "dihedral"
    assert run.model.encoder.features[0].out_channels == 8
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mirror")
