"""Datasets: one loader per format, all returning :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

from ivae.data.dataset import DataError, Dataset

__all__ = ["DataError", "Dataset", "load_dataset"]


def load_dataset(
    path: str | Path,
    vocab=None,
    image_size: int = 64,
    max_len: int = 256,
    images: bool = True,
) -> Dataset:
    """A ``.npz`` vector dataset or a paired image/text directory (docs/design.md formats).
    ``images=False``: a paired directory's photos are not decoded (x is (N, 0))."""
    path = Path(path)
    if path.is_dir():
        from ivae.data.paired import load_paired

        # token ids without the all-padding tail (the text encoder pools anyway), memory-mapped
        return load_paired(path, image_size=image_size, vocab=vocab, max_len=max_len, images=images)
    if path.suffix == ".npz" or path.is_file():
        from ivae.data.vectors import load_npz

        return load_npz(path)
    raise DataError(
        f"{path}: no such dataset; make one with `ivae data toy --out DATA.npz` "
        "or `ivae data kitchen --out DIR`"
    )
