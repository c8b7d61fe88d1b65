"""The Recipe1M importer (``ivae data recipe1m``): the real layout into a paired directory.

Recipe1M (Salvador et al. 2017, "Learning Cross-modal Embeddings for Cooking Recipes and Food
Images") ships ``layer1.json`` (recipes: id, title, ingredients, instructions, partition),
``layer2.json`` (id -> images) and ``det_ingrs.json`` (detected ingredient names with a
``valid`` flag per line, in the same order as layer1), with images stored at
``<images>/<partition>/<c0>/<c1>/<c2>/<c3>/<image id>`` (the first four characters of the id).

The JSON files are about a gigabyte each, so they are streamed element by element with
``ijson`` (a push parser fed a chunk at a time), and the item table is written to parquet in
row groups: memory stays flat whatever the size. There are no ground-truth factors.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import ijson
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ivae.data.dataset import DataError
from ivae.data.paired import INFO, ITEMS, SPLITS
from ivae.images import DECODE_ERRORS, SkippedImages, image_to_array
from ivae.io import atomic_write

CHUNK_BYTES = 1 << 20
MAX_ELEMENT_BYTES = 64 << 20  # no recipe is this long: beyond it an element is malformed
BATCH_ROWS = 5000

try:  # ijson's C backend (yajl2_c, bundled with ijson's wheels): about 10x the pure-Python speed
    JSON = ijson.get_backend("yajl2_c")
except ImportError:  # pure Python: the same elements, slower (about 1 minute a gigabyte)
    JSON = ijson.get_backend("python")


# --------------------------------------------------------------------------- streaming JSON


def malformed(path: Path, byte: int, index: int, what: str) -> DataError:
    return DataError(
        f"{path}: malformed JSON at byte {byte} (array element {index}): {what}; the file "
        "may be truncated or corrupted, download it again"
    )


def opening_byte(file: BinaryIO) -> tuple[int, bytes]:
    """(offset, byte) of the first byte that is not JSON whitespace (b'' for a blank file)."""
    offset = 0
    while (byte := file.read(1)) and byte in b" \t\n\r":
        offset += 1
    return offset, byte


def parser(backend: ModuleType | None = None) -> tuple[list, Generator]:
    """A push parser for the elements of a top-level array, and the list it appends them to."""
    found = ijson.sendable_list()
    # use_float: numbers come back as int and float, not ijson's default Decimal. The C backend
    # then reads integers as 64-bit (beyond, "integer overflow"); Recipe1M's files hold none.
    return found, (backend or JSON).items_coro(found, "item", use_float=True)


def iter_json_array(
    path: str | Path, chunk_bytes: int = CHUNK_BYTES, backend: ModuleType | None = None
) -> Iterator:
    """The elements of a top-level JSON array, one at a time, in constant memory.

    The file is pushed to ijson ``chunk_bytes`` at a time; the elements that a chunk completes
    are yielded before the next chunk is read, so memory holds one chunk and one element.
    ``backend``: an ijson backend module (default: ``JSON``, the C one when installed).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; expected a Recipe1M JSON file (a top-level array)")
    with open(path, "rb") as file:
        offset, byte = opening_byte(file)
        if byte != b"[":
            raise malformed(path, offset, 0, "expected '[' to open the top-level array")
        file.seek(0)
        found, push = parser(backend)
        offset = index = unfinished = 0
        while True:
            chunk = file.read(chunk_bytes)
            try:
                if chunk:
                    push.send(chunk)
                else:
                    push.close()  # raises if the array is not complete
            except ijson.JSONError as error:
                raise locate(path, offset, chunk_bytes, backend, error) from error
            yield from found
            index, unfinished = index + len(found), 0 if found else unfinished + len(chunk)
            if unfinished > MAX_ELEMENT_BYTES:
                raise malformed(
                    path, offset, index, f"an element longer than {MAX_ELEMENT_BYTES:,} bytes"
                )
            del found[:]
            if not chunk:
                return
            offset += len(chunk)


