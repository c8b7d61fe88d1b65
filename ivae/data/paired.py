"""Paired image/text dataset directories (docs/design.md): read, validate, write.

A directory holds ``items.parquet`` (one row per pair), ``dataset.json`` (name, factor names,
counts, provenance) and the image files. Decoding 20k images takes a while, so the decoded
array is cached per image size under ``.cache/`` in the directory, keyed by a hash of
``items.parquet`` and the size and modification time of every image file: rewriting the items
or replacing an image invalidates the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ivae.data.dataset import DataError, Dataset, release
from ivae.data.table import mapped_items
from ivae.data.text import Vocab, cached_tokens
from ivae.images import DECODE_ERRORS, SkippedImages, failure_reason, image_to_array
from ivae.io import atomic_write, remove_stale, write_directory

ITEMS, INFO, CACHE = "items.parquet", "dataset.json", ".cache"
REQUIRED_COLUMNS = ("id", "image", "text", "split")
SPLITS = ("train", "val", "test")
SKIPPED = "skipped"  # the split of a row whose image cannot be decoded: it is in none
FLUSH_ROWS = 4096  # rows decoded between flushes of the image cache (~50 MB at 64 px)


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


def replace_dataset(out: str | Path, fill) -> Path:
    """A generated data set written whole into a folder beside ``out``, then put in its place
    (``ivae.io.write_directory``): a generator killed half-way leaves the old data set intact,
    never old items beside new images. An ``out`` holding other files than a data set is
    refused, since it would be replaced."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / INFO).is_file():
        raise DataError(
            f"{out} holds files but no {INFO}, so it is not a data set this command may "
            "replace; choose a new or empty --out"
        )
    return write_directory(out, fill)


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
    """The whole item table in memory, validated (``ivae.data.table.mapped_items`` maps it)."""
    path = directory / ITEMS
    if not path.is_file():
        raise DataError(f"{path}: missing; a paired dataset needs one row per pair in {ITEMS}")
    try:
        items = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable parquet ({error}); regenerate the dataset") from error
    validate_items(items, path)
    return items


