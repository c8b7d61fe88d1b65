"""The Jacobian machinery of the implicit decoder against torch's own autograd, and the
log-volume term against its closed form (docs/method.md, eq. 1)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from ivae.jacobian import conditioning_gap, encoder_jacobian, frobenius_sq, half_logdet_jjt
from ivae.nets import ConvEncoder, VectorEncoder


def reference_jacobian(f, x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, k, D): each sample's Jacobian, one sample at a time."""
    return torch.stack([jacobian(lambda v: f(v[None])[0], xi).flatten(1) for xi in x])


ENCODERS = {
    "vector MLP": (lambda: VectorEncoder(7, 3, hidden=16, depth=3), (5, 7)),
    "conv": (lambda: ConvEncoder(8, 2, width=8, hidden=16), (3, 3, 8, 8)),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_jacobian_matches_autograd(name):
    torch.manual_seed(0)
    make, shape = ENCODERS[name]
    f = make().double()
    x = torch.randn(shape, dtype=torch.float64) * 0.5
    z, jac = encoder_jacobian(lambda v: f(v.double()), x)
    assert z.shape == (shape[0], jac.shape[1])
    torch.testing.assert_close(jac.double(), reference_jacobian(f, x), rtol=1e-6, atol=1e-8)


def test_the_jacobian_of_uint8_photos_is_taken_on_the_codes_the_encoder_gives_them():
    torch.manual_seed(0)
    f = ConvEncoder(8, 2, width=8, hidden=16)
    photos = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    z, jac = encoder_jacobian(f, photos)
    torch.testing.assert_close(z, f(photos))  # not the codes of photos 255 times too bright
    unit = photos.double() / 255
    torch.testing.assert_close(
        jac.double(), reference_jacobian(f.double(), unit), rtol=1e-4, atol=1e-6
    )


def test_encoder_jacobian_is_differentiable():
    torch.manual_seed(0)
    f = VectorEncoder(4, 2, hidden=8, depth=2)
    _, jac = encoder_jacobian(f, torch.randn(3, 4))
    frobenius_sq(jac).sum().backward()
    # every weight shapes J (the last bias does not: it only shifts the codes)
    assert all(p.grad is not None for name, p in f.named_parameters() if "weight" in name)


def test_half_logdet_is_log_abs_det_in_the_square_case():
    torch.manual_seed(0)
    jac = torch.randn(6, 4, 4, dtype=torch.float64)
    expected = torch.linalg.det(jac).abs().log()
    torch.testing.assert_close(half_logdet_jjt(jac), expected)
    # the general (k < D) formula agrees with it when D == k
    torch.testing.assert_close(0.5 * torch.logdet(jac @ jac.transpose(1, 2)), expected)


def test_half_logdet_of_an_isometry_is_zero_and_scales_with_k():
    q, _ = torch.linalg.qr(torch.randn(10, 3, dtype=torch.float64))
    jac = q.T[None]  # (1, 3, 10) with orthonormal rows
    torch.testing.assert_close(half_logdet_jjt(jac, eps=0.0), torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(
        half_logdet_jjt(2 * jac, eps=0.0), 3 * torch.log(torch.tensor([2.0], dtype=torch.float64))
    )


def test_conditioning_gap_is_zero_only_for_a_conformal_map():
    q, _ = torch.linalg.qr(torch.randn(10, 3, dtype=torch.float64))
    conformal = 5 * q.T[None]
    stretched = conformal * torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64)[None, :, None]
    assert conditioning_gap(conformal, eps=0.0).abs().item() < 1e-10
    assert conditioning_gap(stretched, eps=0.0).item() > 0.1


def test_coupling_flow_log_determinant_is_exact():
    from ivae.nets import CouplingFlow

    torch.manual_seed(0)
    flow = CouplingFlow(5, hidden=16, layers=4)
    torch.nn.init.normal_(flow.weight3, std=0.3)  # off the identity start: real couplings
    x = torch.randn(7, 5)
    z, logdet = flow.forward_with_logdet(x)
    _, jac = encoder_jacobian(flow, x)
    assert torch.allclose(logdet, torch.linalg.slogdet(jac)[1], atol=1e-4)


@pytest.mark.parametrize("bound", [0.5, 2.0])
def test_each_coupling_scales_by_at_most_its_bound(bound):
    """However far off the data a point lies, a coupling multiplies each free coordinate by
    at most e^bound: a run of saturated couplings cannot throw a code out by e^2 each."""
    from ivae.nets import CouplingFlow

    torch.manual_seed(0)
    coupling = CouplingFlow(5, hidden=16, layers=1, mixing=False, scale_bound=bound)
    with torch.no_grad():
        coupling.mix_weight.copy_(torch.eye(5))  # the coupling alone
        torch.nn.init.normal_(coupling.weight3, std=3.0)  # steep, saturating scales
    x = 1e3 * torch.randn(64, 5)
    _, log_scale = coupling.forward_with_logdet(x)
    free = 3  # the coordinates that mask (0, 1, 0, 1, 0) leaves to be scaled
    assert log_scale.abs().max().item() <= free * bound + 1e-5
    assert log_scale.abs().max().item() > 0.9 * free * bound  # saturated: the bound binds


@pytest.mark.parametrize("mixing", [True, False])
def test_stacked_coupling_flow_is_the_per_coupling_flow(mixing):
    """The stacked layout draws the same start from a seed as one module per coupling did,
    computes the same function and gradients, and loads a state dict saved in the old layout
    (as every run saved before it holds)."""
    from bench.flow_steps import BatchFirstFlow, PerCouplingFlow
    from ivae.nets import CouplingFlow

    torch.manual_seed(3)
    old = PerCouplingFlow(5, hidden=16, layers=6, mixing=mixing)
    torch.manual_seed(3)
    new = CouplingFlow(5, hidden=16, layers=6, mixing=mixing)
    loaded = CouplingFlow(5, hidden=16, layers=6, mixing=mixing, scale_bound=9.0)
    loaded.load_state_dict(old.state_dict())
    assert loaded.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in loaded.state_dict().items())

    for coupling in old.couplings:  # off the identity start
        torch.nn.init.normal_(coupling.net[-1].weight, std=0.5)
        torch.nn.init.normal_(coupling.net[-1].bias, std=0.5)
    new.load_state_dict(old.state_dict())
    x = 3 * torch.randn(50, 5)
    z_old, logdet_old = old.forward_with_logdet(x)
    z_new, logdet_new = new.forward_with_logdet(x)
    assert torch.allclose(z_new, z_old, atol=1e-4)
    assert torch.allclose(logdet_new, logdet_old, atol=1e-4)
    assert logdet_new.std() > 0.1  # the couplings act
    (z_old.square().sum() - logdet_old.sum()).backward()
    (z_new.square().sum() - logdet_new.sum()).backward()
    grads = {
        "weight1": torch.stack([c.net[0].weight.grad for c in old.couplings]),
        "weight3": torch.stack([c.net[4].weight.grad for c in old.couplings]),
        "mix_weight": torch.stack([linear.weight.grad for linear in old.linears]),
    }
    for name, grad in grads.items():
        assert torch.allclose(
            getattr(new, name).grad, grad, rtol=1e-4, atol=1e-4 * grad.abs().max()
        )
    # and the pass before it ran on transposed activations (the step benchmark's reference)
    batch_first = BatchFirstFlow(5, hidden=16, layers=6, mixing=mixing)
    batch_first.load_state_dict(old.state_dict())
    z_first, logdet_first = batch_first.forward_with_logdet(x)
    assert torch.allclose(z_first, z_new, atol=1e-4)
    assert torch.allclose(logdet_first, logdet_new, atol=1e-4)