def locate(
    path: Path, good: int, chunk_bytes: int, backend: ModuleType | None, error: Exception
) -> DataError:
    """The error for a parse that failed after the first ``good`` bytes, pinned to its byte.

    ijson does not report where it stopped, so the file is parsed again: in chunks up to
    ``good`` (which parsed before), then a byte at a time until the parser fails.
    """
    found, push = parser(backend)
    index = offset = 0
    with open(path, "rb") as file:
        try:
            while offset < good:
                chunk = file.read(min(chunk_bytes, good - offset))
                push.send(chunk)
                offset, index = offset + len(chunk), index + len(found)
                del found[:]
            while byte := file.read(1):
                push.send(byte)
                offset, index = offset + 1, index + len(found)
                del found[:]
            push.close()
        except ijson.JSONError as again:
            index += len(found)
            error = again
    return malformed(path, offset, index, reason(error, offset >= path.stat().st_size))


def reason(error: Exception, at_end: bool) -> str:
    """ijson's message in one line, without the pure-Python backend's character offset."""
    if at_end:
        return "unexpected end of file"
    return re.sub(r" at \d+$", "", str(error).splitlines()[0])


# --------------------------------------------------------------------------- records


def need(record, key: str, kind: type, path: Path, index: int):
    """record[key], checked: a missing or mistyped key names the file, element and key."""
    if not isinstance(record, dict):
        raise DataError(f"{path}: element {index} is a {type(record).__name__}, expected an object")
    value = record.get(key)
    if not isinstance(value, kind):
        raise DataError(
            f"{path}: element {index} (id {record.get('id')!r}): key {key!r} should "
            f"be a {kind.__name__}, got {value!r:.60}"
        )
    return value


def texts(record, key: str, path: Path, index: int) -> list[str]:
    """The 'text' fields of a list of {"text": ...} objects."""
    items = need(record, key, list, path, index)
    if not all(isinstance(x, dict) and isinstance(x.get("text"), str) for x in items):
        raise DataError(
            f"{path}: element {index} (id {record.get('id')!r}): {key!r} should be "
            'a list of {"text": str} objects'
        )
    return [x["text"] for x in items]


class ImageIndex:
    """recipe id -> its image ids, as two sorted arrays of UTF-8 byte strings: a dict of
    Python strings costs ~400 bytes a recipe (160 MB for Recipe1M's 400k recipes with
    photos), these ~60. keys: (R,) the recipe ids, sorted; values: (R,) each recipe's image
    ids joined by tabs."""

    def __init__(self, keys: list[np.ndarray], values: list[np.ndarray]) -> None:
        keys_all = np.concatenate(keys) if keys else np.zeros(0, "S1")
        values_all = np.concatenate(values) if values else np.zeros(0, "S1")
        order = np.argsort(keys_all, kind="stable")
        keys_all, values_all = keys_all[order], values_all[order]
        last = np.append(keys_all[1:] != keys_all[:-1], True)  # a repeated id: its last record
        self.keys, self.values = keys_all[last], values_all[last]

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, recipe_id: str, default=()) -> list[str]:
        key = recipe_id.encode()
        i = int(np.searchsorted(self.keys, key))
        if i == len(self.keys) or self.keys[i] != key:
            return list(default)
        joined = self.values[i].decode()
        return joined.split("\t") if joined else []  # a recipe listed without photos


