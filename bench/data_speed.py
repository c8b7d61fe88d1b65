"""How long `ivae data kitchen` and `ivae data shapes` take for 20,000 items (target for the
kitchen: under 3 minutes on 2 cores), each in a fresh process, as a user runs them; written
into docs/results.md between the ``data-speed`` markers.

    .venv/bin/python -m bench.data_speed [--n 20000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, command, load_average, write_section

IVAE = Path(sys.executable).with_name("ivae")
TARGETS = {"kitchen": 180.0}  # seconds for 20,000 items (issue: data with known factors)


def time_generator(name: str, n: int) -> tuple[float, float, int]:
    """(wall seconds, the load average before, bytes written) of one generation."""
    work = Path(tempfile.mkdtemp(prefix=f"data-speed-{name}-"))
    try:
        load = load_average()
        start = time.perf_counter()
        subprocess.run(
            [str(IVAE), "data", name, "--out", str(work / name), "--n", str(n), "--seed", "0"],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (work / name).rglob("*") if f.is_file())
        return seconds, load, size
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for name in ("kitchen", "shapes"):
        runs = [time_generator(name, args.n) for _ in range(args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        target = TARGETS.get(name)
        met = "—" if target is None else ("yes" if seconds < target else "no")
        goal = "—" if target is None else f"< {target / 60:.0f} min"
        rows.append(
            f"| `ivae data {name} --n {args.n:,}` | {seconds:.0f} s | {goal} | {met} | "
            f"{runs[0][2] / 2**20:.0f} MB | {max(r[1] for r in runs):.1f} |"
        )
        print(rows[-1], flush=True)
    rerun = command("bench.data_speed", ["--n", str(args.n), "--repeats", str(args.repeats)])
    body = "\n".join(
        [
            f"`{rerun}` — each generator in a fresh process, median of {args.repeats}; "
            f"{os.cpu_count()} cores "
            f"(`{platform.processor() or platform.machine()}`), shared: the 1-minute load average "
            "before each run is given (above 2, work queues for the CPU).",
            "",
            "| command | wall time | target | met | written | load |",
            "|---|---:|---:|---|---:|---:|",
            *rows,
        ]
    )
    print(write_section("data-speed", body))


if __name__ == "__main__":
    main()
