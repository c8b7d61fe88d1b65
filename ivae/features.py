"""Pooled backbone features of a paired data set, computed once and memory-mapped.

``feature_cache(data_dir, "efficientnet-lite0")`` returns a ``FeatureCache`` whose
``features`` is a read-only float16 memmap ``(N_items, V, F)`` in ``items.parquet`` row order.
V = 8 holds the 8 symmetries of the square (the flips and quarter turns that ``--augment
dihedral`` trains with), in the order of ``ivae.train.dihedral``: view v is the image turned
by ``v % 4`` quarter turns, then mirrored left-right when ``v >= 4``; view 0 is the photo
itself. V = 1 holds view 0 only.

The cache lives in ``DATA/.cache/features/<backbone>-<weights hash>-<size>px-<V>v/``:
``features.npy`` (written in place, chunk by chunk, each chunk's pages handed back to the
system once flushed, so memory stays flat), ``done.json`` (the chunks written so
far, replaced atomically after each chunk is flushed, so an interrupted extraction continues
where it stopped) and ``meta.json`` (what the features are of: the item ids' hash, the
content digest of the items' ids, image paths and texts, and a digest of every photo's size and
modification time; a data set generated again with another seed, or a photo replaced under the
same name, makes the cache stale and it is recomputed, with a warning naming what changed).
A cache written before the content digests existed is read as before and gains them.

An image that cannot be decoded (corrupt, truncated) is skipped and counted, as the data set's
image cache does (``ivae.data.paired``): its row of features stays zero, one line on stderr
names the file and the count so far, and ``done.json``'s ``unreadable`` ({row: "file: error"})
keeps the list with the chunks, so an interrupted extraction keeps its count. Loading the
data set leaves those rows out of every split. A missing image file still stops the
extraction with one error naming it; the chunks already written are kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ivae.backbones import Backbone, backbone_spec, get_backbone
from ivae.data.dataset import release
from ivae.data.paired import (
    CACHE,
    ITEMS,
    decode_blocks,
    images_digest,
    items_content_digest,
    read_info,
    unique_ids,
)
from ivae.data.table import mapped_items
from ivae.images import SkippedImages
from ivae.io import write_json
from ivae.nets import dihedral_view

VIEWS = (1, 8)
CHUNK = 256  # items per recorded step: ~20 s of work at 128 px x 8 views on 2 cores
FORMAT = 1


@dataclass
class FeatureCache:
    directory: Path
    features: np.ndarray  # (N, V, F) float16 memmap, read-only
    ids: list[str]  # item ids, row order of items.parquet
    meta: dict
    unreadable: dict[int, str] = field(default_factory=dict)  # row -> "file: error", skipped

    @property
    def views(self) -> int:
        return self.features.shape[1]


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]


def cache_directory(data_dir: Path, backbone: Backbone, views: int) -> Path:
    key = f"{backbone.name}-{backbone.weights_hash}-{backbone.image_size}px-{views}v"
    return Path(data_dir) / CACHE / "features" / key


def chunk_features(backbone: Backbone, images: torch.Tensor, views: int, batch_size: int):
    """(B, 3, S, S) uint8 -> (B, V, F) float16."""
    out = [backbone.features(dihedral_view(images, v), batch_size) for v in range(views)]
    return np.stack(out, axis=1).astype(np.float16)


# meta.json keys a cache written before them lacks: such a cache is read and gains them
CONTENT_KEYS = ("content_digest", "images_digest")


def cache_meta(
    backbone: Backbone, ids: list[str], views: int, chunk_size: int, content: dict | None = None
) -> dict:
    """What the cached features are of: a cache whose meta.json differs is recomputed.
    ``content``: CONTENT_KEYS -> the data set's digests (``content_digests``)."""
    return {
        "format": FORMAT,
        "backbone": backbone.name,
        "weights_hash": backbone.weights_hash,
        "image_size": backbone.image_size,
        "views": views,
        "feature_dim": backbone.feature_dim,
        "n_items": len(ids),
        "items_digest": ids_digest(ids),
        "chunk_size": chunk_size,
        "dtype": "float16",
        **(content or {}),
    }


def content_digests(data_dir: Path, items) -> dict:
    """The items' ids, image paths and texts (ivae.data.paired.items_content_digest), and every
    photo's size and modification time (``images_digest``: one stat per file, no read)."""
    return {
        "content_digest": items_content_digest(data_dir),
        "images_digest": images_digest(data_dir, items),
    }


def stale_reason(old: dict, meta: dict) -> str | None:
    """Why a cache with meta.json ``old`` does not hold the features ``meta`` describes."""
    if old.get("items_digest") != meta["items_digest"]:
        return (
            f"the item table changed since these features were computed ({old.get('n_items')} "
            f"-> {meta['n_items']} items, ids hash {old.get('items_digest')} -> "
            f"{meta['items_digest']})"
        )
    if old.get("content_digest", meta.get("content_digest")) != meta.get("content_digest"):
        return "the items' image paths or texts changed (the data set was generated again?)"
    if old.get("images_digest", meta.get("images_digest")) != meta.get("images_digest"):
        return "a photo was replaced or touched since these features were computed"
    return None


