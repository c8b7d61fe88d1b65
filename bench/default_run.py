"""The shipped default run on the kitchen test split: MCC per factor, nuisance leakage and
retrieval, written into docs/results.md between the `default-run` markers.

    .venv/bin/python -m bench.default_run   # evaluates assets/default-run (make default-model)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ivae
from bench.common import ROOT, command, shown, write_section
from ivae.evaluate import encode, evaluate, leakage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(ROOT / "assets" / "default-run"))
    args = parser.parse_args()
    run = ivae.load_run(args.run)
    data = run.load_data()
    report = evaluate(run.model, data, split="test")
    test = data.part("test")
    leaks = leakage(test, encode(run.model, test)[0]) or {}
    metrics = json.loads((Path(args.run) / "metrics.json").read_text())
    train_seconds, alignment = metrics["train_seconds"], metrics.get("alignment")
    aligned = (
        f", then {alignment['steps']:,} steps of the final alignment in "
        f"{alignment['seconds']:.0f} s"
        if alignment
        else ""
    )
    per_factor = " · ".join(f"{k} {v:.3f}" for k, v in report["mcc_per_factor"].items())
    worst = max(leaks, key=leaks.get) if leaks else "-"
    rows = ["| direction | medR | R@1 | R@5 | R@10 |", "|---|---|---|---|---|"]
    for direction, label in (("x_to_y", "image → recipe"), ("y_to_x", "recipe → image")):
        r = report["retrieval"][direction]
        cells = " | ".join(f"{r[key]:.1f}" for key in ("medr", "r1", "r5", "r10"))
        rows.append(f"| {label} | {cells} |")
    body = "\n".join(
        [
            f"### The shipped default run (`{shown(args.run)}`)",
            "",
            f"`{command('bench.default_run')}` — {report['model']}, k = {report['latent_dim']}, "
            f"{report['n_items']} test items of `{shown(data.source)}`; "
            "trained by `make default-model` "
            f"(`ivae train --preset {run.config.get('preset')}`) in {train_seconds:.0f} s of CPU "
            f"training{aligned} (2 shared cores).",
            "",
            f"- MCC over the four shared factors: **{report['mcc']:.3f}** (Spearman "
            f"{report['mcc_spearman']:.3f}); per factor: {per_factor}.",
            f"- Largest |corr| of a factor-matched latent with any nuisance: "
            f"{max(leaks.values(), default=0):.3f} ({worst}).",
            f"- Retrieval, Recipe1M protocol ({report['retrieval']['repeats']} x "
            f"{report['retrieval']['subset_size']}):",
            "",
            *rows,
        ]
    )
    print(write_section("default-run", body))


if __name__ == "__main__":
    main()
