"""The alignment probe: its supervised start reads the factors out of mixed codes, and its
ratio and eq. 1 are the model's."""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.alignment_probe import supervised_alignment, terms
from ivae.alignment import LinearAlignment, output_layers
from ivae.metrics import mcc
from ivae.models.base import build_model
from ivae.nets import Modality


def test_the_supervised_start_unmixes_codes_that_hold_the_factors_linearly():
    rng = np.random.default_rng(0)
    factors, other = rng.uniform(0, 1, (2000, 4)), rng.normal(0, 1, (2000, 4))
    mixing = rng.normal(0, 1, (8, 8))
    codes = np.c_[factors, other] @ mixing
    assert mcc(factors, codes)["mcc"] < 0.8  # mixed as they come
    a = supervised_alignment(codes, factors)
    assert np.linalg.matrix_rank(a) == 8  # an invertible map: nothing of the codes is dropped
    aligned = codes @ a.T
    per_factor = [np.corrcoef(aligned[:, j], factors[:, j])[0, 1] for j in range(4)]
    np.testing.assert_allclose(per_factor, 1.0, atol=1e-6)


def test_at_the_identity_with_the_priors_layer_the_ratio_is_the_models():
    torch.manual_seed(0)
    model = build_model(
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16, "likelihood_weight": 0.0},
        Modality("vector", (6,)),
        Modality("vector", (5,)),
    ).eval()
    x, y = torch.randn(32, 6), torch.randn(32, 5)
    layer, features = output_layers(model)[1], []
    hook = layer.register_forward_hook(lambda m, i, o: features.append(i[0]))
    with torch.no_grad():
        expected = model.loss({"x": x, "y": y})
    hook.remove()
    probe = LinearAlignment(torch.eye(3), layer, (model.prior.low, model.prior.high))
    with torch.no_grad():
        ratio, likelihood = terms(probe, model.encode_x(x), features[0])
    torch.testing.assert_close(ratio.mean(), expected["ratio"])
    # eq. 1 up to the encoder's own (fixed) Jacobian term: log |det A| = 0 at the identity
    torch.testing.assert_close(likelihood.mean(), expected["log_prior"])
    with torch.no_grad():  # doubling the codes by A adds k log 2 to the log-volume
        scaled = terms(probe, 2 * model.encode_x(x), features[0])[1]
        probe.a.mul_(2.0)
        doubled = terms(probe, model.encode_x(x), features[0])[1]
    torch.testing.assert_close(doubled, scaled + 3 * math.log(2))
