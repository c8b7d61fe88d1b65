"""Turning PIL images into model input: one resize path for datasets, uploads and tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def image_to_array(img: Image.Image, size: int) -> np.ndarray:
    """(3, size, size) uint8 RGB, resized with an antialiasing bicubic filter.

    Non-square images are centre-cropped to a square first, so a photo keeps its aspect.
    """
    img = img.convert("RGB")
    width, height = img.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
