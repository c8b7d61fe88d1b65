"""The shipped default run on the kitchen test split: MCC per factor, nuisance leakage and
retrieval, written into docs/results.md between the `default-run` markers.

    python bench/default_run.py            # evaluates assets/default-run (make default-model)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_section  # noqa: E402

import ivae  # noqa: E402
from ivae.evaluate import encode, evaluate, leakage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(ROOT / "assets" / "default-run"))
    args = parser.parse_args()
    run = ivae.load_run(args.run)
    data = run.load_data()
    report = evaluate(run.model, data, split="test")
    test = data.part("test")
    leaks = leakage(test, encode(run.model, test)[0]) or {}
    train_seconds = json.loads((Path(args.run) / "metrics.json").read_text())["train_seconds"]
    per_factor = " · ".join(f"{k} {v:.3f}" for k, v in report["mcc_per_factor"].items())
    worst = max(leaks, key=leaks.get) if leaks else "-"
    rows = ["| direction | medR | R@1 | R@5 | R@10 |", "|---|---|---|---|---|"]
    for direction, label in (("x_to_y", "image → recipe"), ("y_to_x", "recipe → image")):
        r = report["retrieval"][direction]
        cells = " | ".join(f"{r[key]:.1f}" for key in ("medr", "r1", "r5", "r10"))
        rows.append(f"| {label} | {cells} |")
    body = "\n".join(
        [
            f"### The shipped default run (`{Path(args.run).relative_to(ROOT)}`)",
            "",
            f"`python bench/default_run.py` — {report['model']}, k = {report['latent_dim']}, "
            f"{report['n_items']} test items of `{data.source}`; trained by `make default-model` "
            f"in {train_seconds:.0f} s of CPU training (2 shared cores).",
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
