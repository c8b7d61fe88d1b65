"""A Recipe1M-scale rehearsal: N kitchen pairs in Recipe1M's on-disk layout, through the
whole pipeline a user runs, each stage timed and its peak memory read.

Stages, each a child process as a user runs it (the same commands as the README's "Training
on your own GPUs"):

1. write: N pairs made with the kitchen generator, in Recipe1M's exact layout (``layer1.json``,
   ``layer2.json``, ``det_ingrs.json``, JPEGs under ``images/<partition>/<c0>/<c1>/<c2>/<c3>/``);
2. import: ``ivae data recipe1m``;
3. image cache: the photos decoded at 64 px, which ``ivae train`` does first when loading the
   data set (``ivae.data.load_dataset``);
4. features: ``ivae features --backbone efficientnet-lite0 --views 1``;
5. one epoch of the encoder head on the features (``ivae train --backbone ... --epochs 1``)
   with 1 process (as a plain ``ivae train`` runs: a thread per core; then with one thread),
   and with 2 (torchrun, gloo on CPU, one thread each).

Per stage: wall time, peak RSS (VmHWM of every process of the stage, polled from /proc: the
largest, and for torchrun the sum), throughput and disk used; the 1-minute load average
before it. Every stage keeps its output under ``--work`` (default ``runs/scale-<N>``) and its
figures in ``measured.json`` there: a rerun skips what is done and continues what was
interrupted (the writer renders only missing photos, ``ivae features`` continues by chunk,
``ivae train --resume``).

    .venv/bin/python -m bench.scale [--n 200000] [--work DIR] [--no-write-docs]

Writes docs/results.md between the ``scale`` markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, command, load_average, shown, write_section

BIN = Path(sys.executable).parent
BACKBONE = "efficientnet-lite0"
TARGET_MB = 3 * 1024
RUNS = {  # training stage -> its run folder, processes and threads per process
    "train, 1 process": ("run-1", 1, None),
    "train, 1 process, 1 thread": ("run-1t", 1, 1),
    "train, 2 processes": ("run-2", 2, 1),
}
STAGES = ("write", "import", "image cache", "features", *RUNS)
PROJECTED = {"Recipe1M": 800_000, "Recipe1M+": 13_000_000}


# --------------------------------------------------------------------------- the data set


def recipe_id(seed: int, i: int) -> str:
    """Recipe1M's ids are 10 hex digits; hashed, so the image folders spread as the real ones."""
    return hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:10]


def image_path(images: Path, partition: str, image_id: str) -> Path:
    return images.joinpath(partition, *image_id[:4], image_id)


def render(job: tuple) -> None:
    """Render one kitchen photo to ``path`` (a worker task), written whole or not at all."""
    from ivae.data.kitchen.dishes import item_rng
    from ivae.data.kitchen.render import render_dish

    index, seed, size, path, dish, factors, nuisances = job
    img = render_dish(factors, nuisances, size, item_rng(seed, index, 2), dish)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    img.save(partial, "JPEG", quality=92, subsampling=0)
    partial.replace(path)


def records(row, seed: int, i: int) -> tuple[dict, dict, dict]:
    """(layer1, layer2, det_ingrs) elements of kitchen item ``row``, Recipe1M's schema."""
    rid = recipe_id(seed, i)
    steps = row.text.split("Instructions:\n", 1)[1].splitlines()
    layer1 = {
        "id": rid,
        "title": row.title,
        "ingredients": [{"text": line} for line in row.ingredients],
        "instructions": [{"text": re.sub(r"^\d+\. ", "", s)} for s in steps],
        "partition": row.split,
        "url": f"http://www.example.com/recipe/{rid}",
    }
    layer2 = {"id": rid, "images": [{"id": f"{rid}.jpg", "url": f"http://example.com/{rid}.jpg"}]}
    names = [re.sub(r"^[\d /]+(g|ml|tbsp|tsp|cups?|handfuls?|bunches|heads)? ", "", x)
             for x in row.ingredients]  # fmt: skip
    det = {"id": rid, "ingredients": [{"text": x} for x in names], "valid": [True] * len(names)}
    return layer1, layer2, det


