"""Turning PIL images into model input: one resize path for datasets, uploads and tests."""

from __future__ import annotations

import sys

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


# What decoding a damaged file raises: a truncated JPEG "image file is truncated" (OSError),
# an unrecognised one UnidentifiedImageError (an OSError), a broken header ValueError or
# SyntaxError, an absurd size DecompressionBombError (an Exception, not an OSError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def failure_reason(error: BaseException) -> str:
    """An exception as the one line a skipped image is listed with."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class SkippedImages:
    """Images that could not be decoded, skipped and counted: one line on stderr for each.

    ``files`` maps a key (the row of ``items.parquet``, or the source path for an import) to
    ``"<file>: <error>"``; ``known`` starts the count where an earlier, interrupted pass left it.
    """

    def __init__(self, known: dict | None = None):
        self.files: dict = dict(known or {})

    def __len__(self) -> int:
        return len(self.files)

    def skip(self, key, path, error: BaseException | str) -> None:
        """Count ``path`` as skipped; ``error``: the decoder's exception, or its reason."""
        reason = error if isinstance(error, str) else failure_reason(error)
        self.files[key] = f"{path}: {reason}"
        print(
            f"ivae: skipped an unreadable image, {path} ({reason}); "
            f"{len(self.files)} skipped so far",
            file=sys.stderr,
            flush=True,
        )
