"""Dashboard latency and footprint, measured against the explorer's targets.

(a) nearest-neighbour query (the project's exact search, ivae.index.NearestNeighbors) on
    synthetic codes: <= 20 ms at 100k items, <= 150 ms at 1M items;
(b) photo -> factors on the CPU, decode included: <= 300 ms;
(c) slider change -> updated results on screen (real browser): median <= 300 ms;
(d) later launch (data and index on disk) -> studio results visible: <= 15 s;
(e) dashboard process memory after every page has been used: <= 1.5 GB;
(f) 8 concurrent browser sessions moving sliders for 60 s: no error, p95 reported;
(g) with ``--fresh-clone``: git clone -> ``make run`` -> usable dashboard: <= 5 min;
(a) at 10M items: the approximate search (bench/search_scale.py's codes and queries), median
    <= 20 ms and recall@8 >= 0.99, unweighted and with the studio's weightings;
(h) a synthetic run of a million dishes (bench/big_run.py): every page, memory <= 2 GB,
    slider -> screen median <= 300 ms;
(i) factor cards (real browser): a page load <= 2 s, a factor switch <= 1 s;
(j) the atlas (real browser): a page load <= 3 s, a recolour <= 1 s.

Every part's figures are kept in docs/latency.json with their date; ``--parts`` measures
some of them again and the table is written from all, each row with the date it was measured.

The table goes into docs/results.md between ``<!-- latency:begin -->`` and
``<!-- latency:end -->``. Every server and browser is local (127.0.0.1) and stopped at the
end. The machine's load average is recorded with each figure: on a shared machine the
medians move with it.

    .venv/bin/python -m bench.latency                       # (a)-(f) on assets/default-run
    .venv/bin/python -m bench.latency --run runs/kitchen    # on another run
    .venv/bin/python -m bench.latency --fresh-clone         # and (g): several minutes
    .venv/bin/python -m bench.latency --quick               # smoke run; results.md untouched
    .venv/bin/python -m bench.latency --parts slider,big    # these rows again, the rest kept
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import atlas_latency, dashboard, page_latency
from bench.common import ROOT, command, load_average, shown, write_section
from bench.latency_report import BIG_RUN, render
from tests.browser.driver import HOME, VIEWPORT, launch_browser, start_server

DEFAULT_RUN = ROOT / "assets" / "default-run"
STORE = ROOT / "docs" / "latency.json"  # every part's last figures, with their dates
PARTS = ("nn", "photo", "slider", "launch", "memory", "concurrent", "nn10m", "big", "cards",
         "atlas")  # fmt: skip
# what each part writes into the results (the keys a partial run replaces)
PART_KEYS = {
    "nn": ("nn",), "photo": ("photo",), "slider": ("slider", "script_ms"),
    "launch": ("launch",), "memory": ("memory",),
    "concurrent": ("concurrent", "memory_after_concurrent"), "nn10m": ("nn10m",),
    "big": ("big",), "fresh_clone": ("fresh_clone",), "cards": ("cards",), "atlas": ("atlas",),
}  # fmt: skip


# --------------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


# --------------------------------------------------------------------------- (a) search


def nn_latency(
    n_items: int,
    dim: int,
    queries: int = 50,
    neighbours: int = 8,
    weighted: bool = True,
    check: int = 5,
    seed: int = 0,
) -> dict:
    """Median / p95 milliseconds of one query (as the studio asks: one point, n neighbours)
    over ``n_items`` random codes of ``dim`` factors; ``exact`` compares ``check`` queries
    with a brute-force answer (same indices, same distances)."""
    from ivae.index import NearestNeighbors

    rng = np.random.default_rng(seed)
    points = rng.standard_normal((n_items, dim), dtype=np.float32)  # (N, k)
    weights = (1.0 / points.var(axis=0)) if weighted else None  # the studio standardises
    search = NearestNeighbors(points)
    asked = rng.standard_normal((queries + 2, dim), dtype=np.float32)
    times = []
    for i, q in enumerate(asked):
        start = time.perf_counter()
        search.search(q, n=neighbours, weights=weights)
        if i >= 2:  # two warm-up queries
            times.append((time.perf_counter() - start) * 1e3)
    exact = all(_matches_brute_force(search, points, q, neighbours, weights) for q in asked[:check])
    return {
        "n_items": n_items, "dim": dim, "neighbours": neighbours, "weighted": weighted,
        "median_ms": statistics.median(times), "p95_ms": percentile(times, 95), "exact": exact,
    }  # fmt: skip


def _matches_brute_force(search, points, q, n, weights) -> bool:
    w = np.ones(points.shape[1], np.float32) if weights is None else weights
    d2 = (((points - q) ** 2) * w).sum(axis=1)  # (N,)
    truth = np.argsort(d2, kind="stable")[:n]
    found, distances = search.search(q, n=n, weights=weights)
    same = set(found.tolist()) == set(truth.tolist())
    return same and np.allclose(distances, np.sqrt(d2[truth]), rtol=1e-3, atol=1e-4)


def bench_nn(sizes: list[int], dims: list[int], queries: int) -> list[dict]:
    """Every size, dimension and weighting, numpy's BLAS on one thread as in the dashboard."""
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1, user_api="blas"):
        for n_items in sizes:
            for dim in dims:
                for weighted in (True, False):
                    row = nn_latency(n_items, dim, queries=queries, weighted=weighted)
                    row["load"] = load_average()
                    rows.append(row)
    return rows


