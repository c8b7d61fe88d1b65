"""One table over every registered model and both kinds of data: shapes, a finite loss,
gradients that reach every trained parameter, and a save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch

from ivae.models import REGISTRY, UnknownModel, build_model, model_class
from ivae.models.base import gaussian_log_prob, pairwise_log_prob
from ivae.models.implicit_ivae import FLOW_LIKELIHOOD_WEIGHT
from ivae.nets import DIHEDRAL_VIEWS, Modality, dihedral_view

K = 3
DATA = {
    "vector/vector": (Modality("vector", (6,)), Modality("vector", (4,))),
    "image/text": (Modality("image", (3, 16, 16)), Modality("text", (12,), vocab_size=30)),
}


def batch_for(x: Modality, y: Modality, n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if x.kind == "image":
        xs = torch.randint(0, 256, (n, *x.shape), generator=g, dtype=torch.uint8)
    else:
        xs = torch.randn((n, *x.shape), generator=g)
    if y.kind == "text":
        ys = torch.randint(0, y.vocab_size, (n, *y.shape), generator=g)
        ys[:, -3:] = 0  # padding at the end, as the tokenizer writes it
    else:
        ys = torch.randn((n, *y.shape), generator=g)
    return {"x": xs, "y": ys}


CASES = [(name, data) for name in sorted(REGISTRY) for data in DATA]


@pytest.fixture(params=CASES, ids=[f"{m}-{d}" for m, d in CASES])
def model_and_batch(request):
    name, data = request.param
    torch.manual_seed(0)
    x, y = DATA[data]
    return build_model(name, {"latent_dim": K, "hidden": 32}, x, y), batch_for(x, y)


def test_codes_have_the_latent_shape(model_and_batch):
    model, batch = model_and_batch
    z = model.encode_x(batch["x"])
    mean, logvar = model.encode_y(batch["y"])
    assert z.shape == mean.shape == logvar.shape == (8, K)
    assert model.score(z, mean, logvar).shape == (8, 8)


def test_loss_is_finite_named_and_backpropagates(model_and_batch):
    model, batch = model_and_batch
    terms = model.loss(batch)
    assert "loss" in terms and len(terms) > 1, "every model names its loss terms"
    assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
    terms["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_state_dict_round_trip(model_and_batch, tmp_path):
    model, batch = model_and_batch
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    clone = build_model(model.name, model.config.to_json(), model.x_modality, model.y_modality)
    clone.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    model.eval(), clone.eval()
    assert torch.equal(model.encode_x(batch["x"]), clone.encode_x(batch["x"]))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_implicit_model_has_no_decoder_and_baselines_do(name):
    x, y = DATA["vector/vector"]
    model = build_model(name, {"latent_dim": K}, x, y)
    has_decoder = hasattr(model, "decoder")
    assert has_decoder == (name in {"ivae", "vae", "beta-vae"})


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(UnknownModel, match="implicit-ivae"):
        model_class("not-a-model")


def test_unknown_option_is_refused():
    x, y = DATA["vector/vector"]
    with pytest.raises(ValueError, match="unknown"):
        build_model("implicit-ivae", {"latent_dimension": 3}, x, y)


def test_a_flow_without_layers_is_refused_with_its_reason():
    x, y = DATA["vector/vector"]
    with pytest.raises(ValueError, match="flow_layers must be at least 1, got 0"):
        build_model("implicit-ivae", {"flow_layers": 0}, x, y)


@pytest.mark.parametrize(
    "option, no_op", sorted(model_class("implicit-ivae").Config.retired.items())
)
def test_a_removed_option_loads_at_its_no_op_value_and_is_refused_otherwise(option, no_op):
    """Runs saved before an option was removed still load when it did nothing."""
    x, y = DATA["vector/vector"]
    model = build_model("implicit-ivae", {"latent_dim": K, option: no_op}, x, y)
    assert option not in model.config.to_json()
    with pytest.raises(ValueError, match=f"option {option}=.* was removed"):
        build_model("implicit-ivae", {"latent_dim": K, option: 1}, x, y)


@pytest.mark.parametrize("option, then", sorted(model_class("implicit-ivae").Config.added.items()))
def test_a_saved_config_without_a_newer_option_loads_as_it_was_trained(option, then):
    """A saved run predating an option keeps the value it was trained with; a new run
    takes today's default, which differs (else the entry would not be needed)."""
    config = model_class("implicit-ivae").Config
    saved = config.from_saved({"latent_dim": K})
    assert getattr(saved, option) == then
    assert getattr(config.from_json({"latent_dim": K}), option) != then
    assert getattr(config.from_saved({"latent_dim": K, option: 0.25}), option) == 0.25