def image_index(layer2: Path, all_images: bool, progress: bool, chunk: int = 65536) -> ImageIndex:
    """recipe id -> its image ids (the first three unless ``all_images``), built a chunk of
    records at a time into arrays (``ImageIndex``)."""
    keys: list[np.ndarray] = []
    values: list[np.ndarray] = []
    pending: tuple[list, list] = ([], [])
    for i, record in enumerate(with_bar(iter_json_array(layer2), progress, "layer2")):
        images = need(record, "images", list, layer2, i)
        ids = [need(image, "id", str, layer2, i) for image in images]
        # the first image is used; a couple more are kept in case its file is missing
        pending[0].append(need(record, "id", str, layer2, i).encode())
        pending[1].append("\t".join(ids if all_images else ids[:3]).encode())
        if len(pending[0]) == chunk:
            keys.append(np.array(pending[0], dtype=bytes))
            values.append(np.array(pending[1], dtype=bytes))
            pending = ([], [])
    if pending[0]:
        keys.append(np.array(pending[0], dtype=bytes))
        values.append(np.array(pending[1], dtype=bytes))
    return ImageIndex(keys, values)


def detected(det_ingrs: Path | None) -> Iterator[tuple[str, list[str]] | None]:
    """(recipe id, valid detected ingredient names) in layer1 order; None forever without file."""
    if det_ingrs is None:
        while True:
            yield None
    for i, record in enumerate(iter_json_array(det_ingrs)):
        names = texts(record, "ingredients", det_ingrs, i)
        valid = need(record, "valid", list, det_ingrs, i)
        if len(valid) != len(names):
            raise DataError(
                f"{det_ingrs}: element {i}: 'valid' has {len(valid)} flags for "
                f"{len(names)} ingredients"
            )
        kept = [name for name, ok in zip(names, valid, strict=True) if ok]
        yield need(record, "id", str, det_ingrs, i), kept


def recipe_text(title: str, ingredients: list[str], instructions: list[str]) -> str:
    return "\n".join(
        [
            title,
            "",
            "Ingredients:",
            *(f"- {x}" for x in ingredients),
            "",
            "Instructions:",
            *(f"{i}. {x}" for i, x in enumerate(instructions, 1)),
        ]
    )


def with_bar(iterable, progress: bool, desc: str):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=" recipes")


# --------------------------------------------------------------------------- writing


class ItemsWriter:
    """items.parquet in row groups, written to a temp file and renamed into place at the end."""

    def __init__(self, out: Path) -> None:
        self.path, self.tmp = out / ITEMS, out / f".{ITEMS}.partial"
        self.rows: list[dict] = []
        self.writer = None
        self.schema = pa.schema(
            [
                ("id", pa.string()),
                ("image", pa.string()),
                ("text", pa.string()),
                ("split", pa.string()),
                ("title", pa.string()),
                ("ingredients", pa.list_(pa.string())),
                ("recipe_id", pa.string()),
            ]
        )

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.tmp.replace(self.path)


def save_image(
    source: Path, target: Path, image_size: int, skipped: SkippedImages | None = None
) -> bool:
    """Resize one photo into the dataset; False when it cannot be decoded (corrupt,
    truncated), counted in ``skipped`` with one line on stderr."""
    try:
        with Image.open(source) as img:
            array = image_to_array(img, image_size)
    except DECODE_ERRORS as error:
        if skipped is not None:
            skipped.skip(str(source), source, error)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(target, "JPEG", quality=92)
    return True


# --------------------------------------------------------------------------- the import