def bench_nn10m(items: int, dims: list[int], queries: int) -> list[dict]:
    """The approximate search at ``items`` codes (bench/search_scale.py's mixture codes and
    studio queries, built, saved and loaded as ``ivae index`` and the dashboard do): recall@8
    and milliseconds per query, unweighted and under the studio's two weightings."""
    import tempfile

    from bench import search_scale

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for dim in dims:
            points = search_scale.mixture_codes(items, dim)
            asked, moved = search_scale.studio_queries(points, queries)
            found = search_scale.ivf_rows(points, asked, moved, Path(folder))
            rows += [row | {"load": load_average()} for row in found]
            del points
    return rows


# --------------------------------------------------------------------------- (b) photo


def kitchen_jpeg(run, size: int | None) -> tuple[bytes, str]:
    """A kitchen photo of the run's data as JPEG bytes, upscaled to ``size`` px when given
    (an upload from a phone or camera is far larger than the data's images)."""
    from PIL import Image

    from ivae.index import load_items

    folder = run.data_dir()  # python -m bench.latency runs from the repository root
    items = load_items(folder) if (folder / "items.parquet").is_file() else None
    if items is not None:
        image = Image.open(folder / items["image"].iat[0]).convert("RGB")
        what = f"dish `{items['id'].iat[0]}` of the run's data"
    else:  # no data on disk: a plate with a bowl
        image = Image.new("RGB", (128, 128), (150, 110, 80))
        image.paste((200, 60, 30), (32, 32, 96, 96))
        what = "a drawn plate (the run's data is not on disk)"
    if size:
        image = image.resize((size, size * 3 // 4), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), f"{what}, {image.width}x{image.height} JPEG"


def photo_latency(run, data: bytes, repeats: int = 30) -> dict:
    """Milliseconds of read_upload -> image_to_array -> run.encode_x, each step and in all."""
    from ivae.images import image_to_array
    from ivae.uploads import read_upload

    steps = {"decode": [], "resize": [], "encode": [], "total": []}
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        photo = read_upload(data, "photo.jpg")
        t1 = time.perf_counter()
        pixels = image_to_array(photo, run.image_size)  # (3, S, S) uint8
        t2 = time.perf_counter()
        z = run.encode_x(pixels[None])  # (1, k)
        t3 = time.perf_counter()
        if i >= 2:  # two warm-up reads
            for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                steps[name].append(seconds * 1e3)
    assert np.all(np.isfinite(z))
    return {name: statistics.median(values) for name, values in steps.items()} | {
        "p95_ms": percentile(steps["total"], 95),
        "load": load_average(),
    }


def bench_photo(run, repeats: int) -> list[dict]:
    """The data's own JPEG and a camera-sized one, with torch's default threads and with one
    (on a busy machine a second intra-op thread waits for a free core)."""
    import torch

    default = torch.get_num_threads()
    rows = []
    try:
        for threads in sorted({default, 1}, reverse=True):
            torch.set_num_threads(threads)
            for size in (None, 1600):
                data, what = kitchen_jpeg(run, size)
                row = photo_latency(run, data, repeats)
                row.update(photo=what, kb=len(data) / 1e3, threads=threads)
                rows.append(row)
    finally:
        torch.set_num_threads(default)
    return rows


def script_rerun_ms(run: Path, moves: int) -> list[float]:
    """Milliseconds of the studio's script alone per slider move (Streamlit's AppTest: no
    browser, no network), to split (c) into server and browser time."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(HOME), default_timeout=300)
    app.session_state["run_path"] = str(run)
    app.switch_page("../pages/studio.py").run()
    slider = app.slider(key="studio_z0")
    ends, times = (slider.max, slider.min), []
    for i in range(moves + 2):
        start = time.perf_counter()
        app.slider(key="studio_z0").set_value(ends[i % 2]).run()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
        if app.exception:
            raise RuntimeError(f"the studio failed: {app.exception[0].value}")
    return times


# --------------------------------------------------------------------------- main


def run_info(run: Path) -> str:
    import ivae
    from ivae.index import load_index

    loaded = ivae.load_run(run)
    index = load_index(loaded)
    return f"{len(index):,} dishes, k = {loaded.latent_dim}, {loaded.image_size} px images"


def resolve_run(wanted: str | None) -> Path:
    run = Path(wanted).resolve() if wanted else DEFAULT_RUN
    if not (run / "model.pt").is_file() or not (run / "index" / "codes.npz").is_file():
        sys.exit(f"error: {run} is not a trained, indexed run; pass one with --run PATH")
    return run


def browser_parts(r: dict, run: Path, parts: set, quick: bool, work: Path) -> None:
    """(d), then (c) and (e) on one server, then (f) on the same server, then (e) again."""
    from playwright.sync_api import sync_playwright

    server = None
    try:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            if "launch" in parts:
                r["launch"] = [
                    dashboard.launch_time(browser, run, work / f"launch{i}.log")
                    | {"load": load_average()}
                    for i in range(1 if quick else 3)
                ]
            if parts & {"slider", "memory", "concurrent", "cards", "atlas"}:
                server = start_server(work / "server.log", timeout=180)
                page = browser.new_context(viewport=VIEWPORT).new_page()
            if "cards" in parts:  # first: on a server that has not shown the cards yet
                loads, switches = (2, 3) if quick else (5, 16)
                r["cards"] = page_latency.cards_latency(page, server, run, loads, switches)
                r["cards"]["load"] = load_average()
            if "atlas" in parts:  # before the other pages: its first visit computes its caches
                loads, fresh = (2, 1) if quick else (6, 3)
                r["atlas"] = atlas_latency.atlas_latency(browser, page, server, run, loads, fresh)
                r["atlas"]["load"] = load_average()
            if "slider" in parts:
                moves = dashboard.slider_latency(page, server, run, 5 if quick else 20)
                r["slider"] = spread(moves["seconds"]) | {
                    "seconds": moves["seconds"], "phases": moves, "load": load_average(),
                }  # fmt: skip
            if "memory" in parts:
                photo = work / "photo.jpg"
                photo.write_bytes(kitchen_jpeg(__import__("ivae").load_run(run), 1600)[0])
                problems = dashboard.exercise_every_page(page, server, run, photo)
                r["memory"] = dashboard.memory_kb(server.pid) | {
                    "problems": problems,
                    "load": load_average(),
                }
            browser.close()
        if "concurrent" in parts:
            sessions, seconds = (2, 10) if quick else (8, 60)
            stats = dashboard.concurrent_sessions(server, run, sessions, seconds)
            r["concurrent"] = spread(stats["latencies"]) | {
                "sessions": sessions,
                "seconds": seconds,
                "moves": len(stats["latencies"]),
                "errors": stats["errors"],
                "load": load_average(),
            }
            r["memory_after_concurrent"] = dashboard.memory_kb(server.pid)
    finally:
        if server is not None:
            server.stop()


def big_part(big: Path, work: Path, quick: bool) -> dict:
    """(h): every page of the million-dish run opened (a photo read, a slider moved), then
    slider -> screen, on a server of its own; the server's memory after both."""
    from playwright.sync_api import sync_playwright

    import ivae
    from ivae.index import read_index

    photo = work / "photo.jpg"
    photo.write_bytes(kitchen_jpeg(ivae.load_run(DEFAULT_RUN), 1600)[0])
    server = start_server(work / "big-server.log", timeout=300)
    try:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            start = time.perf_counter()
            problems = dashboard.exercise_every_page(page, server, big, photo)
            pages_s = time.perf_counter() - start
            moves = dashboard.slider_latency(page, server, big, 5 if quick else 20)
            browser.close()
        return {
            "items": len(read_index(big / "index" / "codes.npz")),
            "problems": problems, "pages_s": pages_s, "memory": dashboard.memory_kb(server.pid),
            "slider": spread(moves["seconds"]) | {"seconds": moves["seconds"], "phases": moves},
            "load": load_average(),
        }  # fmt: skip
    finally:
        server.stop()


def big_run_path(wanted: str | None) -> Path:
    """The million-dish run: ``--big-run``, else BIG_RUN/run, built there when missing."""
    if wanted:
        return resolve_run(wanted)
    run = BIG_RUN / "run"
    if not (run / "index" / "codes.npz").is_file():
        from bench.big_run import build_big_run

        print(f"building the million-dish run in {BIG_RUN} (minutes)", flush=True)
        build_big_run(BIG_RUN)
    return run


def merged(r: dict, parts: set) -> dict:
    """``r`` with the parts not measured this time taken from docs/latency.json; each part
    keeps the date and command it was measured with."""
    stored = json.loads(STORE.read_text()) if STORE.exists() else {}
    out = stored | {k: v for k, v in r.items() if k not in sum(PART_KEYS.values(), ())}
    if "failure" not in r:
        out.pop("failure", None)
    for part in PART_KEYS:
        keys = [k for k in PART_KEYS[part] if k in r]
        if part in parts and keys:
            out.update({k: r[k] for k in keys})
            out.setdefault("dates", {})[part] = r["date"]
            out.setdefault("commands", {})[part] = r["command"]
        elif part in parts:  # asked for but not measured (a failure): drop the old figures
            for key in PART_KEYS[part]:
                out.pop(key, None)
    return out


def spread(seconds: list[float]) -> dict:
    values = seconds or [float("nan")]
    return {"median_s": statistics.median(values), "p95_s": percentile(values, 95)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained, indexed run (default assets/default-run)")
    parser.add_argument("--quick", action="store_true", help="smoke run; results.md untouched")
    parser.add_argument("--fresh-clone", action="store_true", help="also (g): takes minutes")
    parser.add_argument("--clone-dir", default="/tmp/fc", help="where --fresh-clone clones")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of "
                        + ", ".join(PARTS))  # fmt: skip
    parser.add_argument("--work", default="/tmp/latency-bench", help="logs and upload files")
    parser.add_argument("--big-run", help=f"the (h) run (default: built in {BIG_RUN})")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(",")) if args.parts else set()
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    run = resolve_run(args.run)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    r = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "run": shown(run),
        "run_info": run_info(run), "load_start": load_average(),
        "command": command("bench.latency", argv),
    }  # fmt: skip
    if "nn" in parts:
        sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
        r["nn"] = bench_nn(sizes, [8, 16], queries=10 if args.quick else 50)
    if "photo" in parts:
        import ivae

        r["photo"] = bench_photo(ivae.load_run(run), repeats=5 if args.quick else 30)
    if "slider" in parts:
        r["script_ms"] = script_rerun_ms(run, 5 if args.quick else 20)
    if "nn10m" in parts:
        items, queries = (200_000, 20) if args.quick else (10_000_000, 100)
        r["nn10m"] = bench_nn10m(items, [8, 16], queries)
    if parts & {"slider", "launch", "memory", "concurrent", "cards", "atlas"}:
        try:
            browser_parts(r, run, parts, args.quick, work)
        except Exception as error:  # noqa: BLE001 - keep what was measured, report the failure
            r["failure"] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if "big" in parts:
        big = big_run_path(args.big_run)
        r["big_run"] = shown(big)
        try:
            r["big"] = big_part(big, work, args.quick)
        except Exception as error:  # noqa: BLE001 - keep what was measured, report the failure
            r["failure"] = f"(h) {type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if args.fresh_clone:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            r["fresh_clone"] = dashboard.fresh_clone(browser, Path(args.clone_dir))
            r["fresh_clone"]["load"] = load_average()
            browser.close()
    if args.fresh_clone:
        parts.add("fresh_clone")
    if not args.quick:
        r = merged(r, parts)
        STORE.write_text(json.dumps(r, indent=1, default=str) + "\n")
    table = render(r)
    print(table)
    if not args.quick:
        print(f"wrote {write_section('latency', table)} and {STORE}")
    return r


if __name__ == "__main__":
    main()
