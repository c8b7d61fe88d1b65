"""Dish images as small pre-encoded ``data:`` URIs, read lazily through a bounded cache.

``st.image(path)`` reads the file, opens it twice with PIL, hashes it into Streamlit's media
store on every rerun, and the browser then fetches each new image over HTTP. A ``data:``
URI is passed through as it is and arrives with the rerun's own message: no file read, no
decode, no second request (bench/latency.py, slider -> screen). An image is read from the
data set's files the first time it is shown and kept while it is among the last
``CACHE_IMAGES`` shown: never one array of all images, whatever the data set's size.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from functools import lru_cache
from pathlib import Path

MAX_SIDE = 256  # px: a grid cell is at most ~350 px wide; larger photos are shrunk once
SMALL_BYTES = 24_000  # a JPEG / PNG / WebP at most this big and MAX_SIDE is sent as it is
CACHE_IMAGES = 4096  # about 4096 * 12 kB = 48 MB at most
_MIME = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"RIFF": "image/webp"}


class MissingImageError(FileNotFoundError):
    """An image file of the data set is not where the items table says, or cannot be
    decoded (corrupt, or a decompression bomb: more than PIL's MAX_IMAGE_PIXELS)."""


def thumbnail(path: str | Path) -> str:
    """A ``data:`` URI of the image at ``path`` (shrunk to ``MAX_SIDE`` when larger).

    MissingImageError naming the file when it is not there. Keyed on the file's size and
    modification time, so a rewritten image is read again.
    """
    from PIL import Image

    from ivae.images import DECODE_ERRORS

    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise MissingImageError(f"{path} is missing") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _encoded(str(path), stat.st_size, stat.st_mtime_ns)
    except (*DECODE_ERRORS, Image.DecompressionBombWarning) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:120]
        raise MissingImageError(f"{path} is unreadable ({reason})") from None


@lru_cache(maxsize=CACHE_IMAGES)
def _encoded(path: str, size: int, mtime_ns: int) -> str:
    data = Path(path).read_bytes()
    mime = next((m for magic, m in _MIME.items() if data.startswith(magic)), None)
    if mime is None or size > SMALL_BYTES or max(_pixel_size(data)) > MAX_SIDE:
        data, mime = _shrunk(data), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _pixel_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        return image.size


def _shrunk(data: bytes) -> bytes:
    """JPEG bytes of the image, its longer side at most MAX_SIDE."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def cache_info() -> dict:
    """Images held and the cache's bound (for the memory benchmark and the tests)."""
    info = _encoded.cache_info()
    return {"images": info.currsize, "bound": info.maxsize, "hits": info.hits}