def import_recipe1m(
    layer1: str | Path,
    layer2: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    det_ingrs: str | Path | None = None,
    limit: int | None = None,
    all_images: bool = False,
    image_size: int = 128,
    progress: bool = True,
) -> dict:
    """Convert Recipe1M into a paired directory; returns counts of what was kept and skipped.

    One row per recipe with its first existing image (``all_images``: one row per image).
    ``limit`` caps the number of recipes imported. Recipes without images, image files that
    are missing or unreadable are skipped and counted in the report, never silently.
    """
    started = time.perf_counter()
    layer1, layer2, images_dir, out = Path(layer1), Path(layer2), Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise DataError(
            f"{images_dir}: not a directory; expected the Recipe1M images folder "
            "holding train/, val/ and test/"
        )
    out.mkdir(parents=True, exist_ok=True)
    images = image_index(layer2, all_images, progress)
    report = {
        "recipes_read": 0,
        "recipes_imported": 0,
        "rows": 0,
        "recipes_without_images": 0,
        "recipes_without_existing_images": 0,
        "missing_image_files": 0,
        "unreadable_image_files": 0,
        "counts": dict.fromkeys(SPLITS, 0),
    }
    writer, skipped = ItemsWriter(out), SkippedImages()
    det = detected(None if det_ingrs is None else Path(det_ingrs))
    for index, record in enumerate(with_bar(iter_json_array(layer1), progress, "layer1")):
        if limit is not None and report["recipes_imported"] >= limit:
            break
        names = next(det, False)
        if names is False:
            raise DataError(
                f"{det_ingrs}: ends at element {index} but {layer1} goes on; the "
                "two files must list the same recipes in the same order"
            )
        report["recipes_read"] += 1
        import_recipe(
            record,
            index,
            names,
            images,
            images_dir,
            out,
            image_size,
            all_images,
            layer1,
            writer,
            report,
            skipped,
        )
    writer.close()
    write_info(out, report, det_ingrs is not None, image_size)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["out"] = str(out)
    return report


def import_recipe(
    record,
    index: int,
    names,
    images: ImageIndex,
    images_dir: Path,
    out: Path,
    image_size: int,
    all_images: bool,
    layer1: Path,
    writer: ItemsWriter,
    report: dict,
    skipped: SkippedImages | None = None,
) -> None:
    recipe_id = need(record, "id", str, layer1, index)
    title = need(record, "title", str, layer1, index)
    split = need(record, "partition", str, layer1, index)
    if split not in SPLITS:
        raise DataError(
            f"{layer1}: element {index} (id {recipe_id!r}): partition {split!r} is "
            f"not one of {list(SPLITS)}"
        )
    lines = texts(record, "ingredients", layer1, index)
    text = recipe_text(title, lines, texts(record, "instructions", layer1, index))
    if names is not None and names[0] != recipe_id:
        raise DataError(
            f"det_ingrs.json element {index} has id {names[0]!r} but {layer1} "
            f"element {index} has {recipe_id!r}; the files must be in the same order"
        )
    image_ids = images.get(recipe_id, [])
    if not image_ids:
        report["recipes_without_images"] += 1
        return
    kept = 0
    for image_id in image_ids:
        source = images_dir.joinpath(split, *image_id[:4], image_id)
        relative = f"images/{split}/{image_id[:2]}/{Path(image_id).stem}.jpg"
        if not source.is_file():
            report["missing_image_files"] += 1
            continue
        if not save_image(source, out / relative, image_size, skipped):
            report["unreadable_image_files"] += 1
            continue
        row_id = recipe_id if not all_images else f"{recipe_id}/{Path(image_id).stem}"
        writer.add(
            {
                "id": row_id,
                "image": relative,
                "text": text,
                "split": split,
                "title": title,
                "ingredients": names[1] if names else lines,
                "recipe_id": recipe_id,
            }
        )
        report["rows"] += 1
        report["counts"][split] += 1
        kept += 1
        if not all_images:
            break
    report["recipes_imported"] += kept > 0
    report["recipes_without_existing_images"] += kept == 0


def write_info(out: Path, report: dict, detected_ingredients: bool, image_size: int) -> None:
    info = {
        "name": "recipe1m",
        "version": "1.0",
        "description": "Recipe1M (Salvador et al. 2017) recipes paired with their photos; no "
        "ground-truth factors.",
        "factor_names": [],
        "generator": "ivae data recipe1m",
        "ingredients": "det_ingrs (valid)" if detected_ingredients else "layer1 lines",
        "image_size": image_size,  # the photos' side as imported: features default to it
        "counts": report["counts"],
        "skipped": {
            k: report[k]
            for k in (
                "recipes_without_images",
                "recipes_without_existing_images",
                "missing_image_files",
                "unreadable_image_files",
            )
        },
    }
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(out / INFO, lambda f: f.write(text.encode()))
