"""Training-step time of implicit-ivae's coupling-flow encoder, by parameter layout.

One training step (loss, backward, gradient clip, Adam) on square-toy-sized batches (5
dimensions, 40 segment labels), the configurations interleaved so that the shared machine's
load falls on all of them alike; prints the median ms per step, the ratio to the first row of
the same batch size and the time per epoch relative to the very first row, and writes them
into docs/experiments.md between the `flow-steps` markers. Four forms of the same flow
(same initialisation, same function):

- one module per coupling with a plain (per-tensor) Adam and clip, the oldest step;
- the same with the trainer's fused Adam and clip;
- each kind of parameter stacked over the couplings, the pass on (batch, features)
  activations;
- the trainer's ``CouplingFlow``: the same with its pass on (features, batch) activations;
- the same with the loss under ``torch.compile`` (its compile time, the first steps, is
  printed apart and not in the step time; compiled into an empty cache, as on a fresh
  machine, not from the inductor's on-disk cache of an earlier run).

    .venv/bin/python -m bench.flow_steps                          # 16 couplings, batch 256, 512
    .venv/bin/python -m bench.flow_steps --layers 10 --batch-sizes 256
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from torch import nn

from bench.common import EXPERIMENTS, command, write_section
from ivae.models import build_model
from ivae.nets import COUPLING_SCALE_BOUND, LEAKY_SLOPE, CouplingFlow, Modality, mlp
from ivae.train import TrainConfig, optimizer


class PerCouplingFlow(nn.Module):
    """The coupling flow as it was built before its parameters were stacked: one module per
    coupling (``couplings.i``: its mask and MLP) and per linear layer (``linears.i``). The
    same function, drawn from the same seed in the same order as ``ivae.nets.CouplingFlow``;
    its state dict is the layout that runs saved before then hold."""

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        layers: int = 6,
        mixing: bool = True,
        scale_bound: float = COUPLING_SCALE_BOUND,
    ):
        super().__init__()
        self.scale_bound = scale_bound
        self.couplings = nn.ModuleList()
        for i in range(layers):
            coupling = nn.Module()
            coupling.register_buffer("mask", ((torch.arange(dim) + i) % 2).float())
            coupling.net = mlp([dim, hidden, hidden, 2 * dim])
            nn.init.zeros_(coupling.net[-1].weight)
            nn.init.zeros_(coupling.net[-1].bias)
            self.couplings.append(coupling)
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers if mixing else 1))
        for linear in self.linears:
            nn.init.orthogonal_(linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logdet(x)[0]

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.stack([linear.weight for linear in self.linears])
        z, logdet = x, torch.linalg.slogdet(weights)[1].sum().expand(len(x))
        for i, coupling in enumerate(self.couplings):
            if i < len(self.linears):
                z = self.linears[i](z)
            scale, shift = coupling.net(z * coupling.mask).chunk(2, dim=-1)
            free, bound = 1 - coupling.mask, self.scale_bound
            scale = bound * torch.tanh(scale / bound) * free
            z = z * torch.exp(scale) + shift * free
            logdet = logdet + scale.sum(-1)
        return z, logdet


class BatchFirstFlow(CouplingFlow):
    """``CouplingFlow`` with its pass on (batch, features) activations, PyTorch's layout, as
    it ran before the pass was transposed: the same parameters and function."""

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        free = 1 - self.masks
        outputs = torch.cat([free, free], dim=1)
        weight1 = (self.weight1 * self.masks[:, None, :]).unbind()
        weight3 = (self.weight3 * outputs[:, :, None]).unbind()
        bias3 = (self.bias3 * outputs).unbind()
        bias1, weight2, bias2 = self.bias1.unbind(), self.weight2.unbind(), self.bias2.unbind()
        mix_weight, mix_bias = self.mix_weight.unbind(), self.mix_bias.unbind()
        bound, z, scales = self.scale_bound, x, []
        for i in range(len(weight1)):
            if i < len(mix_weight):
                z = nn.functional.linear(z, mix_weight[i], mix_bias[i])
            h = nn.functional.leaky_relu(nn.functional.linear(z, weight1[i], bias1[i]), LEAKY_SLOPE)
            h = nn.functional.leaky_relu(nn.functional.linear(h, weight2[i], bias2[i]), LEAKY_SLOPE)
            scale, shift = nn.functional.linear(h, weight3[i], bias3[i]).chunk(2, dim=-1)
            scale = bound * torch.tanh(scale / bound)
            z = torch.addcmul(shift, z, scale.exp())
            scales.append(scale)
        logdet = torch.linalg.slogdet(self.mix_weight)[1].sum() + torch.stack(scales).sum((0, 2))
        return z, logdet


# label -> (encoder, fused Adam and clip, loss compiled)
LAYOUTS = {
    "one module per coupling, plain Adam": ("per-coupling", False, False),
    "one module per coupling, fused Adam": ("per-coupling", True, False),
    "stacked parameters, fused Adam": ("batch-first", True, False),
    "stacked, pass on transposed activations (now)": ("stacked", True, False),
    "the same, loss under torch.compile": ("stacked", True, True),
}


def setup(layers: int, encoder: str, fused: bool, compiled: bool):
    """(model, Adam, fused) of one row of ``LAYOUTS``."""
    torch.manual_seed(0)
    x, y = Modality("vector", (5,)), Modality("vector", (40,))
    options = {"latent_dim": 5, "hidden": 64, "flow_layers": layers}
    model = build_model("implicit-ivae", options, x, y)
    bound = model.config.flow_scale_bound
    torch.manual_seed(0)  # the same start: the encoder is drawn first
    if encoder == "per-coupling":
        model.encoder = PerCouplingFlow(5, 64, layers, scale_bound=bound)
    elif encoder == "batch-first":
        model.encoder = BatchFirstFlow(5, 64, layers, scale_bound=bound)
    if compiled:
        model.loss = torch.compile(model.loss, dynamic=False)  # one graph per batch size
    adam = (
        optimizer(model, TrainConfig(lr=1e-3))
        if fused
        else torch.optim.Adam(model.parameters(), 1e-3)
    )
    return model, adam, fused


def step(model: nn.Module, adam: torch.optim.Adam, batch: dict, fused: bool) -> None:
    loss = model.loss(batch)["loss"]
    adam.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0, foreach=fused)
    adam.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # compiled from scratch
        body = measure(args)
    print(body)
    write_section("flow-steps", body, EXPERIMENTS)


def measure(args: argparse.Namespace) -> str:
    setups, batches = {}, {}
    for size in args.batch_sizes:
        generator = torch.Generator().manual_seed(size)
        labels = torch.randint(0, 40, (size,), generator=generator)
        batches[size] = {
            "x": torch.randn(size, 5, generator=generator),
            "y": torch.nn.functional.one_hot(labels, 40).float(),
        }
        for label, row in LAYOUTS.items():
            setups[size, label] = setup(args.layers, *row)
    warm_up = {}  # the first steps: torch.compile compiles in them
    for key, (model, adam, fused) in setups.items():
        start = time.perf_counter()
        for _ in range(2):
            step(model, adam, batches[key[0]], fused)
        warm_up[key] = time.perf_counter() - start
    times: dict[tuple[int, str], list[float]] = {key: [] for key in setups}
    for _ in range(args.rounds):
        for (size, label), (model, adam, fused) in setups.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, adam, batches[size], fused)
            times[size, label].append((time.perf_counter() - start) / args.steps * 1000)
    medians = {key: statistics.median(values) for key, values in times.items()}
    first = next(iter(medians))
    lines = [
        "| batch | layout | ms per step (median) | relative | time per epoch |",
        "|---|---|---|---|---|",
    ]
    for (size, label), median in medians.items():
        same_size = medians[size, next(iter(LAYOUTS))]
        epoch = median / size / (medians[first] / first[0])
        lines.append(
            f"| {size} | {label} | {median:.1f} | {median / same_size:.2f} | {epoch:.2f} |"
        )
    compiled_seconds = ", ".join(
        f"{seconds:.0f}" for (_, label), seconds in warm_up.items() if LAYOUTS[label][2]
    )
    return (
        "\n".join(lines)
        + f"\n\nRegenerate: `{command('bench.flow_steps')}` ({args.layers} couplings; "
        f"{args.rounds} interleaved rounds of {args.steps} steps, 1 thread of the shared "
        f"2-core `{platform.processor() or platform.machine()}` machine; the compiled rows' "
        f"first 2 steps, which compile, took {compiled_seconds} s and are not in the step time)."
    )


if __name__ == "__main__":
    main()