def _settings(meta: dict) -> dict:
    """meta.json without the content digests: the backbone, size, views and layout."""
    return {key: value for key, value in meta.items() if key not in CONTENT_KEYS}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _prepare(
    directory: Path, meta: dict, shape: tuple[int, int, int]
) -> tuple[np.ndarray, set, dict]:
    """The writable memmap, the chunks already done and the rows skipped in them; a stale or
    broken cache starts over."""
    old = _read_json(directory / "meta.json")
    done = _read_json(directory / "done.json")
    features_file = directory / "features.npy"
    reason = stale_reason(old, meta) if old is not None else None
    if reason:
        warnings.warn(f"{directory}: {reason}; recomputing them", stacklevel=3)
    reusable = old is not None and reason is None and _settings(old) == _settings(meta)
    if reusable and done is not None and features_file.is_file():
        try:
            array = np.lib.format.open_memmap(features_file, mode="r+")
            if array.shape == shape and array.dtype == np.float16:
                if old != meta:  # a cache from before the content digests: it gains them
                    write_json(directory / "meta.json", meta)
                unreadable = {int(k): v for k, v in done.get("unreadable", {}).items()}
                return array, set(done.get("chunks", [])), unreadable
        except (OSError, ValueError):
            pass  # unreadable header: start over below
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    array = np.lib.format.open_memmap(features_file, mode="w+", dtype=np.float16, shape=shape)
    write_json(directory / "meta.json", meta)
    write_json(directory / "done.json", {"chunks": [], "unreadable": {}})
    return array, set(), {}


def feature_cache(
    data_dir: str | Path,
    backbone_name: str,
    image_size: int | None = None,
    views: int = 8,
    batch_size: int = 64,
    weights: str | Path | None = None,
    progress: bool = True,
    chunk_size: int = CHUNK,
    device: str = "auto",
) -> FeatureCache:
    """The cached features, computed first for the chunks that are missing.

    ``image_size`` defaults to the data set's own (``dataset.json``), so photos are not
    upsampled; without one, to the size the backbone was trained at. ``device``: where the
    backbone runs ("auto": CUDA when there is one); the photos are decoded on the CPU.
    """
    from ivae.train import resolve_device

    if views not in VIEWS:
        raise ValueError(
            f"views must be one of {VIEWS} (8: every flip and quarter turn), got {views}"
        )
    data_dir = Path(data_dir)
    info, items = read_info(data_dir), mapped_items(data_dir)  # texts stay on disk
    size = image_size or info.get("image_size") or backbone_spec(backbone_name).image_size
    backbone = get_backbone(backbone_name, weights=weights, image_size=int(size))
    backbone.to(resolve_device(device))
    ids = items["id"].tolist()
    unique_ids(np.asarray(ids, dtype=str), data_dir / ITEMS)
    meta = cache_meta(backbone, ids, views, chunk_size, content_digests(data_dir, items))
    directory = cache_directory(data_dir, backbone, views)
    array, done, unreadable = _prepare(directory, meta, (len(ids), views, backbone.feature_dim))
    skipped = SkippedImages(unreadable)
    starts = [s for s in range(0, len(ids), chunk_size) if s not in done]
    bar = None
    if progress and starts:
        from tqdm import tqdm

        desc = f"{backbone.name} features at {backbone.image_size}px x {views} views"
        bar = tqdm(total=len(ids), initial=len(ids) - _rows(starts, chunk_size, len(ids)),
                   desc=desc, unit="item")  # fmt: skip
    # the photos of the chunks ahead are decoded in other processes while this one runs the
    # backbone on the current chunk (ivae.data.paired.decode_blocks)
    size = backbone.image_size
    for start, photos, failed in decode_blocks(data_dir, items, starts, chunk_size, size):
        features = chunk_features(backbone, torch.from_numpy(photos), views, batch_size)
        for row, relative, why in failed:  # a skipped photo's features are zero
            skipped.skip(row, data_dir / relative, why)
            features[row - start] = 0
        array[start : start + len(photos)] = features
        array.flush()  # the rows are on disk before the chunk is recorded as done
        release(array)  # and out of this process: written pages would stay resident
        done.add(start)
        write_json(directory / "done.json", done_record(done, skipped))
        if bar is not None:
            bar.update(len(photos))
    if bar is not None:
        bar.close()
    del array
    features = np.load(directory / "features.npy", mmap_mode="r")
    return FeatureCache(directory, features, ids, meta, dict(skipped.files))


def done_record(done: set, skipped: SkippedImages) -> dict:
    """done.json: the chunks written, and the rows skipped in them (JSON keys are strings)."""
    return {"chunks": sorted(done), "unreadable": {str(k): v for k, v in skipped.files.items()}}


def _rows(starts: list[int], chunk_size: int, n: int) -> int:
    return sum(min(chunk_size, n - s) for s in starts)
