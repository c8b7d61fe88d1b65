"""Peak memory of the Recipe1M import on a synthetic 100,000-recipe layer1.json.

The real layer1.json is about 1.3 GB, so the importer streams it; this benchmark checks that
memory stays flat (target: peak RSS under 500 MB) by importing a synthetic file of the same
shape in a child process under GNU time (``/usr/bin/time -v``; on Debian/Ubuntu
``apt-get install -y time``). One recipe in a thousand has a photo (a tiny JPEG), a few more
point to missing files, so the import also resizes and writes images.

    .venv/bin/python -m bench.recipe1m_memory [--recipes 100000]

Writes a table (recipes, layer1 size, peak RSS, wall time, rows imported) into
docs/results.md between the ``recipe1m`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench.common import ROOT, command, load_average, write_section

GNU_TIME = "/usr/bin/time"
TARGET_MB = 500
CHILD = """
import json, sys
from ivae.data.recipe1m import import_recipe1m
report = import_recipe1m(*sys.argv[1:5], progress=False)
print("REPORT " + json.dumps(report))
"""


def recipe(i: int) -> dict:
    """A recipe about as long as a typical Recipe1M one (~1 KB of JSON)."""
    return {
        "id": f"{i:010x}",
        "title": f"Synthetic Stew Number {i}",
        "ingredients": [
            {"text": f"{1 + k % 4} cups ingredient number {k} of recipe {i}, chopped"}
            for k in range(9)
        ],
        "instructions": [
            {
                "text": f"Step {k}: stir the pot gently for {k + 2} minutes, then "
                "taste and season with salt and pepper."
            }
            for k in range(6)
        ],
        "partition": (
            "train",
            "train",
            "train",
            "train",
            "train",
            "train",
            "train",
            "train",
            "val",
            "test",
        )[i % 10],
        "url": f"http://www.example.com/recipe/{i}",
    }


def write_array(path: Path, records) -> None:
    """A top-level JSON array written record by record (the writer is streamed too)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for k, record in enumerate(records):
            f.write((",\n" if k else "") + json.dumps(record))
        f.write("\n]\n")


def make_inputs(work: Path, n: int) -> tuple[Path, Path, Path]:
    layer1, layer2, images = work / "layer1.json", work / "layer2.json", work / "images"
    write_array(layer1, (recipe(i) for i in range(n)))
    with_photos = [i for i in range(0, n, 1000)]
    missing = [i for i in range(500, n, 5000)]
    write_array(
        layer2,
        (
            {"id": f"{i:010x}", "images": [{"id": f"{i:010x}.jpg", "url": ""}]}
            for i in sorted(with_photos + missing)
        ),
    )
    for i in with_photos:
        name = f"{i:010x}.jpg"
        path = images / recipe(i)["partition"] / name[0] / name[1] / name[2] / name[3] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320, 240), (200, 120, 40)).save(path, "JPEG")
    return layer1, layer2, images


def measure(layer1: Path, layer2: Path, images: Path, out: Path) -> tuple[float, float, dict]:
    """(peak RSS in MB, wall seconds, the import report) from GNU time -v."""
    if not Path(GNU_TIME).exists():
        sys.exit(f"{GNU_TIME} not found: install GNU time (apt-get install -y time)")
    command = [
        GNU_TIME,
        "-v",
        sys.executable,
        "-c",
        CHILD,
        str(layer1),
        str(layer2),
        str(images),
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"the import failed:\n{result.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])
    clock = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    seconds = int(clock[1] or 0) * 3600 + int(clock[2]) * 60 + float(clock[3])
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    return peak_kb / 1024, seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recipe1m-bench-"))
    try:
        layer1, layer2, images = make_inputs(work, args.recipes)
        load = load_average()
        peak, seconds, report = measure(layer1, layer2, images, work / "out")
        size = layer1.stat().st_size / 2**20
        body = "\n".join(
            [
                f"`{command('bench.recipe1m_memory', ['--recipes', str(args.recipes)])}` — "
                "a synthetic `layer1.json` of Recipe1M's shape (~1 KB a recipe), one recipe in a "
                "thousand with a photo and one in 5,000 pointing to a missing file, imported by "
                "`ivae.data.recipe1m` "
                f"in a child process under GNU `time -v`; Python {platform.python_version()}, "
                f"{os.cpu_count()} shared cores (load: the 1-minute load average before the "
                "import; above the core count, work queues for the CPU and wall time grows).",
                "",
                "| recipes | layer1.json | peak RSS | target | met | wall time | load "
                "| rows imported |",
                "|---:|---:|---:|---:|---|---:|---:|---:|",
                f"| {args.recipes:,} | {size:.0f} MB | {peak:.0f} MB | < {TARGET_MB} MB | "
                f"{'yes' if peak < TARGET_MB else 'no'} | {seconds:.1f} s | {load:.1f} | "
                f"{report['rows']:,} "
                f"(missing files: {report['missing_image_files']}) |",
            ]
        )
        print(body)
        print(write_section("recipe1m", body))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
