"""Shapes with partial captions (``ivae data shapes``): a small, fast paired image/text set.

Each 64x64 image shows one filled shape (circle, square, triangle, pentagon or star) on a dark
background. Ground truth: ``factor.hue``, ``factor.size``, ``factor.x``, ``factor.y`` (all in
[0, 1]; hue is circular), the class in the ``shape`` column, and ``nuisance.rotation`` (degrees).

Partially available factors: the caption ("a large red square near the top left") names the
shape, the hue (12 colour words), the size (5 words) and the position (a 3x3 grid), i.e. each
captioned factor only up to its word's bin, and it never mentions the rotation. So the query
fixes the shared factors coarsely (p(z | caption) is uniform within the named bins, a different
distribution for each caption, which is what makes them identifiable), while the rotation is
visible in the image only and must stay out of the shared factors.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ivae.data.kitchen import assign_splits
from ivae.data.paired import replace_dataset, write_paired

FACTORS = ("hue", "size", "x", "y")
SHAPES = ("circle", "square", "triangle", "pentagon", "star")
HUES = (
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "pink",
)
SIZES = ("tiny", "small", "medium", "large", "huge")
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")
SUPERSAMPLE = 4  # draw at 4x and downsample: smooth edges without per-pixel maths
VERSION = "1.0"


def word(value: float, words: tuple[str, ...]) -> str:
    """The bin word of a value in [0, 1]."""
    return words[min(len(words) - 1, int(value * len(words)))]


def hue_word(hue: float) -> str:
    """Colour bins are centred on their hue: red covers hue 0 +- 1/24."""
    return HUES[int(round(hue * len(HUES))) % len(HUES)]


def place(x: float, y: float) -> str:
    row, column = word(y, ROWS), word(x, COLUMNS)
    if (row, column) == ("middle", "centre"):
        return "in the centre"
    if row == "middle":
        return f"on the {column}"
    if column == "centre":
        return f"near the {row}"
    return f"near the {row} {column}"


def caption(shape: str, hue: float, size: float, x: float, y: float) -> str:
    """'a large red square near the top left' — never the rotation."""
    return f"a {word(size, SIZES)} {hue_word(hue)} {shape} {place(x, y)}"


def outline(shape: str, cx: float, cy: float, radius: float, rotation: float) -> list:
    """Polygon vertices of a shape (a circle is drawn as a 48-gon)."""
    corners = {"circle": 48, "square": 4, "triangle": 3, "pentagon": 5, "star": 10}[shape]
    angles = np.deg2rad(rotation) + np.arange(corners) * 2 * np.pi / corners - np.pi / 2
    radii = np.full(corners, radius * (1.2 if shape == "triangle" else 1.0))
    if shape == "star":
        radii[1::2] *= 0.45
    return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles), strict=True))


def render_shape(
    shape: str, hue: float, size: float, x: float, y: float, rotation: float, image_size: int = 64
) -> Image.Image:
    """One image; size, x, y in [0, 1] map to a radius of 8-20% and a centre in 22-78%."""
    side = image_size * SUPERSAMPLE
    img = Image.new("RGB", (side, side), (28, 30, 34))
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    radius = side * (0.08 + 0.12 * size)
    cx, cy = side * (0.22 + 0.56 * x), side * (0.22 + 0.56 * y)
    ImageDraw.Draw(img).polygon(outline(shape, cx, cy, radius, rotation), fill=colour)
    return img.resize((image_size, image_size), Image.Resampling.BOX)


def sample_shapes(n: int, seed: int = 0) -> pd.DataFrame:
    """The item table (ids, captions, factors, rotation, split) without the images."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(len(SHAPES), size=n)
    factors = rng.random((n, len(FACTORS)))
    rotation = rng.random(n) * 360
    ids = [f"{i:06d}" for i in range(n)]
    items = pd.DataFrame(
        {
            "id": ids,
            "image": [f"images/{i[:3]}/{i}.png" for i in ids],
            "text": [caption(SHAPES[s], *f) for s, f in zip(shapes, factors, strict=True)],
            "split": assign_splits(n, rng),
            "shape": [SHAPES[s] for s in shapes],
        }
    )
    for j, name in enumerate(FACTORS):
        items[f"factor.{name}"] = factors[:, j]
    items["nuisance.rotation"] = rotation
    return items


def generate_shapes(
    out_dir: str | Path, n: int = 10000, image_size: int = 64, seed: int = 0, progress: bool = True
) -> Path:
    """Write the shapes dataset (images, items.parquet, dataset.json) to ``out_dir``, whole
    into a folder beside it and then swapped in (``replace_dataset``)."""
    return replace_dataset(out_dir, lambda tmp: _write_shapes(tmp, n, image_size, seed, progress))


def _write_shapes(out: Path, n: int, image_size: int, seed: int, progress: bool) -> None:
    items = sample_shapes(n, seed)
    values = items[[f"factor.{f}" for f in FACTORS] + ["nuisance.rotation"]].to_numpy()
    rows = zip(items["image"], items["shape"], values, strict=True)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, total=n, desc="shapes", unit="img")
    for relative, shape, (hue, size, x, y, rotation) in rows:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        render_shape(shape, hue, size, x, y, rotation, image_size).save(path, "PNG")
    write_paired(
        out,
        items,
        {
            "name": "shapes",
            "version": VERSION,
            "description": "One shape per image; captions name shape, colour, size and position "
            "(binned) but never the rotation.",
            "factor_names": list(FACTORS),
            "nuisance_names": ["rotation"],
            "generator": "ivae data shapes",
            "seed": seed,
            "n": n,
            "image_size": image_size,
        },
    )
