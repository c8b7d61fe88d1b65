"""Throughput of the EfficientNet-Lite0 backbone on this CPU (images per second at 224, 160
and 128 px, 1 and 2 threads) and what it means for extracting the kitchen's features
(20,000 items x 8 dihedral views); written into docs/results.md between the
``features-speed`` markers.

    .venv/bin/python -m bench.features_speed [--batches 3] [--batch-size 64]

``--view-spread N`` instead measures, on the first N items of the kitchen's 8-view cache, how
much the dihedral views move the features (section ``features-views``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from bench.common import ROOT, command, load_average, write_section
from ivae.backbones import get_backbone

CACHE_8V = ROOT / "data/kitchen/.cache/features/efficientnet-lite0-57934424-128px-8v"

SIZES = (224, 160, 128)
KITCHEN_IMAGES = 20_000 * 8  # items x dihedral views
BUDGET_MINUTES = 30  # feature extraction plus head training (issue 12)


def images_per_second(forward, images: torch.Tensor, batches: int) -> float:
    """Median over ``batches`` timed batches, after one untimed warm-up batch."""
    forward(images)
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        forward(images)
        times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def measure(size: int, threads: int, batches: int, batch_size: int, folded: bool = True):
    torch.set_num_threads(threads)
    backbone = get_backbone("efficientnet-lite0", image_size=size)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    if folded:  # the path `ivae features` runs
        return images_per_second(backbone.features, images, batches)
    with torch.inference_mode():  # the network as loaded: batch norms apart, NCHW
        x = backbone.normalise(images)
        return images_per_second(backbone.net.features, x, batches)


def row(size: int, threads: int, rate: float, load: float, label: str = "") -> str:
    minutes = KITCHEN_IMAGES / rate / 60
    fits = "yes" if minutes < BUDGET_MINUTES else "no"
    return (
        f"| {size} px{label} | {threads} | {rate:.0f} | {minutes:.0f} min | "
        f"{minutes / 8:.1f} min | {fits} | {load:.1f} |"
    )


def view_spread(n: int) -> str:
    """Share of the feature variance that lies between the 8 views of one item, and how often
    a turned or mirrored view's nearest view-0 neighbour is the item itself."""
    done = json.loads((CACHE_8V / "done.json").read_text())["chunks"]
    chunk = json.loads((CACHE_8V / "meta.json").read_text())["chunk_size"]
    if len(done) * chunk < n or sorted(done)[: n // chunk] != list(range(0, n, chunk)):
        raise SystemExit(f"{CACHE_8V}: fewer than {n} items extracted; run `ivae features` first")
    f = np.load(CACHE_8V / "features.npy", mmap_mode="r")[:n].astype(np.float32)  # (n, 8, F)
    within = f.var(axis=1).mean() / f.reshape(-1, f.shape[-1]).var(axis=0).mean()
    rows = []
    for view in range(1, 8):
        d = ((f[:, view, None] - f[None, :, 0]) ** 2).sum(-1)  # (n, n)
        own = float((d.argmin(1) == np.arange(n)).mean())
        turns, mirrored = view % 4, " mirrored" if view >= 4 else ""
        rows.append(f"| {view} | {turns} quarter turn(s){mirrored} | {own:.3f} |")
    return "\n".join(
        [
            "## How much the dihedral views move the features",
            "",
            f"`{command('bench.features_speed')}` — the first {n} kitchen items of "
            f"`{CACHE_8V.relative_to(ROOT)}`: {within:.1%} of the feature variance lies between "
            "the 8 views of one item (the rest between items); the views are not "
            "interchangeable, so the cache keeps all 8. Per view: how often its nearest "
            "view-0 neighbour is the item itself.",
            "",
            "| view | symmetry | nearest view 0 is the item |",
            "|---:|---|---:|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--view-spread", type=int, metavar="N")
    args = parser.parse_args()
    if args.view_spread:
        print(write_section("features-views", view_spread(args.view_spread)))
        return
    rows = []
    for size in SIZES:
        for threads in (1, 2):
            load = load_average()
            rate = measure(size, threads, args.batches, args.batch_size)
            rows.append(row(size, threads, rate, load))
            print(rows[-1], flush=True)
    load = load_average()
    rate = measure(128, 1, args.batches, args.batch_size, folded=False)
    rows.append(row(128, 1, rate, load, ", batch norms not folded, NCHW"))
    print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Feature extraction speed",
            "",
            f"`{command('bench.features_speed')}` — EfficientNet-Lite0 features (batch norms "
            f"folded into the convolutions, channels-last, as `ivae features` runs it), batches "
            f"of {args.batch_size} random images, median of {args.batches} batches; "
            f"{os.cpu_count()} cores (`{platform.processor() or platform.machine()}`) shared "
            "with other work: the 1-minute load average before each row is given (above 2, "
            "work queues for the CPU and the rates drop). The kitchen columns are 20,000 "
            "items x 8 dihedral views (and x 1 view) at that rate; the budget is "
            f"{BUDGET_MINUTES} min for extraction plus head training.",
            "",
            "| input | threads | images/s | kitchen x 8 views | x 1 view | 8 views fit | load |",
            "|---|---:|---:|---:|---:|---|---:|",
            *rows,
        ]
    )
    print(write_section("features-speed", body))


if __name__ == "__main__":
    main()
