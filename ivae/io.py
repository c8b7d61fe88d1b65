"""Atomic file writes: a temp file in the target folder, then a rename, so a crash mid-write
never leaves a half-written run or data file behind; a lock that keeps one writer per run
directory; and whole directories written aside and swapped in. Imports no torch (the data
layer uses it too, and should not pay torch's start-up time)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import numpy as np

T = TypeVar("T")
LOCK_FILE = ".lock"  # in a run directory: held (flock) by the one process writing the run
_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(OSError):
    """A file could not be written (disk full, read-only); the file before it is intact."""


class LockedError(RuntimeError):
    """Another process is writing the same run directory; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _pid_of(name: str, position: int) -> int | None:
    """The writer's pid in a temp name, at ``position`` of its dot-separated parts
    (``.<target>.<pid>.<random>.tmp``: -3)."""
    parts = name.split(".")
    if len(parts) < -position or not parts[position].isdigit():
        return None
    return int(parts[position])


def remove_stale(directory: Path, pattern: str = ".*.tmp", position: int = -3) -> list[Path]:
    """Delete temp files (and folders) under ``directory`` matching ``pattern`` whose writer
    is dead: what a kill -9 mid-write leaves. A live writer's temp file is never touched."""
    removed = []
    for path in Path(directory).glob(pattern):
        pid = _pid_of(path.name, position)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """``write(f)`` into a temp file beside ``path``, then rename it over ``path``. On any
    failure the temp file is removed and ``path`` is as it was; a full disk is a WriteError
    naming the file. Temp files left by killed writers of the same file are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.*.tmp")
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a run is as readable as any file
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _FULL:
            kept = "the previous file is intact" if path.exists() else "nothing was written"
            raise WriteError(
                error.errno, f"{path}: the disk is full ({kept}); free some space and run again"
            ) from None
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
    except (OSError, ValueError, KeyError, EOFError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise error(f"{path} is unreadable ({reason}); rebuild it with `{command}`") from None


# --------------------------------------------------------------------------- one writer


@contextmanager
def run_lock(directory: str | Path, doing: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (``flock`` on its ``.lock`` file) while
    ``doing``; LockedError naming the holder's pid when another process holds it. The kernel
    drops the lock when its holder dies, so a kill -9 leaves no stale lock behind."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            who = f"pid {holder[0]}" if holder else "another process"
            raise LockedError(
                f"{directory} is being written by {who} ({' '.join(holder[1:]) or 'ivae'}); "
                "wait for it to finish or stop it, then run again (nothing was changed)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {doing}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --------------------------------------------------------------------------- whole folders


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange)
    return done == 0


def write_directory(out: str | Path, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` a new folder beside ``out``, then put it in ``out``'s place: a kill at
    any point leaves the old folder (or none) at ``out``, never a mix of old and new files.
    The old folder is deleted afterwards; folders left by killed writers are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, f".{out.name}.*.partial")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; choose a folder for --out")
    tmp = Path(
        tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}.", suffix=".partial")
    )
    try:
        fill(tmp)
        if not out.exists():
            os.rename(tmp, out)
        elif _exchange(tmp, out):  # tmp now holds the old folder
            shutil.rmtree(tmp)
        else:
            aside = tmp.with_name(tmp.name.removesuffix(".partial") + "-old.partial")
            os.rename(out, aside)
            os.rename(tmp, out)
            shutil.rmtree(aside)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
