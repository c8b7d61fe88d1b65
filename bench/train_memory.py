"""Peak memory of one training epoch at 20k and 200k items: is it flat in the data size?

The data are vectors shaped like the backbone feature cache a photo run trains its head on
(F = 1280 float32 features per item, 5 KB; 200k items = 1 GB), stored as ``.npy`` and
memory-mapped, so the trainer's loader (ivae/loader.py) streams the train split from disk. The
same model (the implicit iVAE's network encoder, one epoch) trains at each size in a child
process; its peak resident size is the kernel's ``VmHWM`` (not ``ru_maxrss``, which Linux
carries over from the spawning process, here the one that wrote the data). For comparison the
same run with the array read into memory first (what the trainer held before the loader).

Vectors, not photos: decoding 200k kitchen photos takes hours on this machine's two cores.

A second table measures what a photo run does, ``ivae train --backbone efficientnet-lite0``
on a data set in the format ``ivae data recipe1m`` writes (items.parquet with recipe texts,
dataset.json), so the whole pipeline is in it: the item table mapped as Arrow, the vocabulary
and the token cache built from the texts, the backbone feature cache, validation, the health
report and the final evaluation on the test split. No photo is decoded or even written: the
recipes are kitchen recipes (a pool of ``--pool`` written by the generator, drawn with
replacement), and the feature cache is *fabricated* (random float16 values, half-normal, with
the meta.json and done.json the trainer checks, so it takes the cache as computed). One epoch
of the ``kitchen`` preset (``--augment none``) in a child process (the command line itself,
``ivae.cli.main``), its peak the kernel's ``VmHWM``; the resident size is also sampled every
0.1 s to give the peak of each stage. First with the default threads (this run writes the
token cache), then with one thread (``OMP_NUM_THREADS=1``; the cache is read).

    .venv/bin/python -m bench.train_memory [--sizes 20000 200000] [--features 1280]
        [--pool 2000] [--tables vectors photo]

Writes a table into docs/results.md between the ``train-memory`` markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, command, load_average, write_section

TARGET_RATIO = 1.3
CHILD = """
import json, resource, sys, time
import numpy as np
from ivae.data.dataset import Dataset
from ivae.train import TrainConfig, train

folder, mode, out = sys.argv[1:4]
x = np.load(folder + "/x.npy", mmap_mode="r" if mode == "streamed" else None)
arrays = np.load(folder + "/rest.npz")
data = Dataset(name="features", x=x, y=arrays["y"], x_kind="vector", y_kind="vector",
               split=arrays["split"], ids=np.arange(len(x)).astype(str),
               factors=arrays["factors"], factor_names=["a", "b", "c", "d"], source=folder)
options = {"latent_dim": 4, "hidden": 64, "encoder": "network", "jacobian": "none"}
start = time.monotonic()
train(data, out, "implicit-ivae", options, TrainConfig(epochs=1, batch_size=512), progress=False)
# VmHWM, this process's own high-water mark: Linux carries ru_maxrss over from the process
# that spawned this one (here the parent, which wrote the data), so it would count that
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
held = sum(a.nbytes for a in (data.y, data.split, data.ids, data.factors)) / 2**20
report = {"peak_mb": peak, "seconds": time.monotonic() - start, "held_mb": held}
print("REPORT " + json.dumps(report))
"""


PHOTO_CHILD = """
import json, sys, threading, time
import ivae.cli, ivae.head, ivae.train

stage, peaks = ["start"], {}


def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def sample():
    while True:
        peaks[stage[0]] = max(peaks.get(stage[0], 0.0), rss_mb())
        time.sleep(0.1)


def staged(owner, name, label):
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        stage[0] = label
        try:
            return inner(*args, **kwargs)
        finally:
            peaks[label] = max(peaks.get(label, 0.0), rss_mb())
            stage[0] = "between"

    setattr(owner, name, wrapper)


