"""A tiny paired dataset and a run trained on it, shared by the dashboard tests.

Built once per test session in a temporary folder: 240 dishes of 32px images whose colours
follow three factors that the recipe text also describes, two epochs of implicit-ivae.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

FACTORS = ("savoriness", "greenness", "spiciness")
DISHES = ("soup", "stew", "salad", "curry")
WORDS = {  # words whose count rises with each factor
    "savoriness": ("beef", "mushrooms", "soy"),
    "greenness": ("spinach", "peas", "herbs"),
    "spiciness": ("chilli", "paprika", "tomato"),
}
_CACHE: dict[str, Path] = {}


def _image(f: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    base = np.array([240, 235, 225], dtype=float)  # a pale plate
    img = np.tile(base, (size, size, 1))
    yy, xx = np.mgrid[:size, :size]
    bowl = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    colour = np.array([120 + 130 * f[2], 80 + 150 * f[1] - 40 * f[0], 60 - 40 * f[0]])
    img[bowl] = colour
    img += rng.normal(0, 4, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _recipe(f: np.ndarray, dish: str) -> tuple[str, list[str], str]:
    ingredients = ["water", "salt"]
    for value, name in zip(f, FACTORS, strict=True):
        ingredients += list(WORDS[name][: int(round(value * 3))])
    title = f"{dish} with {ingredients[-1]}"
    return title, ingredients, f"{title}. ingredients: {', '.join(ingredients)}. serve warm."


def make_tiny_dataset(out: Path, n: int = 240, size: int = 32, seed: int = 0) -> Path:
    from ivae.data.paired import write_paired

    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        f = rng.uniform(0, 1, len(FACTORS))
        dish = DISHES[i % len(DISHES)]
        title, ingredients, text = _recipe(f, dish)
        _image(f, rng, size).save(out / "images" / f"{i:04d}.png")
        split = "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test")
        row = {
            "id": f"d{i:04d}",
            "image": f"images/{i:04d}.png",
            "text": text,
            "split": split,
            "title": title,
            "ingredients": ingredients,
            "dish": dish,
        }
        row.update({f"factor.{name}": float(v) for name, v in zip(FACTORS, f, strict=True)})
        row["nuisance.noise"] = float(rng.uniform())
        rows.append(row)
    info = {
        "name": "tiny-kitchen",
        "version": 1,
        "description": "test dishes",
        "factor_names": list(FACTORS),
        "generator": "tests.tiny_run",
        "seed": seed,
        "image_size": size,
    }
    write_paired(out, pd.DataFrame(rows), info)
    return out


def make_tiny_run(root: Path | None = None) -> Path:
    """The run directory (trained, indexed with a PCA map), built once per process."""
    if "run" in _CACHE:
        return _CACHE["run"]
    import ivae
    import ivae.index as index_module
    from ivae.data import load_dataset
    from ivae.train import TrainConfig, train

    root = Path(root or tempfile.mkdtemp(prefix="ivae-tiny-"))
    data = load_dataset(make_tiny_dataset(root / "data"), image_size=32)
    config = TrainConfig(epochs=2, batch_size=64, seed=0, device="cpu")
    train(data, root / "runs" / "tiny", "implicit-ivae", {"latent_dim": 3}, config, progress=False)
    run = ivae.load_run(root / "runs" / "tiny")
    mapper = index_module.map_2d
    index_module.map_2d = index_module._pca_2d  # UMAP compiles for a minute; not needed here
    try:
        index_module.build_index(run, data=data, progress=False)
    finally:
        index_module.map_2d = mapper
    _CACHE["run"] = run.path
    return run.path