def test_leaky_flow_log_determinant_is_exact_and_the_map_is_invertible():
    from ivae.nets import LeakyFlow

    torch.manual_seed(0)
    flow = LeakyFlow(5, layers=3, slope=0.3)
    x = torch.randn(9, 5)
    z, logdet = flow.forward_with_logdet(x)
    _, jac = encoder_jacobian(flow, x)
    assert torch.allclose(logdet, torch.linalg.slogdet(jac)[1], atol=1e-4)
    assert (logdet.std() > 0).item()  # the points fall on different sides of the kinks
    other = torch.randn(9, 5)
    assert not torch.allclose(flow(other), z)  # distinct inputs, distinct codes


def test_implicit_model_uses_the_flow_log_determinant_on_the_whole_batch():
    from ivae.models import build_model
    from ivae.nets import Modality

    torch.manual_seed(0)
    model = build_model(
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 8, "jacobian_samples": 2},
        Modality("vector", (3,)),
        Modality("vector", (2,)),
    )
    batch = {"x": torch.randn(6, 3), "y": torch.randn(6, 2)}
    terms = model.loss(batch)
    _, logdet = model.encoder.forward_with_logdet(batch["x"])
    assert torch.allclose(terms["log_volume"], logdet.mean())  # all 6 points, not 2


