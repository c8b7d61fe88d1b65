"""Every model x seeds on the kitchen and shapes data sets: shared-factor MCC, nuisance
leakage, retrieval (Recipe1M 1k protocol, both directions) and train time, written into
docs/results.md between the `kitchen` markers.

    .venv/bin/python -m bench.kitchen                       # the full table (long: see --help)
    .venv/bin/python -m bench.kitchen --n 4000 --epochs 5   # a smaller, quicker version
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bench.common import ROOT, command, mean_sd, read_section, shown, write_section
from ivae.data import load_dataset
from ivae.models import REGISTRY
from ivae.models.implicit_ivae import PRETRAINED, TAILS
from ivae.presets import PRESETS
from ivae.train import TrainConfig, train

# data set -> latent dimension. Kitchen: its 4 factors plus room for what else photo and
# recipe share (the dish type), as the shipped run (docs/experiments.md, "How many latents").
KITCHEN = PRESETS["kitchen"]  # the shipped run's recipe (ivae/presets.py)
GENERATORS = {"kitchen": KITCHEN.latent_dim, "shapes": 4}
OPTIONS = {"hidden": KITCHEN.model_options["hidden"]}  # its width, for every model
# the objective of every row that does not set its own: the density ratio alone, which the
# shipped recipe trained with until it took eq. 1 on its CNN's head (the last BACKBONE_ROWS)
MODEL_OPTIONS = {"implicit-ivae": {"likelihood_weight": 0.0}}
BATCH = KITCHEN.batch_size
LR = TrainConfig.lr


class Row(NamedTuple):
    """One row of the table: a model and how it was trained (the rest as OPTIONS)."""

    model: str
    epochs: int
    augment: str = "none"
    batch: int = BATCH
    lr: float = LR
    backbone: str = ""  # a pretrained backbone: the encoder head trains on its cached features
    likelihood_weight: float | None = None  # eq. 1's weight when not MODEL_OPTIONS'
    frobenius_weight: float = 0.0  # the Jacobian penalty ||J||_F^2 (bounds eq. 1's volume)
    encoder: str = ""  # the implicit iVAE's encoder option, when not its default
    image_size: int = 0  # photos decoded at this size for a model on pixels (0: the loader's)
    jacobian_samples: int = 0  # photos per step eq. 1's Jacobian is taken on (0: the model's)
    jacobian: str = ""  # "head": J of the CNN's head on its trunk's features, not on pixels
    likelihood_from: float = 0.0  # eq. 1 from this fraction of the epochs on

    def label(self, main_epochs: int) -> str:
        if self == Row(self.model, main_epochs):
            return self.model
        return (
            f"{self.model}, {self.epochs} epochs"
            + (f", {self.backbone} features" if self.backbone else "")
            + (", last block fine-tuned" if self.encoder in TAILS else "")
            + (
                f", the whole {self.encoder} fine-tuned from its ImageNet weights"
                if self.encoder == PRETRAINED
                else ""
            )
            + (f", {self.image_size}-px photos" if self.image_size else "")
            + (", flips and quarter turns" if self.augment != "none" else "")
            + (f", batch {self.batch}" if self.batch != BATCH else "")
            + (f", lr {self.lr:g}" if self.lr != LR else "")
            + self.objective()
        )

    def objective(self) -> str:
        if self.likelihood_weight is None:
            return ""
        if self.likelihood_weight == 0:
            return ", Jacobian term off (density ratio alone)"
        penalty = f", Frobenius penalty {self.frobenius_weight:g}" if self.frobenius_weight else ""
        subset = f", on {self.jacobian_samples} photos a step" if self.jacobian_samples else ""
        head = ", J of the CNN's head on its trunk's features" if self.jacobian == "head" else ""
        later = f", from epoch {self.first_likelihood_epoch()} on" if self.likelihood_from else ""
        return (
            f", Jacobian term on (eq. 1 weight {self.likelihood_weight:g}{penalty}{head}{subset}"
            f"{later})"
        )

    def tag(self) -> str:
        """What the run directory's name adds for settings off the default."""
        return (
            ("" if self.augment == "none" else f"-{self.augment}")
            + ("" if self.batch == BATCH else f"-b{self.batch}")
            + ("" if self.lr == LR else f"-lr{self.lr:g}")
            + (f"-{self.backbone}" if self.backbone else "")
            + ("" if self.likelihood_weight is None else f"-lw{self.likelihood_weight:g}")
            + (f"-fw{self.frobenius_weight:g}" if self.frobenius_weight else "")
            + ("-finetuned" if self.encoder in TAILS else "")
            + ("-finetuned-whole" if self.encoder == PRETRAINED else "")
            + (f"-px{self.image_size}" if self.image_size else "")
            + (f"-js{self.jacobian_samples}" if self.jacobian_samples else "")
            + (f"-j{self.jacobian}" if self.jacobian else "")
            + (f"-from{self.first_likelihood_epoch()}" if self.likelihood_from else "")
        )

    def first_likelihood_epoch(self) -> int:
        """The first epoch (from 1) trained with eq. 1: the model's progress, epochs trained
        over all, reaches likelihood_from."""
        return math.ceil(self.likelihood_from * self.epochs) + 1


