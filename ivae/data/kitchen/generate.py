"""``ivae data kitchen``: sample the items, write their recipes, render their photos."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ivae.data.kitchen.dishes import (
    DISHES,
    FACTORS,
    NUISANCES,
    READING_SD,
    VERSION,
    assign_splits,
    item_rng,
    read_factors,
    sample_factors,
    sample_nuisances,
)
from ivae.data.kitchen.recipes import write_recipe
from ivae.data.kitchen.render import render_dish
from ivae.data.paired import replace_dataset, write_paired


def sample_items(
    n: int, seed: int = 0, image_ext: str = "jpg", reading_sd: np.ndarray = READING_SD
) -> pd.DataFrame:
    """The item table without the images: ids, dish, factors, nuisances, split and recipe
    (written from readings with noise ``reading_sd`` per (dish, factor))."""
    rng = np.random.default_rng(seed)
    dish_index = rng.integers(len(DISHES), size=n)
    factors = sample_factors(dish_index, rng)
    nuisances = sample_nuisances(n, rng)
    split = assign_splits(n, rng)
    readings = read_factors(factors, dish_index, seed, reading_sd)
    ids = [f"{i:06d}" for i in range(n)]
    rows = []
    for i in range(n):
        dish = DISHES[dish_index[i]].name
        title, ingredients, text = write_recipe(
            dish, dict(zip(FACTORS, readings[i], strict=True)), item_rng(seed, i, 1)
        )
        rows.append(
            {
                "id": ids[i],
                "image": f"images/{ids[i][:3]}/{ids[i]}.{image_ext}",
                "text": text,
                "split": split[i],
                "title": title,
                "ingredients": ingredients,
                "dish": dish,
            }
        )
    items = pd.DataFrame(rows)
    for j, name in enumerate(FACTORS):
        items[f"factor.{name}"] = factors[:, j]
    for j, name in enumerate(NUISANCES):
        items[f"nuisance.{name}"] = nuisances[:, j]
    for j, name in enumerate(FACTORS):  # what the recipe was written from (not ground truth)
        items[f"reading.{name}"] = readings[:, j]
    return items


def render_row(job: tuple) -> None:
    """Render and save one item (a worker task): seeded per item, so any pool gives the same
    bytes."""
    index, seed, size, path, dish, factors, nuisances, image_format = job
    img = render_dish(factors, nuisances, size, item_rng(seed, index, 2), dish)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if image_format == "png":
        img.save(path, "PNG", compress_level=6)
    else:
        img.save(path, "JPEG", quality=92, subsampling=0)


def generate_kitchen(
    out_dir: str | Path,
    n: int = 20000,
    image_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    workers: int = 2,
    image_format: str = "jpg",
) -> Path:
    """Write the kitchen dataset (images, items.parquet, dataset.json) to ``out_dir``, whole
    into a folder beside it and then swapped in (``replace_dataset``)."""
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")

    def fill(tmp: Path) -> None:
        _write_kitchen(tmp, n, image_size, seed, progress, workers, image_format)

    return replace_dataset(out_dir, fill)


def _write_kitchen(
    out: Path, n: int, image_size: int, seed: int, progress: bool, workers: int, image_format: str
) -> None:
    items = sample_items(n, seed, image_format)
    factor_cols = [f"factor.{name}" for name in FACTORS]
    nuisance_cols = [f"nuisance.{name}" for name in NUISANCES]
    jobs = [
        (
            i,
            seed,
            image_size,
            str(out / rel),
            dish,
            dict(zip(FACTORS, f, strict=True)),
            dict(zip(NUISANCES, z, strict=True)),
            image_format,
        )
        for i, (rel, dish, f, z) in enumerate(
            zip(
                items["image"],
                items["dish"],
                items[factor_cols].to_numpy().tolist(),
                items[nuisance_cols].to_numpy().tolist(),
                strict=True,
            )
        )
    ]
    run_jobs(jobs, workers, progress)
    write_paired(out, items, dataset_info(n, image_size, seed))


def run_jobs(jobs: list, workers: int, progress: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="kitchen", unit="img")
    if workers <= 1:
        for job in jobs:
            render_row(job)
            bar and bar.update()
    else:
        # "spawn", not fork: the dashboard generates from a threaded server process, and a
        # fork of a threaded process can deadlock its workers.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render_row, jobs, chunksize=64):
                bar and bar.update()
    if bar:
        bar.close()


def dataset_info(n: int, image_size: int, seed: int) -> dict:
    return {
        "name": "kitchen",
        "version": VERSION,
        "description": (
            "Procedural top-down photos of dishes paired with their recipes. Shared "
            "factors in [0, 1] (Beta-distributed with a dish-dependent mean and "
            "concentration) drive both the photo and the recipe; nuisances (plate, "
            "table, lighting, camera, noise) only the photo."
        ),
        "factor_names": list(FACTORS),
        "nuisance_names": list(NUISANCES),
        "dishes": [dish.name for dish in DISHES],
        "generator": "ivae data kitchen",
        "seed": seed,
        "n": n,
        "image_size": image_size,
    }


def contact_sheet(
    path: str | Path, seed: int = 0, image_size: int = 128, columns: int = 8, rows: int = 8
) -> Path:
    """A grid of the first items of a kitchen dataset with their dish and factor values."""
    from PIL import ImageFont

    items = sample_items(columns * rows, seed)
    font = ImageFont.load_default()
    label = 26
    sheet = Image.new("RGB", (columns * image_size, rows * (image_size + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in items.iterrows():
        factors = {f: row[f"factor.{f}"] for f in FACTORS}
        nuisances = {z: row[f"nuisance.{z}"] for z in NUISANCES}
        img = render_dish(factors, nuisances, image_size, item_rng(seed, i, 2), row["dish"])
        x, y = (i % columns) * image_size, (i // columns) * (image_size + label)
        sheet.paste(img, (x, y))
        draw.text((x + 3, y + image_size + 1), row["dish"], fill="black", font=font)
        values = " ".join(f"{f[:2]}{factors[f]:.1f}" for f in FACTORS)
        draw.text((x + 3, y + image_size + 13), values, fill=(90, 90, 90), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