def test_square_vector_data_gets_an_invertible_encoder():
    from ivae.models import build_model
    from ivae.nets import CouplingFlow, Modality

    square = build_model(
        "implicit-ivae", {"latent_dim": 4}, Modality("vector", (4,)), Modality("vector", (3,))
    )
    wide = build_model(
        "implicit-ivae", {"latent_dim": 4}, Modality("vector", (9,)), Modality("vector", (3,))
    )
    assert isinstance(square.encoder, CouplingFlow)
    assert not isinstance(wide.encoder, CouplingFlow)


@pytest.mark.parametrize("mixing", [True, False])
def test_a_whitened_flow_starts_with_uncorrelated_unit_codes(mixing):
    """A badly conditioned sample (variances 1e-3 to 100, correlated, off-centre) leaves the
    whitened first layer centred, and the freshly whitened flow with identity covariance (its
    couplings start at the identity, its later linear layers orthogonal); the flow's
    log-determinant still matches autograd's."""
    from ivae.nets import CouplingFlow

    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(5, 5))[0]
    x = (torch.randn(4000, 5) * torch.tensor([10.0, 3.0, 1.0, 0.1, 0.03])) @ basis.T + 2.0
    flow = CouplingFlow(5, hidden=16, layers=4, mixing=mixing)
    flow.whiten(x)
    with torch.no_grad():
        z = flow(x)
        first = torch.nn.functional.linear(x, flow.mix_weight[0], flow.mix_bias[0])
    assert first.mean(0).abs().max() < 1e-3
    assert torch.allclose(torch.cov(z.T), torch.eye(5), atol=1e-3)
    point = x[:1].double().requires_grad_()
    full = jacobian(lambda v: flow.double()(v), point).reshape(5, 5)
    _, logdet = flow.forward_with_logdet(point)
    assert torch.allclose(logdet[0], torch.linalg.slogdet(full)[1], atol=1e-6)


def test_a_constant_coordinate_whitens_to_finite_codes():
    from ivae.nets import CouplingFlow

    x = torch.randn(500, 3)
    x[:, 1] = 4.0  # no variance along one axis
    flow = CouplingFlow(3, hidden=8, layers=2)
    flow.whiten(x)
    with torch.no_grad():
        assert torch.isfinite(flow(x)).all()


def test_training_starts_the_flow_from_the_data_unless_told_not_to(tmp_path):
    """The trainer whitens the square toy's flow before its first step (codes of the train
    split uncorrelated, unit variance); flow_whiten=False keeps the orthogonal start, and a run
    saved before the option existed loads as it was trained (orthogonal)."""
    from ivae.data import load_dataset
    from ivae.data.toy import write_toy
    from ivae.models import model_class
    from ivae.train import TrainConfig, Trainer, run_config

    data = load_dataset(write_toy(tmp_path / "toy.npz", segments=5, per_segment=200, seed=1))
    train_x = torch.from_numpy(data.x[data.split == "train"])
    covariances = {}
    for whiten in (True, False):
        config = run_config(
            data,
            "implicit-ivae",
            {"hidden": 8, "latent_dim": 5, "flow_layers": 2, "flow_whiten": whiten},
            TrainConfig(epochs=1, device="cpu"),
        )
        trainer = Trainer(data, tmp_path / f"run-{whiten}", config, progress=False)
        with torch.no_grad():
            covariances[whiten] = torch.cov(trainer.model.encode_x(train_x).T)
    assert torch.allclose(covariances[True], torch.eye(5), atol=1e-3)
    # orthogonal layers keep the mixed toy's own, far from white, covariance
    assert not torch.allclose(covariances[False], torch.eye(5), atol=0.1)
    saved = {"latent_dim": 5, "hidden": 8}  # a config.json written before the option
    assert model_class("implicit-ivae").Config.from_saved(saved).flow_whiten is False
    # an encoder that does not start from the data never reads the sample
    wide = load_dataset(write_toy(tmp_path / "wide.npz", segments=5, per_segment=200, data_dim=8))
    config = run_config(
        wide, "implicit-ivae", {"hidden": 8, "latent_dim": 5}, TrainConfig(device="cpu")
    )
    assert Trainer(wide, tmp_path / "run-wide", config, progress=False).start_inputs is None


def test_the_start_sample_spans_the_whole_training_split():
    """Data sets are often ordered (the toy's by segment): the sample is spread over all of
    the training rows, not their first stretch."""
    import numpy as np

    from ivae.train import START_ROWS, start_sample

    x = np.arange(100_000, dtype=np.float32)[:, None].repeat(2, 1)
    sample = start_sample(x, np.arange(0, 100_000, 2))
    assert len(sample) == START_ROWS
    assert sample[0, 0] == 0 and sample[-1, 0] == 99_998
    assert len(start_sample(x, np.arange(10))) == 10


