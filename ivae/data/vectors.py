"""Vector datasets stored as ``.npz`` (docs/design.md, "Vector datasets")."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ivae.data.dataset import DataError, Dataset

MAX_LABELS = 100_000  # one-hot columns of a label array 'u': its labels are 0 .. K-1


def _require(arrays: dict, key: str, path: Path, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{path}: missing array {key!r}; found {sorted(arrays)}")
    a = arrays[key]
    if a.ndim != ndim:
        raise DataError(f"{path}: array {key!r} must have {ndim} dimension(s), got shape {a.shape}")
    return a


def _query(arrays: dict, path: Path) -> np.ndarray:
    """``y`` as given, or the one-hot encoding of the integer label ``u``."""
    if "y" in arrays:
        y = _require(arrays, "y", path, 2)
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{path}: array 'y' must be numeric, got {y.dtype}")
        return y.astype(np.float32)
    if "u" in arrays:
        u = _require(arrays, "u", path, 1)
        if not np.issubdtype(u.dtype, np.integer) or (len(u) and u.min() < 0):
            raise DataError(f"{path}: array 'u' must hold non-negative integer labels")
        top = int(u.max()) if len(u) else 0
        if top >= MAX_LABELS:
            row = int(np.argmax(u))
            raise DataError(
                f"{path}: array 'u' row {row} holds the label {top}; labels are one-hot "
                f"encoded, so they must be 0 .. K-1 with K at most {MAX_LABELS:,} "
                "(renumber them, e.g. with np.unique(u, return_inverse=True))"
            )
        return np.eye(top + 1, dtype=np.float32)[u]
    raise DataError(f"{path}: needs a query array 'y' (N, Dy) or integer labels 'u' (N,)")


def _split(arrays: dict, n: int, path: Path) -> np.ndarray:
    if "split" not in arrays:  # seeded 80/10/10, the docs/design.md default
        rng = np.random.default_rng(0)
        return rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.8, 0.1, 0.1])
    split = _require(arrays, "split", path, 1).astype(str)
    bad = sorted(set(split) - {"train", "val", "test"})
    if bad:
        raise DataError(f"{path}: 'split' may only hold train/val/test, found {bad[:5]}")
    return split


def load_npz(path: str | Path) -> Dataset:
    """Load and validate a vector dataset; every problem names the file and the array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; create one with `ivae data toy --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    x = _require(arrays, "x", path, 2)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: array 'x' must be numeric, got {x.dtype}")
    y = _query(arrays, path)
    n = len(x)
    if len(y) != n:
        raise DataError(f"{path}: 'x' has {n} rows but the query has {len(y)}")
    factors = arrays.get("factors")
    if factors is not None and (factors.ndim != 2 or len(factors) != n):
        raise DataError(f"{path}: 'factors' must be (N={n}, n), got shape {factors.shape}")
    names = [str(s) for s in arrays.get("factor_names", [])]
    if factors is not None and not names:
        names = [f"factor {i + 1}" for i in range(factors.shape[1])]
    if factors is not None and len(names) != factors.shape[1]:
        raise DataError(f"{path}: {len(names)} factor_names for {factors.shape[1]} factors")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise DataError(f"{path}: 'x' or 'y' holds NaN or infinite values")
    if factors is not None:
        if not np.issubdtype(factors.dtype, np.number):
            raise DataError(f"{path}: array 'factors' must be numeric, got {factors.dtype}")
        if not np.isfinite(factors).all():
            row, column = np.argwhere(~np.isfinite(factors))[0]
            raise DataError(
                f"{path}: array 'factors' row {row}, factor {names[column]!r} is "
                f"{factors[row, column]}; ground truth must be finite (drop or fill the rows)"
            )
    return Dataset(
        name=path.stem,
        x=x.astype(np.float32),
        y=y,
        x_kind="vector",
        y_kind="vector",
        split=_split(arrays, n, path),
        ids=np.array([str(i) for i in range(n)]),
        factors=None if factors is None else factors.astype(np.float32),
        factor_names=names if factors is not None else [],
        source=str(path),
    )


def save_npz(path: str | Path, arrays: dict) -> Path:
    """Write atomically (temp file in the same folder, then rename)."""
    from ivae.io import save_npz as atomic_save_npz

    return atomic_save_npz(path, arrays, compressed=True)
