"""A synthetic run of a million dishes, for the dashboard's footprint and latency at that size
(``python -m bench.latency --parts big``), built without training.

    .venv/bin/python -m bench.big_run                       # 1,000,000 dishes in /tmp/ivae-big-run
    .venv/bin/python -m bench.big_run --items 200000 --out /tmp/big

The shipped run's model and its data's 20,000 photos and recipes, each dish repeated: item i
is dish ``i mod 20,000`` under its own id, and its codes are that dish's codes (from the
shipped index) plus a little noise (2% of each factor's spread), so that no two items
coincide. The data folder holds the million-row ``items.parquet`` and a link to the shipped
data's images: every image the dashboard shows is read from those files. The 2-D map is built
as ``ivae index`` builds it (``ivae.index.map_2d``: UMAP on a sample, the rest placed).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import ROOT

SHIPPED = ROOT / "assets" / "default-run"
RUN_FILES = ("config.json", "factors.json", "vocab.json", "metrics.json", "dataset.json")


def build_big_run(out: Path, items: int = 1_000_000, seed: int = 0) -> Path:
    """The run directory ``out/run`` (its data in ``out/data``); rebuilt when it exists."""
    import ivae
    from ivae.index import INDEX_FILE, Index, map_2d, model_digest, read_index, save_index

    shipped = ivae.load_run(SHIPPED)
    source = shipped.data_dir(ROOT)
    if not (source / "items.parquet").is_file():
        raise SystemExit(f"error: {source} is missing; open the dashboard once or run `make run`")
    shutil.rmtree(out, ignore_errors=True)
    run_dir, data_dir = out / "run", out / "data"
    base = write_data(source, data_dir, items)
    write_run(run_dir, data_dir)
    codes = read_index(SHIPPED / INDEX_FILE)
    rng = np.random.default_rng(seed)

    def repeated(values: np.ndarray) -> np.ndarray:  # (items, k), float32, jittered
        noise = rng.standard_normal((items, values.shape[1]), dtype=np.float32)
        return (values[base] + noise * 0.02 * values.std(axis=0)).astype(np.float32)

    z = repeated(np.asarray(codes.z))
    index = Index(
        ids=item_ids(items),
        z=z,
        y_mean=repeated(np.asarray(codes.y_mean)),
        y_logvar=np.asarray(codes.y_logvar)[base],
        map2d=map_2d(z),
        model_digest=model_digest(run_dir),
        data_source=str(data_dir),
    )
    save_index(index, run_dir / INDEX_FILE)
    return run_dir


def item_ids(items: int) -> np.ndarray:
    return np.char.zfill(np.arange(items).astype(str), 7)


def write_data(source: Path, data_dir: Path, items: int) -> np.ndarray:
    """items.parquet of ``items`` rows repeating the source's, its dataset.json and a link to
    its images; returns the source row of each item."""
    table = pd.read_parquet(source / "items.parquet")
    base = np.arange(items) % len(table)
    data_dir.mkdir(parents=True)
    big = table.iloc[base].reset_index(drop=True)
    big["id"] = item_ids(items)
    big.to_parquet(data_dir / "items.parquet", row_group_size=65536)
    shutil.copy(source / "dataset.json", data_dir / "dataset.json")
    (data_dir / "images").symlink_to((source / "images").resolve(), target_is_directory=True)
    return base


def write_run(run_dir: Path, data_dir: Path) -> None:
    """The shipped run's files; model.pt with its data path pointing at ``data_dir``."""
    import torch

    (run_dir / "index").mkdir(parents=True)
    for name in RUN_FILES:
        if (SHIPPED / name).is_file():
            shutil.copy(SHIPPED / name, run_dir / name)
    familiarity = SHIPPED / "index" / "familiarity.npz"
    if familiarity.is_file():
        shutil.copy(familiarity, run_dir / "index" / familiarity.name)
    state = torch.load(SHIPPED / "model.pt", map_location="cpu", weights_only=True)
    state["config"]["data"]["path"] = str(data_dir)
    torch.save(state, run_dir / "model.pt")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--out", default="/tmp/ivae-big-run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run = build_big_run(Path(args.out), args.items)
    print(f"wrote {run} ({args.items:,} dishes) in {time.perf_counter() - start:.0f} s")
    return run


if __name__ == "__main__":
    main()
