"""Safe decoding of untrusted image uploads.

Everything a researcher might drop into the dashboard ends up either as a plain RGB
``PIL.Image`` the model can read, or as an :class:`UploadError` whose message says what was
wrong and what to do. Nothing is unpickled or executed; pixels are only decoded after the
header has been checked against byte and pixel limits (decompression bombs).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The formats a photo arrives in (the JPEG reader also returns multi-picture MPO files).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ACCEPTED_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
MAX_BYTES = 10_000_000
MAX_PIXELS = 40_000_000


class UploadError(ValueError):
    """An uploaded file cannot be read as a photo; the message says why and what to do."""


def read_upload(
    data: bytes, name: str = "", max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode untrusted bytes into an RGB image (EXIF orientation applied, first frame only).

    Transparent images are composited on white; CMYK, 16-bit, palette and greyscale images
    are converted to 8-bit RGB. Raises UploadError for empty, oversized, non-image,
    truncated or decompression-bomb files.
    """
    label = f"'{name}'" if name else "The file"
    _check_bytes(data, label, max_bytes)
    img = _open(data, label, max_pixels)
    _decode_first_frame(img, label)
    img = _apply_orientation(img)
    try:
        return to_rgb(img)
    except (OSError, ValueError) as error:
        raise UploadError(
            f"{label} uses an unsupported colour mode ({img.mode}): {error}"
        ) from None


def _check_bytes(data: bytes, label: str, max_bytes: int) -> None:
    if len(data) == 0:
        raise UploadError(f"{label} is empty (0 bytes). Upload a JPEG, PNG or WebP photo.")
    if len(data) > max_bytes:
        raise UploadError(
            f"{label} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit. "
            "Resize or re-save it smaller and upload again."
        )


def _open(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Read only the header; refuse unknown formats and images with too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(_too_many_pixels(label, None, max_pixels)) from None
    except UnidentifiedImageError:
        raise UploadError(
            f"{label} is not an image this app can read (expected JPEG, PNG, WebP or GIF "
            "content; the file extension alone does not make it one)."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UploadError(f"{label} could not be read as an image: {error}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise UploadError(f"{label} has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise UploadError(_too_many_pixels(label, img.size, max_pixels))
    return img


def _too_many_pixels(label: str, size: tuple[int, int] | None, max_pixels: int) -> str:
    dims = f" ({size[0]}x{size[1]})" if size else ""
    return (
        f"{label} is too large{dims}: over {max_pixels / 1e6:.0f} megapixels, which would "
        "take too much memory to decode. Resize it and upload again."
    )


def _decode_first_frame(img: Image.Image, label: str) -> None:
    """Decode the pixels of frame 0; a truncated or corrupt file fails here."""
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadError(
            f"{label} is damaged or truncated and cannot be decoded ({error}). "
            "Re-export the photo and upload it again."
        ) from None


def _apply_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says (phones store photos sideways)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return img  # a malformed EXIF block: keep the pixels as stored


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: alpha composited on white, high bit depths rescaled."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _rescale_to_8bit(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _rescale_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit greyscale to 8-bit: by the type's range, or min-max for floats."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        low, high = float(values.min()), float(values.max())
        values = (values - low) / max(high - low, 1e-12) * 255.0
    elif values.max() > 255:
        values = values / 65535.0 * 255.0
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
