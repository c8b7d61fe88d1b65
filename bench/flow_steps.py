"""Training-step time of implicit-ivae's coupling-flow encoder by number of couplings.

One training step (loss, backward, gradient clip, Adam) on a square-toy-sized batch (256
points, 5 dimensions, 40 segment labels), the configurations interleaved so that the shared
machine's load falls on all of them alike; prints the median ms per step and the ratio to
the first row, and writes them into docs/experiments.md between the `flow-steps` markers. The
trainer's fused Adam is measured against a plain (per-tensor) Adam with a per-tensor clip,
the trainer's optimizer before it was fused.

    .venv/bin/python -m bench.flow_steps                 # couplings 10, 12, 16
    .venv/bin/python -m bench.flow_steps --layers 10 20  # any others
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bench.common import EXPERIMENTS, command, write_section
from ivae.models import build_model
from ivae.nets import Modality
from ivae.train import TrainConfig, optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 12, 16])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = Modality("vector", (5,)), Modality("vector", (40,))
    batch = {
        "x": torch.randn(256, 5),
        "y": torch.nn.functional.one_hot(torch.randint(0, 40, (256,)), 40).float(),
    }
    setups = {}  # (couplings, fused) -> (model, optimizer)
    for fused in (False, True):
        for layers in args.layers:
            model = build_model(
                "implicit-ivae", {"latent_dim": 5, "hidden": 64, "flow_layers": layers}, x, y
            )
            adam = (
                optimizer(model, TrainConfig(lr=1e-3))
                if fused
                else torch.optim.Adam(model.parameters(), 1e-3)
            )
            setups[layers, fused] = (model, adam)
    times: dict[tuple[int, bool], list[float]] = {key: [] for key in setups}
    for _ in range(args.rounds):
        for (layers, fused), (model, adam) in setups.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = model.loss(batch)["loss"]
                adam.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0, foreach=fused)
                adam.step()
            times[layers, fused].append((time.perf_counter() - start) / args.steps * 1000)
    base = statistics.median(next(iter(times.values())))
    lines = ["| couplings | optimizer | ms per step (median) | relative |", "|---|---|---|---|"]
    for (layers, fused), values in times.items():
        median = statistics.median(values)
        adam = "fused Adam" if fused else "plain Adam"
        lines.append(f"| {layers} couplings | {adam} | {median:.1f} | {median / base:.2f} |")
    body = (
        "\n".join(lines)
        + f"\n\nRegenerate: `{command('bench.flow_steps')}` ({args.rounds} interleaved rounds of "
        f"{args.steps} steps, 1 thread of the shared 2-core "
        f"`{platform.processor() or platform.machine()}` machine)."
    )
    print(body)
    write_section("flow-steps", body, EXPERIMENTS)


if __name__ == "__main__":
    main()