staged(ivae.head, "load_feature_data", "load")
staged(ivae.train.Trainer, "fit", "epoch")
staged(ivae.train.Trainer, "finish", "evaluation")
threading.Thread(target=sample, daemon=True).start()
start = time.monotonic()
code = ivae.cli.main(sys.argv[1:])
seconds = time.monotonic() - start
status = open("/proc/self/status").read().splitlines()
peak = next(int(ln.split()[1]) / 1024 for ln in status if ln.startswith("VmHWM:"))
print("REPORT " + json.dumps({"code": code, "peak_mb": peak, "seconds": seconds, "stages": peaks}))
"""
PHOTO_TRAIN = ["--backbone", "efficientnet-lite0", "--preset", "kitchen", "--augment", "none"]
PHOTO_TRAIN += ["--epochs", "1", "--quiet"]
IMPORT_SKIPS = (
    "recipes_without_images",
    "recipes_without_existing_images",
    "missing_image_files",
    "unreadable_image_files",
)


def make_photo_data(folder: Path, n: int, pool: int = 2000, seed: int = 0) -> dict:
    """A data set as ``ivae data recipe1m`` writes it (its own writer), with a fabricated
    efficientnet-lite0 feature cache; the counts per split. Recipe ``i`` has a hashed
    10-hex-digit id (Recipe1M's form) and the text of a kitchen recipe drawn from ``pool``;
    its photo is named but never written (the cache's photo digest records it as missing,
    as the trainer recomputes it)."""
    from ivae.backbones import get_backbone
    from ivae.data.kitchen.generate import sample_items
    from ivae.data.recipe1m import ItemsWriter, write_info

    folder.mkdir(parents=True, exist_ok=True)
    recipes = sample_items(pool, seed)[["text", "title", "ingredients"]].to_dict("records")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, pool, n)
    split = rng.choice(np.array(["train", "val", "test"]), n, p=[0.8, 0.1, 0.1])
    writer = ItemsWriter(folder)
    for i in range(n):
        rid = hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:10]
        recipe = recipes[picks[i]]
        image = f"images/{split[i]}/{rid[:2]}/{rid}.jpg"
        writer.add({**recipe, "ingredients": list(recipe["ingredients"]), "id": rid,
                    "image": image, "split": str(split[i]), "recipe_id": rid})  # fmt: skip
    writer.close()
    counts = {s: int(np.sum(split == s)) for s in ("train", "val", "test")}
    write_info(folder, {"counts": counts, **dict.fromkeys(IMPORT_SKIPS, 0)}, True, 128)
    fabricate_features(folder, get_backbone("efficientnet-lite0", image_size=128), rng)
    return counts


def fabricate_features(folder: Path, backbone, rng: np.random.Generator) -> None:
    """The feature cache ``ivae features --views 1`` would write, holding random float16
    values instead of the backbone's features (no photo exists), written in chunks."""
    from ivae.data.table import mapped_items
    from ivae.features import CHUNK, cache_directory, cache_meta, content_digests
    from ivae.io import write_json

    items = mapped_items(folder)
    ids = items["id"].tolist()
    meta = cache_meta(backbone, ids, 1, CHUNK, content_digests(folder, items))
    directory = cache_directory(folder, backbone, 1)
    directory.mkdir(parents=True)
    n, dim = len(ids), backbone.feature_dim
    features = np.lib.format.open_memmap(directory / "features.npy", "w+", np.float16, (n, 1, dim))
    for start in range(0, n, 8192):
        rows = min(n, start + 8192) - start
        features[start : start + rows] = np.abs(rng.standard_normal((rows, 1, dim), np.float32))
    features.flush()
    del features
    (directory / "FABRICATED").write_text("random values written by bench/train_memory.py\n")
    write_json(directory / "meta.json", meta)
    write_json(directory / "done.json", {"chunks": list(range(0, n, CHUNK)), "unreadable": {}})


def measure_photo(folder: Path, threads: int | None) -> dict:
    """``ivae train`` (PHOTO_TRAIN) on ``folder`` in a child process: its VmHWM, seconds and
    the sampled peak of each stage, MB; ``threads``: OMP_NUM_THREADS (None: the default)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    load = load_average()
    with tempfile.TemporaryDirectory() as out:
        args = ["train", "--data", str(folder), *PHOTO_TRAIN, "--out", out + "/run"]
        result = subprocess.run(
            [sys.executable, "-c", PHOTO_CHILD, *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    if result.returncode != 0 or not line or json.loads(line[0][7:])["code"] != 0:
        sys.exit(f"photo training failed:\n{result.stderr[-2000:]}")
    return {**json.loads(line[0][len("REPORT ") :]), "load": load}


def make_data(folder: Path, n: int, features: int) -> None:
    """x (n, F) float32 written in chunks (never whole in memory), y one-hot of 40 segments,
    4 ground-truth factors, the 80/10/10 split."""
    rng = np.random.default_rng(0)
    segment = rng.integers(0, 40, n)
    x = np.lib.format.open_memmap(folder / "x.npy", "w+", np.float32, (n, features))
    mixing = rng.standard_normal((4, features)).astype(np.float32)
    factors = (rng.standard_normal((n, 4)) * rng.uniform(0.5, 3, (40, 4))[segment]).astype(
        np.float32
    )
    for start in range(0, n, 10_000):
        x[start : start + 10_000] = np.tanh(factors[start : start + 10_000] @ mixing)
    x.flush()
    del x
    split = rng.choice(np.array(["train", "val", "test"]), n, p=[0.8, 0.1, 0.1])
    y = np.eye(40, dtype=np.float32)[segment]
    np.savez(folder / "rest.npz", y=y, split=split, factors=factors)


def measure(folder: Path, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), mode, out + "/run"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stderr[-2000:]}")
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def table(rows: list[dict], features: int) -> str:
    lines = [
        "| items | x on disk | y, ids, split, factors in memory | peak RSS, streamed "
        "| peak RSS, x read into memory | epoch, s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['items'] * features * 4 / 2**20:,.0f} MB | "
            f"{r['streamed']['held_mb']:,.0f} MB | "
            f"{r['streamed']['peak_mb']:,.0f} MB | {r['in_memory']['peak_mb']:,.0f} MB | "
            f"{r['streamed']['seconds']:.0f} |"
        )
    return "\n".join(lines)


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def photo_rows(sizes: list[int], pool: int) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            counts = make_photo_data(Path(folder), n, pool)
            row = {"items": n, "counts": counts}
            for label, threads in (("default", None), ("one", 1)):
                row[label] = measure_photo(Path(folder), threads)
                print(n, label, row[label], flush=True)
            row["disk_mb"] = disk_mb(Path(folder))
            rows.append(row)
    return rows


def photo_table(rows: list[dict]) -> str:
    lines = [
        "| items | train / val / test | on disk | peak RSS | loading / epoch / evaluation "
        "| peak RSS, 1 thread | loading / epoch / evaluation, 1 thread | run, s | load |",
        "|---:|---|---:|---:|---|---:|---|---:|---:|",
    ]
    for r in rows:
        c = r["counts"]
        stages = [
            " / ".join(f"{r[k]['stages'].get(s, 0):,.0f}" for s in ("load", "epoch", "evaluation"))
            for k in ("default", "one")
        ]
        lines.append(
            f"| {r['items']:,} | {c['train']:,} / {c['val']:,} / {c['test']:,} | "
            f"{r['disk_mb']:,.0f} MB | {r['default']['peak_mb']:,.0f} MB | {stages[0]} | "
            f"{r['one']['peak_mb']:,.0f} MB | {stages[1]} | "
            f"{r['default']['seconds']:.0f} / {r['one']['seconds']:.0f} | "
            f"{r['default']['load']:.1f} / {r['one']['load']:.1f} |"
        )
    return "\n".join(lines)


def photo_section(rows: list[dict], pool: int) -> str:
    ratios = {k: rows[-1][k]["peak_mb"] / rows[0][k]["peak_mb"] for k in ("default", "one")}
    verdict = "met" if max(ratios.values()) <= TARGET_RATIO else "missed"
    return (
        "### Training memory of a photo run: flat in the data size\n\n"
        f"`ivae train --data DATA {' '.join(PHOTO_TRAIN)}` (one epoch, the same model at "
        f"every size) on a data set written in `ivae data recipe1m`'s format: kitchen "
        f"recipes' texts (a pool of {pool:,} drawn with replacement) and a *fabricated* "
        "efficientnet-lite0 feature cache (random float16 values, 1 view; no photo exists, "
        "none is decoded). Peak RSS is the child's VmHWM; the stages' peaks (loading the "
        "data set: the item table, the vocabulary, the token cache, the features; the epoch "
        "with its validation; the final evaluation with the health report) are the resident "
        "size sampled every 0.1 s, MB. The first run of each size writes the token cache, the "
        "one-thread run reads it. Runs, s: the whole command, default threads / one thread; "
        "load: the 1-minute load average before each.\n\n"
        f"{photo_table(rows)}\n\n"
        f"{rows[-1]['items']:,} items take {ratios['default']:.2f}x the peak of "
        f"{rows[0]['items']:,} ({ratios['one']:.2f}x on one thread; target <= "
        f"{TARGET_RATIO}: {verdict})."
    )


def vector_rows(sizes: list[int], features: int) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            make_data(Path(folder), n, features)
            row = {"items": n}
            for mode in ("streamed", "in_memory"):
                row[mode] = measure(Path(folder), mode)
                print(n, mode, row[mode], flush=True)
            rows.append(row)
    return rows


def vector_section(rows: list[dict], features: int, load: float) -> str:
    ratio = rows[-1]["streamed"]["peak_mb"] / rows[0]["streamed"]["peak_mb"]
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    first, last = rows[0]["streamed"], rows[-1]["streamed"]
    grown, held = last["peak_mb"] - first["peak_mb"], last["held_mb"] - first["held_mb"]
    per_item = last["held_mb"] * 2**20 / rows[-1]["items"]
    return (
        "### Training memory: flat in the data size\n\n"
        f"Peak resident memory of one training epoch (implicit iVAE, network encoder, batch "
        f"512) on vectors shaped like the backbone feature cache ({features} float32 "
        f"features per item), memory-mapped and streamed by the trainer's loader, against the "
        f"same run with the array read into memory first. Load average {load:.1f}.\n\n"
        f"{table(rows, features)}\n\n"
        f"Streamed, {rows[-1]['items']:,} items take {ratio:.2f}x the peak of "
        f"{rows[0]['items']:,} (target <= {TARGET_RATIO}: {verdict}); of the "
        f"{grown:,.0f} MB it grows, {held:,.0f} MB are the arrays the data set holds in memory "
        f"(y one-hot, ids, split, factors: {per_item:.0f} bytes per item). The train split "
        f"streams through the loader; validation and the final evaluation read the val and "
        f"test rows a batch at a time from the memory map (`Dataset.part` of a mapped x is a "
        f"`MappedRows`), and every read hands the mapped pages back: the file, not the process, "
        f"holds x. "
        f"Vectors rather than photos: decoding 200k photos takes hours on this machine."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--features", type=int, default=1280)
    parser.add_argument("--pool", type=int, default=2000, help="distinct recipes (photo table)")
    parser.add_argument(
        "--tables", nargs="+", choices=("vectors", "photo"), default=["vectors", "photo"]
    )
    args = parser.parse_args(argv)
    sections = []
    if "vectors" in args.tables:
        load = load_average()
        sections.append(vector_section(vector_rows(args.sizes, args.features), args.features, load))
    if "photo" in args.tables:
        sections.append(photo_section(photo_rows(args.sizes, args.pool), args.pool))
    machine = f"{platform.machine()}, Python {platform.python_version()}, 2 shared cores."
    reproduce = f"{machine} Reproduce: `{command('bench.train_memory', argv)}`"
    body = "\n\n".join([*sections, reproduce])
    print(body)
    if len(sections) == 2:  # the section holds both tables: one alone is printed only
        write_section("train-memory", body)


if __name__ == "__main__":
    main()
