"""The implicit iVAE's objective neither collapses nor inflates off the data manifold
(docs/method.md#known-limits), measured on a tiny noisy, non-square toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivae.data import load_dataset
from ivae.data.toy import write_toy
from ivae.evaluate import encode
from ivae.metrics import mcc
from ivae.train import TrainConfig, Trainer, run_config, train

# 2 sources in 6 dimensions with 0.1 observation noise: a 2-d manifold in a 6-d space, the
# setting in which the pointwise log-volume term can grow along the 4 normal directions.
TOY = {
    "sources": 2,
    "data_dim": 6,
    "segments": 10,
    "per_segment": 200,
    "noise": 0.1,
    "modulate": "mean-variance",
    "seed": 0,
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return load_dataset(write_toy(tmp_path_factory.mktemp("toy") / "toy.npz", **TOY))


def fit(data, tmp_path, options: dict, epochs: int = 12):
    """~300 Adam steps (1 600 training items, batch 64); returns the model and val codes."""
    torch.manual_seed(0)
    config = run_config(
        data,
        "implicit-ivae",
        {"hidden": 32, "latent_dim": 2, **options},
        TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, device="cpu"),
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(data, tmp_path, config, progress=False)
    trainer.fit()
    val = data.part("val")
    z, _, _ = encode(trainer.model, val)
    return trainer.model, val, z


@pytest.mark.slow
def test_default_objective_keeps_informative_full_rank_codes(toy, tmp_path):
    model, val, z = fit(toy, tmp_path, {})
    assert np.isfinite(z).all()
    spread = np.linalg.eigvalsh(np.cov(z.T))  # (2,) variances along the codes' axes
    assert spread.min() > 1e-3 * spread.max(), f"codes collapsed to a line: {spread}"
    assert spread.min() > 1e-4, f"codes collapsed to a point: {spread}"
    assert mcc(val.factors, z)["mcc"] > 0.7  # chance is about 0.1 for 2 factors
    # no off-manifold inflation: moving x by the noise level moves codes by much less than
    # their spread (an encoder that had grown along the noise directions would not)
    x = torch.from_numpy(val.x[:256])
    with torch.no_grad():
        shift = model.encode_x(x + 0.1 * torch.randn_like(x)) - model.encode_x(x)
    assert shift.pow(2).mean(0).max().item() < 0.2 * spread.min()


@pytest.mark.slow
def test_likelihood_without_its_jacobian_term_collapses(toy, tmp_path):
    """The control: log p(e(x)|y) alone is maximised by shrinking every code to the prior's
    mode, which is what the Jacobian term (or the density ratio) exists to prevent."""
    options = {"ratio_weight": 0.0, "likelihood_weight": 1.0, "jacobian": "none"}
    _, val, z = fit(toy, tmp_path, options)
    _, _, z_default = fit(toy, tmp_path / "default", {})
    assert z.std(0).max() < 0.2 * z_default.std(0).min()


def test_train_function_accepts_the_default_options(toy, tmp_path):
    """A smoke run through the public ``train`` entry point (one epoch)."""
    metrics = train(
        toy,
        tmp_path / "run",
        "implicit-ivae",
        {"hidden": 16, "latent_dim": 2},
        TrainConfig(epochs=1, batch_size=64, device="cpu"),
        progress=False,
    )
    assert metrics["mcc"] is not None and np.isfinite(metrics["mcc"])
