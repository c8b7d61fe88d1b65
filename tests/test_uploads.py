"""Every kind of bad upload gets a clear UploadError or a correct RGB reading."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ivae.images import image_to_array
from ivae.uploads import UploadError, read_upload


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def solid(color, size=(32, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with a tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_plain_jpeg_reads_as_rgb():
    img = read_upload(encode(solid((200, 30, 30)), "JPEG"), "dish.jpg")
    assert img.mode == "RGB" and img.size == (32, 24)
    assert np.abs(np.asarray(img)[12, 16].astype(int) - [200, 30, 30]).max() < 8
    assert image_to_array(img, 16).shape == (3, 16, 16)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not an image"),
        (b"<?php echo 1; ?>", "not an image"),
        (png_header_only(20000, 20000), "too large"),
    ],
)
def test_bad_bytes_get_a_clear_message(data, message):
    with pytest.raises(UploadError, match=message):
        read_upload(data, "upload.jpg")


def test_truncated_jpeg():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    data = encode(noise, "JPEG", quality=95)
    with pytest.raises(UploadError, match="truncated"):
        read_upload(data[: len(data) // 2], "half.jpg")


def test_size_limits():
    data = encode(solid((1, 2, 3), (64, 64)), "PNG")
    with pytest.raises(UploadError, match="over the"):
        read_upload(data, "big.png", max_bytes=len(data) - 1)
    with pytest.raises(UploadError, match="megapixels"):
        read_upload(data, "big.png", max_pixels=64 * 64 - 1)


def test_cmyk_jpeg_is_converted():
    img = read_upload(encode(solid((0, 255, 255, 0), mode="CMYK"), "JPEG"), "cmyk.jpg")
    assert img.mode == "RGB"
    red, green, blue = np.asarray(img)[10, 10].astype(int)
    assert red > 200 and green < 60 and blue < 60  # no cyan, full magenta+yellow = red


def test_16bit_png_is_rescaled():
    values = np.full((20, 30), 40000, dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = read_upload(data, "deep.png")
    assert img.mode == "RGB"
    assert abs(int(np.asarray(img)[5, 5, 0]) - round(40000 / 65535 * 255)) <= 1


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    img = read_upload(encode(rgba, "PNG"), "alpha.png")
    pixels = np.asarray(img)
    assert tuple(pixels[5, 5]) == (255, 255, 255) and tuple(pixels[0, 0]) == (0, 0, 255)


def test_palette_png_with_and_without_transparency():
    palette = solid((0, 128, 0), (12, 12)).convert("P")
    assert read_upload(encode(palette, "PNG"), "p.png").mode == "RGB"
    transparent = encode(palette, "PNG", transparency=palette.getpixel((0, 0)))
    assert tuple(np.asarray(read_upload(transparent, "pt.png"))[3, 3]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt):
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    red, _, blue = np.asarray(read_upload(data, "anim." + fmt.lower()))[5, 5].astype(int)
    assert red > 200 and blue < 60


def test_exif_orientation_is_honoured():
    img = solid((0, 0, 0), (40, 20))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    upright = read_upload(encode(img, "JPEG", exif=exif.tobytes()), "phone.jpg")
    assert upright.size == (20, 40)
    pixels = np.asarray(upright).mean(axis=2)
    assert pixels[5, 10] > 200 and pixels[35, 10] < 60  # white half now on top


def test_grayscale_and_bmp():
    assert read_upload(encode(solid(90, mode="L"), "BMP"), "g.bmp").mode == "RGB"
