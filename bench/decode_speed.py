"""Photos decoded per second into the image cache (``ivae.data.paired.decode_blocks``), by the
number of decoding processes, side by side in interleaved rounds on the same rows; writes
docs/results.md between the ``decode-speed`` markers. It is the step a run on pixels, or
``ivae features``, takes before it trains: at Recipe1M scale a million photos. Two sets: the
kitchen photos (128-px JPEGs, cheap to decode), and kitchen dishes drawn at 512 px, about the
size of a Recipe1M photo, generated on the first run (``data/bench-kitchen-512px-2000``, two
minutes).

    .venv/bin/python -m bench.decode_speed
    .venv/bin/python -m bench.decode_speed --workers 1 2 4 --rows 8000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from bench.common import ROOT, command, load_average, shown, write_section
from ivae.data.paired import DECODE_ROWS, decode_blocks
from ivae.data.table import mapped_items

LARGE = ROOT / "data" / "bench-kitchen-512px-2000"  # photos about Recipe1M's size


def large_photos() -> Path:
    if not (LARGE / "dataset.json").exists():
        from ivae.data.kitchen import generate_kitchen

        generate_kitchen(LARGE, n=2000, image_size=512, seed=0)
    return LARGE


def decode_all(data: Path, items, size: int, workers: int) -> float:
    start = time.perf_counter()
    starts = range(0, len(items), DECODE_ROWS)
    for _ in decode_blocks(data, items, starts, DECODE_ROWS, size, workers):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", help="paired data sets (default: the two above)")
    parser.add_argument("--rows", type=int, default=4000, help="the first rows of each")
    parser.add_argument("--image-size", type=int, default=128, help="decoded at this size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sets = (
        [Path(d) for d in args.data] if args.data else [ROOT / "data" / "kitchen", large_photos()]
    )
    tables = {data: mapped_items(data).iloc[: args.rows] for data in sets}
    times = {(data, w): [] for data in sets for w in args.workers}
    loads = []
    for _ in range(args.rounds):
        for data, workers in times:
            times[data, workers].append(decode_all(data, tables[data], args.image_size, workers))
            loads.append(load_average())
    lines = [
        "| photos | decoding processes | photos/s (median) | relative | a million photos |",
        "|---|---:|---:|---:|---:|",
    ]
    for (data, workers), values in times.items():
        items = tables[data]
        median, first = statistics.median(values), statistics.median(times[data, args.workers[0]])
        rate = len(items) / median
        lines.append(
            f"| {len(items)} of {shown(data)} | {workers} | {rate:.0f} | {first / median:.2f} | "
            f"{1e6 / rate / 60:.0f} min |"
        )
    cpu = platform.processor() or platform.machine()
    body = (
        "## Decoding photos\n\n"
        f"`{command('bench.decode_speed')}` — photos decoded at {args.image_size} px in blocks of "
        f"{DECODE_ROWS}, each process count {args.rounds} times in interleaved rounds, on "
        f"{len(os.sched_getaffinity(0))} cores (`{cpu}`, shared; 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} as the rounds ended). The rates include starting "
        "the decoding processes (forked).\n\n" + "\n".join(lines)
    )
    print(body)
    write_section("decode-speed", body)


if __name__ == "__main__":
    main()
