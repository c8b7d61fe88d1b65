"""The procedural kitchen: top-down photos of dishes paired with their recipes.

Four shared factors, each in [0, 1], drive both the photo and the recipe text:

- ``savoriness`` — browned meat and mushroom pieces and a darker, browner sauce; in the recipe
  the grams of meat, mushrooms and soy/miso, and words like "rich" and "deeply browned".
- ``wateriness`` — how far the broth fills the bowl, its gloss (the window reflection on it)
  and the oil droplets floating on it; in the recipe the cups of stock and phrases like
  "a thin, brothy soup" or "a dry ... roast".
- ``greenness`` — leaves, peas and herb flecks; in the recipe the greens and their amounts.
- ``spiciness`` — a red tomato/chilli sauce and chilli rings; in the recipe the chillies,
  paprika and tomatoes, and "mild" ... "fiery".

Each dish type draws the factors from its own Beta distributions, with a mean *and* a
concentration per factor (``DISHES``), so the conditional distribution of the factors given the
recipe changes in both location and spread across recipes: the variability condition under
which the identifiable VAE recovers the factors (Khemakhem et al. 2020, Theorem 1, with the two
sufficient statistics z and z^2 per factor).

Nuisances (plate and table colour, white balance, brightness, camera zoom/offset/rotation,
sensor noise) are drawn independently of the dish and are never written in the recipe.

The recipe is written from a *reading* of the factors that drive the photo: the true value
plus Gaussian noise whose spread depends on the dish and the factor (``READING_SD``), as a
cook's "a handful of spinach" describes a dish only roughly. This keeps p(z | recipe) a
proper factorial Gaussian with recipe-dependent means and variances. A recipe that fixed the
factors exactly would make p(z | y) a point mass, and then any invertible remixing of the
factors would explain the pairs equally well: the factors would not be identifiable.
"""

from __future__ import annotations

import colorsys
import multiprocessing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from ivae.data.paired import write_paired

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
VERSION = "1.0"


@dataclass(frozen=True)
class Dish:
    """A dish type: Beta(mean * c, (1 - mean) * c) per factor, its staples and base recipe."""

    name: str
    mean: tuple[float, float, float, float]  # in FACTORS order
    concentration: tuple[float, float, float, float]  # larger = less variance
    staples: tuple[tuple[str, float], ...]  # (piece kind, how many) with no factor meaning
    base: tuple[str, ...]  # neutral ingredient lines


DISHES = (
    Dish("soup", (0.40, 0.88, 0.40, 0.30), (5, 30, 4, 4), (("potato", 5),),
         ("1 onion, diced", "2 cloves garlic, crushed", "2 potatoes, diced")),
    Dish("stew", (0.80, 0.55, 0.20, 0.35), (20, 10, 8, 5), (("potato", 8),),
         ("1 onion, chopped", "3 potatoes, cut into chunks", "1 tbsp flour")),
    Dish("curry", (0.55, 0.50, 0.30, 0.80), (6, 8, 5, 25), (("rice", 1),),
         ("1 onion, sliced", "1 tbsp grated ginger", "1 cup basmati rice")),
    Dish("salad", (0.20, 0.10, 0.85, 0.25), (5, 25, 20, 4), (("crouton", 9),),
         ("1 cup croutons", "2 tbsp olive oil", "1 tbsp lemon juice")),
    Dish("stir-fry", (0.60, 0.20, 0.55, 0.55), (8, 15, 5, 3), (("noodle", 12),),
         ("200 g egg noodles", "1 tbsp sesame oil", "2 cloves garlic, sliced")),
    Dish("roast", (0.85, 0.15, 0.25, 0.20), (30, 10, 5, 5), (("potato", 10),),
         ("500 g potatoes, halved", "3 tbsp olive oil", "4 cloves garlic")),
    Dish("pasta", (0.50, 0.30, 0.35, 0.60), (4, 10, 4, 6), (("noodle", 16),),
         ("250 g spaghetti", "2 tbsp olive oil", "2 cloves garlic, crushed")),
    Dish("dessert", (0.10, 0.20, 0.10, 0.10), (15, 5, 15, 15), (("cake", 6), ("cream", 3)),
         ("100 g sugar", "2 eggs", "200 ml double cream", "1 tsp vanilla extract")),
    Dish("ramen", (0.65, 0.90, 0.35, 0.45), (8, 25, 5, 3), (("noodle", 10), ("egg", 2)),
         ("150 g ramen noodles", "2 soft-boiled eggs", "1 tbsp sesame oil")),
    Dish("risotto", (0.50, 0.45, 0.50, 0.10), (4, 6, 3, 15), (("risotto", 1),),
         ("300 g arborio rice", "1 shallot, diced", "50 g butter")),
)
DISH_BY_NAME = {dish.name: dish for dish in DISHES}


# =========================================================================== sampling


def sample_factors(dish_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) factors in [0, 1]: Beta draws whose mean and concentration depend on the dish."""
    mean = np.array([d.mean for d in DISHES])[dish_index]
    concentration = np.array([d.concentration for d in DISHES], dtype=float)[dish_index]
    return rng.beta(mean * concentration, (1 - mean) * concentration)


# (dish, factor) -> standard deviation of the recipe's reading of the factor. A fixed table
# (its own seed, not the data set's) so every generated kitchen shares the same model.
READING_SD = np.random.default_rng(2012_00682).uniform(0.04, 0.16, (len(DISHES), len(FACTORS)))


def read_factors(factors: np.ndarray, dish_index: np.ndarray, seed: int) -> np.ndarray:
    """(N, 4) what the recipe says: factors + dish- and factor-dependent noise, in [0, 1]."""
    rng = np.random.default_rng([seed, 2])
    noise = rng.standard_normal(factors.shape) * READING_SD[dish_index]
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
    split[order[n_val:n_val + n_test]] = "test"
    return split


def item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Each item owns its random streams, so any worker count gives the same bytes."""
    return np.random.default_rng([seed, index, stream])


