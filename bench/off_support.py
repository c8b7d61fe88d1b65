"""How the square toy's coupling-flow encoder behaves on points its test split is too small
to hold: 100,000 fresh points per run from the same generator (the same segments and
mixing, new sources; ``ivae.data.toy.resample_toy``), encoded by the identifiability
benchmark's implicit-ivae runs.

A 4,000-point test split can miss, or catch, a rare point in a sparse stretch of the data,
where an encoder that extrapolates steeply throws its code far out and Pearson's MCC
follows that one point. Per set of runs, the table gives the fresh points' MCC, how many
fresh codes lie beyond twice the largest code of the run's own training split, and the
largest |code| seen, so runs are compared on a sample 25 times the test split.

    .venv/bin/python -m bench.off_support LABEL=RUNS [LABEL=RUNS ...]

RUNS is a benchmark work directory (``runs/bench``: ``<variant>/implicit-ivae/seed<s>``).
The table goes into docs/experiments.md between ``<!-- off-support:begin -->`` and
``<!-- off-support:end -->``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from bench.common import EXPERIMENTS, ROOT, command, load_average, shown, write_section
from bench.identifiability import VARIANTS, dataset
from ivae.data import load_dataset
from ivae.data.toy import resample_toy
from ivae.encoding import encode_batched
from ivae.metrics import mcc
from ivae.run import load_run

SQUARE = ("square", "square-independent")  # the variants whose encoder is the flow
FRESH_PER_SEGMENT = 2500  # x 40 segments: 100,000 points


def check(run_dir: Path, variant: str, seed: int, work: Path, per_segment: int) -> dict:
    """One run on fresh points: their MCC, the codes beyond twice the training range."""
    model = load_run(run_dir).model.eval()
    data = load_dataset(dataset(work, variant, seed, 1000))
    train_codes = encode_batched(model, "x", data.part("train").x, 4096, "cpu")[0]
    options = {**VARIANTS[variant][1], "seed": seed, "per_segment": 1000}
    fresh = resample_toy(options, per_segment, fresh_seed=10_000 + seed)
    codes = encode_batched(model, "x", fresh["x"], 4096, "cpu")[0]
    reach = np.abs(train_codes).max()
    size = np.abs(codes).max(1)
    return {
        "mcc": mcc(fresh["factors"], codes)["mcc"],
        "beyond": int((size > 2 * reach).sum()),
        "largest": float(size.max()),
        "points": len(codes),
    }


def table(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    lines = [
        "| runs | variant | fresh-point MCC per seed | lowest | codes beyond 2x the training "
        "range, per seed | largest \\|code\\| |",
        "|---|---|---|---|---|---|",
    ]
    for label, variants in results.items():
        for variant, runs in variants.items():
            scores = [r["mcc"] for r in runs]
            lines.append(
                f"| {label} | {VARIANTS[variant][0]} | "
                + ", ".join(f"{s:.3f}" for s in scores)
                + f" | {min(scores):.3f} | "
                + ", ".join(str(r["beyond"]) for r in runs)
                + f" | {max(r['largest'] for r in runs):,.0f} |"
            )
    return lines


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="LABEL=DIR: a benchmark work directory's runs")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--per-segment", type=int, default=FRESH_PER_SEGMENT)
    p.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "bench", help="where the data sets are"
    )
    p.add_argument("--no-write-docs", action="store_true", help="print the table only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(1)
    roots = {}
    for item in args.runs:
        label, _, root = item.partition("=")
        if not root:
            raise SystemExit(f"{item!r}: give LABEL=DIR, e.g. 'scale bound 0.5=runs/bench'")
        roots[label] = root
    results: dict[str, dict[str, list[dict]]] = {}
    for label, root in roots.items():
        results[label] = {}
        for variant in SQUARE:
            runs = []
            for seed in range(args.seeds):
                run_dir = Path(root) / variant / "implicit-ivae" / f"seed{seed}"
                if not (run_dir / "model.pt").exists():
                    raise SystemExit(f"{run_dir}: no run; run bench.identifiability first")
                runs.append(check(run_dir, variant, seed, args.work, args.per_segment))
            results[label][variant] = runs
    points = 40 * args.per_segment
    rerun = command("bench.off_support", [shlex.quote(a) for a in sys.argv[1:]])
    lines = table(results)
    lines += [
        "",
        f"Regenerate: `{rerun}` ({points:,} fresh points per run, "
        f"{args.seeds} seeds; the runs: "
        + "; ".join(f"{label}: {shown(root)}" for label, root in roots.items())
        + f"; load average {load_average():.1f}).",
    ]
    print("\n".join(lines))
    if not args.no_write_docs:
        write_section("off-support", "\n".join(lines), EXPERIMENTS)


if __name__ == "__main__":
    main()
