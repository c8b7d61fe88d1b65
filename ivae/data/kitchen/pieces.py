"""Food pieces (meat, leaves, chilli rings, noodles...) as cached, pre-lit sprites."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ivae.data.kitchen.shading import ANGLE_BINS, SIZE_BINS, lambert, smooth, specular, textures

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


SHAPES = {
    "blob": shape_blob,
    "box": shape_box,
    "leaf": shape_leaf,
    "ring": shape_ring,
    "strand": shape_strand,
    "egg": shape_egg,
    "mushroom": shape_mushroom,
    "dollop": shape_dollop,
    "drop": shape_drop,
}


@lru_cache(maxsize=4096)
def sprite(kind: str, size_bin: int, angle_bin: int, image_size: int):
    """(rgb, alpha, shadow) of one piece variant: a dome lit from the window, with the soft
    shadow it casts away from the light. rgb is for the kind's base colour."""
    piece = PIECES[kind]
    r = image_size * (piece.size[0] + (piece.size[1] - piece.size[0]) * size_bin / (SIZE_BINS - 1))
    reach = int(1.3 * r) + 3
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1].astype(np.float32)
    angle = 2 * np.pi * angle_bin / ANGLE_BINS
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    tex = textures(image_size)["noise"][: 2 * reach + 1, angle_bin : angle_bin + 2 * reach + 1]
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
    patch = canvas[y0 : y0 + height, x0 : x0 + width]
    patch *= shadow * (1 - alpha)
    patch += rgb * alpha
