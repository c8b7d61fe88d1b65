"""bench/photo_ood.py's measures, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.photo_ood import REAL_PHOTOS, auroc, sweep


def test_auroc_known_answers():
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0  # every outside photo scores higher
    assert auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.5], [0.5]) == 0.5  # a tie counts half
    assert auroc([0.1, 0.3], [0.2]) == pytest.approx(0.5)


def test_the_sweep_finds_a_far_cluster(monkeypatch):
    import bench.photo_ood as bench

    monkeypatch.setattr(bench, "SIZES", (20, 40))
    monkeypatch.setattr(bench, "KS", (1, 5))
    rng = np.random.default_rng(0)

    def near(n: int) -> np.ndarray:  # kitchen stand-ins: around one direction
        return np.eye(6)[0] + 0.1 * rng.normal(size=(n, 6))

    far = np.eye(6)[1] + 0.1 * rng.normal(size=(10, 6))
    rows = sweep(near(40), near(100), near(200), far)
    assert [(r["size"], r["k"]) for r in rows] == [(20, 1), (20, 5), (40, 1), (40, 5)]
    assert all(r["auroc"] == 1.0 and r["flagged"] == 1.0 and r["margin"] > 1 for r in rows)
    assert all(0.0 <= r["false_alarms"] <= 0.15 for r in rows)


def test_at_least_20_real_photos_each_with_its_source():
    assert len(REAL_PHOTOS) >= 20
    assert all(source for _, source in REAL_PHOTOS)
    assert len({path.name for path, _ in REAL_PHOTOS}) == len(REAL_PHOTOS)