# Rows beyond the same-budget comparison, per data set: longer implicit-ivae runs on photos
# under flips and quarter turns. SHIPPED is the kitchen preset's schedule (docs/experiments.md,
# "How long, how fast, on which images") with the ratio alone and without the final alignment
# the preset ends with (bench/final_alignment.py measures that on trained runs).
SHIPPED = Row(KITCHEN.model, KITCHEN.epochs, KITCHEN.augment, lr=KITCHEN.lr)
EXTRA_ROWS = {
    "kitchen": [
        Row("implicit-ivae", 18, "dihedral"),
        SHIPPED,
        Row("implicit-ivae", 40, "dihedral", lr=2e-3),
    ]
}


def ensure_data(name: str, n: int, seed: int = 0) -> Path:
    path = ROOT / "data" / f"bench-{name}-{n}"
    if not (path / "dataset.json").exists():
        if name == "kitchen":
            from ivae.data.kitchen import generate_kitchen as generate
        else:
            from ivae.data.shapes import generate_shapes as generate
        generate(path, n=n, seed=seed)
    return path


def run_dir(out: Path, data, data_name: str, row: Row, seed: int) -> Path:
    return (
        out / f"{data_name}-n{len(data)}-{row.model}-k{GENERATORS[data_name]}-e{row.epochs}"
        f"{row.tag()}-s{seed}"
    )


def one_run(data, data_name: str, row: Row, seed: int, path: Path, features=None) -> dict:
    """Train into the run directory ``path`` unless it holds a finished run; its figures.
    ``features``: train()'s views and backbone, for a row on a backbone's features."""
    if not (path / "metrics.json").exists():
        options = {
            "latent_dim": GENERATORS[data_name],
            **OPTIONS,
            **MODEL_OPTIONS.get(row.model, {}),
        }
        if row.likelihood_weight is not None:
            options["likelihood_weight"] = row.likelihood_weight
        if row.frobenius_weight:
            options["frobenius_weight"] = row.frobenius_weight
        if row.encoder:
            options["encoder"] = row.encoder
        if row.jacobian_samples:
            options["jacobian_samples"] = row.jacobian_samples
        if row.jacobian:
            options["jacobian"] = row.jacobian
        if row.likelihood_from:
            options["likelihood_from"] = row.likelihood_from
        config = TrainConfig(
            epochs=row.epochs, seed=seed, batch_size=row.batch, lr=row.lr, augment=row.augment
        )
        train(
            data,
            path,
            row.model,
            options,
            config,
            progress=False,
            resume=(path / "last.pt").exists(),
            **(features or {}),
        )  # an interrupted run goes on
    metrics = json.loads((path / "metrics.json").read_text())
    return {
        "mcc": metrics["mcc"],
        **{f"mcc.{k}": v for k, v in (metrics.get("mcc_per_factor") or {}).items()},
        "leak": max((metrics.get("nuisance_leakage") or {"-": 0.0}).values()),
        "x_to_y_r10": metrics["retrieval"]["x_to_y"]["r10"],
        "y_to_x_r10": metrics["retrieval"]["y_to_x"]["r10"],
        "x_to_y_medr": metrics["retrieval"]["x_to_y"]["medr"],
        "seconds": metrics["train_seconds"],
    }


