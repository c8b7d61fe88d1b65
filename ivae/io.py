"""Atomic file writes: a temp file in the target folder, then a rename, so a crash mid-write
never leaves a half-written run or data file behind. Imports no torch (the data layer uses
it too, and should not pay torch's start-up time)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import numpy as np

T = TypeVar("T")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a run is as readable as any file
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_torch(path: str | Path, obj) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def save_npz(path: str | Path, arrays: dict, compressed: bool = False) -> Path:
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


def read_built(
    path: Path, read: Callable[[Path], T], error: type[Exception], missing: str, command: str
) -> T:
    """``read(path)`` of a file that ``command`` builds: ``error`` with one line saying to run
    it when the file is absent (``missing`` says what is not there) or unreadable."""
    if not path.exists():
        raise error(f"{missing} ({path}); build it with `{command}`")
    try:
        return read(path)
    except (OSError, ValueError, KeyError) as exc:
        raise error(f"{path} is unreadable ({exc}); rebuild it with `{command}`") from None
