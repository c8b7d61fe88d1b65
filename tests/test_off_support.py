"""The off-support check counts the fresh codes thrown beyond the training range, and its
fresh points are the benchmark data's own generator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

import bench.off_support as off_support
from bench.identifiability import VARIANTS, dataset
from ivae.data import load_dataset
from ivae.data.toy import resample_toy
from ivae.metrics import mcc


def test_codes_thrown_far_off_the_training_range_are_counted(tmp_path, monkeypatch):
    """An encoder that is x itself on its training split and throws every other point 1000
    times further: exactly the fresh points that land beyond twice the training range count."""
    variant, seed, fresh_points = "square", 0, 200
    data = load_dataset(dataset(tmp_path, variant, seed, 1000))
    train_x = np.asarray(data.part("train").x)
    seen = {row.tobytes() for row in train_x}

    def encode_x(x: torch.Tensor) -> torch.Tensor:
        unseen = [row.tobytes() not in seen for row in x.numpy()]
        return x * (1 + 999 * torch.tensor(unseen)[:, None])

    model = SimpleNamespace(encode_x=encode_x, eval=lambda: model)
    monkeypatch.setattr(off_support, "load_run", lambda _: SimpleNamespace(model=model))
    result = off_support.check(tmp_path / "run", variant, seed, tmp_path, fresh_points)

    options = {**VARIANTS[variant][1], "seed": seed, "per_segment": 1000}
    fresh = resample_toy(options, fresh_points, fresh_seed=10_000 + seed)
    codes = fresh["x"] * 1000
    far = np.abs(codes).max(1) > 2 * np.abs(train_x).max()
    assert result["points"] == 40 * fresh_points
    assert result["beyond"] == far.sum() > 0
    assert np.isclose(result["mcc"], mcc(fresh["factors"], codes)["mcc"], atol=1e-6)
    assert np.isclose(result["largest"], np.abs(codes).max(), rtol=1e-5)