def validate_items(items: pd.DataFrame, path: Path, first: int = 0) -> None:
    """Every docs/design.md requirement on the rows, each failure naming the row and the fix.
    ``first``: the row number of the frame's first row (a batch of a longer table)."""
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
                f"{path}: row {first + row}: column '{column}' must be a string, "
                f"got {items[column].iloc[row]!r}"
            )
    escapes = items["image"].map(lambda v: v.startswith("/") or ".." in Path(v).parts)
    if escapes.any():
        row = int(np.flatnonzero(escapes)[0])
        raise DataError(
            f"{path}: row {first + row}: image {items['image'].iloc[row]!r} leads out of the "
            "data set's folder; image paths are relative to it, without '..'"
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
            f"{path}: row {first + row} (id {items['id'].iloc[row]!r}): split "
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


class UnreadableImage(DataError):
    """An image file that is there but cannot be decoded (corrupt, truncated, not an image)."""


def decode_image(directory: Path, item_id: str, relative: str, size: int) -> np.ndarray:
    path = directory / relative
    try:
        with warnings.catch_warnings():  # a photo of > 89M pixels: a decompression bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return image_to_array(img, size)
    except FileNotFoundError as error:
        raise DataError(
            f"{directory / ITEMS}: row id {item_id!r}: image file {path} is missing; "
            "restore it or drop the row"
        ) from error
    except (*DECODE_ERRORS, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(
            f"{directory / ITEMS}: row id {item_id!r}: image file {path} is "
            f"unreadable ({error}); replace it or drop the row"
        ) from error


DECODE_ROWS = 256  # photos a decoding process takes at a time


def decode_workers() -> int:
    """Processes that decode photos: ``IVAE_DECODE_WORKERS`` when set, else one per CPU this
    process may run on, at most 16, shared out among the processes torchrun started on this
    machine (``LOCAL_WORLD_SIZE``), which may decode at the same time."""
    value = os.environ.get("IVAE_DECODE_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise DataError(f"IVAE_DECODE_WORKERS={value!r}: give a whole number of processes >= 1")
        return int(value)
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    share = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, min(16, len(os.sched_getaffinity(0)) // share))


def _decode_block(
    directory: Path, ids: list[str], paths: list[str], size: int
) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """The photos of one block of rows, and (position, file, reason) of each that cannot be
    decoded (left black). Runs in a decoding process: a missing file raises DataError."""
    out = np.zeros((len(ids), 3, size, size), dtype=np.uint8)
    failed = []
    for k, (item_id, relative) in enumerate(zip(ids, paths, strict=True)):
        try:
            out[k] = decode_image(directory, item_id, relative, size)
        except UnreadableImage as error:
            failed.append((k, relative, failure_reason(error.__cause__ or error)))
    return out, failed


def _leave_interrupts() -> None:
    """A decoding process ignores Ctrl-C: the reader stops, says so once, and lets it go."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_blocks(directory: Path, items, starts, rows: int, size: int, workers: int | None = None):
    """Yield ``(start, photos, failed)`` for each block of ``rows`` item rows beginning at the
    ``starts``, in that order: photos (n, 3, size, size) uint8, failed [(row, file, reason)] of
    the photos that cannot be decoded (black in ``photos``). ``workers`` processes decode
    (default ``decode_workers()``; one: this process), each a block at a time, at most two
    blocks more than the workers decoded ahead of the reader: memory does not grow with the
    data."""
    directory, starts = Path(directory), list(starts)
    workers = decode_workers() if workers is None else workers

    def job(start: int) -> tuple:
        block = items.iloc[start : start + rows]
        return directory, list(block["id"]), list(block["image"]), size

    def result(start: int, decoded: tuple) -> tuple:
        photos, failed = decoded
        return start, photos, [(start + k, relative, why) for k, relative, why in failed]

    if workers == 1 or len(starts) < 2:
        for start in starts:
            yield result(start, _decode_block(*job(start)))
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # forked, as torch's DataLoader forks its workers: a worker decodes with PIL and numpy
    # alone, never CUDA or OpenMP, whatever the reader holds; spawned, it would first run the
    # caller's script again (a script without a __main__ guard would start over)
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(
        min(workers, len(starts)), mp_context=context, initializer=_leave_interrupts
    )
    pending: deque = deque()
    try:
        for start in starts:
            pending.append((start, pool.submit(_decode_block, *job(start))))
            if len(pending) < workers + 2:
                continue
            start, future = pending.popleft()
            yield result(start, future.result())
        while pending:
            start, future = pending.popleft()
            yield result(start, future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def decode_images(
    directory: Path, items: pd.DataFrame, out: np.ndarray, progress: bool
) -> SkippedImages:
    """Decode every item's photo into ``out`` (N, 3, S, S) uint8, ``DECODE_ROWS`` rows at a
    time in ``decode_workers()`` processes (``decode_blocks``).

    A file that cannot be decoded is skipped (its row stays black) and counted, one line on
    stderr each: a corrupt photo met mid-way does not lose the work before it. A memory-mapped
    ``out`` is flushed and its pages released every ``FLUSH_ROWS`` rows, so memory stays flat.
    """
    skipped, size = SkippedImages(), out.shape[-1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=f"decoding images at {size}px", unit="img")
    starts = range(0, len(items), DECODE_ROWS)
    for start, photos, failed in decode_blocks(directory, items, starts, DECODE_ROWS, size):
        out[start : start + len(photos)] = photos
        for row, relative, why in failed:
            skipped.skip(row, directory / relative, why)
        if isinstance(out, np.memmap) and (start + len(photos)) % FLUSH_ROWS < len(photos):
            out.flush()
            release(out)
        if bar is not None:
            bar.update(len(photos))
    if bar is not None:
        bar.close()
    if len(items) and len(skipped) == len(items):
        raise DataError(
            f"{directory / ITEMS}: none of the {len(items)} images can be decoded "
            f"(the first: {skipped.files[0]}); check the image files"
        )
    return skipped


def items_digest(directory: Path) -> str:
    """SHA-1 of the items.parquet file, read a megabyte at a time."""
    digest = hashlib.sha1()
    with open(directory / ITEMS, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


DIGEST_ROWS = 4096  # rows hashed at a time: only one batch's texts are in memory at once
DIGEST_COLUMNS = ("id", "image", "text")


def items_content_digest(directory: Path) -> str:
    """SHA-256 of what identifies the pairs of ``items.parquet``: its ids, image paths and
    texts, in row order. Two kitchen sets of other seeds share ids and paths but not texts;
    the same table written again (another parquet writer) keeps its digest. Per column, the
    values' lengths and their bytes feed two running hashes, so the digest does not depend on
    how many rows are read at a time (``DIGEST_ROWS``), and memory does not grow with them.

    Kept for the process per file (its inode, size and change times: a table written again,
    in place or by replacing it, is read again): ``ivae index`` checks the feature cache and
    fingerprints the index against the same table, seconds each at a million items."""
    path = Path(directory) / ITEMS
    try:
        stat = path.stat()
    except OSError as error:
        raise DataError(f"{path}: unreadable parquet ({error})") from None
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return _content_digest(str(path.resolve()), *key)


@functools.lru_cache(maxsize=16)
def _content_digest(path: str, *file_state: int) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(path).parent
    lengths = {name: hashlib.sha256() for name in DIGEST_COLUMNS}
    contents = {name: hashlib.sha256() for name in DIGEST_COLUMNS}
    try:
        parquet = pq.ParquetFile(directory / ITEMS)
        for batch in parquet.iter_batches(batch_size=DIGEST_ROWS, columns=list(DIGEST_COLUMNS)):
            for name in DIGEST_COLUMNS:
                chunk = batch.column(name).cast(pa.large_string())
                offsets = np.frombuffer(chunk.buffers()[1], np.int64)
                offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
                lengths[name].update(np.diff(offsets).tobytes())
                contents[name].update(chunk.buffers()[2][int(offsets[0]) : int(offsets[-1])])
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{directory / ITEMS}: unreadable parquet ({error})") from None
    digest = hashlib.sha256()
    for name in DIGEST_COLUMNS:
        digest.update(lengths[name].digest() + contents[name].digest())
    return digest.hexdigest()


def images_digest(directory: Path, items: pd.DataFrame) -> str:
    """A hash of every image file's size and modification time (ns), in row order: a photo
    replaced under the same name changes it (one stat per file, no read)."""
    digest = hashlib.blake2b(digest_size=16)
    for relative in items["image"]:
        try:
            stat = os.stat(directory / relative)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{relative}\0missing\n".encode())
    return digest.hexdigest()


def read_stamp(cache: Path, digest: str, shape: tuple) -> tuple[np.ndarray, dict] | None:
    """The cached images and their unreadable rows, when the cache matches the items and
    the image files (``digest``: ``<items' sha1>:<images_digest>``)."""
    stamp = cache.with_suffix(".json")
    if not (cache.is_file() and stamp.is_file()):
        return None
    try:
        record = json.loads(stamp.read_text())
        if record.get("items_sha1") == digest:
            array = np.load(cache, mmap_mode="c")
            if array.shape == shape:
                return array, {int(k): v for k, v in record.get("unreadable", {}).items()}
    except (OSError, ValueError, AttributeError) as error:
        warnings.warn(f"{cache}: ignoring an unreadable image cache ({error})", stacklevel=3)
    return None


def cached_images(
    directory: Path, items: pd.DataFrame, size: int, progress: bool
) -> tuple[np.ndarray, dict[int, str]]:
    """Decoded images and the rows whose file cannot be decoded ({row: "file: error"}).

    From ``.cache/images-<size>.npy`` when it matches ``items.parquet``: memory-mapped, never
    read whole (copy-on-write: the array is writable, the file is never changed); training
    and evaluation read a batch of rows at a time. Otherwise decoded straight into the file
    (``images-<size>.npy.<pid>.partial``, renamed into place when complete), never whole in memory;
    ``images-<size>.json`` records the items' hash and the unreadable rows.
    """
    cache = directory / CACHE / f"images-{size}.npy"
    digest = f"{items_digest(directory)}:{images_digest(directory, items)}"
    shape = (len(items), 3, size, size)
    found = read_stamp(cache, digest, shape)
    if found is not None:
        if found[1]:
            print(
                f"ivae: {len(found[1])} image(s) of {directory} cannot be decoded and are left "
                f"out of every split (listed in {cache.with_suffix('.json')})",
                file=sys.stderr,
            )
        return found
    # one partial file per process: ranks under torchrun may decode at the same time
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(cache.parent, f"{cache.name}.*.partial", position=-2)  # killed decoders
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    except OSError as error:
        warnings.warn(
            f"{cache}: could not write the image cache ({error}); the images are decoded "
            "into memory and the next load will decode them again",
            stacklevel=2,
        )
        array = np.empty(shape, dtype=np.uint8)
        return array, decode_images(directory, items, array, progress).files
    skipped = decode_images(directory, items, array, progress)
    array.flush()
    del array
    partial.replace(cache)
    record = {"items_sha1": digest, "unreadable": {str(k): v for k, v in skipped.files.items()}}
    atomic_write(cache.with_suffix(".json"), lambda f: f.write(json.dumps(record).encode()))
    return np.load(cache, mmap_mode="c"), skipped.files


def load_paired(
    directory: str | Path,
    image_size: int = 64,
    vocab: Vocab | None = None,
    max_len: int = 256,
    progress: bool = False,
    images: bool = True,
) -> Dataset:
    """A paired image/text directory as a Dataset (images as uint8, texts as token ids).

    Without ``vocab`` the vocabulary is built on the train split, so that validation and test
    texts are encoded as a trained model would see unseen text. ``images=False`` decodes no
    photo and x is (N, 0): for a backbone run, whose x are the cached features (ivae.head).

    Nothing of it grows with the data but ids, split and ground truth: the items table is
    memory-mapped (``ivae.data.table``), the texts are read a batch at a time from the parquet
    and their token ids memory-mapped from ``.cache/tokens-*.npy`` (``token_ids``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory; expected a paired dataset directory "
            f"with {INFO} and {ITEMS}"
        )
    info = read_info(directory)
    items = mapped_items(directory)
    path = directory / ITEMS
    ids = items["id"].to_numpy(dtype=str)
    unique_ids(ids, path)
    factor_names = list(info.get("factor_names", []))
    nuisance_names = [c.split(".", 1)[1] for c in items.columns if c.startswith("nuisance.")]
    if images:
        x, unreadable = cached_images(directory, items, image_size, progress)
    else:
        x, unreadable = np.zeros((len(items), 0), np.uint8), set()
    split = items["split"].to_numpy(dtype=str)
    if unreadable:  # their rows stay (aligned with items.parquet), in no split
        split = np.where(np.isin(np.arange(len(items)), list(unreadable)), SKIPPED, split)
    if vocab is None:
        vocab = Vocab.build(text for texts in train_texts(directory) for text in texts)
    return Dataset(
        name=str(info.get("name", directory.name)),
        x=x,
        y=token_ids(directory, vocab, max_len, len(items)),
        x_kind="image",
        y_kind="text",
        split=split,
        ids=ids,
        factors=ground_truth(items, "factor", factor_names, path),
        factor_names=factor_names,
        nuisances=ground_truth(items, "nuisance", nuisance_names, path),
        nuisance_names=nuisance_names,
        items=items,
        vocab=vocab,
        source=str(directory),
    )


def unique_ids(ids: np.ndarray, path: Path) -> None:
    """ids (N,) str must be unique (the mapped table is validated a batch at a time)."""
    values, counts = np.unique(ids, return_counts=True)
    if len(values) < len(ids):
        raise DataError(
            f"{path}: duplicate id {str(values[counts > 1][0])!r} ({len(ids) - len(values)} "
            "duplicates); ids must be unique"
        )


def text_batches(directory: Path, columns=("text",), rows: int = 8192):
    """The items' texts in row order, a list of ``rows`` at a time, read from the parquet
    (decoded a batch at a time, so no process holds every text); with ``columns`` ("text",
    "split"), lists of (text, split) pairs."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(directory / ITEMS)
    for batch in parquet.iter_batches(batch_size=rows, columns=list(columns)):
        lists = [batch.column(name).to_pylist() for name in columns]
        yield lists[0] if len(lists) == 1 else list(zip(*lists, strict=True))


def train_texts(directory: Path):
    """The texts of the train split, a list a batch at a time (what a vocabulary is built on)."""
    for pairs in text_batches(directory, ("text", "split")):
        yield [text for text, split in pairs if split == "train"]


def token_ids(directory: Path, vocab: Vocab, max_len: int, n: int) -> np.ndarray:
    """(N, L) int32 token ids of every item's text, memory-mapped from
    ``.cache/tokens-<vocabulary digest>-<max_len>.npy`` (keyed by the items' hash as the image
    cache is), written on first use; in memory, with a warning, when it cannot be written."""
    cache = directory / CACHE / f"tokens-{vocab.digest()}-{max_len}.npy"
    try:
        return cached_tokens(
            cache, items_digest(directory), vocab, max_len, lambda: text_batches(directory), n
        )
    except OSError as error:
        warnings.warn(
            f"{cache}: could not write the token cache ({error}); the texts are encoded "
            "into memory",
            stacklevel=2,
        )
    ids = np.zeros((n, max_len), np.int32)
    for start, texts in zip(range(0, n, 8192), text_batches(directory), strict=False):
        ids[start : start + len(texts)] = vocab.encode(texts, max_len)
    return np.ascontiguousarray(ids[:, : int((ids > 0).sum(1).max(initial=1))])