def sample_items(n: int, seed: int = 0, image_ext: str = "jpg") -> pd.DataFrame:
    """The item table without the images: ids, dish, factors, nuisances, split and recipe."""
    rng = np.random.default_rng(seed)
    dish_index = rng.integers(len(DISHES), size=n)
    factors = sample_factors(dish_index, rng)
    nuisances = sample_nuisances(n, rng)
    split = assign_splits(n, rng)
    readings = read_factors(factors, dish_index, seed)
    ids = [f"{i:06d}" for i in range(n)]
    rows = []
    for i in range(n):
        dish = DISHES[dish_index[i]].name
        title, ingredients, text = write_recipe(dish, dict(zip(FACTORS, readings[i], strict=True)),
                                                item_rng(seed, i, 1))
        rows.append({"id": ids[i], "image": f"images/{ids[i][:3]}/{ids[i]}.{image_ext}",
                     "text": text, "split": split[i], "title": title,
                     "ingredients": ingredients, "dish": dish})
    items = pd.DataFrame(rows)
    for j, name in enumerate(FACTORS):
        items[f"factor.{name}"] = factors[:, j]
    for j, name in enumerate(NUISANCES):
        items[f"nuisance.{name}"] = nuisances[:, j]
    for j, name in enumerate(FACTORS):  # what the recipe was written from (not ground truth)
        items[f"reading.{name}"] = readings[:, j]
    return items


# =========================================================================== recipes

MEATS = ("beef chuck, cubed", "chicken thighs, diced", "pork shoulder, diced",
         "lamb shoulder, cubed", "smoked bacon, chopped")
MUSHROOMS = ("chestnut mushrooms, sliced", "shiitake mushrooms, sliced", "button mushrooms")
UMAMI = ("soy sauce", "miso paste", "worcestershire sauce", "fish sauce")
STOCKS = ("chicken stock", "vegetable stock", "beef stock", "dashi")
# (unit, name, amount at greenness 1); the first word of the name is what a title uses.
GREENS = (("handfuls", "spinach"), ("cups", "peas"), ("handfuls", "kale, shredded"),
          ("bunches", "basil leaves"), ("bunches", "parsley, chopped"),
          ("cups", "green beans, trimmed"), ("heads", "pak choi, quartered"))
CHILLIES = ("red chillies, sliced", "bird's eye chillies, sliced", "jalapenos, sliced")
SPICES = ("smoked paprika", "chilli flakes", "cayenne pepper")
DESSERT = {"savoriness": ("dark chocolate, chopped", "espresso"),
           "wateriness": ("milk",), "greenness": (("handfuls", "mint leaves"),
                                                  ("handfuls", "pistachios, chopped")),
           "spiciness": ("raspberries", "strawberries, halved")}
WORDS = {  # (upper bound, word): the descriptive words that also carry the factor value
    "savoriness": ((0.25, "light"), (0.5, "savoury"), (0.75, "rich"), (1.01, "deeply savoury")),
    "wateriness": ((0.2, "dry"), (0.4, "thick"), (0.6, "saucy"), (0.8, "brothy"),
                   (1.01, "thin, brothy")),
    "greenness": ((0.25, "plain"), (0.5, "fresh"), (0.75, "green"), (1.01, "herb-packed")),
    "spiciness": ((0.2, "mild"), (0.45, "gently warming"), (0.7, "spicy"), (1.01, "fiery")),
}
NOUNS = {"stir-fry": "stir-fry", "dessert": "pudding"}


def amount(x: float) -> str:
    """A quantity rounded to the nearest quarter, written as a cook would: '1 1/2', '3/4'."""
    quarters = max(1, round(x * 4))
    whole, rest = divmod(quarters, 4)
    fraction = {0: "", 1: "1/4", 2: "1/2", 3: "3/4"}[rest]
    return " ".join(p for p in (str(whole) if whole else "", fraction) if p)


def grams(x: float, step: int = 25) -> int:
    return max(step, int(round(x / step) * step))


def describe(factor: str, value: float) -> str:
    return next(word for bound, word in WORDS[factor] if value < bound)


def savoury_lines(value: float, dessert: bool, rng: np.random.Generator) -> list[str]:
    if dessert:
        chocolate = f"{grams(20 + 200 * value, 10)} g {DESSERT['savoriness'][0]}"
        lines = [chocolate] if value > 0.15 else []
        return lines + ([f"{amount(0.5 + 2 * value)} tbsp espresso"] if value > 0.45 else [])
    lines = [f"{grams(100 + 500 * value)} g {rng.choice(MEATS)}"] if value > 0.15 else []
    if value > 0.35:
        lines.append(f"{grams(50 + 250 * value)} g {rng.choice(MUSHROOMS)}")
    if value > 0.55:
        lines.append(f"{amount(1 + 4 * (value - 0.55))} tbsp {rng.choice(UMAMI)}")
    return lines


def watery_lines(value: float, dessert: bool, rng: np.random.Generator) -> list[str]:
    if value <= 0.12:
        return ["1 tbsp water"]
    liquid = "milk" if dessert else rng.choice(STOCKS)
    return [f"{amount(0.25 + 4.75 * value)} cups {liquid}"]


def green_lines(value: float, dessert: bool, rng: np.random.Generator) -> list[str]:
    if value <= 0.12:
        return []
    pool = DESSERT["greenness"] if dessert else GREENS
    count = min(len(pool), 1 + int(value * 3))
    picks = rng.choice(len(pool), size=count, replace=False)
    return [f"{amount(0.5 + 2.5 * value)} {pool[i][0]} {pool[i][1]}" for i in sorted(picks)]


def spicy_lines(value: float, dessert: bool, rng: np.random.Generator) -> list[str]:
    if dessert:
        fruit = f"{grams(50 + 300 * value)} g {rng.choice(DESSERT['spiciness'])}"
        return [fruit] if value > 0.1 else []
    lines = [f"{max(1, round(6 * value))} {rng.choice(CHILLIES)}"] if value > 0.1 else []
    if value > 0.35:
        lines.append(f"{amount(0.5 + 2 * value)} tsp {rng.choice(SPICES)}")
    if value > 0.5:
        lines.append(f"{grams(100 + 500 * value, 100)} g chopped tomatoes")
    return lines


