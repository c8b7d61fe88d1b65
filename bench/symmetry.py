"""Codes of one view or the mean of the 8 flips and quarter turns, before and after alignment.

A top-down photo shows the same factors under any flip or quarter turn, and the kitchen runs
train on one random view of each photo per step (``--augment dihedral``), so their encoder
is only nearly invariant. With ``symmetry="dihedral"`` a photo's codes are the mean of its 8
views' codes: exactly invariant, at 8 encoder passes a photo. Training is unchanged by it
(each step still codes one view), so it is measured here on runs trained without the final
alignment: each run's test figures with one view and with the mean of 8, each then aligned
as ``ivae train --align-steps`` does (the stage codes the training photos the same way).
Writes the ``symmetry`` section of docs/experiments.md.

    .venv/bin/python -m bench.symmetry RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from bench.common import EXPERIMENTS, command, load_average, shown, write_section
from bench.final_alignment import figures, unaligned_run
from ivae.alignment import LR, align
from ivae.evaluate import encode

SYMMETRIES = {"none": "one view", "dihedral": "mean of the 8 views"}
STEPS = 24000  # the kitchen preset's final alignment


def measure(path: str) -> list[dict]:
    """The run's figures for each symmetry, before and after the final alignment."""
    run = unaligned_run(path)
    data = run.load_data()
    train = run.config["train"]
    rows = []
    for symmetry, label in SYMMETRIES.items():
        model = copy.deepcopy(run.model).eval()
        model.config.symmetry = symmetry
        start = time.perf_counter()
        encode(model, data.part("test"))
        seconds = time.perf_counter() - start
        before = figures(model, data)
        align(model, data, STEPS, LR, train["batch_size"], train["seed"])
        row = {
            "run": shown(path),
            "codes": label,
            "encode_s": seconds,
            "before": before,
            "after": figures(model.eval(), data),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="kitchen runs trained without --align-steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for path in args.runs for row in measure(path)]

    def cells(f: dict) -> str:
        return (
            f"{f['mcc']:.3f} | {f['greenness']:.3f} | {f['r10_xy']:.1f} | {f['r10_yx']:.1f} | "
            f"{f['nuisance']:.3f}"
        )

    lines = [
        "| run | codes | test MCC | greenness | R@10 image→recipe | R@10 recipe→image | "
        "max nuisance \\|corr\\| | aligned: test MCC | greenness | R@10 image→recipe | "
        "R@10 recipe→image | max nuisance \\|corr\\| | s to code the test photos |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['codes']} | {cells(r['before'])} | {cells(r['after'])} | "
            f"{r['encode_s']:.1f} |"
        )
    for label in SYMMETRIES.values():
        group = [r for r in rows if r["codes"] == label]

        def mean(when: str, key: str, group=group) -> float:
            return statistics.mean(r[when][key] for r in group)

        keys = ("mcc", "greenness", "r10_xy", "r10_yx")
        lines.append(
            f"| mean of {len(group)} | {label} | "
            + " | ".join(f"{mean('before', k):.{1 if k[0] == 'r' else 3}f}" for k in keys)
            + f" | {max(r['before']['nuisance'] for r in group):.3f} | "
            + " | ".join(f"{mean('after', k):.{1 if k[0] == 'r' else 3}f}" for k in keys)
            + f" | {max(r['after']['nuisance'] for r in group):.3f} | |"
        )
    lines += [
        "",
        f"Regenerate: `{command('bench.symmetry')}` (test split; the final alignment's "
        f"{STEPS:,} steps at lr {LR:g} on the run's batch size and seed; the mean rows give the "
        "largest nuisance |corr|; 1 CPU thread, load average "
        f"{load_average():.1f} at the end).",
    ]
    print(write_section("symmetry", "\n".join(lines), EXPERIMENTS))


if __name__ == "__main__":
    main()
