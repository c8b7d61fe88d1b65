"""Paired image/text dataset directories (docs/design.md): read, validate, write.

A directory holds ``items.parquet`` (one row per pair), ``dataset.json`` (name, factor names,
counts, provenance) and the image files. Decoding 20k images takes a while, so the decoded
array is cached per image size under ``.cache/`` in the directory, keyed by a hash of
``items.parquet``: rewriting the items invalidates the cache.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ivae.data.dataset import DataError, Dataset
from ivae.data.text import Vocab
from ivae.images import image_to_array
from ivae.io import atomic_write

ITEMS, INFO, CACHE = "items.parquet", "dataset.json", ".cache"
REQUIRED_COLUMNS = ("id", "image", "text", "split")
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- writing


def write_paired(directory: str | Path, items: pd.DataFrame, info: dict) -> None:
    """Write ``items.parquet`` and ``dataset.json``; the images must already be in place."""
    directory = Path(directory)
    missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
    if missing:
        raise DataError(f"write_paired: items lack the columns {missing}; need {REQUIRED_COLUMNS}")
    counts = items["split"].value_counts()
    info = {**info, "counts": {s: int(counts.get(s, 0)) for s in SPLITS}}
    items = items.reset_index(drop=True)
    atomic_write(directory / ITEMS, lambda f: items.to_parquet(f, index=False))
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(directory / INFO, lambda f: f.write(text.encode()))


# --------------------------------------------------------------------------- reading


def read_info(directory: Path) -> dict:
    path = directory / INFO
    if not path.is_file():
        raise DataError(
            f"{path}: missing; a paired dataset directory needs {INFO} and {ITEMS} "
            f"(create one with `ivae data kitchen --out DIR`)"
        )
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); rewrite it or regenerate") from error
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(info).__name__}")
    names = info.get("factor_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: key 'factor_names' must be a list of strings, got {names!r}")
    return info


def read_items(directory: Path) -> pd.DataFrame:
    path = directory / ITEMS
    if not path.is_file():
        raise DataError(f"{path}: missing; a paired dataset needs one row per pair in {ITEMS}")
    try:
        items = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable parquet ({error}); regenerate the dataset") from error
    validate_items(items, path)
    return items


def validate_items(items: pd.DataFrame, path: Path) -> None:
    """Every docs/design.md requirement on the rows, each failure naming the row and the fix."""
    missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected at least "
            f"{list(REQUIRED_COLUMNS)}, found {list(items.columns)}"
        )
    for column in REQUIRED_COLUMNS:
        bad = items[column].map(lambda v: not isinstance(v, str))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: row {row}: column '{column}' must be a string, "
                f"got {items[column].iloc[row]!r}"
            )
    duplicated = items["id"].duplicated()
    if duplicated.any():
        dup = items["id"][duplicated].iloc[0]
        raise DataError(
            f"{path}: duplicate id {dup!r} ({int(duplicated.sum())} duplicates); ids must be unique"
        )
    bad_split = ~items["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise DataError(
            f"{path}: row {row} (id {items['id'].iloc[row]!r}): split "
            f"{items['split'].iloc[row]!r} is not one of {list(SPLITS)}"
        )


def ground_truth(items: pd.DataFrame, prefix: str, names: list[str], path: Path):
    """(N, len(names)) float32 from the ``<prefix>.<name>`` columns, or None when there are none."""
    if not names:
        return None
    columns = [f"{prefix}.{name}" for name in names]
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing} for the names listed in "
            f"{INFO}; add them or fix 'factor_names'"
        )
    values = items[columns].to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(
            f"{path}: row {row} (id {items['id'].iloc[row]!r}): non-finite {prefix} "
            "value; ground truth must be finite numbers"
        )
    return values


def decode_image(directory: Path, item_id: str, relative: str, size: int) -> np.ndarray:
    path = directory / relative
    try:
        with Image.open(path) as img:
            return image_to_array(img, size)
    except FileNotFoundError as error:
        raise DataError(
            f"{directory / ITEMS}: row id {item_id!r}: image file {path} is missing; "
            "restore it or drop the row"
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"{directory / ITEMS}: row id {item_id!r}: image file {path} is "
            f"unreadable ({error}); replace it or drop the row"
        ) from error


def decode_images(directory: Path, items: pd.DataFrame, size: int, progress: bool) -> np.ndarray:
    """(N, 3, size, size) uint8, decoded one file at a time."""
    out = np.empty((len(items), 3, size, size), dtype=np.uint8)
    rows = zip(items["id"], items["image"], strict=True)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, total=len(items), desc=f"decoding images at {size}px", unit="img")
    for i, (item_id, relative) in enumerate(rows):
        out[i] = decode_image(directory, item_id, relative, size)
    return out


def items_digest(directory: Path) -> str:
    return hashlib.sha1((directory / ITEMS).read_bytes()).hexdigest()


def cached_images(directory: Path, items: pd.DataFrame, size: int, progress: bool) -> np.ndarray:
    """Decoded images, from ``.cache/images-<size>.npy`` when it matches ``items.parquet``:
    memory-mapped, never read whole (copy-on-write: the array is writable, the file is never
    changed); training and evaluation read a batch of rows at a time."""
    cache = directory / CACHE / f"images-{size}.npy"
    stamp = cache.with_suffix(".json")
    digest = items_digest(directory)
    if cache.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("items_sha1") == digest:
                array = np.load(cache, mmap_mode="c")
                if array.shape == (len(items), 3, size, size):
                    return array
        except (OSError, ValueError) as error:
            warnings.warn(f"{cache}: ignoring an unreadable image cache ({error})", stacklevel=2)
    array = decode_images(directory, items, size, progress)
    try:
        atomic_write(cache, lambda f: np.save(f, array))
        atomic_write(stamp, lambda f: f.write(json.dumps({"items_sha1": digest}).encode()))
    except OSError as error:
        warnings.warn(
            f"{cache}: could not write the image cache ({error}); the next load "
            "will decode the images again",
            stacklevel=2,
        )
    return array


def load_paired(
    directory: str | Path,
    image_size: int = 64,
    vocab: Vocab | None = None,
    max_len: int = 256,
    progress: bool = False,
) -> Dataset:
    """A paired image/text directory as a Dataset (images as uint8, texts as token ids).

    Without ``vocab`` the vocabulary is built on the train split, so that validation and test
    texts are encoded as a trained model would see unseen text.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory; expected a paired dataset directory "
            f"with {INFO} and {ITEMS}"
        )
    info = read_info(directory)
    items = read_items(directory)
    path = directory / ITEMS
    factor_names = list(info.get("factor_names", []))
    nuisance_names = [c.split(".", 1)[1] for c in items.columns if c.startswith("nuisance.")]
    x = cached_images(directory, items, image_size, progress)
    texts = items["text"].tolist()
    if vocab is None:
        vocab = Vocab.build(items["text"][items["split"] == "train"])
    return Dataset(
        name=str(info.get("name", directory.name)),
        x=x,
        y=vocab.encode(texts, max_len=max_len),
        x_kind="image",
        y_kind="text",
        split=items["split"].to_numpy(dtype=str),
        ids=items["id"].to_numpy(dtype=str),
        factors=ground_truth(items, "factor", factor_names, path),
        factor_names=factor_names,
        nuisances=ground_truth(items, "nuisance", nuisance_names, path),
        nuisance_names=nuisance_names,
        items=items,
        vocab=vocab,
        source=str(directory),
    )
