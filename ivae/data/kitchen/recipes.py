"""Recipe text written from a reading of the factors (never from the nuisances)."""

from __future__ import annotations

import numpy as np

from ivae.data.kitchen.dishes import DISH_BY_NAME, FACTORS, Dish

MEATS = (
    "beef chuck, cubed",
    "chicken thighs, diced",
    "pork shoulder, diced",
    "lamb shoulder, cubed",
    "smoked bacon, chopped",
)
MUSHROOMS = ("chestnut mushrooms, sliced", "shiitake mushrooms, sliced", "button mushrooms")
UMAMI = ("soy sauce", "miso paste", "worcestershire sauce", "fish sauce")
STOCKS = ("chicken stock", "vegetable stock", "beef stock", "dashi")
# (unit, name, amount at greenness 1); the first word of the name is what a title uses.
GREENS = (
    ("handfuls", "spinach"),
    ("cups", "peas"),
    ("handfuls", "kale, shredded"),
    ("bunches", "basil leaves"),
    ("bunches", "parsley, chopped"),
    ("cups", "green beans, trimmed"),
    ("heads", "pak choi, quartered"),
)
CHILLIES = ("red chillies, sliced", "bird's eye chillies, sliced", "jalapenos, sliced")
SPICES = ("smoked paprika", "chilli flakes", "cayenne pepper")
DESSERT = {
    "savoriness": ("dark chocolate, chopped", "espresso"),
    "wateriness": ("milk",),
    "greenness": (("handfuls", "mint leaves"), ("handfuls", "pistachios, chopped")),
    "spiciness": ("raspberries", "strawberries, halved"),
}
WORDS = {  # (upper bound, word): the descriptive words that also carry the factor value
    "savoriness": ((0.25, "light"), (0.5, "savoury"), (0.75, "rich"), (1.01, "deeply savoury")),
    "wateriness": (
        (0.2, "dry"),
        (0.4, "thick"),
        (0.6, "saucy"),
        (0.8, "brothy"),
        (1.01, "thin, brothy"),
    ),
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
    units = {
        "g",
        "tbsp",
        "tsp",
        "cups",
        "handfuls",
        "bunches",
        "heads",
        "red",
        "bird's",
        "eye",
        "smoked",
        "chopped",
        "dark",
        "chestnut",
        "button",
    }
    keep = [w for w in words if w not in units] or words
    return keep[0].capitalize()


def title_for(dish: Dish, factors: dict, lines: dict) -> str:
    """Adjective from the most extreme factor, then the two most prominent ingredients."""
    extreme = max(FACTORS, key=lambda f: abs(factors[f] - 0.5))
    adjective = describe(extreme, factors[extreme]).split(", ")[-1].title()
    ranked = sorted(
        (f for f in FACTORS if lines[f] and f != "wateriness"), key=lambda f: -factors[f]
    )
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
        steps.append(
            f"Stir in the {short_name(lines['spiciness'][0]).lower()} and cook for "
            f"{1 + round(4 * p)} minutes; the {describe('spiciness', p)} heat builds."
        )
    if w > 0.12:
        finish = "keeping it thin and brothy" if w > 0.7 else "until the sauce thickens"
        steps.append(
            f"Pour in the liquid and simmer for {10 + 5 * round(8 * w)} minutes, {finish}."
        )
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
    makers = {
        "savoriness": savoury_lines,
        "wateriness": watery_lines,
        "greenness": green_lines,
        "spiciness": spicy_lines,
    }
    lines = {f: makers[f](float(factors[f]), dessert, rng) for f in FACTORS}
    ingredients = [
        *lines["savoriness"],
        *lines["spiciness"],
        *lines["wateriness"],
        *lines["greenness"],
        *dish.base,
        "salt and pepper",
    ]
    title = title_for(dish, factors, lines)
    steps = instructions(dish, factors, lines)
    text = "\n".join(
        [
            title,
            "",
            "Ingredients:",
            *(f"- {x}" for x in ingredients),
            "",
            "Instructions:",
            *(f"{i}. {s}" for i, s in enumerate(steps, 1)),
        ]
    )
    return title, ingredients, text
