"""Retrieval with a query bank: would normalising each recipe's scores lift image->recipe R@10?

The retrieval metric ranks recipes j for a photo i by log p(z_i | y_j). A recipe whose prior
is broad, or sits where many photos' codes lie, scores high for every photo (a hub). The
inverted softmax (Smith et al., ICLR 2017; querybank normalisation, Bogolin et al., CVPR
2022) divides each recipe's score by its mass over a bank of other queries: here
log p(z_i | y_j) - log mean_q p(z_q | y_j), with z_q the codes of training photos. Measured
on trained runs after the final alignment, with the Recipe1M protocol of ``ivae.metrics``
(10 subsets of 1000 test pairs), side by side with the plain score. A measurement only: the
product's searches score by log p(z | y).

    .venv/bin/python -m bench.querybank RUN [RUN ...]   # runs trained with --align-steps 0
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import ivae
from bench.common import EXPERIMENTS, command, load_average, write_section
from ivae.alignment import LR, align, sample
from ivae.encoding import encode_batched
from ivae.metrics import retrieval

BANK = 4096  # training photos whose codes normalise each recipe's scores


def recalls(run_path: str, steps: int) -> dict:
    run = ivae.load_run(run_path)
    data = run.load_data()
    train = run.config["train"]
    if steps:
        align(run.model, data, steps, LR, train["batch_size"], train["seed"])
    model = run.model.eval()
    test = data.part("test")
    (z,) = encode_batched(model, "x", test.x, 256, "cpu")
    mean, logvar = encode_batched(model, "y", test.y, 256, "cpu")
    (bank,) = encode_batched(model, "x", sample(data, "train", 0, BANK).x, 256, "cpu")
    z, mean, logvar, bank = (torch.from_numpy(a).float() for a in (z, mean, logvar, bank))
    with torch.no_grad():
        # log mean_q p(z_q | y_j) for every test recipe j
        hub = torch.logsumexp(model.score(bank, mean, logvar), 0) - np.log(len(bank))

    def plain(index: np.ndarray) -> np.ndarray:  # the evaluation's score (ivae.evaluate)
        with torch.no_grad():
            return model.score(z[index], mean[index], logvar[index]).numpy()

    def normalised(index: np.ndarray) -> np.ndarray:
        return plain(index) - hub[index].numpy()[None, :]

    out = {}
    for name, score in (("plain", plain), ("bank", normalised)):
        result = retrieval(score, len(z))
        out[name] = (result["x_to_y"]["r10"], result["y_to_x"]["r10"])
    print(run_path, steps, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="kitchen runs trained with --align-steps 0")
    parser.add_argument("--steps", type=int, default=24000, help="final alignment steps first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [recalls(path, args.steps) for path in args.runs]

    def mean(name: str, side: int) -> float:
        return statistics.mean(r[name][side] for r in rows)

    lines = [
        "| score | R@10 image→recipe | per run | R@10 recipe→image |",
        "|---|---:|---|---:|",
    ]
    for name, label in (("plain", "log p(z \\| y)"), ("bank", "normalised by a query bank")):
        per_run = ", ".join(f"{r[name][0]:.1f}" for r in rows)
        lines.append(f"| {label} | {mean(name, 0):.1f} | {per_run} | {mean(name, 1):.1f} |")
    lines += [
        "",
        f"Regenerate: `{command('bench.querybank')}` ({len(rows)} run(s), each after "
        f"{args.steps:,} steps of the final alignment; a bank of {BANK:,} training photos; "
        "the Recipe1M protocol, 10 subsets of 1000 test pairs; 1 CPU thread, load average "
        f"{load_average():.1f} at the end).",
    ]
    print(write_section("querybank", "\n".join(lines), EXPERIMENTS))


if __name__ == "__main__":
    main()