def table(results: dict) -> str:
    lines = [
        "| data | model | shared-factor MCC | max nuisance \\|corr\\| | R@10 image→recipe "
        "| R@10 recipe→image | medR image→recipe | train s | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (data_name, model), rows in results.items():
        col = {k: [r[k] for r in rows] for k in rows[0]}
        lines.append(
            f"| {data_name} | {model} | {mean_sd(col['mcc'])} | {mean_sd(col['leak'])} | "
            f"{mean_sd(col['x_to_y_r10'])} | {mean_sd(col['y_to_x_r10'])} | "
            f"{mean_sd(col['x_to_y_medr'])} | {np.median(col['seconds']):.0f} | "
            f"{len(rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["kitchen", "shapes"])
    parser.add_argument("--models", nargs="+", default=sorted(REGISTRY))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n", type=int, default=20000, help="kitchen items")
    parser.add_argument("--shapes-n", type=int, default=20000, help="shapes items")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-kitchen"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-extra", action="store_true", help="only the same-budget rows, not EXTRA_ROWS"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="tabulate the finished runs, train none (seeds column: how many)",
    )
    parser.add_argument(
        "--backbone-rows",
        action="store_true",
        help="train and tabulate BACKBONE_ROWS instead (the head on backbone features)",
    )
    parser.add_argument("--rows", type=int, nargs="*", help="with --backbone-rows: which ones")
    parser.add_argument("--backbone-data", default=str(ROOT / "data" / "kitchen"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.backbone_rows:
        return backbone_main(args)
    results = {}
    for data_name in args.datasets:
        data = load_dataset(
            ensure_data(data_name, args.shapes_n if data_name == "shapes" else args.n)
        )
        rows = [Row(model, args.epochs) for model in args.models]
        if not args.no_extra:
            rows += [row for row in EXTRA_ROWS.get(data_name, []) if row.model in args.models]
        for row in rows:
            label = row.label(args.epochs) + (" (the shipped schedule)" if row == SHIPPED else "")
            for seed in range(args.seeds):
                path = run_dir(Path(args.out), data, data_name, row, seed)
                if args.report_only and not (path / "metrics.json").exists():
                    continue
                figures = one_run(data, data_name, row, seed, path)
                results.setdefault((data_name, label), []).append(figures)
                print(data_name, label, seed, figures, flush=True)
                report(args, results)  # partial tables survive a stop


def report(args, results: dict) -> None:
    seconds = sum(r["seconds"] for rows in results.values() for r in rows)
    rerun = command("bench.kitchen", [a for a in sys.argv[1:] if a != "--report-only"])
    body = (
        f"### Kitchen and shapes: every model, {args.seeds} seed(s)\n\n"
        f"`{rerun}` — {args.n} kitchen and {args.shapes_n} shapes items, {args.epochs} "
        "epochs, latent dim " + ", ".join(f"{GENERATORS[d]} ({d})" for d in args.datasets) + ", "
        f"batch {BATCH} and Adam lr {LR:g} (unless the row says otherwise), options {OPTIONS}, "
        f"implicit-ivae {MODEL_OPTIONS['implicit-ivae']}, "
        "test split; CPU "
        f"`{platform.processor() or platform.machine()}`, {torch.get_num_threads()} "
        f"thread(s) on 2 shared cores, {seconds / 60:.0f} min of training in all.\n"
        "MCC is over the shared factors (kitchen: savoriness, wateriness, greenness, "
        "spiciness; shapes: the captioned factors); nuisance |corr| is the largest "
        "correlation of a factor-matched latent with any nuisance; retrieval is the "
        "Recipe1M 1k protocol (10 subsets of 1000 test pairs)."
        + (
            " Tabulated from the finished runs (`--report-only`); the command above trains "
            "the missing seeds."
            if args.report_only
            else ""
        )
        + "\n\n"
        + table(results)
    )
    print(write_section("kitchen", body))


# ---- the encoder head on a pretrained backbone's features (issue 12) ----------------------
# On the shipped kitchen data (data/kitchen: the generator, seed and size of the rows above),
# with eq. 1's Jacobian term on and off: the ablation docs/results.md reports.
BACKBONE = "efficientnet-lite0"
STAGES = "efficientnet-lite0-stages"  # every stage's pooled output (ivae.backbones)
STATS = "efficientnet-lite0-stats"  # ... and every stage's spatial standard deviation
# the map entering the last block, which the encoder's copy of that block trains on
FINETUNED = "efficientnet-lite0-tail"
# ... and with the frozen means of the stages before that block (the stage features, fine-tuned)
STAGES_FINETUNED = "efficientnet-lite0-stages-tail"
JACOBIAN_ON = {"likelihood_weight": 0.1, "frobenius_weight": 0.1}
SHIPPED_EQ1 = Row(
    "implicit-ivae", KITCHEN.epochs, KITCHEN.augment, lr=KITCHEN.lr, likelihood_weight=0.01
)
JACOBIAN_ON_PIXELS = {"jacobian_samples": 8}
# k x 2048 per photo instead of k x 12288 pixels, the trunk untouched by the term: the shipped
# step's cost on 32 photos a step
JACOBIAN_ON_HEAD = {"jacobian_samples": 32, "jacobian": "head"}
BACKBONE_ROWS = [
    Row("implicit-ivae", 15, lr=2e-3, backbone=BACKBONE, likelihood_weight=0.0),
    Row("implicit-ivae", 15, lr=2e-3, backbone=BACKBONE, likelihood_weight=0.01),
    Row(
        "implicit-ivae",
        15,
        lr=2e-3,
        backbone=BACKBONE,
        likelihood_weight=0.1,
        frobenius_weight=0.1,
    ),
    Row("implicit-ivae", 15, lr=2e-3, backbone=STAGES, likelihood_weight=0.0),
    Row("implicit-ivae", 15, lr=2e-3, backbone=STAGES, likelihood_weight=0.01),
    Row("implicit-ivae", 15, lr=2e-3, backbone=STAGES, **JACOBIAN_ON),
    Row("implicit-ivae", 15, "dihedral", lr=2e-3, backbone=BACKBONE, **JACOBIAN_ON),
    Row("implicit-ivae", 15, lr=2e-3, backbone=FINETUNED, likelihood_weight=0.0, encoder=FINETUNED),
    Row(
        "implicit-ivae",
        15,
        lr=2e-3,
        backbone=STAGES_FINETUNED,
        likelihood_weight=0.0,
        encoder=STAGES_FINETUNED,
    ),
    Row("implicit-ivae", 15, lr=2e-3, backbone=STATS, likelihood_weight=0.0),
    Row("implicit-ivae", 15, lr=2e-3, backbone=STATS, likelihood_weight=0.01),
    # The whole network on the photos, from its ImageNet weights (for a GPU: on this CPU an
    # epoch takes about 35 minutes at 128 px, bench/finetune_steps.py; bench/gpu_finetune.sh)
    Row(
        "implicit-ivae",
        15,
        "dihedral",
        lr=2e-3,
        likelihood_weight=0.0,
        encoder=PRETRAINED,
        image_size=128,
    ),
    Row(
        "implicit-ivae",
        15,
        "dihedral",
        lr=2e-3,
        likelihood_weight=0.01,
        encoder=PRETRAINED,
        image_size=128,
    ),
    # The shipped CNN run's recipe (the kitchen preset) with eq. 1 on: does the Jacobian term
    # cost the shipped run more than 0.01 MCC? Against the "(shipped)" row of the kitchen table
    # (term off): J on the pixels of 8 photos a step (1.8 times the step; 16: 2.8 times), of
    # the CNN's head on its trunk's features (JACOBIAN_ON_HEAD), then each from epoch 11 on
    # (the ratio alone before): the term refining codes the ratio has aligned
    *[
        SHIPPED_EQ1._replace(**where, likelihood_from=start)
        for start in (0.0, 0.33)
        for where in (JACOBIAN_ON_PIXELS, JACOBIAN_ON_HEAD)
    ],
]
FACTORS = ("savoriness", "wateriness", "greenness", "spiciness")
MAX_SEEDS = 20  # the backbone table is over every finished seed below this, not only --seeds


def extraction_seconds(
    data_dir: Path, record: dict, n_items: int, views: int, sample: int = 64
) -> float:
    """Seconds to extract the features of ``n_items`` items x ``views``, timed on ``sample``."""
    import time

    from ivae.data.paired import decode_image, read_items
    from ivae.features import chunk_features
    from ivae.head import load_backbone

    backbone = load_backbone(record)
    items = read_items(data_dir).head(sample)
    start = time.perf_counter()
    images = np.stack(
        [
            decode_image(data_dir, i, p, record["image_size"])
            for i, p in zip(items["id"], items["image"])
        ]
    )
    chunk_features(backbone, torch.from_numpy(images), views, 64)
    return (time.perf_counter() - start) / len(items) * n_items


def row_features(args, row: Row, loaded: dict) -> tuple:
    """(data, train()'s views and backbone, extraction seconds) of a backbone row, loaded once
    per backbone and view count: 8 views to train under flips and quarter turns, else 1."""
    from ivae.head import load_feature_data

    if not row.backbone:  # a network on the photos themselves: no features to extract
        if ("photos", row.image_size) not in loaded:
            data = load_dataset(args.backbone_data, image_size=row.image_size or 64)
            loaded.clear()
            loaded[("photos", row.image_size)] = data, None, 0.0
        return loaded[("photos", row.image_size)]
    views = 8 if row.augment == "dihedral" else 1
    if (row.backbone, views) not in loaded:
        data, cached, record = load_feature_data(args.backbone_data, row.backbone, views=views)
        seconds = extraction_seconds(Path(args.backbone_data), record, len(data), views)
        loaded.clear()  # one feature set in memory at a time
        loaded[(row.backbone, views)] = data, {"views": cached, "backbone": record}, seconds
    return loaded[(row.backbone, views)]


def backbone_main(args) -> None:
    rows = [BACKBONE_ROWS[i] for i in args.rows] if args.rows else BACKBONE_ROWS
    loaded: dict = {}
    for row in [] if args.report_only else rows:
        data, features, _ = row_features(args, row, loaded)
        for seed in range(args.seeds):
            path = run_dir(Path(args.out), data, "kitchen", row, seed)
            print(row.label(0), seed, one_run(data, "kitchen", row, seed, path, features))
    # every row trains on the same items, whose number names the run directories
    items = (
        next(iter(loaded.values()))[0] if loaded else load_dataset(args.backbone_data, images=False)
    )
    results = {}
    for row in BACKBONE_ROWS:  # every finished run, whichever process or --seeds trained it
        paths = {s: run_dir(Path(args.out), items, "kitchen", row, s) for s in range(MAX_SEEDS)}
        finished = {s: path for s, path in paths.items() if (path / "metrics.json").exists()}
        if not finished:
            continue  # no run here: the row's line in docs/results.md stays as it is
        data, _, extraction = row_features(args, row, loaded)
        for seed, path in finished.items():
            figures = one_run(data, "kitchen", row, seed, path)
            results.setdefault(row, []).append({**figures, "extraction": extraction})
    backbone_report(args, results, len(items))


def backbone_report(args, results: dict, n_items: int) -> None:
    from bench.common import load_average

    lines = [
        "| row | shared-factor MCC | "
        + " | ".join(FACTORS)
        + " | max nuisance \\|corr\\| | R@10 image→recipe | R@10 recipe→image | train s "
        "| features + training min | seeds |",
        "|---" * (8 + len(FACTORS)) + "|",
    ]
    earlier = {  # the lines of rows not run here, as the last run of this command wrote them
        line.split(" | ")[0].removeprefix("| "): line
        for line in read_section("kitchen-backbone").splitlines()
        if line.startswith("| implicit-ivae")
    }
    carried = []
    for row in BACKBONE_ROWS:
        runs = results.get(row)
        if not runs:
            if row.label(0) in earlier:
                lines.append(earlier[row.label(0)])
                carried.append(row.label(0))
            continue
        col = {k: [r.get(k) for r in runs] for k in runs[0]}
        train_s = float(np.median(col["seconds"]))
        extraction = col["extraction"][0]
        lines.append(
            f"| {row.label(0)} | {mean_sd(col['mcc'])} | "
            + " | ".join(mean_sd(col[f"mcc.{f}"]) for f in FACTORS)
            + f" | {mean_sd(col['leak'])} | {mean_sd(col['x_to_y_r10'])} | "
            f"{mean_sd(col['y_to_x_r10'])} | {train_s:.0f} | {(extraction + train_s) / 60:.1f} | "
            f"{len(runs)} |"
        )
    rerun = command(
        "bench.kitchen",
        ["--backbone-rows", "--seeds", str(args.seeds), "--threads", str(args.threads)]
        + (["--rows", *map(str, args.rows)] if args.rows else []),
    )
    body = (
        "### Kitchen: the encoder head on pretrained backbone features\n\n"
        f"`{rerun}` — {n_items} kitchen items ({shown(args.backbone_data)}), k = "
        f"{GENERATORS['kitchen']}, options {OPTIONS}, batch {BATCH}, test split; "
        f'{torch.get_num_threads()} thread(s) on 2 shared cores. "features + training" adds '
        "the backbone's features of every item (1 view each, or 8 for rows under flips and "
        "quarter turns), extrapolated from 64 items timed now (load average "
        f"{load_average():.1f}), to the median training time. Per-factor columns: the "
        "|corr| of each true factor with its matched latent; the last column, how many seeds "
        f"a row's figures are over (every finished run in `{shown(args.out)}`, whichever "
        "`--seeds` trained it)."
        + (
            f" {len(carried)} row(s) had no runs in `{shown(args.out)}` this time and keep the "
            "line an earlier run of this command wrote (`--rows` runs them again)."
            if carried
            else ""
        )
        + "\n\n"
        + "\n".join(lines)
    )
    print(write_section("kitchen-backbone", body))


if __name__ == "__main__":
    main()
