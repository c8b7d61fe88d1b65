"""Where the final alignment's retrieval goes: the stage and three variants along their steps.

The stage (``ivae.alignment``) trains a k x k map of the codes and a copy of the prior's last
layer on the training photos' codes; on kitchen it gains 0.06-0.13 MCC and costs one to three
points of image->recipe R@10. Measured here on trained runs (without ``--align-steps``), with
the stage's own batches, seed and rate, at a few step counts:

- ``stage``: the stage as ``ivae train --align-steps`` runs it;
- ``prior only``: the map held at the identity, only the prior's last layer trained;
- ``means follow, r``: the prior's means tied to the map (A mu(y) + b, exact, so nothing of
  them is refit) and only its log-variance rows trained, at r times the rate.

Writes the ``alignment-variants`` section of docs/experiments.md.

    .venv/bin/python -m bench.alignment_variants RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import ivae
from bench.common import EXPERIMENTS, command, load_average, write_section
from bench.final_alignment import figures
from ivae.alignment import (
    LR,
    LinearAlignment,
    cached_inputs,
    fit,
    fold,
    mean_ratio,
    output_layers,
    sample,
)
from ivae.models.base import pairwise_log_prob, prior_gaussian

CHECKPOINTS = (1500, 3000, 12000, 24000)
# label -> (what trains: "all", "prior" or "variances", the variances' share of the rate)
VARIANTS = {
    "stage": ("all", 1.0),
    "prior only": ("prior", 1.0),
    "means follow, r = 1": ("variances", 1.0),
    "means follow, r = 0.3": ("variances", 0.3),
    "means follow, r = 0.1": ("variances", 0.1),
}


class MeansFollow(LinearAlignment):
    """The stage's map, with the prior's means following it exactly: A mu(h) + b, mu from the
    layer's mean rows as trained. Only the layer's log-variance rows change."""

    def __init__(self, start: torch.Tensor, layer, logvar_range):
        super().__init__(start, layer, logvar_range)
        k = len(start)
        self.register_buffer("mean_weight", layer.weight[:k].detach().clone())
        self.register_buffer("mean_bias", layer.bias[:k].detach().clone())

    def terms(self, z: torch.Tensor, h: torch.Tensor):
        k = len(self.b)
        mean = (h @ self.mean_weight.T + self.mean_bias) @ self.a.T + self.b
        mean, logvar = prior_gaussian(torch.cat([mean, self.layer(h)[:, k:]], 1), self.logvar_range)
        return pairwise_log_prob(self.codes(z), mean, logvar), logvar

    @torch.no_grad()
    def as_stage(self) -> LinearAlignment:
        """The same functions as a plain LinearAlignment, to fold into a model."""
        k = len(self.b)
        out = copy.deepcopy(self)
        out.layer.weight[:k] = self.a @ self.mean_weight
        out.layer.bias[:k] = self.a @ self.mean_bias + self.b
        return out


def aligned_models(model, data, variant: str, seed: int, batch: int):
    """[(steps, ``model`` with the alignment so far folded in, validation ratio)] after each
    of CHECKPOINTS steps of ``variant``; ``model`` itself is not changed."""
    trains, rate = VARIANTS[variant]
    layer = output_layers(model)[1]
    z, h = cached_inputs(model, sample(data, "train", seed), layer)
    zv, hv = cached_inputs(model, sample(data, "val", seed), layer)
    k, span = z.shape[1], (model.prior.low, model.prior.high)
    kind = MeansFollow if trains == "variances" else LinearAlignment
    alignment = kind(torch.eye(k), layer, span)
    if trains == "all":
        groups = [{"params": list(alignment.parameters())}]
    elif trains == "prior":
        groups = [{"params": list(alignment.layer.parameters())}]
    else:
        groups = [
            {"params": [alignment.a, alignment.b]},
            {"params": list(alignment.layer.parameters()), "lr": LR * rate},
        ]
    checkpoints = []

    def checkpoint(step: int) -> None:
        if step in CHECKPOINTS:
            stage = alignment.as_stage() if isinstance(alignment, MeansFollow) else alignment
            aligned = copy.deepcopy(model)
            fold(aligned, stage)
            checkpoints.append((step, aligned.eval(), mean_ratio(stage, zv, hv, batch)))

    # the stage's own loop and draws (ivae.alignment.fit), stopped at each checkpoint
    fit(alignment, z, h, CHECKPOINTS[-1], LR, batch, seed, params=groups, after_step=checkpoint)
    return checkpoints


def trajectory(run, data, variant: str) -> list[dict]:
    """The run's figures after each of CHECKPOINTS steps of ``variant``."""
    train_cfg = run.config["train"]
    rows = []
    for step, model, ratio in aligned_models(
        run.model, data, variant, train_cfg["seed"], train_cfg["batch_size"]
    ):
        rows.append(
            {"variant": variant, "steps": step, "validation_ratio": ratio, **figures(model, data)}
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="kitchen runs trained without --align-steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[tuple[str, int], list[dict]] = {}
    befores = []
    for path in args.runs:
        run = ivae.load_run(path)
        data = run.load_data()
        befores.append(figures(run.model.eval(), data))
        for variant in VARIANTS:
            for row in trajectory(run, data, variant):
                results.setdefault((variant, row["steps"]), []).append(row)

    def mean(rows: list[dict], key: str) -> float:
        return statistics.mean(r[key] for r in rows)

    lines = [
        "| variant | steps | test MCC | per run | greenness | R@10 image→recipe | "
        "R@10 recipe→image | max nuisance \\|corr\\| | validation ratio |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
        f"| before | 0 | {mean(befores, 'mcc'):.3f} | "
        + ", ".join(f"{r['mcc']:.3f}" for r in befores)
        + f" | {mean(befores, 'greenness'):.3f} | {mean(befores, 'r10_xy'):.1f} | "
        f"{mean(befores, 'r10_yx'):.1f} | {max(r['nuisance'] for r in befores):.3f} | |",
    ]
    for (variant, steps), rows in results.items():
        lines.append(
            f"| {variant} | {steps:,} | {mean(rows, 'mcc'):.3f} | "
            + ", ".join(f"{r['mcc']:.3f}" for r in rows)
            + f" | {mean(rows, 'greenness'):.3f} | {mean(rows, 'r10_xy'):.1f} | "
            f"{mean(rows, 'r10_yx'):.1f} | {max(r['nuisance'] for r in rows):.3f} | "
            f"{mean(rows, 'validation_ratio'):.3f} |"
        )
    lines += [
        "",
        f"Regenerate: `{command('bench.alignment_variants')}` (means over {len(args.runs)} "
        f"run(s); Adam at lr {LR:g}, the stage's batches of training pairs drawn from each "
        "run's seed; test split; the validation ratio over batches of the run's size across "
        f"the validation split; 1 CPU thread, load average {load_average():.1f} at the end).",
    ]
    print(write_section("alignment-variants", "\n".join(lines), EXPERIMENTS))


if __name__ == "__main__":
    main()
