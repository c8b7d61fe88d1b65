"""Can the objective recover the kitchen factors at all? The photo replaced by an oracle.

Whether the factors are identifiable depends on the data, not only on the image encoder: a
perfect encoder cannot help if the objective cannot tell the factors from their mixtures.
This benchmark trains implicit-ivae (k = 8, the ratio alone, 6 epochs: the same-budget row
of bench/kitchen.py) on the kitchen recipes
with the photo replaced by a random rotation of the true factors and the dish type (one-hot,
as the photos show it through staples, rice and cake), once with the recipes written under
each table of reading noise:

- generator 1.0: standard deviations uniform in [0.04, 0.16] per (dish, factor);
- generator 1.1 (current): log-uniform in [0.015, 0.2], nearly twice the spread in log;

plus the current recipes with the factors alone (dish type hidden). It reports the MCC over
the four factors, pooled over the test split and within each dish type (factors and codes
centred per dish), next to the shipped run's, into docs/experiments.md between the ``oracle``
markers.

    .venv/bin/python -m bench.kitchen_oracle   # 3 inputs x 2 seeds, ~10 min on 1 core
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import ivae
from bench.common import EXPERIMENTS, ROOT, command, load_average, write_section
from ivae.data import Dataset, load_dataset
from ivae.data.kitchen import dishes, generate
from ivae.data.text import Vocab
from ivae.evaluate import encode
from ivae.metrics import mcc
from ivae.train import TrainConfig, train

OPTIONS = {"latent_dim": 8, "hidden": 128, "likelihood_weight": 0.0}  # the shipped run's
# label -> (reading-noise table, dish type visible)
V10_TABLE = np.random.default_rng(2012_00682).uniform(0.04, 0.16, dishes.READING_SD.shape)
INPUTS = {
    "factors + dish type, recipes of generator 1.0": (V10_TABLE, True),
    "factors + dish type, recipes of generator 1.1": (dishes.READING_SD, True),
    "factors alone, recipes of generator 1.1": (dishes.READING_SD, False),
}


def mixing_cost(table: np.ndarray) -> tuple[float, float]:
    """(median sd ratio q, mean nats) over every pair of factors of every dish: what a factorial
    critic loses when the two are mixed by 45 degrees, -1/2 log(1 - rho^2) with
    rho = (q^2 - 1) / (q^2 + 1) (docs/experiments.md, "Are the kitchen factors identifiable")."""
    pairs = [(a, b) for a in range(table.shape[1]) for b in range(a + 1, table.shape[1])]
    q = np.array([max(row[a], row[b]) / min(row[a], row[b]) for row in table for a, b in pairs])
    rho = (q**2 - 1) / (q**2 + 1)
    return float(np.median(q)), float(np.mean(-0.5 * np.log(1 - rho**2)))


def recipes(data: Dataset, table: np.ndarray, seed: int = 0) -> Dataset:
    """The data set with every recipe rewritten under another reading-noise table."""
    items = generate.sample_items(len(data), seed, reading_sd=table)
    assert np.allclose(items[[f"factor.{f}" for f in data.factor_names]], data.factors, atol=1e-6)
    vocab = Vocab.build(items["text"][items["split"] == "train"])
    return replace(data, y=vocab.encode(items["text"], max_len=data.y.shape[1]), vocab=vocab)


def oracle(data: Dataset, dish_visible: bool, seed: int, precision: float = 1.0) -> Dataset:
    """The data set with x = a random rotation of the (standardised) factors [+ dish one-hot].

    ``precision`` < 1: each factor is first read with independent Gaussian noise, sized so that
    the noisy factor correlates ``precision`` with the true one (an imperfect image encoder)."""
    dish = np.asarray(data.items["dish"].astype(str))
    factors = (data.factors - 0.5) * 4
    if precision < 1:
        sd = factors.std(0) * np.sqrt(1 / precision**2 - 1)
        noise = np.random.default_rng(seed + 1).standard_normal(factors.shape)
        factors = factors + noise * sd
    parts = [factors]
    if dish_visible:
        parts.append((dish[:, None] == np.unique(dish)[None]).astype(np.float32))
    features = np.concatenate(parts, 1)
    rotation, _ = np.linalg.qr(
        np.random.default_rng(seed).standard_normal((features.shape[1],) * 2)
    )
    return replace(data, x=(features @ rotation).astype(np.float32), x_kind="vector")


def scores(data: Dataset, z: np.ndarray) -> tuple[float, float]:
    """(pooled MCC, within-dish MCC) on the items of ``data``."""
    dish = np.asarray(data.items["dish"].astype(str))
    factors, codes = data.factors.astype(float), z.astype(float)
    for d in np.unique(dish):
        rows = dish == d
        factors[rows] -= factors[rows].mean(0)
        codes[rows] -= codes[rows].mean(0)
    return mcc(data.factors, z)["mcc"], mcc(factors, codes)["mcc"]


def fit_oracle(vectors: Dataset, seed: int, epochs: int, lr: float) -> tuple[float, float]:
    """Train implicit-ivae on oracle vectors; (pooled, within-dish) MCC on the test split."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=epochs, seed=seed, batch_size=128, lr=lr)
        train(vectors, Path(out) / "run", "implicit-ivae", OPTIONS, config, progress=False)
        model = ivae.load_run(Path(out) / "run").model
        part = vectors.part("test")
        return scores(part, encode(model, part)[0])


