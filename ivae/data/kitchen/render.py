"""One dish photo: sauce, staples, pieces and gloss in the bowl, then the camera."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from ivae.data.kitchen.dishes import DISH_BY_NAME, FACTORS, NUISANCES, Dish
from ivae.data.kitchen.pieces import PIECES, paste, sprite
from ivae.data.kitchen.shading import (
    ANGLE_BINS,
    SIZE_BINS,
    TO_LIGHT,
    Bowl,
    bowl_maps,
    grid,
    hsv,
    lambert,
    sauce_colour,
    smooth,
    textures,
)

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
    dish = Image.frombytes(
        "RGBa", (size, size), (np.clip(dish, 0, 1) * 255 + 0.5).astype(np.uint8).tobytes()
    )
    dish = through_camera(dish, size, matrix)
    wood = through_camera(textures(size)["wood"], size, matrix, tuple(size * (0.5 + rng.random(2))))
    table = hsv(nuisances["table_hue"], 0.45, nuisances["table_value"]) * wood[..., None]
    photo = table * (1 - dish[..., 3:]) + dish[..., :3]
    warmth = nuisances["warmth"]
    balance = np.array((1 + 0.10 * warmth, 1 + 0.02 * warmth, 1 - 0.12 * warmth), np.float32)
    photo = photo * (balance * (255 * nuisances["brightness"])) * vignette(size)
    oy, ox = rng.integers(0, size, size=2)
    photo += nuisances["noise"] * textures(size)["sensor"][oy : oy + size, ox : ox + size]
    return Image.fromarray(np.clip(photo + 0.5, 0, 255).astype(np.uint8))


def render_dish(
    factors: dict,
    nuisances: dict,
    image_size: int = 128,
    rng: np.random.Generator | None = None,
    dish: str = "stew",
) -> Image.Image:
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
    noise = tex["noise"][oy : oy + image_size, ox : ox + image_size]
    plate = hsv(nuisances["plate_hue"], nuisances["plate_saturation"], 0.93)
    canvas = plate * maps["shade"] + maps["glaze"]
    pool = draw_sauce(canvas, bowl, factors, noise)
    if dish in ("curry", "risotto"):
        rice = tex["rice"][ox : ox + image_size, oy : oy + image_size]
        draw_rice(canvas, bowl, dish, factors, rice, rng)
    draw_gloss(canvas, bowl, factors["wateriness"], pool, noise)
    draw_pieces(canvas, bowl, DISH_BY_NAME[dish], factors, rng)
    draw_flecks(canvas, bowl, factors, rng)
    canvas *= maps["rim_shadow"]
    return photograph(canvas, nuisances, rng)


# =========================================================================== the dataset
