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

from ivae.data.kitchen.dishes import (
    DISHES,
    FACTORS,
    NUISANCES,
    READING_SD,
    VERSION,
    Dish,
    assign_splits,
    item_rng,
    read_factors,
    sample_factors,
    sample_nuisances,
)
from ivae.data.kitchen.generate import contact_sheet, generate_kitchen, sample_items
from ivae.data.kitchen.recipes import amount, write_recipe
from ivae.data.kitchen.render import render_dish

__all__ = [
    "DISHES",
    "FACTORS",
    "NUISANCES",
    "READING_SD",
    "VERSION",
    "Dish",
    "amount",
    "assign_splits",
    "contact_sheet",
    "generate_kitchen",
    "item_rng",
    "read_factors",
    "render_dish",
    "sample_factors",
    "sample_items",
    "sample_nuisances",
    "write_recipe",
]