def test_pairwise_log_prob_is_the_elementwise_gaussian_log_density():
    """The matrix-product form equals log N(z_i; m_j, v_j) computed point by point, also for
    codes far out in the tails of narrow priors (the form's cancellation case)."""
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(7, 4, generator=g, dtype=torch.float64)
    mean = torch.randn(5, 4, generator=g, dtype=torch.float64)
    logvar = torch.empty(5, 4, dtype=torch.float64).uniform_(-6, 4, generator=g)
    expected = torch.stack(
        [
            torch.stack([gaussian_log_prob(z[i], mean[j], logvar[j]) for j in range(5)])
            for i in range(7)
        ]
    )
    torch.testing.assert_close(pairwise_log_prob(z, mean, logvar), expected)
    single = pairwise_log_prob(z.float(), mean.float(), logvar.float()).double()
    torch.testing.assert_close(single, expected, rtol=1e-5, atol=1e-2)
    one = torch.zeros(1, 1, dtype=torch.float64)  # N(0; 0, 1) in one dimension
    assert pairwise_log_prob(one, one, one).item() == pytest.approx(-0.5 * math.log(2 * math.pi))


def test_pairwise_log_prob_gradients_are_the_elementwise_forms():
    """The expanded form has the gradients of the point-by-point density, second order
    included (eq. 1's Jacobian terms differentiate through the codes)."""
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    inputs.append(torch.empty(4, 3, dtype=torch.float64).uniform_(-3, 3, generator=g))
    z, mean, logvar = (t.requires_grad_() for t in (inputs[0], inputs[1][:4], inputs[2]))
    weights = torch.randn(6, 4, generator=g, dtype=torch.float64)
    elementwise = gaussian_log_prob(z[:, None], mean[None], logvar[None])
    expected = torch.autograd.grad((elementwise * weights).sum(), (z, mean, logvar))
    got = torch.autograd.grad(
        (pairwise_log_prob(z, mean, logvar) * weights).sum(), (z, mean, logvar)
    )
    for e, o in zip(expected, got, strict=True):
        torch.testing.assert_close(o, e)
    assert torch.autograd.gradgradcheck(pairwise_log_prob, (z, mean, logvar))


@pytest.mark.parametrize(
    "data_dim, options, weight",
    [
        (K, {}, FLOW_LIKELIHOOD_WEIGHT),  # square: the invertible flow, eq. 1 beside the ratio
        (6, {}, 0.0),  # a network encoder: the density ratio alone
        (6, {"posterior": "stochastic"}, 0.1),  # eq. 5 beside the ratio
        (K, {"likelihood_weight": 1.0}, 1.0),  # a weight given is kept
    ],
)
def test_auto_likelihood_weight_is_resolved_by_the_encoder(data_dim, options, weight):
    x, y = Modality("vector", (data_dim,)), Modality("vector", (4,))
    model = build_model("implicit-ivae", {"latent_dim": K, **options}, x, y)
    assert model.config.likelihood_weight == weight
    assert model.config.to_json()["likelihood_weight"] == weight  # saved resolved


def test_dihedral_codes_are_the_mean_of_the_8_views_and_the_same_for_every_view():
    torch.manual_seed(0)
    options = {"latent_dim": K, "hidden": 8, "width": 8, "symmetry": "dihedral"}
    x, y = Modality("image", (3, 16, 16)), Modality("vector", (4,))
    model = build_model("implicit-ivae", options, x, y).eval()
    images = torch.rand(4, 3, 16, 16)
    views = [dihedral_view(images, v) for v in range(DIHEDRAL_VIEWS)]
    with torch.no_grad():
        z = model.encode_x(images)
        torch.testing.assert_close(z, torch.stack([model.code(v) for v in views]).mean(0))
        for view in views:
            torch.testing.assert_close(model.encode_x(view), z, rtol=1e-5, atol=1e-6)
        # the network alone is not invariant: the mean is what makes the codes so
        assert not torch.allclose(model.code(views[1]), model.code(images), atol=1e-4)
    assert model.config.to_json()["symmetry"] == "dihedral"  # saved with the run


@pytest.mark.parametrize("x", [Modality("vector", (6,)), Modality("image", (3, 16, 12))])
def test_dihedral_codes_are_refused_on_inputs_that_are_not_square_images(x):
    y = Modality("vector", (4,))
    with pytest.raises(ValueError, match="needs square images"):
        build_model("implicit-ivae", {"latent_dim": K, "symmetry": "dihedral"}, x, y)