def head_model(**options):
    from ivae.models import build_model
    from ivae.nets import Modality

    torch.manual_seed(0)
    options = {"latent_dim": 2, "hidden": 8, "width": 8, "jacobian": "head", **options}
    x, y = Modality("image", (3, 16, 16)), Modality("vector", (3,))
    return build_model("implicit-ivae", options, x, y)


def test_the_head_jacobian_is_the_heads_on_the_trunks_features():
    model = head_model(likelihood_weight=0.1, jacobian_samples=3)
    x = torch.rand(5, 3, 16, 16)
    z, jac = model._codes(x)
    features = model.encoder.trunk(x[:3]).detach().double()
    assert jac.shape == (3, 2, features[0].numel())  # k x F on the first 3 points
    assert features[0].numel() != x[0].numel()  # not k x pixels
    torch.testing.assert_close(z, model.code(x))
    reference = reference_jacobian(model.encoder.head.double(), features)
    torch.testing.assert_close(jac.double(), reference, rtol=1e-4, atol=1e-6)


def test_the_head_jacobian_term_trains_the_head_and_leaves_the_trunk_alone():
    model = head_model(likelihood_weight=1.0, ratio_weight=0.0, jacobian_samples=4)
    batch = {"x": torch.rand(4, 3, 16, 16), "y": torch.randn(4, 3)}
    model.loss(batch)["log_volume"].backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in model.encoder.head.parameters()
        if p.dim() > 1
    )
    assert all(p.grad is None for p in model.encoder.features.parameters())
    assert "head on its trunk's features" in " ".join(model.config.objective_terms())


def test_a_head_jacobian_needs_a_network_with_a_trunk_or_features_as_input():
    from ivae.models import build_model
    from ivae.nets import Modality

    options = {"latent_dim": 2, "jacobian": "head", "likelihood_weight": 0.1}
    pretrained = {**options, "encoder": "efficientnet-lite0"}  # an image network, no trunk
    with pytest.raises(ValueError, match="trunk and a head.*jacobian='exact'"):
        build_model(
            "implicit-ivae", pretrained, Modality("image", (3, 32, 32)), Modality("vector", (3,))
        )
    # on a backbone's features the encoder is the head: J on its input, as jacobian='exact'
    torch.manual_seed(0)
    head = build_model("implicit-ivae", options, Modality("vector", (7,)), Modality("vector", (3,)))
    torch.manual_seed(0)
    exact = build_model(
        "implicit-ivae",
        {**options, "jacobian": "exact"},
        Modality("vector", (7,)),
        Modality("vector", (3,)),
    )
    batch = {"x": torch.randn(16, 7), "y": torch.randn(16, 3)}
    terms, reference = head.loss(batch), exact.loss(batch)
    torch.testing.assert_close(terms["log_volume"], reference["log_volume"])
    torch.testing.assert_close(terms["loss"], reference["loss"])


def test_eq1_from_a_fraction_of_the_epochs_on_is_the_ratio_alone_before_it():
    model = head_model(likelihood_weight=0.5, likelihood_from=0.5, jacobian_samples=4)
    batch = {"x": torch.rand(4, 3, 16, 16), "y": torch.randn(4, 3)}
    model.progress = 0.4
    early = model.loss(batch)
    assert "log_volume" not in early  # no Jacobian computed before its epochs
    torch.testing.assert_close(early["loss"], -early["ratio"])
    model.progress = 0.5
    late = model.loss(batch)
    torch.testing.assert_close(late["loss"], -(late["ratio"] + 0.5 * late["likelihood"]))
    assert "from 50% of the epochs on" in " ".join(model.config.objective_terms())
    with pytest.raises(ValueError, match="likelihood_from"):
        head_model(likelihood_from=1.0)


def test_the_trainer_turns_eq1_on_at_its_epoch(tmp_path):
    import pandas as pd

    from ivae.data import load_dataset
    from ivae.train import TrainConfig, train
    from tests.tiny_run import make_tiny_dataset

    data = load_dataset(make_tiny_dataset(tmp_path / "data", n=64))
    options = {"latent_dim": 2, "hidden": 8, "width": 8, "likelihood_weight": 0.1}
    options |= {"jacobian": "head", "jacobian_samples": 4, "likelihood_from": 0.5}
    config = TrainConfig(epochs=4, batch_size=16, seed=0)
    train(data, tmp_path / "run", "implicit-ivae", options, config, progress=False)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["train_log_volume"].isna().tolist() == [True, True, False, False]