def write_recipe1m(out: Path, n: int, seed: int = 0, size: int = 128, workers: int = 2) -> None:
    """N kitchen pairs in Recipe1M's layout under ``out``; photos already there are kept, the
    JSON files are written last (``layer1.json`` the very last), each atomically."""
    from bench.recipe1m_memory import write_array
    from ivae.data.kitchen.dishes import FACTORS, NUISANCES
    from ivae.data.kitchen.generate import sample_items

    items = sample_items(n, seed)
    images = out / "images"
    jobs = [
        (i, seed, size, str(image_path(images, row.split, f"{recipe_id(seed, i)}.jpg")), row.dish,
         {f: getattr(row, f"factor_{f}") for f in FACTORS},
         {z: getattr(row, f"nuisance_{z}") for z in NUISANCES})
        for i, row in enumerate(items.rename(columns=lambda c: c.replace(".", "_")).itertuples())
    ]  # fmt: skip
    jobs = [job for job in jobs if not Path(job[3]).is_file()]
    print(f"write: {n - len(jobs):,} photos already there, {len(jobs):,} to render", flush=True)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, _ in enumerate(pool.imap_unordered(render, jobs, chunksize=64), 1):
            if done % 10_000 == 0:
                print(f"write: {done:,} / {len(jobs):,} photos", flush=True)
    rows = [records(row, seed, i) for i, row in enumerate(items.itertuples())]
    for k, name in [(2, "det_ingrs.json"), (1, "layer2.json"), (0, "layer1.json")]:
        write_array(out / f".{name}.partial", (r[k] for r in rows))
        (out / f".{name}.partial").replace(out / name)


# --------------------------------------------------------------------------- measuring


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (from /proc/<pid>/stat's parent field)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def high_water_mb(pid: int) -> float | None:
    """The kernel's VmHWM of ``pid``: its peak resident size, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_stage(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd``; wall seconds and the peak RSS of each of its processes (polled every
    0.2 s: VmHWM only grows, so the last reading before a process ends is its peak)."""
    peaks: dict[int, float] = {}
    load, start = load_average(), time.monotonic()
    with open(log, "a") as out:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        while child.poll() is None:
            for pid in process_tree(child.pid):
                mb = high_water_mb(pid)
                if mb is not None and "python" in Path(f"/proc/{pid}/exe").resolve().name:
                    peaks[pid] = max(peaks.get(pid, 0.0), mb)
            time.sleep(0.2)
    if child.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {child.returncode}); see {log}")
    return {
        "seconds": time.monotonic() - start,
        "load": load,
        "peak_mb": max(peaks.values(), default=0.0),
        "peak_sum_mb": sum(peaks.values()),
        "processes": len(peaks),
    }


