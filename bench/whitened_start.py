"""The coupling flow's whitened start on the square toy: MCC against epochs, side by side.

The mixed toy data come out of the mixing with a covariance whose condition number is 100 to
2,000, and the flow's first linear layer used to start as a random orthogonal matrix: the
optimiser then spent most of a run scaling the codes up along the data's thin directions.
Started as a whitening of the training inputs (``flow_whiten``, ivae.nets.CouplingFlow.whiten)
the codes begin uncorrelated with unit variance. This benchmark trains implicit-ivae on the
identifiability benchmark's square data (its seeds, its data files and its other settings:
``bench.identifiability.run_one``) from either start at several lengths of schedule, and
writes each seed's MCC, the mean, the lowest and the median training time, with each seed's
condition number, into docs/experiments.md between the ``whitened-start`` markers.

    .venv/bin/python -m bench.whitened_start              # 5 seeds x 4 rows, two at a time
    .venv/bin/python -m bench.whitened_start --jobs 1     # one run at a time: the time alone
    .venv/bin/python -m bench.whitened_start --first-seed 5 --rows 1,4   # seeds never tuned on

Seeds other than 0-4 write their own section (``whitened-start-seeds-5-9``).

Finished runs are kept under runs/bench/square/<row> and reused, as the benchmark's are.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.common import EXPERIMENTS, ROOT, command, load_average, write_section
from bench.identifiability import (
    COMMON_OPTIONS,
    MODEL_FINAL_LR,
    MODEL_LR,
    MODEL_RESTARTS,
    dataset,
    run_one,
    summary,
)
from ivae.data import load_dataset

# label -> (flow_whiten, epochs)
ROWS = {
    "orthogonal start, 45 epochs (the previous default)": (False, 45),
    "orthogonal start, 20 epochs": (False, 20),
    "whitened start, 15 epochs": (True, 15),
    "whitened start, 20 epochs (then the default)": (True, 20),
}
VARIANT = "square"


def train_one(work: Path, label: str, seed: int, per_segment: int) -> dict:
    torch.set_num_threads(1)
    whiten, epochs = ROWS[label]
    options = {**COMMON_OPTIONS, "flow_whiten": whiten}
    tag = f"implicit-ivae, {label}"
    lr = MODEL_LR["implicit-ivae"]
    return run_one(work, VARIANT, "implicit-ivae", options, seed, epochs, lr, per_segment, tag)


def condition_number(work: Path, seed: int, per_segment: int) -> float:
    """The ratio of the largest to the smallest variance of the seed's training inputs."""
    data = load_dataset(dataset(work, VARIANT, seed, per_segment))
    variances = np.linalg.eigvalsh(np.cov(np.asarray(data.x)[data.split == "train"].T))
    return float(variances[-1] / variances[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+SEEDS-1")
    parser.add_argument("--rows", help="rows to train, as 1-based numbers (1,4); default all")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained side by side")
    parser.add_argument("--per-segment", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    chosen = [int(r) for r in args.rows.split(",")] if args.rows else range(1, len(ROWS) + 1)
    labels = [label for row, label in enumerate(ROWS, 1) if row in chosen]
    conditions = [condition_number(args.work, s, args.per_segment) for s in seeds]
    jobs = [(label, seed) for label in labels for seed in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(train_one, args.work, label, seed, args.per_segment) for label, seed in jobs
        ]
        results = {job: future.result() for job, future in zip(jobs, futures)}
    head = " | ".join(f"seed {s} (cond. {c:,.0f})" for s, c in zip(seeds, conditions))
    lines = [f"| start, schedule | {head} | mean ± sd | min | time a run |"]
    lines.append("|---" * (len(seeds) + 4) + "|")
    loads = []
    for label in labels:
        runs = [results[label, s] for s in seeds]
        mccs = [r["mcc"] for r in runs]
        loads += [r["load"] for r in runs if r.get("load") is not None]
        mean, sd, seconds = summary(runs)
        lines.append(
            f"| {label} | "
            + " | ".join(f"{m:.3f}" for m in mccs)
            + f" | {mean:.3f} ± {sd:.3f} | {min(mccs):.3f} | {seconds:.0f} s |"
        )
    loads = loads or [load_average()]
    model_lr = MODEL_LR["implicit-ivae"]
    lines += [
        "",
        f"Regenerate: `{command('bench.whitened_start', argv)}` (the identifiability "
        f"benchmark's square data, seeds and settings: lr {model_lr:g} with a cosine to "
        f"{MODEL_FINAL_LR['implicit-ivae']:.0%} of it, the better of "
        f"{MODEL_RESTARTS['implicit-ivae']} starts after 2 epochs, batch 256, hidden "
        f"{COMMON_OPTIONS['hidden']}; the condition number is the largest over the smallest "
        "variance of each seed's training inputs). Time: the "
        f"median training time, {args.jobs} run(s) side by side, 1 thread each, on 2 shared "
        f"cores (1-minute load {min(loads):.1f}-{max(loads):.1f} as the runs ended).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write_docs:
        section = "whitened-start"
        if args.first_seed != 0:
            section += f"-seeds-{seeds[0]}-{seeds[-1]}"
        write_section(section, body, EXPERIMENTS)


if __name__ == "__main__":
    main()
