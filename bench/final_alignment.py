"""What the final alignment buys trained kitchen runs: each run before and after it.

``ivae train --align-steps N`` ends training with ``ivae.alignment.align``: N steps of the
density ratio on a k x k map of the training photos' codes and the prior's last layer, folded
into the model. Applied here to runs trained without it, with the run's own batch and seed,
it gives the same model as training with the option (tests/test_alignment.py), so one set of
trained runs shows the figures before and after. Writes the ``final-alignment`` section of
docs/experiments.md.

    .venv/bin/python -m bench.final_alignment RUN [RUN ...] --steps 24000
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import ivae
from bench.common import EXPERIMENTS, command, load_average, shown, write_section
from ivae.alignment import LR, align
from ivae.evaluate import encode, evaluate, leakage
from ivae.run import Run

FACTORS = ("savoriness", "wateriness", "greenness", "spiciness")


def figures(model, data) -> dict:
    """Test MCC, per factor, R@10 both ways and the largest nuisance |corr|."""
    report = evaluate(model, data, split="test")
    part = data.part("test")
    nuisance = leakage(part, encode(model, part)[0]) or {}
    return {
        "mcc": report["mcc"],
        **{name: report["mcc_per_factor"][name] for name in FACTORS},
        "r10_xy": report["retrieval"]["x_to_y"]["r10"],
        "r10_yx": report["retrieval"]["y_to_x"]["r10"],
        "nuisance": max(nuisance.values(), default=float("nan")),
    }


def unaligned_run(path: str) -> Run:
    """The run at ``path``, which must have been trained without the final alignment."""
    run = ivae.load_run(path)
    if run.config["train"].get("align_steps"):
        raise SystemExit(f"{path} was trained with the final alignment already")
    return run


def measure(path: str, steps: int) -> dict:
    run = unaligned_run(path)
    data = run.load_data()
    before = figures(run.model, data)
    train = run.config["train"]
    batch = min(train["batch_size"], int(np.sum(data.split == "train")))
    report = align(run.model, data, steps, LR, batch, train["seed"])
    after = figures(run.model.eval(), data)
    options = run.config["model_config"]
    terms = "ratio alone" if not options.get("likelihood_weight") else "Jacobian term on"
    row = {"run": shown(path), "terms": terms, "before": before, "after": after, **report}
    print(row, flush=True)
    return row


def cells(f: dict) -> str:
    per_factor = ", ".join(f"{f[name]:.3f}" for name in FACTORS)
    return f"{f['mcc']:.3f} | {per_factor} | {f['r10_xy']:.1f}, {f['r10_yx']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="kitchen runs trained without --align-steps")
    parser.add_argument("--steps", type=int, default=24000)
    parser.add_argument("--no-write-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(path, args.steps) for path in args.runs]
    lines = [
        "| run | objective | test MCC | savoriness, wateriness, greenness, spiciness | "
        "R@10 image→recipe, recipe→image | aligned: test MCC | per factor | R@10 | "
        "max nuisance \\|corr\\| before, after | validation ratio before, after | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['terms']} | {cells(r['before'])} | {cells(r['after'])} | "
            f"{r['before']['nuisance']:.3f}, {r['after']['nuisance']:.3f} | "
            f"{r['validation_ratio_before']:.3f}, {r['validation_ratio_after']:.3f} | "
            f"{r['seconds']:.0f} |"
        )
    for terms in sorted({r["terms"] for r in rows}):
        group = [r for r in rows if r["terms"] == terms]
        if len(group) > 1:
            mean = {
                when: statistics.mean(r[when]["mcc"] for r in group) for when in ("before", "after")
            }
            green = {
                when: statistics.mean(r[when]["greenness"] for r in group)
                for when in ("before", "after")
            }
            lines.append(
                f"| mean of {len(group)} | {terms} | {mean['before']:.3f} | greenness "
                f"{green['before']:.3f} | | {mean['after']:.3f} | greenness {green['after']:.3f} "
                "| | | | |"
            )
    lines += [
        "",
        f"Regenerate: `{command('bench.final_alignment')}` ({args.steps} steps of Adam at lr "
        f"{LR:g} on the run's batch size of training pairs, drawn from the run's seed; test "
        "split; the validation ratio over batches of the same size across the validation "
        f"split; 1 CPU thread, load average {load_average():.1f} at the end).",
    ]
    if args.no_write_docs:
        print("\n".join(lines))
        return
    print(write_section("final-alignment", "\n".join(lines), EXPERIMENTS))


if __name__ == "__main__":
    main()
