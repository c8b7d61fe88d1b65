"""Training-step time of implicit-ivae's coupling-flow encoder by number of couplings.

One training step (loss, backward, Adam) on a square-toy-sized batch (256 points, 5
dimensions, 40 segment labels), the configurations interleaved so that the shared machine's
load falls on all of them alike; prints the median ms per step and the ratio to the default.

    python bench/flow_steps.py                 # couplings 10, 12, 16
    python bench/flow_steps.py --layers 10 20  # any others
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ivae.models import build_model  # noqa: E402
from ivae.nets import Modality  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 12, 16])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = Modality("vector", (5,)), Modality("vector", (40,))
    batch = {"x": torch.randn(256, 5),
             "y": torch.nn.functional.one_hot(torch.randint(0, 40, (256,)), 40).float()}
    setups = {}
    for layers in args.layers:
        model = build_model("implicit-ivae", {"latent_dim": 5, "hidden": 64,
                                              "flow_layers": layers}, x, y)
        setups[layers] = (model, torch.optim.Adam(model.parameters(), 1e-3))
    times: dict[int, list[float]] = {layers: [] for layers in args.layers}
    for _ in range(args.rounds):
        for layers, (model, optimizer) in setups.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = model.loss(batch)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            times[layers].append((time.perf_counter() - start) / args.steps * 1000)
    base = statistics.median(times[args.layers[0]])
    for layers, values in times.items():
        median = statistics.median(values)
        print(f"{layers:3d} couplings: {median:6.1f} ms/step, x{median / base:.2f}")


if __name__ == "__main__":
    main()
