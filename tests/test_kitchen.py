"""The kitchen generator: determinism, factor semantics in image and text, the format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ivae.data import kitchen
from ivae.data.paired import load_paired
from ivae.data.text import Vocab

NEUTRAL = {
    "plate_hue": 0.6,
    "plate_saturation": 0.0,
    "table_hue": 0.08,
    "table_value": 0.5,
    "brightness": 1.0,
    "warmth": 0.0,
    "zoom": 1.0,
    "offset_x": 0.0,
    "offset_y": 0.0,
    "rotation": 0.0,
    "noise": 0.0,
}


@pytest.fixture(scope="module")
def recipes() -> pd.DataFrame:
    return kitchen.sample_items(1500, seed=1)


def photos(factor: str, value: float, dish: str, size: int = 48) -> np.ndarray:
    """(4, size, size, 3) float photos with one factor set, the others at 0.4."""
    factors = dict.fromkeys(kitchen.FACTORS, 0.4) | {factor: value}
    return np.stack(
        [
            np.asarray(
                kitchen.render_dish(factors, NEUTRAL, size, np.random.default_rng(seed), dish),
                np.float32,
            )
            / 255
            for seed in range(4)
        ]
    )


def in_bowl(x: np.ndarray) -> np.ndarray:
    """(4, P, 3) the pixels inside the bowl's well, camera at rest."""
    size = x.shape[1]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return x[:, np.hypot(yy - size / 2, xx - size / 2) < 0.32 * size]


def green_share(x):
    r, g, b = np.moveaxis(in_bowl(x), -1, 0)
    return ((g > r + 0.08) & (g > b + 0.08)).mean()


def red_share(x):
    r, g, b = np.moveaxis(in_bowl(x), -1, 0)
    return ((r > g + 0.3) & (r > b + 0.3)).mean()


def dark_share(x):
    return (in_bowl(x).mean(-1) < 0.35).mean()


def wet_share(x):
    """Sauce and food are coloured; the bare grey glaze of the well is not."""
    pixels = in_bowl(x)
    return (pixels.max(-1) - pixels.min(-1) > 0.2).mean()


@pytest.mark.parametrize("dish", ["stew", "soup", "dessert"])
@pytest.mark.parametrize(
    "factor, measure",
    [
        ("greenness", green_share),
        ("spiciness", red_share),
        ("savoriness", dark_share),
        ("wateriness", wet_share),
    ],
)
def test_a_factor_change_shows_in_the_photo(factor, measure, dish):
    low, high = measure(photos(factor, 0.1, dish)), measure(photos(factor, 0.9, dish))
    assert high > low + 0.1, (low, high)


def test_same_seed_same_bytes_with_any_worker_count(tmp_path):
    one = kitchen.generate_kitchen(
        tmp_path / "a", n=12, image_size=32, seed=5, progress=False, workers=1
    )
    two = kitchen.generate_kitchen(
        tmp_path / "b", n=12, image_size=32, seed=5, progress=False, workers=2
    )
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 12 + 2
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_another_seed_changes_the_data():
    a, b = kitchen.sample_items(20, seed=0), kitchen.sample_items(20, seed=1)
    assert not np.allclose(a["factor.savoriness"], b["factor.savoriness"])
    assert (a["text"] != b["text"]).any()


def test_the_directory_loads_with_every_column(tmp_path):
    out = kitchen.generate_kitchen(tmp_path, n=20, image_size=32, seed=0, progress=False, workers=1)
    info = json.loads((out / "dataset.json").read_text())
    assert info["name"] == "kitchen" and info["generator"] == "ivae data kitchen"
    assert info["factor_names"] == list(kitchen.FACTORS) and info["seed"] == 0
    assert sum(info["counts"].values()) == 20 and info["image_size"] == 32
    data = load_paired(out, image_size=32)
    assert data.x.shape == (20, 3, 32, 32) and data.factors.shape == (20, 4)
    assert set(data.nuisance_names) == set(kitchen.NUISANCES)
    columns = {"id", "image", "text", "split", "title", "ingredients", "dish"}
    assert columns <= set(data.items.columns)
    assert all(isinstance(x, str) for x in data.items["ingredients"][0])


