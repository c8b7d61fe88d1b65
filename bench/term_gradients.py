"""How hard each term of the objective pulls, at the start of training and at its end.

The gradient norm, over every parameter of implicit-ivae, of each term of the objective on
the same kitchen training batches: the density ratio (eq. 3), eq. 1's log-prior and its
Jacobian term, with J of the whole CNN on the pixels and of its head on the trunk's features
(``jacobian='head'``). Once for the shipped run's architecture freshly initialised and once
with the shipped run's trained weights (``assets/default-run``). The weighted column is what a
term at eq. 1's weight adds to the step, next to the ratio's. Written into
docs/experiments.md between the ``term-gradients`` markers.

    .venv/bin/python -m bench.term_gradients   # about a minute on 1 core
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import ivae
from bench.common import EXPERIMENTS, ROOT, command, write_section
from ivae.data import load_dataset

TERMS = ("ratio", "log_prior", "log_volume")


def gradient_norms(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """{term: ||d term / d parameters||} on ``batch``."""
    norms = {}
    for term in TERMS:
        model.zero_grad()
        model.loss(batch)[term].backward()
        grads = [p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None]
        norms[term] = float(torch.stack(grads).sum().sqrt())
    return norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "kitchen"))
    parser.add_argument("--run", default=str(ROOT / "assets" / "default-run"))
    parser.add_argument(
        "--batches", type=int, default=4, help="batches of 128 to take medians over"
    )
    parser.add_argument("--weight", type=float, default=0.01, help="eq. 1's weight")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shipped = ivae.load_run(args.run)
    train = load_dataset(args.data).part("train")
    rows = []
    for jacobian in ("exact", "head"):
        options = dict(shipped.config["model_config"])
        options |= {"likelihood_weight": args.weight, "jacobian": jacobian, "jacobian_samples": 32}
        cls = type(shipped.model)
        torch.manual_seed(0)
        model = cls(cls.Config(**options), shipped.model.x_modality, shipped.model.y_modality)
        for state in ("initialised", "trained (the shipped run's weights)"):
            if state.startswith("trained"):
                model.load_state_dict(shipped.model.state_dict())
            found: dict[str, list[float]] = {term: [] for term in TERMS}
            for b in range(args.batches):
                rows_ = slice(b * 128, (b + 1) * 128)
                batch = {
                    "x": torch.from_numpy(np.asarray(train.x[rows_])),
                    "y": torch.from_numpy(np.asarray(train.y[rows_])),
                }
                for term, norm in gradient_norms(model, batch).items():
                    found[term].append(norm)
            ratio, prior, volume = (statistics.median(found[t]) for t in TERMS)
            where = "the pixels" if jacobian == "exact" else "the head's features"
            weighted = args.weight * (prior + volume)
            rows.append(
                f"| {state} | J on {where} | {ratio:.2f} | {prior:.2f} | {volume:.2f} | "
                f"{weighted:.2f} ({weighted / ratio:.0%}) |"
            )
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            "| weights | eq. 1's Jacobian | ratio | log-prior | log-volume | "
            f"{args.weight:g} x (log-prior + log-volume), of the ratio's |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Regenerate: `{command('bench.term_gradients')}` (gradient norms over every "
            f"parameter, the median over {args.batches} training batches of 128 of "
            "`data/kitchen`, the shipped run's architecture; J on 32 photos of each batch; "
            "1 CPU thread).",
        ]
    )
    write_section("term-gradients", body, EXPERIMENTS)


if __name__ == "__main__":
    main()