def short_name(line: str) -> str:
    """'450 g beef chuck, cubed' -> 'Beef'; '2 handfuls spinach' -> 'Spinach'."""
    words = [w for w in line.split(",")[0].split() if not w[0].isdigit()]
    units = {"g", "tbsp", "tsp", "cups", "handfuls", "bunches", "heads", "red", "bird's",
             "eye", "smoked", "chopped", "dark", "chestnut", "button"}
    keep = [w for w in words if w not in units] or words
    return keep[0].capitalize()


def title_for(dish: Dish, factors: dict, lines: dict) -> str:
    """Adjective from the most extreme factor, then the two most prominent ingredients."""
    extreme = max(FACTORS, key=lambda f: abs(factors[f] - 0.5))
    adjective = describe(extreme, factors[extreme]).split(", ")[-1].title()
    ranked = sorted((f for f in FACTORS if lines[f] and f != "wateriness"),
                    key=lambda f: -factors[f])
    names = list(dict.fromkeys(short_name(lines[f][0]) for f in ranked[:2]))
    noun = NOUNS.get(dish.name, dish.name).title()
    return " ".join([adjective, " and ".join(names), noun] if names else [adjective, noun])


def instructions(dish: Dish, factors: dict, lines: dict) -> list[str]:
    s, w, g, p = (factors[f] for f in FACTORS)
    steps = ["Prepare all the ingredients and heat a heavy pan."]
    if lines["savoriness"]:
        depth = "until deeply browned and caramelised" if s > 0.6 else "lightly"
        steps.append(f"Brown the {short_name(lines['savoriness'][0]).lower()} {depth}.")
    if lines["spiciness"]:
        steps.append(f"Stir in the {short_name(lines['spiciness'][0]).lower()} and cook for "
                     f"{1 + round(4 * p)} minutes; the {describe('spiciness', p)} heat builds.")
    if w > 0.12:
        finish = "keeping it thin and brothy" if w > 0.7 else "until the sauce thickens"
        steps.append(f"Pour in the liquid and simmer for {10 + 5 * round(8 * w)} minutes, "
                     f"{finish}.")
    else:
        steps.append("Cook without liquid until the edges are dry and crisp.")
    if lines["greenness"]:
        names = " and ".join(short_name(x).lower() for x in lines["greenness"])
        steps.append(f"Fold in the {names} at the end so they stay bright green.")
    words = ", ".join(w for w in (describe(f, factors[f]) for f in FACTORS) if w != "plain")
    steps.append(f"Serve at once: a {words} {NOUNS.get(dish.name, dish.name)}.")
    return steps


def write_recipe(dish_name: str, factors: dict, rng: np.random.Generator):
    """(title, ingredient lines, full text) generated from the factor values alone."""
    dish = DISH_BY_NAME[dish_name]
    dessert = dish.name == "dessert"
    makers = {"savoriness": savoury_lines, "wateriness": watery_lines,
              "greenness": green_lines, "spiciness": spicy_lines}
    lines = {f: makers[f](float(factors[f]), dessert, rng) for f in FACTORS}
    ingredients = [*lines["savoriness"], *lines["spiciness"], *lines["wateriness"],
                   *lines["greenness"], *dish.base, "salt and pepper"]
    title = title_for(dish, factors, lines)
    steps = instructions(dish, factors, lines)
    text = "\n".join([title, "", "Ingredients:", *(f"- {x}" for x in ingredients), "",
                      "Instructions:", *(f"{i}. {s}" for i, s in enumerate(steps, 1))])
    return title, ingredients, text


# =========================================================================== rendering
# The dish is drawn on a square canvas the size of the photo (world coordinates, lit by a
# window to the top left), then photographed: one affine map gives zoom, offset and rotation,
# and the table, white balance, vignette and sensor noise are applied in photo space.
# Everything that does not depend on the item (bowl shading, piece sprites, textures) is made
# once per process and cached, which keeps a 128 px photo at a few milliseconds.


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


LIGHT = unit((-0.45, -0.55, 0.70))  # towards the window (image y points down)
HALF = unit(LIGHT + np.array((0, 0, 1), dtype=np.float32))  # Blinn half vector, camera above
TO_LIGHT = unit(LIGHT[:2])
SIZE_BINS, ANGLE_BINS = 5, 12  # sprite variants per piece kind


def smooth(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0, 1)
    return t * t * (3 - 2 * t)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def lambert(nx, ny, nz) -> np.ndarray:
    """Diffuse shading normalised so that a flat surface facing the camera gets 1."""
    return 0.45 + 0.55 * np.clip(nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2], 0, None) / LIGHT[2]


def specular(nx, ny, nz, power: float) -> np.ndarray:
    return np.clip(nx * HALF[0] + ny * HALF[1] + nz * HALF[2], 0, None) ** power


def sauce_colour(factors: dict) -> np.ndarray:
    """Golden broth, browned by savoriness, reddened by spiciness, tinted by greenness."""
    s, p, g = factors["savoriness"], factors["spiciness"], factors["greenness"]
    colours = np.array([(0.93, 0.70, 0.27), (0.33, 0.17, 0.08), (0.74, 0.14, 0.06),
                        (0.35, 0.55, 0.18)], dtype=np.float32)
    weights = np.array([1.0, 3 * s**1.5, 3 * p**1.5, 0.5 * g**2], dtype=np.float32)
    return weights @ colours / weights.sum()


# --------------------------------------------------------------------------- cached maps


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) y and x coordinates of pixel centres."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return yy, xx