def precision_main(args, data: Dataset) -> None:
    """How precisely must the image side read the factors? The oracle of generator 1.1 with
    each factor read at correlation r: written between the ``oracle-precision`` markers."""
    rewritten = recipes(data, dishes.READING_SD)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in args.precision:
        results = []
        for seed in range(args.seeds):
            # one file per run: processes given different --precision lists can share --work
            done = work / f"r{r:g}-s{seed}-e{args.epochs}-lr{args.lr:g}.json"
            if not done.exists():
                vectors = oracle(rewritten, True, seed, r)
                done.write_text(json.dumps(fit_oracle(vectors, seed, args.epochs, args.lr)))
            results.append(tuple(json.loads(done.read_text())))
        print(r, results, flush=True)
        cells = " | ".join(
            f"{statistics.mean(v):.3f} ({', '.join(f'{x:.3f}' for x in v)})" for v in zip(*results)
        )
        rows.append(f"| {r:g} | {cells} | {args.seeds} |")
    rerun = command(
        "bench.kitchen_oracle",
        ["--precision", *map(str, args.precision), "--epochs", str(args.epochs)]
        + ["--lr", f"{args.lr:g}", "--seeds", str(args.seeds)],
    )
    body = "\n".join(
        [
            "| each factor read at correlation r | MCC, pooled | MCC within dish type | seeds |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Regenerate: `{rerun}` (the oracle of generator 1.1's recipes with the dish type, "
            f"implicit-ivae {OPTIONS}, {args.epochs} epochs at lr {args.lr:g}, batch 128, "
            f"test split; 1 CPU thread, load average {load_average():.1f} at the end).",
        ]
    )
    print(write_section("oracle-precision", body, EXPERIMENTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "kitchen"))
    parser.add_argument("--run", default=str(ROOT / "assets" / "default-run"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument(
        "--work", default=str(ROOT / "runs" / "oracle-precision"), help="with --precision"
    )
    parser.add_argument(
        "--precision",
        type=float,
        nargs="+",
        help="instead: the oracle with each factor read at these correlations (1: exactly)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.data)
    if args.precision:
        return precision_main(args, data)
    rows = []
    shipped = ivae.load_run(args.run)
    test = data.part("test")
    pooled, within = scores(test, encode(shipped.model, test)[0])
    rows.append(f"| photo, CNN encoder (the shipped run) | {pooled:.3f} | {within:.3f} | 1 |")
    for label, (table, dish_visible) in INPUTS.items():
        rewritten = recipes(data, table)
        results = []
        for seed in range(args.seeds):
            vectors = oracle(rewritten, dish_visible, seed)
            results.append(fit_oracle(vectors, seed, args.epochs, args.lr))
            print(label, seed, results[-1], flush=True)
        cells = " | ".join(
            f"{statistics.mean(r):.3f} ({', '.join(f'{v:.3f}' for v in r)})" for r in zip(*results)
        )
        rows.append(f"| oracle: {label} | {cells} | {args.seeds} |")
    costs = [
        f"generator {version}: median q {q:.2f}, {nats:.3f} nats, rms sd "
        f"{np.sqrt(np.mean(table**2)):.3f}"
        for version, table in (("1.0", V10_TABLE), ("1.1", dishes.READING_SD))
        for q, nats in [mixing_cost(table)]
    ]
    body = "\n".join(
        [
            "Mixing two factors of a dish by 45 degrees, mean cost over the (dish, pair) cells of "
            "the reading-noise table: " + "; ".join(costs) + ".",
            "",
            "| image side | MCC, pooled | MCC within dish type | seeds |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Regenerate: `{command('bench.kitchen_oracle')}` (implicit-ivae, {OPTIONS}, "
            f"{args.epochs} epochs, batch 128, test split of `{Path(args.data).name}`; the oracle "
            "rotation and the initialisation are drawn from the seed; 1 CPU thread).",
        ]
    )
    print(write_section("oracle", body, EXPERIMENTS))


if __name__ == "__main__":
    main()