def disk_mb(*paths: Path) -> float:
    """Bytes on disk (du), in MB."""
    found = [str(p) for p in paths if p.exists()]
    if not found:
        return 0.0
    out = subprocess.run(["du", "-sck", *found], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the stages


def stage_commands(work: Path, n: int, workers: int) -> dict:
    """(command, environment or None, the outputs whose disk use counts) of each stage."""
    raw, data = work / "recipe1m", work / "data"
    py, ivae = str(BIN / "python"), str(BIN / "ivae")
    feats = data / ".cache" / "features"
    train = ["train", "--data", str(data), "--backbone", BACKBONE, "--preset", "kitchen"]
    train += ["--augment", "none", "--epochs", "1", "--quiet"]
    return {
        "write": ([py, "-m", "bench.scale", "--n", str(n), "--write-only", str(raw),
                   "--workers", str(workers)], None, [raw]),
        "import": ([ivae, "data", "recipe1m", "--layer1", str(raw / "layer1.json"), "--layer2",
                    str(raw / "layer2.json"), "--det-ingrs", str(raw / "det_ingrs.json"),
                    "--images", str(raw / "images"), "--out", str(data)], None,
                   [data / "images", data / "items.parquet"]),
        "image cache": ([py, "-c", f"import ivae.data as d; d.load_dataset({str(data)!r})"],
                        None, [data / ".cache" / "images-64.npy"]),
        "features": ([ivae, "features", str(data), "--backbone", BACKBONE, "--views", "1",
                      "--quiet"], None, [feats]),
    } | {stage: train_command(work, stage, train) for stage in RUNS}  # fmt: skip


def train_command(work: Path, stage: str, train: list[str]) -> tuple:
    folder, processes, threads = RUNS[stage]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    cmd = [str(BIN / "ivae"), *train, "--out", str(work / folder)]
    if processes > 1:
        launch = [str(BIN / "torchrun"), f"--nproc_per_node={processes}"]
        cmd = [*launch, f"--master-port={free_port()}", "-m", "ivae", *cmd[1:]]
    return cmd, env, [work / folder]


def resumable(stage: str, cmd: list[str], work: Path) -> list[str]:
    """A training stage that was interrupted continues its run (``--resume``)."""
    if stage not in RUNS:
        return cmd
    out = work / RUNS[stage][0]
    if (out / "last.pt").is_file():
        return [*cmd, "--resume"]
    shutil.rmtree(out, ignore_errors=True)  # a start that left no checkpoint
    return cmd


def train_figures(run: Path) -> dict:
    """The epoch's time in training steps (history.csv's ``seconds``: rank 0's, the
    collectives' waits included) and the batch."""
    config = json.loads((run / "config.json").read_text())
    history = [ln.split(",") for ln in (run / "history.csv").read_text().splitlines()]
    seconds = float(history[1][history[0].index("seconds")])
    return {"step_seconds": seconds, "batch": config["train"]["batch_size"]}


def measure_all(work: Path, n: int, workers: int) -> dict:
    path = work / "measured.json"
    measured = json.loads(path.read_text()) if path.is_file() else {}
    for stage, (cmd, env, outputs) in stage_commands(work, n, workers).items():
        if stage in measured:
            print(f"{stage}: measured before, kept", flush=True)
            continue
        print(f"{stage}: running (log in {shown(work / 'log.txt')})", flush=True)
        record = run_stage(resumable(stage, cmd, work), work / "log.txt", env)
        record["disk_mb"] = disk_mb(*outputs)
        if stage.startswith("train"):
            record.update(train_figures(outputs[0]))
        measured[stage] = record
        path.write_text(json.dumps(measured, indent=1))
        print(f"{stage}: {record}", flush=True)
    return measured


# --------------------------------------------------------------------------- the report


def items_of(stage: str, n: int, counts: dict) -> tuple[int, str]:
    """How many items a stage's throughput counts, and what they are."""
    if stage == "write":
        return n, "photos"
    if stage.startswith("train"):
        return counts["train"], "train pairs"
    return sum(counts.values()), "photos"


def stage_rows(measured: dict, n: int, counts: dict) -> list[str]:
    rows = [
        "| stage | wall time | peak RSS | <= 3 GB | throughput | disk | load |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for stage in STAGES:
        r = measured[stage]
        items, what = items_of(stage, n, counts)
        peak = f"{r['peak_mb']:,.0f} MB"
        if r["processes"] > 1 and stage.startswith("train"):
            peak += f" a rank ({r['peak_sum_mb']:,.0f} MB with torchrun's own)"
        rate = f"{items / r['seconds']:,.0f} {what}/s"
        if "step_seconds" in r:
            rate += f" ({items / r['step_seconds']:,.0f}/s in the steps)"
        ok = "yes" if r["peak_mb"] <= TARGET_MB else "**no**"
        rows.append(
            f"| {stage} | {r['seconds'] / 60:,.1f} min | {peak} | {ok} | {rate} | "
            f"{r['disk_mb']:,.0f} MB | {r['load']:.1f} |"
        )
    return rows


def projection_rows(measured: dict, n: int, counts: dict, baseline: dict | None) -> list[str]:
    """Each stage's measured seconds (and disk, and RSS growth when a smaller run is given)
    per item, times Recipe1M's and Recipe1M+'s image counts: on this CPU, not a GPU."""
    head = "| stage | s per 1,000 items (measured) |"
    head += "".join(f" {name} ({size / 1e6:g}M): time, disk |" for name, size in PROJECTED.items())
    if baseline:
        head += "".join(f" peak RSS at {name} |" for name in PROJECTED)
    rows = [head, "|---|---:|" + "---:|" * (len(PROJECTED) * (1 + bool(baseline)))]
    for stage in STAGES:
        if stage == "write":
            continue  # a rehearsal's own cost: the real data set is downloaded
        r = measured[stage]
        items = items_of(stage, n, counts)[0]
        per = r["seconds"] / items
        cells = [f"{per * 1000:,.1f}"]
        share = counts["train"] / sum(counts.values()) if stage in RUNS else 1.0
        for size in PROJECTED.values():
            disk = r["disk_mb"] * size / sum(counts.values()) / 1024
            cells.append(
                f"{hours(per * size * share)}, " + ("—" if stage in RUNS else f"{disk:,.0f} GB")
            )
        base = (baseline or {}).get("measured", {}).get(stage)
        if baseline:
            slope = (r["peak_mb"] - base["peak_mb"]) / (n - baseline["n"]) if base else None
            cells += [
                "—" if slope is None else f"{(r['peak_mb'] + slope * (size - n)) / 1024:,.1f} GB"
                for size in PROJECTED.values()
            ]
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    return rows


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def report(work: Path, n: int, measured: dict, argv: list[str], baseline: dict | None) -> str:
    info = json.loads((work / "data" / "dataset.json").read_text())
    counts = info["counts"]
    rate = {stage: counts["train"] / measured[stage]["step_seconds"] for stage in RUNS}
    one, single, two = (rate[stage] for stage in RUNS)
    skipped = {k: v for k, v in info["skipped"].items() if v} or "none"
    worst = max(STAGES, key=lambda s: measured[s]["peak_mb"])
    slowest = max(STAGES[1:], key=lambda s: measured[s]["seconds"])
    lines = [
        f"### Recipe1M-scale rehearsal: {n:,} pairs",
        "",
        f"`{command('bench.scale', argv)}` — {n:,} kitchen pairs written in Recipe1M's layout "
        "(`layer1.json`, `layer2.json`, `det_ingrs.json`, JPEGs under "
        "`images/<partition>/<c0>/<c1>/<c2>/<c3>/`), then each stage as a user runs it, in a "
        f"child process: {platform.machine()}, {os.cpu_count()} shared cores, Python "
        f"{platform.python_version()}. Measured on this CPU, one run per stage (load: the "
        "1-minute load average before it; above 2, work queues for the CPU and times grow). "
        "Peak RSS is each process's VmHWM; throughput is items over the stage's wall time; "
        "disk is what the stage leaves.",
        "",
        *stage_rows(measured, n, counts),
        "",
        *(
            [
                f"**{n:,} pairs, not the 200,000 of the default and of the 3 GB target**: the "
                "200k run (its feature extraction alone about 2 h under this machine's load) did "
                "not fit the time available; the per-item figures below project from this run.",
                "",
            ]
            if n < 200_000
            else []
        ),
        f"Imported: {counts['train']:,} train, {counts['val']:,} val, {counts['test']:,} test "
        f"pairs; skipped: {skipped}. Largest peak: {measured[worst]['peak_mb']:,.0f} MB "
        f"({worst}; target <= 3 GB at every stage: "
        f"{'met' if measured[worst]['peak_mb'] <= TARGET_MB else 'missed'}). "
        f"Training throughput in the steps (history.csv's seconds, rank 0's): 2 processes "
        f"(torchrun, gloo, a thread each) {two:,.0f} pairs/s, {two / single:.2f}x one process "
        f"on one thread ({single:,.0f}) and {two / one:.2f}x a plain `ivae train` on both "
        f"cores ({one:,.0f}), same machine. The wall times add loading the data set (the "
        "recipes tokenised in every process) and the final evaluation on rank 0. One run each, "
        "on a shared machine: a process with a thread per core slows most when other work holds "
        "the cores (its threads wait for each other), so compare the rows at their load.",
        "",
        "**Projected on paper** (not measured): the measured seconds per item of each stage on "
        "this 2-core CPU, times Recipe1M's ~800k photos and Recipe1M+'s ~13M (training: one "
        "epoch of the train share); disk in proportion.",
        "",
        *projection_rows(measured, n, counts, baseline),
        "",
        f"On this CPU the slowest stage is {slowest}. GPU figures await `bench/gpu_check.sh`, "
        "which has not run yet: on 1 or 8 GPUs the feature extraction and the training split "
        "over the GPUs (one process each), while the import and the decoding run on the "
        "host's CPU in one process whatever the GPU count, so with enough GPUs they limit.",
    ]
    lines.append(
        "The image cache is a stage because `ivae train --backbone` loads the data set with its "
        "photos decoded at 64 px (12 KB a photo on disk), though the head reads only the "
        "features: at Recipe1M+ that is the largest file of the pipeline."
    )
    if baseline:
        smaller = command("bench.scale", ["--n", str(baseline["n"]), "--no-write-docs"])
        lines += [
            "",
            f"Peak RSS at scale: a straight line through this run and the {baseline['n']:,}-pair "
            f"one (`--baseline`, made by `{smaller}`); what grows is what a process keeps in "
            "memory per item (the item table with its texts, the token ids), not the photos or "
            "features, which stream from their memory maps. Two points, the small one dominated by "
            "fixed costs: an order of magnitude, not a measurement.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="pairs (default 200,000)")
    parser.add_argument("--work", help="working folder (default runs/scale-<N>)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering photos")
    parser.add_argument("--baseline", help="the working folder of a smaller run, for RSS slopes")
    parser.add_argument("--write-only", metavar="DIR", help="only write the data set to DIR")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args(argv)
    if args.write_only:
        return write_recipe1m(Path(args.write_only), args.n, workers=args.workers)
    work = Path(args.work or ROOT / "runs" / f"scale-{args.n}")
    work.mkdir(parents=True, exist_ok=True)
    measured = measure_all(work, args.n, args.workers)
    baseline = None
    if args.baseline:
        base = Path(args.baseline)
        baseline = {"measured": json.loads((base / "measured.json").read_text())}
        baseline["n"] = int(re.search(r"(\d+)$", base.name)[1])
    shown_argv = sys.argv[1:] if argv is None else argv
    body = report(work, args.n, measured, shown_argv, baseline)
    print(body)
    if not args.no_write_docs:
        write_section("scale", body)


if __name__ == "__main__":
    main()
