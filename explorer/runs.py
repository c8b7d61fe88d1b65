"""Runs as the dashboard finds them: where the repository keeps runs and data, a summary of
each run read from its JSON files, side-by-side metrics, and content fingerprints of the files
the dashboard caches (so a rewritten ``factors.json`` or index shows on the next rerun).

``ivae`` knows nothing of this layout; it takes paths. The layout lives here only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = REPO_ROOT / "assets" / "default-run"
EXAMPLES = REPO_ROOT / "assets" / "examples"  # photos the Photo reader offers to try
RUN_ROOTS = ("runs", "assets")
# More folders the dashboard may open runs from (os.pathsep-separated), e.g. a scratch disk;
# no other folder of the server is reachable, by the picker or by a ?run= link.
ROOTS_VARIABLE = "IVAE_RUN_ROOTS"
MAX_LINK = 512  # characters of a ?run= path; a longer one is refused unread
# The files of a run that cached objects are built from: weights, names and orientations, the
# vocabulary, and the index.
RUN_FILES = ("model.pt", "factors.json", "vocab.json", "index/codes.npz")
_EDGE = 1 << 16  # bytes hashed at each end of a large file


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, or {} when it is missing or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve(path: str) -> str:
    """An absolute path; a relative one (as in a shared ?run= link) is taken from the repo."""
    return os.path.abspath(REPO_ROOT / path)


def run_roots(base: Path = REPO_ROOT) -> list[Path]:
    """The folders runs are found in and opened from: ``RUN_ROOTS`` under ``base`` and those
    listed in ``$IVAE_RUN_ROOTS``, as absolute paths."""
    extra = [p for p in os.environ.get(ROOTS_VARIABLE, "").split(os.pathsep) if p]
    roots = [Path(base) / root for root in RUN_ROOTS] + [Path(p) for p in extra]
    return [Path(os.path.abspath(root)) for root in roots]


def confined(path: str, base: Path = REPO_ROOT) -> str | None:
    """``path`` (relative ones from ``base``) as an absolute path when it lies inside one of
    the run roots, else None: a ?run= link can name a run of the project, never another
    folder of the server (whose factors.json a visitor could otherwise write)."""
    if not isinstance(path, str) or not path or len(path) > MAX_LINK or "\0" in path:
        return None
    absolute = os.path.abspath(Path(base) / path)  # collapses "..": no way out lexically
    for root in run_roots(base):
        if absolute != str(root) and os.path.commonpath([absolute, str(root)]) == str(root):
            return absolute
    return None


def relative_label(path: str) -> str:
    """The path relative to the repository when it is inside it, else unchanged."""
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- fingerprints


def file_fingerprint(path: Path) -> tuple:
    """(size, mtime_ns, ctime_ns, inode, hash of the first and last 64 KiB) of a file; ()
    when it is missing.

    Cheap on every rerun (one stat, two small reads), yet it changes whenever the file is
    rewritten: an atomic rewrite (``ivae index``, ``ivae name``) gives a new inode, and any
    write moves ctime, which unlike mtime no copy tool can set back (``cp -p``, ``rsync -t``
    restore the size and mtime of a file whose middle changed).
    """
    try:
        stat = os.stat(path)
        with open(path, "rb") as handle:
            digest = hashlib.blake2b(handle.read(_EDGE), digest_size=8)
            if stat.st_size > _EDGE:
                handle.seek(max(_EDGE, stat.st_size - _EDGE))
                digest.update(handle.read(_EDGE))
    except FileNotFoundError:
        return ()
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, digest.hexdigest()


def run_fingerprint(run_path: str | Path, files: tuple[str, ...] = RUN_FILES) -> tuple:
    """The fingerprints of a run's cached files, a hashable cache key."""
    return tuple(file_fingerprint(Path(run_path) / name) for name in files)


# --------------------------------------------------------------------------- discovery


@dataclass
class RunSummary:
    """What a run directory holds, read from its JSON files without loading the model.
    ``broken`` says what is wrong with a run whose files cannot be read (None when fine)."""

    path: Path
    model: str
    latent_dim: int | None
    trained: bool
    indexed: bool
    mcc: float | None
    broken: str | None = None

    @property
    def label(self) -> str:
        if self.broken:
            return f"{self.path.name} (broken: {self.broken})"
        state = "" if self.trained else " (unfinished)"
        mcc = "" if self.mcc is None else f", MCC {self.mcc:.2f}"
        return f"{self.path.name} [{self.model}{mcc}]{state}"