@dataclass(frozen=True)
class Bowl:
    """The bowl on a size x size canvas: radii in pixels and its item-independent shading."""

    size: int

    @property
    def centre(self) -> float:
        return self.size / 2

    @property
    def outer(self) -> float:
        return 0.42 * self.size

    @property
    def well(self) -> float:
        return 0.80 * self.outer

    def pool(self, wateriness: float) -> float:
        """Broth fills the well further the more watery the dish (deeper liquid, from above)."""
        return self.well * (0.5 + 0.47 * wateriness)


@lru_cache(maxsize=8)
def bowl_maps(size: int) -> dict[str, np.ndarray]:
    """Polar coordinates, glaze shading and the rim's shadow on the food, for one canvas size."""
    bowl = Bowl(size)
    yy, xx = grid(size)
    dx, dy = xx - bowl.centre, yy - bowl.centre
    r = np.hypot(dx, dy) + 1e-6
    t = np.clip((r - bowl.well) / (bowl.outer - bowl.well), 0, 1)
    wall = np.clip((r - 0.7 * bowl.well) / (0.3 * bowl.well), 0, 1)
    # radial tilt of the surface normal: the well wall faces inwards, the rim rolls over
    tilt = np.where(r >= bowl.well, -0.8 * np.cos(np.pi * t), -0.65 * wall**1.5)
    nx, ny, nz = tilt * dx / r, tilt * dy / r, np.sqrt(1 - tilt**2)
    occlusion = 1 - 0.12 * wall * (r < bowl.well)
    lift = 0.09 * size  # how high the wall stands: food near the window side lies in its shade
    reach = np.hypot(dx + TO_LIGHT[0] * lift, dy + TO_LIGHT[1] * lift)
    rim_shadow = smooth(bowl.well - 2, bowl.well + 3, reach) * np.clip(bowl.well - r + 0.5, 0, 1)
    alpha = np.clip(bowl.outer - r + 0.5, 0, 1)
    # the drop shadow on the table is black paint with partial cover around the bowl
    cast = 1 - smooth(bowl.outer - 0.03 * size, bowl.outer + 0.06 * size,
                      np.hypot(dx - 0.035 * size, dy - 0.045 * size))
    return {"dx": dx, "dy": dy, "r": r, "shade": (lambert(nx, ny, nz) * occlusion)[..., None],
            "glaze": (0.55 * specular(nx, ny, nz, 70))[..., None], "alpha": alpha[..., None],
            "cover": (alpha + (1 - alpha) * 0.5 * cast)[..., None],
            "rim_shadow": (1 - 0.3 * rim_shadow)[..., None]}


