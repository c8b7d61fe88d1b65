"""Search beyond a million items: the faiss IVF path of ivae.index against exact search.

    .venv/bin/python -m bench.search_scale                  # 10M codes, k = 8 and 16
    .venv/bin/python -m bench.search_scale --items 2000000 --dims 8 --no-write   # a quick look

Codes are a Gaussian mixture (64 clusters of uneven size and spread, factors of unequal
scale), like learned codes. Queries are the studio's: an item's code with one factor moved
by up to two standard deviations, asked one at a time for 8 neighbours, unweighted and with
the studio's two weightings (``ivae.factors.search_weights``: "emphasise" the moved factor,
"hold" the others). Recall@8 is measured against exact search on the same queries. Writes
the "search_scale" section of docs/results.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import command, load_average, write_section
from ivae import ann as ann_module
from ivae.factors import search_weights
from ivae.index import NearestNeighbors

WEIGHTINGS = ("unweighted", "emphasise", "hold")


def mixture_codes(n: int, k: int, seed: int = 0, clusters: int = 64) -> np.ndarray:
    """(n, k) float32 codes from a Gaussian mixture, generated in chunks (memory ~ n * k * 4)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, k)) * 1.5
    spread = rng.uniform(0.2, 0.8, (clusters, k))
    share = rng.dirichlet(np.full(clusters, 2.0))
    scale = rng.uniform(0.5, 2.0, k)  # factors of unequal scale: search_weights standardises
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, 1 << 20):
        size = min(1 << 20, n - start)
        which = rng.choice(clusters, size, p=share)
        noise = rng.standard_normal((size, k), dtype=np.float32)
        out[start : start + size] = (centres[which] + noise * spread[which]) * scale
    return out


def studio_queries(points: np.ndarray, count: int, seed: int = 1):
    """(count, k) queries and the factor each one moved."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(points), count, replace=False)
    moved = rng.integers(0, points.shape[1], count)
    queries = points[rows].copy()
    shift = rng.uniform(-2, 2, count) * points[:100_000].std(axis=0)[moved]
    queries[np.arange(count), moved] += shift
    return queries, moved


def weights_for(points, moved: int, weighting: str) -> np.ndarray | None:
    if weighting == "unweighted":
        return None
    return search_weights(points[:100_000], moved=int(moved), mode=weighting).astype(np.float32)


def exact_answers(points, queries, moved, weighting) -> np.ndarray:
    """(Q, 8) exact neighbours; queries sharing a weight vector go in one batch."""
    exact = NearestNeighbors(points, exact=True)
    truth = np.empty((len(queries), 8), dtype=np.int64)
    for factor in np.unique(moved):
        rows = np.flatnonzero(moved == factor)
        truth[rows] = exact.search(queries[rows], 8, weights_for(points, factor, weighting))[0]
    return truth


def timed_queries(search, points, queries, moved, weighting) -> tuple[list[float], np.ndarray]:
    """Milliseconds per query and the neighbours found, numpy's BLAS on one thread as in the
    dashboard (explorer/ui.py): on 2 shared cores a second BLAS thread waits for a busy core."""
    from threadpoolctl import threadpool_limits

    found, times = np.empty((len(queries), 8), dtype=np.int64), []
    with threadpool_limits(1, user_api="blas"):
        for row, (query, factor) in enumerate(zip(queries, moved)):
            weights = weights_for(points, factor, weighting)
            start = time.perf_counter()
            found[row] = search.search(query, 8, weights)[0]
            times.append((time.perf_counter() - start) * 1e3)
    return times, found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ivf_rows(points, queries, moved, folder: Path) -> list[dict]:
    """Build, save, load (as ``ivae index`` and the dashboard do), then query each weighting."""
    params = ann_module.default_params(len(points))
    start = time.perf_counter()
    built, scale = ann_module.build_ivf(points, params)
    build_s = time.perf_counter() - start
    path = folder / f"ann-{points.shape[1]}.faiss"
    meta = ann_module.save_ann(built, scale, points, params, path)
    del built
    start = time.perf_counter()
    cells = ann_module.load_ann(path, meta, points)
    load_s = time.perf_counter() - start
    search = NearestNeighbors(points, ann=cells)
    held = sum(a.nbytes for a in (cells.ids, cells.offsets, cells.centres, cells.low, cells.high))
    common = {
        "engine": f"IVF {params.nlist} cells, {params.nprobe} probed + boxes",
        "build_s": build_s, "load_s": load_s, "disk_mb": path.stat().st_size / 2**20,
        "ann_rss_mb": held / 2**20,
    }  # fmt: skip
    path.unlink()
    return [_query_row(search, points, queries, moved, w, common) for w in WEIGHTINGS]


def _query_row(search, points, queries, moved, weighting, common) -> dict:
    truth = exact_answers(points, queries, moved, weighting)
    search.search(queries[0], 8)  # warm-up
    times, found = timed_queries(search, points, queries, moved, weighting)
    return {
        **common, "items": len(points), "k": points.shape[1], "weighting": weighting,
        "recall": recall(found, truth), "median_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
    }  # fmt: skip


def exact_rows(points, queries, moved) -> list[dict]:
    search = NearestNeighbors(points, exact=True)
    common = {"engine": "exact", "build_s": 0.0, "load_s": 0.0, "disk_mb": 0.0, "ann_rss_mb": 0.0}
    return [_query_row(search, points, queries, moved, w, common) for w in WEIGHTINGS]


def hnsw_rows(points, queries, moved, candidates: int = 256) -> list[dict]:
    """The alternative: faiss HNSW (M = 32) on the unweighted codes, ``candidates`` proposals
    (efSearch the same) re-ranked exactly with the query's weights."""
    import faiss

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(points.shape[1], 32)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(points)
    build_s = time.perf_counter() - start
    hnsw.hnsw.efSearch = candidates

    class HnswRerank:
        def search(self, query, n=8, weights=None):
            found = hnsw.search(query[None].astype(np.float32), candidates)[1][0]
            found = found[found >= 0]
            local, _ = NearestNeighbors(points[found], exact=True).search(query, n, weights)
            return found[local], None

    size = faiss.serialize_index(hnsw).nbytes / 2**20
    common = {
        "engine": f"HNSW M=32, {candidates} candidates",
        "build_s": build_s, "load_s": float("nan"), "disk_mb": size, "ann_rss_mb": size,
    }  # fmt: skip
    search = HnswRerank()
    return [_query_row(search, points, queries, moved, w, common) for w in WEIGHTINGS]


