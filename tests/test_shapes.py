"""Shapes with partial captions."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from ivae.data import shapes
from ivae.data.paired import load_paired


def mask(img) -> np.ndarray:
    """(S, S) bool: the pixels of the shape (brighter than the dark background)."""
    return np.asarray(img, np.float32).max(-1) > 80


@pytest.mark.parametrize(
    "factor, low, high, measure",
    [
        ("x", 0.1, 0.9, lambda m: np.nonzero(m)[1].mean()),
        ("y", 0.1, 0.9, lambda m: np.nonzero(m)[0].mean()),
        ("size", 0.0, 1.0, lambda m: m.sum()),
    ],
)
def test_each_factor_moves_the_shape(factor, low, high, measure):
    base = {"hue": 0.3, "size": 0.5, "x": 0.5, "y": 0.5}
    small = measure(mask(shapes.render_shape("square", **(base | {factor: low}), rotation=10)))
    large = measure(mask(shapes.render_shape("square", **(base | {factor: high}), rotation=10)))
    assert large > 1.5 * small


@pytest.mark.parametrize("hue", [0.0, 0.33, 0.66])
def test_the_colour_has_the_hue(hue):
    img = np.asarray(shapes.render_shape("circle", hue, 0.8, 0.5, 0.5, 0.0), np.float32) / 255
    rgb = img[mask(img * 255)].mean(0)
    found = colorsys.rgb_to_hsv(*rgb)[0]
    assert min(abs(found - hue), 1 - abs(found - hue)) < 0.03  # hue is circular


def test_rotation_changes_the_image_but_not_the_caption():
    a = mask(shapes.render_shape("triangle", 0.1, 0.8, 0.5, 0.5, 0))
    b = mask(shapes.render_shape("triangle", 0.1, 0.8, 0.5, 0.5, 60))
    assert (a != b).sum() > 0.3 * a.sum()
    items = shapes.sample_shapes(500, seed=0)
    words = {w for text in items["text"] for w in text.split()}
    assert not words & {"rotated", "rotation", "degrees", "tilted", "turned", "upright"}


@pytest.mark.parametrize(
    "args, text",
    [
        (("square", 0.0, 0.7, 0.1, 0.1), "a large red square near the top left"),
        (("star", 0.66, 0.1, 0.5, 0.5), "a tiny blue star in the centre"),
        (("circle", 0.98, 0.5, 0.9, 0.5), "a medium red circle on the right"),
        (("triangle", 0.17, 0.99, 0.5, 0.9), "a huge yellow triangle near the bottom"),
    ],
)
def test_captions(args, text):
    assert shapes.caption(*args) == text


def test_generation_is_deterministic_and_loads(tmp_path):
    a = shapes.generate_shapes(tmp_path / "a", n=30, image_size=32, seed=3, progress=False)
    b = shapes.generate_shapes(tmp_path / "b", n=30, image_size=32, seed=3, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 32
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    info = json.loads((a / "dataset.json").read_text())
    assert info["factor_names"] == ["hue", "size", "x", "y"] and info["seed"] == 3
    data = load_paired(a, image_size=32)
    assert data.x.shape == (30, 3, 32, 32) and data.nuisance_names == ["rotation"]
    assert set(data.items["shape"]) <= set(shapes.SHAPES)


def test_ranges_and_splits():
    items = shapes.sample_shapes(2000, seed=1)
    factors = items[[f"factor.{f}" for f in shapes.FACTORS]].to_numpy()
    assert factors.min() >= 0 and factors.max() < 1
    assert items["nuisance.rotation"].between(0, 360).all()
    shares = items["split"].value_counts(normalize=True).to_dict()
    assert shares == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1}, abs=0.001)
