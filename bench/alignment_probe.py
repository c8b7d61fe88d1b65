"""Does the objective choose how a trained run's codes are aligned with the factors?

On kitchen the codes of a trained run hold every factor (a linear read-out of them recovers
each at r = 0.95-0.98), yet the latent matched to greenness correlates with it at only
0.67-0.74: the factors are there, mixed. This benchmark asks whether the density ratio itself
prefers the unmixed alignment, with the image encoder and the prior's recipe network held
fixed. On each run's cached codes z (the test photos as they are, no flips) and the recipe
features h entering the prior's last layer, it trains only a k x k map A, a shift b and that
last layer, so that A z + b is scored by the prior, from two starts:

- the run's own alignment (A = identity);
- the supervised read-out: the least-squares map from the training codes to the four true
  factors, completed to k rows by the codes' leading directions that it leaves out.

Each start first refits the prior's last layer from scratch with A held (so both starts are
scored by the prior that suits them), then trains A, b and the layer together by the density
ratio (batches of 128 training pairs, the run's batch). If the ratio preferred the unmixed
alignment, the first start would move towards it and the second would stay; the validation
ratio says which of the two the objective scores higher. Writes the ``alignment-probe``
section of docs/experiments.md.

    .venv/bin/python -m bench.alignment_probe RUN [RUN ...]   # ~1 min a run on 1 core
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch

import ivae
from bench.common import EXPERIMENTS, command, load_average, shown, write_section
from ivae.alignment import LinearAlignment, cached_inputs, mean_ratio, output_layers
from ivae.alignment import fit as stage_fit
from ivae.metrics import mcc
from ivae.models.base import density_ratio

BATCH = 128  # the kitchen preset's batch: the ratio's ceiling is log 128 = 4.85 nats
STARTS = ("the run's alignment", "the supervised read-out")


def cached(run, data, split: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Codes z (N, k), recipe features h (N, F) entering the prior's last layer, factors."""
    part = data.part(split)
    z, h = cached_inputs(run.model, part, output_layers(run.model)[1])
    return z, h, part.factors


def supervised_alignment(z: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(k, k): the least-squares read-out of the factors, then the codes' leading directions
    that the read-out leaves out; each row scaled to the codes' mean spread."""
    k, n = z.shape[1], factors.shape[1]
    coef, *_ = np.linalg.lstsq(np.c_[z, np.ones(len(z))], factors, rcond=None)
    readout = coef[:k].T  # (n, k)
    centred = z - z.mean(0)
    rest = centred - centred @ np.linalg.pinv(readout) @ readout
    directions = np.linalg.svd(rest, full_matrices=False)[2][: k - n]
    a = np.r_[readout, directions]
    return a / (z @ a.T).std(0)[:, None] * z.std(0).mean()


def terms(
    alignment: LinearAlignment, z: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair of a batch: the density ratio (eq. 3), its own pairs as negatives, and eq. 1 up
    to a constant, log p(A z + b | y) + log |det A|: the encoder is fixed, so its Jacobian
    term 1/2 log det(J Jᵀ) changes by log |det A| alone."""
    logp = alignment.log_probs(z, h)
    return density_ratio(logp), logp.diagonal() + torch.linalg.slogdet(alignment.a)[1]


def fit(alignment: LinearAlignment, params, z, h, steps, lr, seed, weight: float = 0.0) -> None:
    """``steps`` of Adam on -(ratio + ``weight`` x eq. 1), no gauge (the stage's loop)."""

    def loss_of(alignment, z, h):
        ratio, likelihood = terms(alignment, z, h)
        return -(ratio.mean() + weight * likelihood.mean())

    stage_fit(alignment, z, h, steps, lr, BATCH, seed, loss_of, list(params))


def scores(model: LinearAlignment, z: torch.Tensor, factors: np.ndarray, names) -> dict:
    with torch.no_grad():
        codes = model.codes(z).numpy()
    result = mcc(factors, codes)
    return {"mcc": result["mcc"], **dict(zip(names, result["per_factor"]))}


def probe(run_path: str, steps: int, lr: float, seed: int, weights: list[float]) -> list[dict]:
    torch.manual_seed(seed)
    run = ivae.load_run(run_path)
    data = run.load_data()
    (z, h, factors), (zv, hv, _), (zt, _, ft) = (
        cached(run, data, split) for split in ("train", "val", "test")
    )
    names = data.factor_names
    prior = run.model.prior
    starts = {STARTS[0]: np.eye(z.shape[1]), STARTS[1]: supervised_alignment(z.numpy(), factors)}
    rows = []
    for label, start in starts.items():
        start = torch.tensor(start, dtype=torch.float32)
        model = LinearAlignment(start, output_layers(run.model)[1], (prior.low, prior.high))
        model.layer.reset_parameters()  # refit from scratch, below
        fit(model, model.layer.parameters(), z, h, steps, lr, seed)
        before = {**scores(model, zt, ft, names), "ratio": mean_ratio(model, zv, hv, BATCH)}
        for weight in weights:
            trained = copy.deepcopy(model)
            fit(trained, trained.parameters(), z, h, steps, lr, seed + 1, weight)
            after = {**scores(trained, zt, ft, names), "ratio": mean_ratio(trained, zv, hv, BATCH)}
            row = {"run": shown(run.path), "start": label, "weight": weight}
            rows.append({**row, "before": before, "after": after})
            print(rows[-1], flush=True)
    return rows


def objective(weight: float) -> str:
    return f"ratio + {weight:g} x eq. 1" if weight else "ratio"


def cells(result: dict) -> str:
    return f"{result['mcc']:.3f} | {result['greenness']:.3f} | {result['ratio']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="kitchen runs (implicit-ivae, text queries)")
    parser.add_argument("--steps", type=int, default=3000, help="per stage")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=[0.0, 0.01, 1.0],
        help="of eq. 1 beside the ratio",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        row
        for path in args.runs
        for row in probe(path, args.steps, args.lr, args.seed, args.weights)
    ]
    lines = [
        "| run | start | test MCC | greenness | validation ratio | trained by | then: test MCC | "
        "greenness | validation ratio |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['run']} | {r['start']} | {cells(r['before'])} | {objective(r['weight'])} | "
            f"{cells(r['after'])} |"
            for r in rows
        ),
        "",
        f"Regenerate: `{command('bench.alignment_probe')}` (the runs' codes of the photos as "
        f"they are; each start: the prior's last layer refit from scratch with A held, "
        f"{args.steps} steps, then A, b and the layer by the objective of its row, "
        f"{args.steps} more; Adam lr {args.lr:g}, batches of {BATCH} training pairs; the "
        f"validation ratio is the mean over batches of {BATCH} across the validation split, "
        f"ceiling log {BATCH} = {math.log(BATCH):.2f}; 1 CPU thread, load average "
        f"{load_average():.1f} at the end).",
    ]
    print(write_section("alignment-probe", "\n".join(lines), EXPERIMENTS))


if __name__ == "__main__":
    main()