def _json_object(path: Path) -> tuple[dict, str | None]:
    """(the JSON object in ``path`` or {}, what is wrong with the file or None)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as error:
        return {}, f"{path.name} is unreadable ({type(error).__name__})"
    if not isinstance(data, dict):
        return {}, f"{path.name} is not a JSON object"
    return data, None


def summarize_run(path: Path) -> RunSummary:
    """The summary of one run; a run whose files are malformed is summarised as broken
    (one bad run never stops the others from being listed)."""
    path = Path(path)
    try:
        (config, bad_config), (metrics, bad_metrics) = (
            _json_object(path / name) for name in ("config.json", "metrics.json")
        )
        model_config = config.get("model_config", {})
        latent = metrics.get("latent_dim") or (
            model_config.get("latent_dim") if isinstance(model_config, dict) else None
        )
        mcc = metrics.get("mcc")
        broken = bad_config or bad_metrics
        if mcc is not None and not (isinstance(mcc, int | float) and not isinstance(mcc, bool)):
            broken, mcc = broken or f"metrics.json's mcc is {str(mcc)[:20]!r}, not a number", None
        return RunSummary(
            path=path,
            model=str(config.get("model") or metrics.get("model") or "?")[:60],
            latent_dim=latent if isinstance(latent, int) else None,
            trained=(path / "model.pt").is_file(),
            indexed=(path / "index" / "codes.npz").is_file(),
            mcc=None if mcc is None else float(mcc),
            broken=broken,
        )
    except OSError as error:  # unreadable folder, too long a name
        reason = error.strerror or type(error).__name__
        return RunSummary(path, "?", None, False, False, None, broken=reason)


def find_runs(roots: tuple[str, ...] | None = None, base: Path = REPO_ROOT) -> list[RunSummary]:
    """Run directories (holding config.json or model.pt) up to two levels under each root
    (default: ``run_roots``)."""
    tops = run_roots(base) if roots is None else [Path(base) / root for root in roots]
    found: dict[Path, RunSummary] = {}
    for top in tops:
        for pattern in ("*", "*/*"):
            try:
                candidates = sorted(top.glob(pattern))
            except OSError:
                continue
            for candidate in candidates:
                try:
                    is_run = candidate.is_dir() and (
                        (candidate / "config.json").is_file() or (candidate / "model.pt").is_file()
                    )
                except OSError:
                    continue
                if is_run:
                    found.setdefault(candidate.resolve(), summarize_run(candidate))
    return list(found.values())


def run_options(base: Path = REPO_ROOT, default: Path = DEFAULT_RUN) -> list[str]:
    """Every run found under the roots, the default run first."""
    runs = [str(s.path) for s in find_runs(base=base)]
    if str(default) in runs:
        runs.remove(str(default))
        runs.insert(0, str(default))
    return runs


def compare_runs(paths: list[Path]) -> pd.DataFrame:
    """One row per run: model, MCC, retrieval recalls and median ranks, training time."""
    rows = []
    for path in paths:
        metrics, config = (
            read_json(Path(path) / "metrics.json"),
            read_json(Path(path) / "config.json"),
        )
        retrieval = metrics.get("retrieval") or {}
        row = {
            "run": Path(path).name,
            "model": metrics.get("model") or config.get("model"),
            "latent dim": metrics.get("latent_dim"),
            "MCC": metrics.get("mcc"),
            "MCC (Spearman)": metrics.get("mcc_spearman"),
        }
        for direction, label in (("x_to_y", "image→recipe"), ("y_to_x", "recipe→image")):
            scores = retrieval.get(direction) or {}
            row[f"{label} medR"] = scores.get("medr")
            row[f"{label} R@1"] = scores.get("r1")
            row[f"{label} R@10"] = scores.get("r10")
        row["train time (s)"] = metrics.get("train_seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def example_photos(folder: Path = EXAMPLES) -> list[Path]:
    """The example photos (JPEG or PNG), kitchen dishes first, by name."""
    photos = [p for p in Path(folder).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return sorted(photos, key=lambda p: (not p.name.startswith("kitchen"), p.name))