def test_factors_and_nuisances_stay_in_range(recipes):
    factors = recipes[[f"factor.{f}" for f in kitchen.FACTORS]].to_numpy()
    assert factors.min() >= 0 and factors.max() <= 1
    for name, (low, high) in kitchen.NUISANCES.items():
        values = recipes[f"nuisance.{name}"]
        assert values.min() >= low and values.max() <= high, name


def test_splits_are_80_10_10(recipes):
    shares = recipes["split"].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1}, abs=0.001)


def test_dishes_move_both_the_mean_and_the_spread_of_each_factor(recipes):
    for factor in kitchen.FACTORS:
        stats = recipes.groupby("dish")[f"factor.{factor}"].agg(["mean", "std"])
        assert stats["mean"].max() - stats["mean"].min() > 0.4, factor
        assert stats["std"].max() / stats["std"].min() > 2, factor
    assert recipes["dish"].nunique() >= 8


def test_nuisances_do_not_depend_on_the_dish(recipes):
    for name in kitchen.NUISANCES:
        means = recipes.groupby("dish")[f"nuisance.{name}"].mean()
        low, high = kitchen.NUISANCES[name]
        assert means.max() - means.min() < 0.2 * (high - low), name


@pytest.mark.parametrize(
    "factor, words",
    [
        ("greenness", {"spinach", "peas", "kale", "basil", "parsley", "beans", "pak", "mint"}),
        ("spiciness", {"chillies", "jalapenos", "paprika", "cayenne", "fiery", "spicy"}),
        ("savoriness", {"beef", "chicken", "pork", "lamb", "bacon", "mushrooms", "chocolate"}),
        ("wateriness", {"stock", "brothy", "dashi", "milk"}),
    ],
)
def test_the_recipe_names_what_a_high_factor_puts_in_the_dish(recipes, factor, words):
    high = recipes[recipes[f"factor.{factor}"] > 0.8]
    low = recipes[recipes[f"factor.{factor}"] < 0.1]

    def mentions(texts):
        return np.mean([bool(words & set(t.lower().replace(",", " ").split())) for t in texts])

    assert len(high) > 20 and mentions(high["text"]) > 0.95
    assert mentions(low["text"]) < mentions(high["text"]) - 0.5


def test_recipes_never_describe_the_nuisances(recipes):
    banned = {
        "plate",
        "table",
        "camera",
        "zoom",
        "rotation",
        "rotated",
        "noise",
        "lighting",
        "blue",
        "purple",
        "pink",
        "wooden",
        "photo",
        "warmth",
        "brightness",
    }
    vocab = Vocab.build(recipes["text"], min_count=1)
    assert not banned & set(vocab.tokens)


def ridge_r2(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Held-out R^2 of a ridge regression (first 2/3 to fit, last 1/3 to score)."""
    cut = 2 * len(features) // 3
    x = np.hstack([features, np.ones((len(features), 1))])
    w = np.linalg.solve(x[:cut].T @ x[:cut] + 1.0 * np.eye(x.shape[1]), x[:cut].T @ targets[:cut])
    residual = targets[cut:] - x[cut:] @ w
    return 1 - residual.var(0) / targets[cut:].var(0)


def bag_of_words(texts) -> np.ndarray:
    vocab = Vocab.build(texts, min_count=3)
    ids = vocab.encode(texts, max_len=200)
    return np.stack([np.bincount(row, minlength=len(vocab))[1:] for row in ids]).astype(float)


def test_the_text_carries_the_factors_and_not_the_nuisances(recipes):
    words = bag_of_words(recipes["text"])
    factors = recipes[[f"factor.{f}" for f in kitchen.FACTORS]].to_numpy()
    nuisances = recipes[[f"nuisance.{n}" for n in kitchen.NUISANCES]].to_numpy()
    assert ridge_r2(words, factors).min() > 0.8
    assert ridge_r2(words, nuisances).max() < 0.1


@pytest.mark.parametrize(
    "x, text", [(0.25, "1/4"), (1.5, "1 1/2"), (0.74, "3/4"), (3.0, "3"), (0.01, "1/4")]
)
def test_amounts_read_like_a_cook_wrote_them(x, text):
    assert kitchen.amount(x) == text