@lru_cache(maxsize=8)
def textures(size: int) -> dict[str, np.ndarray]:
    """Value noise, rice grains and wood planks, made once per process from a fixed seed.

    Items take random windows of them: much cheaper than fresh noise per photo and still
    deterministic per item.
    """
    rng = np.random.default_rng(12345)
    side = 2 * size
    layers = [Image.fromarray((rng.random((side // k, side // k)) * 255).astype(np.uint8))
              .resize((side, side), Image.Resampling.BICUBIC) for k in (3, 10)]
    noise = (0.6 * np.asarray(layers[0], np.float32) + 0.4 * np.asarray(layers[1])) / 255
    return {"noise": noise, "rice": rice_texture(side, size, rng), "wood": wood_texture(size),
            "sensor": rng.standard_normal((side, side, 3), np.float32)}


def rice_texture(side: int, size: int, rng) -> np.ndarray:
    rice = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(rice)
    length, width = max(1.5, size / 50), max(1, size // 64)
    for _ in range(int(side * side / max(3.0, (size / 22) ** 2))):
        x, y, angle, tone = rng.random(4)
        dx, dy = length * np.cos(np.pi * angle), length * np.sin(np.pi * angle)
        draw.line((x * side - dx, y * side - dy, x * side + dx, y * side + dy),
                  fill=int(170 + 85 * tone), width=width)
    return np.asarray(rice.filter(ImageFilter.GaussianBlur(size / 250)), np.float32) / 255


def wood_texture(size: int) -> Image.Image:
    """(3 size)^2 grey planks along x with grain, knots of tone and dark joints ('L' image)."""
    side = 3 * size
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    pos = yy / (0.26 * size)
    plank = np.floor(pos)
    frac = pos - plank
    tone = 0.86 + 0.28 * ((np.sin(plank * 12.9898) * 43758.5453) % 1.0)
    wave = np.sin(2 * np.pi * xx / (1.3 * size) + 2.1 * plank) + 0.4 * np.sin(xx / (0.11 * size))
    grain = np.sin(2 * np.pi * (yy / (0.035 * size) + 0.7 * wave))
    joint = 0.5 + 0.5 * smooth(0, 0.05, np.minimum(frac, 1 - frac))
    wood = tone * (0.9 + 0.06 * grain) * joint / 1.2
    return Image.fromarray((np.clip(wood, 0, 1) * 255).astype(np.uint8))


# --------------------------------------------------------------------------- piece sprites


@dataclass(frozen=True)
class Piece:
    """A kind of food piece: a shape, a radius range (fraction of the photo) and a colour."""

    shape: str
    size: tuple[float, float]
    colour: tuple[float, float, float]
    dome: float = 0.5  # height of the shading dome relative to the radius
    gloss: float = 0.15
    aspect: float = 0.75


PIECES = {
    "meat": Piece("blob", (0.042, 0.062), (0.40, 0.21, 0.11), gloss=0.25),
    "chocolate": Piece("box", (0.025, 0.035), (0.27, 0.14, 0.08), gloss=0.3),
    "mushroom": Piece("mushroom", (0.040, 0.054), (0.74, 0.62, 0.46), dome=0.25),
    "leaf": Piece("leaf", (0.055, 0.085), (0.17, 0.45, 0.12), dome=0.15, gloss=0.2),
    "pea": Piece("blob", (0.013, 0.017), (0.38, 0.68, 0.18), dome=0.9, gloss=0.5, aspect=0.95),
    "chilli": Piece("ring", (0.018, 0.026), (0.80, 0.08, 0.05), dome=0.3, gloss=0.5),
    "tomato": Piece("blob", (0.030, 0.042), (0.86, 0.18, 0.10), dome=0.6, gloss=0.6),
    "raspberry": Piece("blob", (0.020, 0.026), (0.78, 0.10, 0.22), dome=0.9, aspect=0.9),
    "potato": Piece("box", (0.030, 0.044), (0.93, 0.80, 0.50), gloss=0.1),
    "crouton": Piece("box", (0.020, 0.030), (0.90, 0.72, 0.42), gloss=0.05),
    "cake": Piece("box", (0.045, 0.060), (0.93, 0.80, 0.56), dome=0.3, gloss=0.05),
    "noodle": Piece("strand", (0.080, 0.110), (0.95, 0.86, 0.58), dome=0.6, gloss=0.35),
    "egg": Piece("egg", (0.060, 0.070), (0.97, 0.95, 0.90), dome=0.4, gloss=0.3, aspect=0.8),
    "cream": Piece("dollop", (0.050, 0.065), (0.98, 0.96, 0.90), dome=0.7, gloss=0.2),
    "drop": Piece("drop", (0.006, 0.018), (0.95, 0.70, 0.25), dome=0.3, gloss=1.0, aspect=1),
}
# Each shape returns (signed distance in pixels, negative inside; albedo (h, w, 3)).


def shape_blob(u, v, r, colour, piece, tex):
    a, b = r, r * piece.aspect
    theta = np.arctan2(v, u)
    wobble = 1 + 0.10 * np.sin(3 * theta + r) + 0.05 * np.sin(5 * theta + 2 * r)
    sdf = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - wobble) * b
    seared = 0.72 + 0.28 * np.clip(-sdf / (0.4 * b), 0, 1)
    return sdf, colour * (seared * (0.8 + 0.4 * tex))[..., None]


def shape_box(u, v, r, colour, piece, tex):
    corner = 0.35 * r
    qu, qv = np.abs(u) - (r - corner), np.abs(v) - (r * piece.aspect - corner)
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    sdf = outside + np.minimum(np.maximum(qu, qv), 0) - corner
    return sdf, colour * (0.85 + 0.3 * tex)[..., None]


def shape_leaf(u, v, r, colour, piece, tex):
    half_width = 0.42 * r
    bulge = (r * r + half_width * half_width) / (2 * half_width)
    sdf = np.maximum(np.hypot(u, v - (bulge - half_width)), np.hypot(u, v + (bulge - half_width)))
    rib = 1 + 0.45 * np.exp(-((v / (0.06 * r + 0.35)) ** 2)) * (np.abs(u) < 0.85 * r)
    fold = 1 + 0.12 * np.sign(v)  # the two halves of a leaf catch the light differently
    return sdf - bulge, colour * (rib * fold * (0.85 + 0.3 * tex))[..., None]


def shape_ring(u, v, r, colour, piece, tex):
    rho = np.hypot(u, v)
    flesh = rho < 0.62 * r
    seeds = flesh & (np.sin(9 * np.arctan2(v, u)) > 0.6) & (rho > 0.25 * r)
    albedo = np.where(flesh[..., None], np.array((0.95, 0.82, 0.55), np.float32), colour)
    albedo = np.where(seeds[..., None], np.array((0.98, 0.93, 0.70), np.float32), albedo)
    return rho - r, albedo


def shape_strand(u, v, r, colour, piece, tex):
    bend, half = 2.0 * r, 0.5  # an arc of radius 2r spanning +-0.5 rad: a noodle ~2r long
    width = max(0.7, 0.09 * r)
    angle = np.arctan2(u, bend - v)
    arc = np.abs(np.hypot(u, v - bend) - bend) - width
    ex, ey = bend * np.sin(half), bend * (1 - np.cos(half))
    cap = np.minimum(np.hypot(u - ex, v - ey), np.hypot(u + ex, v - ey)) - width
    return np.where(np.abs(angle) <= half, arc, cap), np.broadcast_to(colour, u.shape + (3,))


def shape_egg(u, v, r, colour, piece, tex):
    sdf = (np.sqrt((u / r) ** 2 + (v / (r * piece.aspect)) ** 2) - 1) * r * piece.aspect
    yolk = np.hypot(u + 0.1 * r, v) < 0.45 * r
    return sdf, np.where(yolk[..., None], np.array((0.98, 0.62, 0.12), np.float32), colour)


def shape_mushroom(u, v, r, colour, piece, tex):
    cap = np.maximum(np.hypot(u, v + 0.15 * r) - r, v - 0.25 * r)
    stem = np.maximum(np.abs(u) - 0.22 * r, np.abs(v - 0.45 * r) - 0.35 * r)
    sdf = np.minimum(cap, stem)
    edge = np.array((0.42, 0.28, 0.16), np.float32)
    inner = np.clip(-sdf / (0.18 * r), 0, 1)[..., None]
    return sdf, edge + (colour - edge) * inner * (0.9 + 0.2 * tex[..., None])


def shape_dollop(u, v, r, colour, piece, tex):
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    sdf = rho - r * (1 + 0.08 * np.sin(6 * theta))
    swirl = 1 - 0.12 * (0.5 + 0.5 * np.sin(theta + 6 * rho / r))
    return sdf, colour * swirl[..., None]


def shape_drop(u, v, r, colour, piece, tex):
    rho = np.hypot(u, v)
    rim = 0.8 + 0.4 * smooth(0.4 * r, r, rho)
    return rho - r, colour * rim[..., None]


SHAPES = {"blob": shape_blob, "box": shape_box, "leaf": shape_leaf, "ring": shape_ring,
          "strand": shape_strand, "egg": shape_egg, "mushroom": shape_mushroom,
          "dollop": shape_dollop, "drop": shape_drop}


@lru_cache(maxsize=4096)
def sprite(kind: str, size_bin: int, angle_bin: int, image_size: int):
    """(rgb, alpha, shadow) of one piece variant: a dome lit from the window, with the soft
    shadow it casts away from the light. rgb is for the kind's base colour."""
    piece = PIECES[kind]
    r = image_size * (piece.size[0] + (piece.size[1] - piece.size[0]) * size_bin / (SIZE_BINS - 1))
    reach = int(1.3 * r) + 3
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1].astype(np.float32)
    angle = 2 * np.pi * angle_bin / ANGLE_BINS
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    tex = textures(image_size)["noise"][: 2 * reach + 1, angle_bin:angle_bin + 2 * reach + 1]
    sdf, albedo = SHAPES[piece.shape](u, v, r, np.array(piece.colour, np.float32), piece, tex)
    height = piece.dome * r * (1 - (1 - np.clip(-sdf / (0.6 * r), 0, 1)) ** 2)
    gy, gx = np.gradient(height)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    nx, ny, nz = -gx / norm, -gy / norm, 1 / norm
    highlight = piece.gloss * specular(nx, ny, nz, 24)
    rgb = albedo * lambert(nx, ny, nz)[..., None] + highlight[..., None]
    alpha = np.clip(0.5 - sdf, 0, 1) * (0.6 if piece.shape == "drop" else 1.0)
    cast = np.clip((0.25 * r - sdf) / (0.5 * r + 1), 0, 1)
    shift = max(1, round(0.12 * r))
    shadow = np.zeros_like(cast)
    shadow[shift:, shift:] = 0.38 * cast[:-shift, :-shift]
    return rgb.astype(np.float32), alpha[..., None], (1 - shadow)[..., None]


def paste(canvas, rgb, alpha, shadow, x: float, y: float) -> None:
    """Composite a sprite centred at (x, y), clipped to the canvas."""
    height, width = alpha.shape[:2]
    x0, y0 = int(x + 0.5) - width // 2, int(y + 0.5) - height // 2
    size = canvas.shape[0]
    if x0 < 0 or y0 < 0 or x0 + width > size or y0 + height > size:  # rare: crop
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(size, x0 + width), min(size, y0 + height)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        crop = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        rgb, alpha, shadow = rgb[crop], alpha[crop], shadow[crop]
        x0, y0, width, height = cx0, cy0, cx1 - cx0, cy1 - cy0
    patch = canvas[y0:y0 + height, x0:x0 + width]
    patch *= shadow * (1 - alpha)
    patch += rgb * alpha


# --------------------------------------------------------------------------- the dish


def draw_sauce(canvas, bowl: Bowl, factors: dict, noise) -> np.ndarray:
    """The sauce pool: thick and mottled when dry, translucent and darker at depth when watery."""
    w, s = factors["wateriness"], factors["savoriness"]
    r = bowl_maps(bowl.size)["r"]
    radius = bowl.pool(w)
    mottle = 1 + (1 - w) * 0.4 * (noise - 0.5)
    depth = 1 - 0.15 * w * np.clip(1 - (r / radius) ** 2, 0, 1)
    meniscus = 1 + 0.12 * w * np.exp(-(((r - radius + 1.5) / 1.2) ** 2))
    colour = sauce_colour(factors) * (mottle * depth * meniscus)[..., None]
    pool = np.clip(radius - r + 0.5, 0, 1)
    a = (pool * (1 - 0.2 * w * (1 - s)))[..., None]
    canvas *= 1 - a
    canvas += colour * a
    return pool


def draw_rice(canvas, bowl: Bowl, dish: str, factors: dict, rice, rng) -> None:
    """A grainy rice mound beside a curry, or creamy rice across a risotto."""
    maps = bowl_maps(bowl.size)
    if dish == "curry":
        phi = rng.random() * 2 * np.pi
        cx, cy = 0.42 * bowl.well * np.cos(phi), 0.42 * bowl.well * np.sin(phi)
        radius, white, cover = 0.5 * bowl.well, np.array((0.97, 0.95, 0.90), np.float32), 1.0
    else:
        cx, cy, radius = 0.0, 0.0, 0.93 * bowl.well
        white = 0.55 * np.array((0.96, 0.92, 0.80), np.float32) + 0.45 * sauce_colour(factors)
        cover = 1 - 0.5 * factors["wateriness"]
    ddx, ddy = maps["dx"] - cx, maps["dy"] - cy
    dist = np.hypot(ddx, ddy) + 1e-6
    slope = 0.6 * np.clip(dist / radius, 0, 1)
    shade = lambert(slope * ddx / dist, slope * ddy / dist, np.sqrt(1 - slope**2))
    rgb = white * ((0.6 + 0.4 * rice) * shade)[..., None]
    a = (np.clip((radius - dist) / 2 + 2 * (rice - 0.5), 0, 1) * cover)[..., None]
    canvas *= 1 - a
    canvas += rgb * a


def draw_gloss(canvas, bowl: Bowl, wateriness: float, pool, noise) -> None:
    """The window reflected in the broth: sharp and bright on thin broth, dull on thick sauce."""
    maps = bowl_maps(bowl.size)
    radius = bowl.pool(wateriness)
    gx = maps["dx"] - TO_LIGHT[0] * 0.45 * radius
    gy = maps["dy"] - TO_LIGHT[1] * 0.45 * radius
    u = gx * TO_LIGHT[0] + gy * TO_LIGHT[1]
    v = -gx * TO_LIGHT[1] + gy * TO_LIGHT[0]
    soft = bowl.size / 128 * (1.5 + 6 * (1 - wateriness))
    half_u, half_v = 0.18 * bowl.well, 0.30 * bowl.well
    window = smooth(-soft, soft, half_u - np.abs(u)) * smooth(-soft, soft, half_v - np.abs(v))
    bar = 0.4 + bowl.size / 256
    bars = (1 - 0.6 * np.exp(-((u / bar) ** 2))) * (1 - 0.6 * np.exp(-((v / bar) ** 2)))
    sheen = np.exp(-(u * u + v * v) / (2 * (0.4 * radius) ** 2))
    ripple = 0.75 + 0.5 * noise
    light = (0.04 + 0.85 * wateriness**1.5) * window * bars * ripple
    light = (light + 0.22 * wateriness**1.5 * sheen) * pool
    canvas[:] = 1 - (1 - canvas) * (1 - np.clip(light, 0, 1))[..., None]


def piece_counts(dish: Dish, factors: dict, rng) -> list[tuple[str, int]]:
    """How many of each piece: factor pieces grow with their factor, staples carry no factor."""
    s, w, g, p = (factors[f] for f in FACTORS)
    dessert = dish.name == "dessert"
    expected = [
        ("chocolate" if dessert else "meat", 13 * s**1.3),
        ("mushroom", 0 if dessert else 6 * s**1.5),
        ("leaf", 14 * g**1.2),
        ("pea", 0 if dessert else 8 * g**1.5),
        ("raspberry" if dessert else "chilli", 9 * p**1.3),
        ("tomato", 0 if dessert else 5 * p**1.5),
        ("drop", 16 * w**1.5 * (1 - 0.5 * dessert)),
    ]
    staples = [(k, n * (1.15 - 0.5 * w)) for k, n in dish.staples if k in PIECES]
    return [(k, int(lam + rng.random())) for k, lam in staples + expected]


def scatter(n: int, bowl: Bowl, wateriness: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Piece centres: spread over the broth when watery, heaped in the middle when dry."""
    spread = max(0.85 * bowl.pool(wateriness), 0.7 * bowl.well)
    rho = spread * rng.random(n) ** (0.5 + 0.5 * (1 - wateriness))
    phi = rng.random(n) * 2 * np.pi
    return bowl.centre + rho * np.cos(phi), bowl.centre + rho * np.sin(phi)


def draw_pieces(canvas, bowl: Bowl, dish: Dish, factors: dict, rng) -> None:
    """Staples first, then the factor pieces in random order; pieces soak up some sauce."""
    w = factors["wateriness"]
    sauce = sauce_colour(factors)
    counts = piece_counts(dish, factors, rng)
    n_staples = len(dish.staples)
    staples = [k for k, n in counts[:n_staples] for _ in range(n)]
    others = [k for k, n in counts[n_staples:] for _ in range(n)]
    kinds = staples + [others[i] for i in rng.permutation(len(others))]
    n = len(kinds)
    xs, ys = scatter(n, bowl, w, rng)
    size_bins, angle_bins = rng.integers(SIZE_BINS, size=n), rng.integers(ANGLE_BINS, size=n)
    soaks = 0.3 * w * rng.random(n) * np.array([k != "drop" for k in kinds])
    tints = (0.92 + 0.16 * rng.random((n, 3))).astype(np.float32) * (1 - soaks[:, None])
    for i, kind in enumerate(kinds):
        rgb, alpha, shadow = sprite(kind, int(size_bins[i]), int(angle_bins[i]), bowl.size)
        rgb = rgb * tints[i] + (soaks[i] * sauce).astype(np.float32)
        paste(canvas, rgb, alpha * (1 - 0.25 * soaks[i]), shadow, xs[i], ys[i])


def draw_flecks(canvas, bowl: Bowl, factors: dict, rng) -> None:
    """Chopped herbs: tiny dark-green flecks, more of them the greener the dish."""
    n = int(90 * factors["greenness"] + rng.random())
    xs, ys = scatter(n, bowl, factors["wateriness"], rng)
    xs, ys = xs.astype(int), ys.astype(int)
    herb = np.array((0.13, 0.34, 0.08), np.float32)
    for dx, dy, a in ((0, 0, 0.9), (1, 0, 0.5), (0, 1, 0.4)):
        px, py = xs + dx * (rng.random(n) < 0.7), ys + dy * (rng.random(n) < 0.5)
        canvas[py, px] = (1 - a) * canvas[py, px] + a * herb


# --------------------------------------------------------------------------- the photo


def camera_matrix(nuisances: dict, size: int) -> tuple[float, ...]:
    """The PIL affine map from photo pixels to dish-canvas pixels (zoom, offset, rotation)."""
    angle = np.deg2rad(nuisances["rotation"])
    zoom = nuisances["zoom"]
    a, b = np.cos(angle) / zoom, -np.sin(angle) / zoom
    d, e = np.sin(angle) / zoom, np.cos(angle) / zoom
    px = size / 2 + nuisances["offset_x"] * size
    py = size / 2 + nuisances["offset_y"] * size
    return (a, b, size / 2 - a * px - b * py, d, e, size / 2 - d * px - e * py)


def through_camera(img: Image.Image, size: int, matrix, shift=(0.0, 0.0)) -> np.ndarray:
    """Resample ``img`` into the photo; 'RGBa' (premultiplied) images keep their alpha exact."""
    a, b, c, d, e, f = matrix
    data = (a, b, c + shift[0], d, e, f + shift[1])
    img = img.transform((size, size), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) / 255


@lru_cache(maxsize=8)
def vignette(size: int) -> np.ndarray:
    """The lens darkens the corners a little."""
    yy, xx = grid(size)
    return (1 - 0.25 * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2)[..., None]


def photograph(canvas, nuisances: dict, rng) -> Image.Image:
    """Put the dish (with its shadow) on the table through the camera, then white balance,
    vignette and sensor noise."""
    size = canvas.shape[0]
    matrix = camera_matrix(nuisances, size)
    cover = bowl_maps(size)["cover"]
    dish = np.concatenate([canvas * bowl_maps(size)["alpha"], cover], axis=-1)
    dish = Image.frombytes("RGBa", (size, size), (np.clip(dish, 0, 1) * 255 + 0.5)
                           .astype(np.uint8).tobytes())
    dish = through_camera(dish, size, matrix)
    wood = through_camera(textures(size)["wood"], size, matrix, tuple(size * (0.5 + rng.random(2))))
    table = hsv(nuisances["table_hue"], 0.45, nuisances["table_value"]) * wood[..., None]
    photo = table * (1 - dish[..., 3:]) + dish[..., :3]
    warmth = nuisances["warmth"]
    balance = np.array((1 + 0.10 * warmth, 1 + 0.02 * warmth, 1 - 0.12 * warmth), np.float32)
    photo = photo * (balance * (255 * nuisances["brightness"])) * vignette(size)
    oy, ox = rng.integers(0, size, size=2)
    photo += nuisances["noise"] * textures(size)["sensor"][oy:oy + size, ox:ox + size]
    return Image.fromarray(np.clip(photo + 0.5, 0, 255).astype(np.uint8))


def render_dish(factors: dict, nuisances: dict, image_size: int = 128,
                rng: np.random.Generator | None = None, dish: str = "stew") -> Image.Image:
    """One top-down photo of ``dish`` with the given factor and nuisance values.

    ``factors`` maps FACTORS to [0, 1]; ``nuisances`` maps the NUISANCES names to values in
    their ranges. The same rng state gives the same picture.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    # plain floats keep the arithmetic in float32 (numpy scalars would promote to float64)
    factors = {name: float(factors[name]) for name in FACTORS}
    nuisances = {name: float(nuisances[name]) for name in NUISANCES}
    bowl = Bowl(image_size)
    maps, tex = bowl_maps(image_size), textures(image_size)
    oy, ox = rng.integers(0, image_size, size=2)
    noise = tex["noise"][oy:oy + image_size, ox:ox + image_size]
    plate = hsv(nuisances["plate_hue"], nuisances["plate_saturation"], 0.93)
    canvas = plate * maps["shade"] + maps["glaze"]
    pool = draw_sauce(canvas, bowl, factors, noise)
    if dish in ("curry", "risotto"):
        rice = tex["rice"][ox:ox + image_size, oy:oy + image_size]
        draw_rice(canvas, bowl, dish, factors, rice, rng)
    draw_gloss(canvas, bowl, factors["wateriness"], pool, noise)
    draw_pieces(canvas, bowl, DISH_BY_NAME[dish], factors, rng)
    draw_flecks(canvas, bowl, factors, rng)
    canvas *= maps["rim_shadow"]
    return photograph(canvas, nuisances, rng)


# =========================================================================== the dataset


def render_row(job: tuple) -> None:
    """Render and save one item (a worker task): seeded per item, so any pool gives the same
    bytes."""
    index, seed, size, path, dish, factors, nuisances, image_format = job
    img = render_dish(factors, nuisances, size, item_rng(seed, index, 2), dish)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if image_format == "png":
        img.save(path, "PNG", compress_level=6)
    else:
        img.save(path, "JPEG", quality=92, subsampling=0)


def generate_kitchen(out_dir: str | Path, n: int = 20000, image_size: int = 128, seed: int = 0,
                     progress: bool = True, workers: int = 2, image_format: str = "jpg") -> Path:
    """Write the kitchen dataset (images, items.parquet, dataset.json) to ``out_dir``."""
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    out = Path(out_dir)
    items = sample_items(n, seed, image_format)
    factor_cols = [f"factor.{name}" for name in FACTORS]
    nuisance_cols = [f"nuisance.{name}" for name in NUISANCES]
    jobs = [(i, seed, image_size, str(out / rel), dish, dict(zip(FACTORS, f, strict=True)),
             dict(zip(NUISANCES, z, strict=True)), image_format)
            for i, (rel, dish, f, z) in enumerate(zip(
                items["image"], items["dish"], items[factor_cols].to_numpy().tolist(),
                items[nuisance_cols].to_numpy().tolist(), strict=True))]
    run_jobs(jobs, workers, progress)
    write_paired(out, items, dataset_info(n, image_size, seed))
    return out


def run_jobs(jobs: list, workers: int, progress: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="kitchen", unit="img")
    if workers <= 1:
        for job in jobs:
            render_row(job)
            bar and bar.update()
    else:
        # "spawn", not fork: the dashboard generates from a threaded server process, and a
        # fork of a threaded process can deadlock its workers.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render_row, jobs, chunksize=64):
                bar and bar.update()
    if bar:
        bar.close()


def dataset_info(n: int, image_size: int, seed: int) -> dict:
    return {
        "name": "kitchen",
        "version": VERSION,
        "description": ("Procedural top-down photos of dishes paired with their recipes. Shared "
                        "factors in [0, 1] (Beta-distributed with a dish-dependent mean and "
                        "concentration) drive both the photo and the recipe; nuisances (plate, "
                        "table, lighting, camera, noise) only the photo."),
        "factor_names": list(FACTORS),
        "nuisance_names": list(NUISANCES),
        "dishes": [dish.name for dish in DISHES],
        "generator": "ivae data kitchen",
        "seed": seed,
        "n": n,
        "image_size": image_size,
    }


def contact_sheet(path: str | Path, seed: int = 0, image_size: int = 128, columns: int = 8,
                  rows: int = 8) -> Path:
    """A grid of the first items of a kitchen dataset with their dish and factor values."""
    from PIL import ImageFont

    items = sample_items(columns * rows, seed)
    font = ImageFont.load_default()
    label = 26
    sheet = Image.new("RGB", (columns * image_size, rows * (image_size + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in items.iterrows():
        factors = {f: row[f"factor.{f}"] for f in FACTORS}
        nuisances = {z: row[f"nuisance.{z}"] for z in NUISANCES}
        img = render_dish(factors, nuisances, image_size, item_rng(seed, i, 2), row["dish"])
        x, y = (i % columns) * image_size, (i // columns) * (image_size + label)
        sheet.paste(img, (x, y))
        draw.text((x + 3, y + image_size + 1), row["dish"], fill="black", font=font)
        values = " ".join(f"{f[:2]}{factors[f]:.1f}" for f in FACTORS)
        draw.text((x + 3, y + image_size + 13), values, fill=(90, 90, 90), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
