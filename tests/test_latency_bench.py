"""The nearest-neighbour part of bench/latency.py at a tiny size: finite timings, exact hits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import latency


@pytest.mark.parametrize("weighted", [True, False])
def test_nn_latency_is_finite_and_exact(weighted):
    row = latency.nn_latency(2_000, 8, queries=5, neighbours=8, weighted=weighted, check=5)
    assert row["n_items"] == 2_000 and row["dim"] == 8
    assert math.isfinite(row["median_ms"]) and math.isfinite(row["p95_ms"])
    assert 0 < row["median_ms"] <= row["p95_ms"]
    assert row["exact"] is True


def test_brute_force_check_catches_a_wrong_search():
    from ivae.index import NearestNeighbors

    points = np.random.default_rng(0).standard_normal((500, 4), dtype=np.float32)
    query = points[7] + 0.01

    class OffByOne(NearestNeighbors):  # returns the 2nd..(n+1)th nearest
        def search(self, queries, n=8, weights=None, exclude=None):
            found, distances = super().search(queries, n + 1, weights, exclude)
            return found[1:], distances[1:]

    assert latency._matches_brute_force(NearestNeighbors(points), points, query, 8, None)
    assert not latency._matches_brute_force(OffByOne(points), points, query, 8, None)


def test_bench_nn_covers_every_size_and_dimension():
    rows = latency.bench_nn([300, 600], [4, 8], queries=3)
    assert {(r["n_items"], r["dim"], r["weighted"]) for r in rows} == {
        (n, k, w) for n in (300, 600) for k in (4, 8) for w in (True, False)
    }
    assert all(r["exact"] and math.isfinite(r["median_ms"]) for r in rows)


def test_a_partial_run_keeps_the_other_rows_and_their_dates(tmp_path, monkeypatch):
    from bench import latency_report

    store = tmp_path / "latency.json"
    monkeypatch.setattr(latency, "STORE", store)
    common = {"machine": "cpu", "run": "run", "run_info": "20 dishes", "load_start": 0.5}
    nn = [{"n_items": 100_000, "dim": 8, "weighted": w, "median_ms": 1.0, "p95_ms": 1.5,
           "exact": True, "load": 0.5} for w in (True, False)]  # fmt: skip
    slider = {"median_s": 0.4, "p95_s": 0.5, "seconds": [0.4], "load": 1.0}
    first = {**common, "date": "day 1", "command": "all", "nn": nn, "slider": slider}
    store.write_text(__import__("json").dumps(latency.merged(first, {"nn", "slider"})))
    faster = {"median_s": 0.1, "p95_s": 0.2, "seconds": [0.1], "load": 2.0}
    second = {**common, "date": "day 2", "command": "slider", "slider": faster}
    both = latency.merged(second, {"slider"})
    assert both["nn"] == nn and both["slider"] == faster
    assert both["dates"] == {"nn": "day 1", "slider": "day 2"}
    table = latency_report.render(both)
    assert "| 2.0 | day 2 |" in table and "| 0.5 | day 1 |" in table
    assert "100 ms median" in table and "400 ms" not in table
    failed = latency.merged(
        {**common, "date": "day 3", "command": "x", "failure": "boom"}, {"slider"}
    )
    assert "slider" not in failed and failed["failure"] == "boom"
