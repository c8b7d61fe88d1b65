"""How much of each kitchen factor a backbone's cached features hold: a supervised linear
read-out (ridge regression fitted on the train split, alpha chosen by cross-validation), its
correlation with the true factor on the test split. The read-out uses the true factors, so it
is a ceiling for what a head on those features can align with a factor, not a result of the
model. Writes the ``feature-probe`` section of docs/experiments.md.

    .venv/bin/python -m bench.feature_probe [--data data/kitchen]

It reads the 1-view feature caches that ``ivae features DATA --backbone NAME --views 1``
made; a backbone without one keeps the line an earlier run wrote, or is named.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from bench.common import (
    EXPERIMENTS,
    command,
    load_average,
    read_section,
    shown,
    write_section,
)

BACKBONES = ("efficientnet-lite0", "efficientnet-lite0-stages", "efficientnet-lite0-stats")
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def cached_features(data: Path, backbone: str) -> np.ndarray | None:
    """(N, F) float32 view-0 features of the data set's 1-view cache of ``backbone``."""
    pattern = re.compile(rf"{re.escape(backbone)}-[0-9a-f]+-\d+px-1v")
    found = sorted(p for p in (data / ".cache" / "features").glob("*") if pattern.fullmatch(p.name))
    if not found:
        return None
    return np.load(found[0] / "features.npy", mmap_mode="r")[:, 0].astype(np.float32)


def read_out(x: np.ndarray, items: pd.DataFrame) -> dict[str, float]:
    """Factor name -> test correlation of the ridge read-out fitted on the train split."""
    train, test = (items["split"] == "train").to_numpy(), (items["split"] == "test").to_numpy()
    scaler = StandardScaler().fit(x[train])
    x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
    scores = {}
    for column in [c for c in items.columns if c.startswith("factor.")]:
        y = items[column].to_numpy()
        fit = RidgeCV(alphas=ALPHAS).fit(x_train, y[train])
        scores[column.removeprefix("factor.")] = float(
            np.corrcoef(fit.predict(x_test), y[test])[0, 1]
        )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/kitchen"))
    args = parser.parse_args()
    items = pd.read_parquet(args.data / "items.parquet")
    earlier = {  # a backbone's line as the last run of this command wrote it
        line.split(" (")[0].removeprefix("| "): line
        for line in read_section("feature-probe", EXPERIMENTS).splitlines()
        if line.startswith("| ") and " (" in line.split(" | ")[0]
    }
    rows, missing, carried = [], [], []
    for backbone in BACKBONES:
        x = cached_features(args.data, backbone)
        if x is None:
            if backbone in earlier:
                rows.append(earlier[backbone])
                carried.append(backbone)
            else:
                missing.append(backbone)
            continue
        scores = read_out(x, items)
        cells = " | ".join(f"{v:.3f}" for v in scores.values())
        rows.append(
            f"| {backbone} ({x.shape[1]}) | {cells} | {np.mean(list(scores.values())):.3f} |"
        )
        print(rows[-1])
    names = [c.removeprefix("factor.") for c in items.columns if c.startswith("factor.")]
    body = "\n".join(
        [
            f"`{command('bench.feature_probe')}` — {shown(args.data)}, test split; ridge "
            f"read-out fitted on the train split (load average {load_average():.1f}).",
            "",
            f"| features (dim) | {' | '.join(names)} | mean |",
            "|---|" + "---|" * (len(names) + 1),
            *rows,
        ]
        + ([f"\nNo 1-view cache for: {', '.join(missing)}."] if missing else [])
        + (
            [
                f"\nNo 1-view cache for {', '.join(carried)} this time: "
                f"{'its line is' if len(carried) == 1 else 'their lines are'} kept from an "
                "earlier run of this command."
            ]
            if carried
            else []
        )
    )
    print(write_section("feature-probe", body, EXPERIMENTS))


if __name__ == "__main__":
    main()
