"""Figures exported from the dashboard: traversal strips and grids as PNG and PDF, each with
a provenance caption (run, model, data, seed, code version), and a plain contact sheet.

The PDF is vector where the content allows: text and frames are vector (TrueType fonts
embedded), each dish photo is embedded once at its own resolution. matplotlib is imported
only when a figure is made.
"""

from __future__ import annotations

import functools
import io
import subprocess
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

FORMATS = {"png": "image/png", "pdf": "application/pdf"}
CELL_INCHES = 1.25  # one photo of a strip or grid
CAPTION_CHARS = 31  # characters of 5 pt text that fit under it


@dataclass
class Cell:
    """One image of a figure: its file (None: nothing to show) and up to three caption lines."""

    path: str | None
    caption: str


@functools.cache
def code_version(root: str | None = None) -> str:
    """``git describe --always --dirty`` of the checkout, else the installed package's version."""
    here = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        described = None
    if described is not None and described.returncode == 0 and described.stdout.strip():
        return "git " + described.stdout.strip()
    try:
        return "factor-explorer " + metadata.version("factor-explorer")
    except metadata.PackageNotFoundError:
        return "unknown version"


def provenance(run, run_label: str, model_digest: str = "") -> str:
    """``run runs/x · model implicit-ivae (model.pt 1a2b…) · data kitchen (data/kitchen) ·
    seed 0 · code git 3ad3ec1``: where a figure comes from, for its caption."""
    data = run.config.get("data", {})
    seed = run.config.get("train", {}).get("seed", "?")
    model = run.model_name + (f" (model.pt {model_digest[:8]})" if model_digest else "")
    source = f"{data.get('name', '?')} ({data.get('path', '?')})"
    return f"run {run_label} · model {model} · data {source} · seed {seed} · code {code_version()}"


def traversal_figure(rows: list[list[Cell]], row_labels: list[str], title: str, caption: str):
    """A matplotlib figure: one row of photos per traversal (a strip is one row, the
    all-factors grid one row per factor), each photo captioned, the provenance at the foot."""
    import matplotlib

    matplotlib.use("Agg")  # no display: figures are only written to bytes
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    label_width = 1.3 if any(row_labels) else 0.1
    width = max(label_width + CELL_INCHES * n_cols + 0.1, 3.0)  # 0.1 in: a right margin
    foot = textwrap.wrap(caption, width=int(width * 24)) or [""]  # ~24 characters an inch
    height = 0.55 + (CELL_INCHES + 0.45) * n_rows + 0.1 + 0.1 * len(foot)
    fig = Figure(figsize=(width, height))
    fig.text(0.01, 1 - 0.3 / height, title, fontsize=10, weight="bold", va="center")
    fig.text(0.01, 0.06 / height, "\n".join(foot), fontsize=5.5, va="bottom", color="0.3")
    for i, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        top = 1 - (0.55 + i * (CELL_INCHES + 0.45)) / height
        fig.text(0.01, top - CELL_INCHES / 2 / height, label, fontsize=7, va="center")
        for j, cell in enumerate(row):
            box = [
                (label_width + j * CELL_INCHES + 0.04) / width,
                top - (CELL_INCHES - 0.04) / height,
                (CELL_INCHES - 0.08) / width,
                (CELL_INCHES - 0.08) / height,
            ]
            _draw_cell(fig.add_axes(box), cell)
    return fig


def _draw_cell(ax, cell: Cell) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if cell.path is not None:
        from PIL import Image

        with Image.open(cell.path) as img:
            ax.imshow(img.convert("RGB"), interpolation="none")
    else:
        ax.text(0.5, 0.5, "no dish", ha="center", va="center", fontsize=6, color="0.4")
    lines = [_fit(line) for line in cell.caption.split("\n")]
    ax.set_xlabel("\n".join(lines), fontsize=5, labelpad=2, linespacing=1.1)


def _fit(line: str, width: int = CAPTION_CHARS) -> str:
    """A caption line cut to the cell's width (5 pt text under a 1.25 in photo)."""
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def figure_bytes(fig, fmt: str, dpi: int = 200) -> bytes:
    """The figure as PNG or PDF bytes (fonts embedded as TrueType in the PDF)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_metadata(fig, fmt))
    return buffer.getvalue()


def _metadata(fig, fmt: str) -> dict:
    texts = [t.get_text() for t in fig.texts] + ["", ""]  # a figure may hold fewer texts
    title, caption = texts[0], texts[1].replace("\n", " ")
    if fmt == "pdf":
        return {"Title": title, "Subject": caption, "Creator": "Factor Explorer"}
    return {"Title": title, "Description": caption, "Software": "Factor Explorer"}


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