def table(rows: list[dict]) -> str:
    lines = [
        "| items | k | engine | weighting | recall@8 | median ms | p95 ms | build s | load s "
        "| disk MB | resident MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['k']} | {r['engine']} | {r['weighting']} | {r['recall']:.4f} "
            f"| {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['build_s']:.0f} | {r['load_s']:.1f} "
            f"| {r['disk_mb']:.0f} | {r['ann_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--compare-at", type=int, default=1_000_000, help="exact and HNSW rows")
    parser.add_argument("--threads", type=int, default=2, help="faiss threads (build)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    load_start, rows, clock = load_average(), [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for k in args.dims:
            points = mixture_codes(args.items, k)
            queries, moved = studio_queries(points, args.queries)
            rows += ivf_rows(points, queries, moved, Path(folder))
            print(table(rows), flush=True)
            del points
        if args.compare_at:
            points = mixture_codes(args.compare_at, max(args.dims))
            queries, moved = studio_queries(points, args.queries)
            rows += exact_rows(points, queries, moved)
            rows += ivf_rows(points, queries, moved, Path(folder))
            rows += hnsw_rows(points, queries, moved)
    body = _section(rows, args, argv, load_start, time.perf_counter() - clock)
    print(body)
    if not args.no_write:
        write_section("search_scale", body)


def _section(rows, args, argv, load_start, total_s) -> str:
    import faiss

    return "\n".join(
        [
            "## Search beyond a million items",
            "",
            f"`{command('bench.search_scale', argv)}` (faiss {faiss.__version__}, "
            f"{args.threads} faiss threads for the build, numpy's BLAS on one thread for the "
            f"queries as in the dashboard, {args.queries} single queries per row, 8 neighbours;"
            f" load average {load_start:.1f} at start, {load_average():.1f} at end on 2 shared "
            f"cores; {total_s / 60:.0f} min in all, peak resident memory {peak_mb():,.0f} MB).",
            "",
            table(rows),
            "",
            "Recall@8 is against exact search of the same queries; resident MB is what the "
            "loaded search structure holds besides the codes themselves (IVF: member ids, cell "
            "centres and cell boxes, the faiss object is dropped after loading; HNSW: its graph "
            "and its copy of the codes). Peak resident memory covers the whole run, exact "
            "ground truth included.",
            "",
            "IVF + boxes: a query re-ranks the codes of the 48 cells whose centres are nearest "
            "under its weights, then those of every cell whose bounding box is nearer than the "
            "8th best code found, up to 8 x 48 cells in all (ivae/ann.py). The second round is "
            "what holds recall under a weighting far from uniform: the studio's emphasise "
            "squeezes the weighted ball along one factor, and the cells it reaches are ranked "
            "too low by their centres (0.980 at 10M, k = 16, with centres alone and a probe "
            "boost).",
            "",
            "Why IVF: HNSW proposes its candidates from a graph built for the unweighted metric, "
            "so its recall under the studio's weightings falls well short (the HNSW rows); an "
            "IVF probe ranks cells under the query's own weights, builds in a fraction of the "
            "time and keeps only the cells' member ids in memory. Query times here ran beside "
            "other jobs on the 2 cores: read them with the load average above.",
        ]
    )


if __name__ == "__main__":
    main()
