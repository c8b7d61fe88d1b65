"""Lighting, the bowl and cached textures: everything in a photo that does not depend on
the item, made once per process."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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
    colours = np.array(
        [(0.93, 0.70, 0.27), (0.33, 0.17, 0.08), (0.74, 0.14, 0.06), (0.35, 0.55, 0.18)],
        dtype=np.float32,
    )
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
    cast = 1 - smooth(
        bowl.outer - 0.03 * size,
        bowl.outer + 0.06 * size,
        np.hypot(dx - 0.035 * size, dy - 0.045 * size),
    )
    return {
        "dx": dx,
        "dy": dy,
        "r": r,
        "shade": (lambert(nx, ny, nz) * occlusion)[..., None],
        "glaze": (0.55 * specular(nx, ny, nz, 70))[..., None],
        "alpha": alpha[..., None],
        "cover": (alpha + (1 - alpha) * 0.5 * cast)[..., None],
        "rim_shadow": (1 - 0.3 * rim_shadow)[..., None],
    }


@lru_cache(maxsize=8)
def textures(size: int) -> dict[str, np.ndarray]:
    """Value noise, rice grains and wood planks, made once per process from a fixed seed.

    Items take random windows of them: much cheaper than fresh noise per photo and still
    deterministic per item.
    """
    rng = np.random.default_rng(12345)
    side = 2 * size
    layers = [
        Image.fromarray((rng.random((side // k, side // k)) * 255).astype(np.uint8)).resize(
            (side, side), Image.Resampling.BICUBIC
        )
        for k in (3, 10)
    ]
    noise = (0.6 * np.asarray(layers[0], np.float32) + 0.4 * np.asarray(layers[1])) / 255
    return {
        "noise": noise,
        "rice": rice_texture(side, size, rng),
        "wood": wood_texture(size),
        "sensor": rng.standard_normal((side, side, 3), np.float32),
    }


def rice_texture(side: int, size: int, rng) -> np.ndarray:
    rice = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(rice)
    length, width = max(1.5, size / 50), max(1, size // 64)
    for _ in range(int(side * side / max(3.0, (size / 22) ** 2))):
        x, y, angle, tone = rng.random(4)
        dx, dy = length * np.cos(np.pi * angle), length * np.sin(np.pi * angle)
        draw.line(
            (x * side - dx, y * side - dy, x * side + dx, y * side + dy),
            fill=int(170 + 85 * tone),
            width=width,
        )
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
