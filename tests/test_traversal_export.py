"""Traversal figures for papers (ivae.figures): PNG and PDF with a provenance caption."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from PIL import Image

from ivae.figures import (
    CAPTION_CHARS,
    Cell,
    code_version,
    figure_bytes,
    provenance,
    traversal_figure,
)


@pytest.fixture
def photos(tmp_path):
    paths = {}
    for name, colour, size in (("red", (255, 0, 0), 20), ("green", (0, 128, 0), 30)):
        paths[name] = str(tmp_path / f"{name}.png")
        Image.new("RGB", (size, size), colour).save(paths[name])
    return paths


def grid(photos, caption="run r · model m · seed 3"):
    rows = [
        [Cell(photos["red"], "asked 0.10\nshown 0.12"), Cell(None, "no dish")],
        [Cell(photos["green"], "asked 1.00"), Cell(photos["red"], "same as step 1")],
    ]
    return traversal_figure(rows, ["savoriness", "greenness"], "Traversal grid", caption)


def test_pdf_embeds_each_photo_once_and_keeps_text_as_vectors(photos):
    pdf = figure_bytes(grid(photos), "pdf")
    assert pdf.startswith(b"%PDF")
    widths = sorted(int(w) for w in re.findall(rb"/Subtype /Image.*?/Width (\d+)", pdf, re.S))
    assert widths == [20, 20, 30]  # three photos at their own resolution, nothing rasterised
    assert b"/FontFile2" in pdf  # TrueType embedded: the captions are text, not pixels
    subject = re.search(rb"/Subject \((.*?)\) >>", pdf, re.S).group(1)
    assert "model m · seed 3" in subject[2:].decode("utf-16-be")  # the provenance, searchable


def test_png_shows_the_photos_and_carries_the_caption(photos):
    png = Image.open(io.BytesIO(figure_bytes(grid(photos), "png", dpi=100)))
    assert png.format == "PNG" and png.info["Description"] == "run r · model m · seed 3"
    pixels = png.convert("RGB")
    width, height = pixels.size
    reds = sum(
        pixels.getpixel((x, y)) == (255, 0, 0) for x in range(width) for y in range(0, height, 4)
    )
    assert reds > 2 * 100 * 100 / 4 * 0.8  # two red cells of about 1.2 in at 100 dpi


def test_a_long_provenance_wraps_instead_of_running_off(photos):
    long = " · ".join(["run assets/default-run"] * 12)
    fig = grid(photos, long)
    assert fig.texts[1].get_text().count("\n") >= 2
    assert long.replace(" ", "") == fig.texts[1].get_text().replace("\n", "").replace(" ", "")


def test_any_figure_exports_even_without_title_or_caption():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_axes([0, 0, 1, 1]).plot([0, 1], [0, 1])
    assert figure_bytes(fig, "pdf").startswith(b"%PDF")
    assert figure_bytes(fig, "png").startswith(b"\x89PNG")


def test_long_caption_lines_are_cut_to_the_cell(photos):
    title = "Deeply Savoury Chicken and Kale Stew with Extra Greens"
    fig = traversal_figure([[Cell(photos["red"], "asked 1.00\n" + title)]], [""], "Strip", "")
    label = fig.axes[0].get_xlabel().split("\n")
    assert label[0] == "asked 1.00" and len(label[1]) == CAPTION_CHARS
    assert label[1].endswith("…") and title.startswith(label[1][:-1])


def test_unknown_format_is_refused(photos):
    with pytest.raises(ValueError, match="png, pdf"):
        figure_bytes(grid(photos), "svgz")


def test_provenance_names_run_model_data_seed_and_code():
    run = SimpleNamespace(
        model_name="implicit-ivae",
        config={"data": {"name": "kitchen", "path": "data/kitchen"}, "train": {"seed": 7}},
    )
    text = provenance(run, "runs/k", model_digest="0123456789abcdef")
    assert text.startswith("run runs/k · model implicit-ivae (model.pt 01234567)")
    assert "data kitchen (data/kitchen) · seed 7 · code " in text
    assert text.endswith(code_version())
    assert re.match(r"(git [0-9a-f]{7,}|git \S+|factor-explorer \S+)", code_version())
