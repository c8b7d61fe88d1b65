"""Dish types, factors and nuisances of the kitchen, and how they are drawn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACTORS = ("savoriness", "wateriness", "greenness", "spiciness")
# name -> (low, high) of a uniform draw; units: hues in [0, 1), brightness a gain, warmth a
# white-balance shift in [-1, 1], zoom a scale, offsets a fraction of the image, rotation in
# degrees, noise the sensor noise standard deviation in 0..255 levels.
NUISANCES = {
    "plate_hue": (0.0, 1.0),
    "plate_saturation": (0.0, 0.3),
    "table_hue": (0.0, 1.0),
    "table_value": (0.3, 0.75),
    "brightness": (0.75, 1.2),
    "warmth": (-1.0, 1.0),
    "zoom": (0.9, 1.15),
    "offset_x": (-0.06, 0.06),
    "offset_y": (-0.06, 0.06),
    "rotation": (0.0, 360.0),
    "noise": (0.0, 8.0),
}
VERSION = "1.1"


@dataclass(frozen=True)
class Dish:
    """A dish type: Beta(mean * c, (1 - mean) * c) per factor, its staples and base recipe."""

    name: str
    mean: tuple[float, float, float, float]  # in FACTORS order
    concentration: tuple[float, float, float, float]  # larger = less variance
    staples: tuple[tuple[str, float], ...]  # (piece kind, how many) with no factor meaning
    base: tuple[str, ...]  # neutral ingredient lines


DISHES = (
    Dish(
        "soup",
        (0.40, 0.88, 0.40, 0.30),
        (5, 30, 4, 4),
        (("potato", 5),),
        ("1 onion, diced", "2 cloves garlic, crushed", "2 potatoes, diced"),
    ),
    Dish(
        "stew",
        (0.80, 0.55, 0.20, 0.35),
        (20, 10, 8, 5),
        (("potato", 8),),
        ("1 onion, chopped", "3 potatoes, cut into chunks", "1 tbsp flour"),
    ),
    Dish(
        "curry",
        (0.55, 0.50, 0.30, 0.80),
        (6, 8, 5, 25),
        (("rice", 1),),
        ("1 onion, sliced", "1 tbsp grated ginger", "1 cup basmati rice"),
    ),
    Dish(
        "salad",
        (0.20, 0.10, 0.85, 0.25),
        (5, 25, 20, 4),
        (("crouton", 9),),
        ("1 cup croutons", "2 tbsp olive oil", "1 tbsp lemon juice"),
    ),
    Dish(
        "stir-fry",
        (0.60, 0.20, 0.55, 0.55),
        (8, 15, 5, 3),
        (("noodle", 12),),
        ("200 g egg noodles", "1 tbsp sesame oil", "2 cloves garlic, sliced"),
    ),
    Dish(
        "roast",
        (0.85, 0.15, 0.25, 0.20),
        (30, 10, 5, 5),
        (("potato", 10),),
        ("500 g potatoes, halved", "3 tbsp olive oil", "4 cloves garlic"),
    ),
    Dish(
        "pasta",
        (0.50, 0.30, 0.35, 0.60),
        (4, 10, 4, 6),
        (("noodle", 16),),
        ("250 g spaghetti", "2 tbsp olive oil", "2 cloves garlic, crushed"),
    ),
    Dish(
        "dessert",
        (0.10, 0.20, 0.10, 0.10),
        (15, 5, 15, 15),
        (("cake", 6), ("cream", 3)),
        ("100 g sugar", "2 eggs", "200 ml double cream", "1 tsp vanilla extract"),
    ),
    Dish(
        "ramen",
        (0.65, 0.90, 0.35, 0.45),
        (8, 25, 5, 3),
        (("noodle", 10), ("egg", 2)),
        ("150 g ramen noodles", "2 soft-boiled eggs", "1 tbsp sesame oil"),
    ),
    Dish(
        "risotto",
        (0.50, 0.45, 0.50, 0.10),
        (4, 6, 3, 15),
        (("risotto", 1),),
        ("300 g arborio rice", "1 shallot, diced", "50 g butter"),
    ),
)
DISH_BY_NAME = {dish.name: dish for dish in DISHES}


# =========================================================================== sampling


def sample_factors(dish_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) factors in [0, 1]: Beta draws whose mean and concentration depend on the dish."""
    mean = np.array([d.mean for d in DISHES])[dish_index]
    concentration = np.array([d.concentration for d in DISHES], dtype=float)[dish_index]
    return rng.beta(mean * concentration, (1 - mean) * concentration)


# (dish, factor) -> standard deviation of the recipe's reading of the factor, log-uniform in
# [0.015, 0.2]: a fixed table (its own seed, not the data set's) shared by every generated
# kitchen. How much this precision differs between the factors of a dish is what tells the
# factors from their mixtures (docs/experiments.md, "Are the kitchen factors identifiable");
# 1.0 drew it uniform in [0.04, 0.16], four times less spread, and the factors were not
# recovered.
READING_SD = np.exp(
    np.random.default_rng(2012_00682).uniform(
        np.log(0.015), np.log(0.2), (len(DISHES), len(FACTORS))
    )
)


def read_factors(
    factors: np.ndarray, dish_index: np.ndarray, seed: int, reading_sd: np.ndarray = READING_SD
) -> np.ndarray:
    """(N, 4) what the recipe says: factors + dish- and factor-dependent noise, in [0, 1]."""
    rng = np.random.default_rng([seed, 2])
    noise = rng.standard_normal(factors.shape) * reading_sd[dish_index]
    return np.clip(factors + noise, 0.0, 1.0)


def sample_nuisances(n: int, rng: np.random.Generator) -> np.ndarray:
    """(N, len(NUISANCES)) uniform draws, independent of everything else."""
    low, high = np.array(list(NUISANCES.values())).T
    return low + (high - low) * rng.random((n, len(NUISANCES)))


def assign_splits(n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly 80/10/10 train/val/test (rounded), in a seeded random order."""
    split = np.full(n, "train", dtype=object)
    order = rng.permutation(n)
    n_val, n_test = round(0.1 * n), round(0.1 * n)
    split[order[:n_val]] = "val"
    split[order[n_val : n_val + n_test]] = "test"
    return split


def item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Each item owns its random streams, so any worker count gives the same bytes."""
    return np.random.default_rng([seed, index, stream])
