"""The final alignment: the density ratio followed further, in the space of the codes.

On kitchen a trained run's codes hold every factor (a linear read-out recovers each at
r = 0.95-0.98) but mix some of them (greenness with spiciness and the dish), and the ratio's
pull towards the unmixed alignment is weak: through the whole network, 30 epochs follow it
only part of the way. With the image encoder and the prior's recipe network held, the same
objective (with a gauge on the codes' scale, to which it is blind) trains just a k x k map
A (and a shift b) of the codes and the prior's last layer, on the training photos' codes
computed once, at a thousandth of a training step's cost; the map is then folded into the
encoder's last linear layer and the layer into the prior, so the run keeps its architecture
and every reader of it is unchanged.

Measured: docs/experiments.md, "What the ratio leaves mixed: a final alignment"
(``bench/final_alignment.py``).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ivae.data.dataset import Dataset
from ivae.encoding import encode_batched
from ivae.models.base import Model, density_ratio, pairwise_log_prob, prior_gaussian

# Adam's rate for the map and the layer: on kitchen 1e-2 aligned further in 24,000 steps than
# 1e-3, and 3e-2 less far (docs/experiments.md, "What the ratio leaves mixed")
LR = 1e-2
# The ratio is blind to the codes' scale (z -> c z, the prior following), and on the training
# codes the stage grows it until the prior's variances reach the top of their range: codes
# 6 times wider, and less aligned. The gauge pins the batch's mean prior log-variance at 0.
GAUGE_WEIGHT = 1.0
# Codes and recipe features held for the stage, per split, at most: a seeded sample of a
# larger split (136 floats an item, 35 MB), so a Recipe1M-scale run's memory stays flat
MAX_ITEMS = 65536


class AlignmentUnsupported(ValueError):
    pass


def output_layers(model: Model) -> tuple[nn.Linear, nn.Linear]:
    """The image encoder's last linear layer (its codes) and the prior's (its Gaussians).

    AlignmentUnsupported for models whose codes are not the output of a linear layer of k
    units (the invertible flows of square data, stochastic encoders, other models)."""
    prior = getattr(model, "prior", None)
    encoder = getattr(model, "encoder", None)
    k = model.config.latent_dim
    if (
        prior is None
        or encoder is None
        or getattr(model.config, "posterior", "") != "deterministic"
    ):
        raise AlignmentUnsupported(
            f"the final alignment needs implicit-ivae with a deterministic encoder; "
            f"{model.name} has none"
        )
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    prior_linears = [m for m in prior.net.modules() if isinstance(m, nn.Linear)]
    if hasattr(encoder, "forward_with_logdet") or not linears or linears[-1].out_features != k:
        raise AlignmentUnsupported(
            f"the final alignment needs an encoder whose codes are a linear layer's output; "
            f"{type(encoder).__name__} is not one (the square data's flow is aligned by its "
            "own likelihood)"
        )
    return linears[-1], prior_linears[-1]


class LinearAlignment(nn.Module):
    """Codes z -> A z + b, scored by the prior whose last layer (a trainable copy of
    ``layer``) reads the recipe features h entering it."""

    def __init__(self, start: torch.Tensor, layer: nn.Linear, logvar_range: tuple[float, float]):
        super().__init__()
        self.a = nn.Parameter(start.detach().clone().float())
        self.b = nn.Parameter(torch.zeros(len(start)))
        self.layer = nn.Linear(layer.in_features, layer.out_features)
        self.layer.load_state_dict(layer.state_dict())
        self.logvar_range = logvar_range

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.a.T + self.b

    def log_probs(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(B, B): every aligned code under every recipe's prior."""
        return self.terms(z, h)[0]

    def terms(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, B) log-densities, as ``log_probs``, and the batch's prior log-variances (B, k)."""
        mean, logvar = prior_gaussian(self.layer(h), self.logvar_range)
        return pairwise_log_prob(self.codes(z), mean, logvar), logvar

    def ratio(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The density ratio (eq. 3) per pair of a batch, its own pairs as negatives."""
        return density_ratio(self.log_probs(z, h))


def sample(data: Dataset, split: str, seed: int, limit: int = MAX_ITEMS) -> Dataset:
    """``data``'s ``split``, or ``limit`` of its items drawn from ``seed`` (in their order) if
    it has more: photos and recipes, without the item table (its texts, copied, took 380 MB
    for 65,536 Recipe1M-format items), taken in one step so a large split is never copied."""
    rows = np.flatnonzero(data.split == split)
    if len(rows) > limit:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), limit, False))]
    return replace(data, items=None).subset(rows)


@torch.no_grad()
def cached_inputs(
    model: Model, data: Dataset, layer: nn.Linear, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes z (N, k) of ``data``'s photos as they are (``encode_x``), and the recipe
    features h (N, F) entering the prior's last ``layer``.

    h is written into one tensor allocated at the first batch: kept batch by batch, the
    small tensors pinned the heap under each text batch's temporaries: coding 65,536
    recipes of a 200k-item data set took the process from 0.9 to 3.1 GB, now to 1.0
    (ivae.encoding's note on memory)."""
    model.eval()
    h = torch.empty(0)
    filled = 0

    def keep(module, inputs, output) -> None:
        nonlocal h, filled
        batch = inputs[0].detach()
        if not filled:
            h = torch.empty(len(data), batch.shape[1])
        h[filled : filled + len(batch)] = batch.float().cpu()
        filled += len(batch)

    hook = layer.register_forward_hook(keep)
    try:
        (z,) = encode_batched(model, "x", data.x, 256, device)
        encode_batched(model, "y", data.y, 256, device)
    finally:
        hook.remove()
    return torch.from_numpy(z).float(), h[:filled]


def gauged_ratio_loss(alignment: LinearAlignment, z: torch.Tensor, h: torch.Tensor):
    """The stage's loss on a batch: minus the ratio, plus the gauge on the codes' scale."""
    logp, logvar = alignment.terms(z, h)
    return -density_ratio(logp).mean() + GAUGE_WEIGHT * logvar.mean() ** 2


def fit(
    alignment: LinearAlignment,
    z: torch.Tensor,
    h: torch.Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    loss_of=gauged_ratio_loss,
    params=None,
    after_step=None,
) -> None:
    """``steps`` of Adam on ``loss_of(alignment, z, h)`` (default: the ratio and the scale's
    gauge) over ``params`` (default: all of the alignment's; parameter groups too), batches
    drawn with replacement from the seed; ``after_step(n)`` is called after the n-th step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(alignment.parameters() if params is None else params, lr=lr)
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(z), (batch_size,), generator=generator)
        loss = loss_of(alignment, z[rows], h[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)


@torch.no_grad()
def mean_ratio(
    alignment: LinearAlignment, z: torch.Tensor, h: torch.Tensor, batch_size: int
) -> float | None:
    """The ratio over batches of ``batch_size`` drawn across the pairs (a fixed permutation);
    None for fewer than 2 pairs."""
    batch_size = min(batch_size, len(z))  # a small split: one batch of all of it
    if batch_size < 2:
        return None
    n = len(z) // batch_size * batch_size
    order = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))[:n]
    batches = order.view(-1, batch_size)
    return float(torch.stack([alignment.ratio(z[b], h[b]).mean() for b in batches]).mean())


@torch.no_grad()
def fold(model: Model, alignment: LinearAlignment) -> None:
    """Write A and b into the encoder's last layer and the trained layer into the prior:
    e(x) becomes A e(x) + b, with no module added."""
    code_layer, prior_layer = output_layers(model)
    a, b = alignment.a.to(code_layer.weight), alignment.b.to(code_layer.weight)
    code_layer.bias.copy_(code_layer.bias @ a.T + b)
    code_layer.weight.copy_(a @ code_layer.weight)
    prior_layer.load_state_dict(alignment.layer.state_dict())


def align(
    model: Model,
    data: Dataset,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """Align ``model``'s codes on ``data``'s training split (the ratio on a k x k map of them
    and the prior's last layer), fold the result into the model, and report it: the steps,
    the seconds, and the validation ratio before and after (None without a validation
    split)."""
    start = time.perf_counter()
    prior_layer = output_layers(model)[1]
    train, val = (sample(data, split, seed) for split in ("train", "val"))
    z, h = cached_inputs(model, train, prior_layer, device)
    k = z.shape[1]
    logvar_range = (model.prior.low, model.prior.high)
    alignment = LinearAlignment(torch.eye(k), prior_layer, logvar_range)  # on the CPU
    zv, hv = cached_inputs(model, val, prior_layer, device) if len(val) else (z[:0], h[:0])
    before = mean_ratio(alignment, zv, hv, batch_size)
    with torch.enable_grad():
        fit(alignment, z, h, steps, lr, batch_size, seed)
    after = mean_ratio(alignment, zv, hv, batch_size)
    fold(model, alignment)
    a = alignment.a.detach().numpy()
    return {
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "seconds": round(time.perf_counter() - start, 2),
        "validation_ratio_before": before,
        "validation_ratio_after": after,
        # how far the codes were turned: 0 for A = identity
        "change": float(np.linalg.norm(a - np.eye(k)) / np.sqrt(k)),
    }


def summary(report: dict) -> str:
    """One sentence on a run's final alignment, from its ``metrics.json`` entry."""
    text = (
        f"{int(report.get('steps', 0)):,} steps of the density ratio after the epochs, on a "
        "k x k map of the training photos' codes and the prior's last layer"
    )
    before, after = report.get("validation_ratio_before"), report.get("validation_ratio_after")
    if isinstance(before, int | float) and isinstance(after, int | float):
        text += f" (validation ratio {before:.3f} before, {after:.3f} after)"
    return text
