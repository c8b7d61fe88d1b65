"""Images exported from the dashboard: a contact sheet of retrieved dishes."""

from __future__ import annotations

import io


def contact_sheet(paths: list[str], captions: list[str], cell: int = 160) -> bytes:
    """A row of images with a caption under each, as PNG bytes (a traversal strip)."""
    from PIL import Image, ImageDraw

    band = 34
    sheet = Image.new("RGB", (cell * len(paths), cell + band), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, caption) in enumerate(zip(paths, captions, strict=True)):
        with Image.open(path) as img:
            sheet.paste(img.convert("RGB").resize((cell, cell)), (i * cell, 0))
        for line, text in enumerate(str(caption).split("\n")[:2]):
            draw.text((i * cell + 4, cell + 3 + 15 * line), text[: cell // 7], fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
