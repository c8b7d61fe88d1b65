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


def relative_label(path: str) -> str:
    """The path relative to the repository when it is inside it, else unchanged."""
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- fingerprints


def file_fingerprint(path: Path) -> tuple:
    """(size, mtime_ns, hash of the first and last 64 KiB) of a file; () when it is missing.

    Cheap on every rerun (two small reads), yet it changes whenever the file is rewritten.
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
    return stat.st_size, stat.st_mtime_ns, digest.hexdigest()


def run_fingerprint(run_path: str | Path, files: tuple[str, ...] = RUN_FILES) -> tuple:
    """The fingerprints of a run's cached files, a hashable cache key."""
    return tuple(file_fingerprint(Path(run_path) / name) for name in files)


# --------------------------------------------------------------------------- discovery


@dataclass
class RunSummary:
    """What a run directory holds, read from its JSON files without loading the model."""

    path: Path
    model: str
    latent_dim: int | None
    trained: bool
    indexed: bool
    mcc: float | None

    @property
    def label(self) -> str:
        state = "" if self.trained else " (unfinished)"
        mcc = "" if self.mcc is None else f", MCC {self.mcc:.2f}"
        return f"{self.path.name} [{self.model}{mcc}]{state}"


def summarize_run(path: Path) -> RunSummary:
    config, metrics = read_json(path / "config.json"), read_json(path / "metrics.json")
    latent = metrics.get("latent_dim") or config.get("model_config", {}).get("latent_dim")
    return RunSummary(
        path=path,
        model=str(config.get("model") or metrics.get("model") or "?"),
        latent_dim=latent,
        trained=(path / "model.pt").is_file(),
        indexed=(path / "index" / "codes.npz").is_file(),
        mcc=metrics.get("mcc"),
    )


def find_runs(roots: tuple[str, ...] = RUN_ROOTS, base: Path = REPO_ROOT) -> list[RunSummary]:
    """Run directories (holding config.json or model.pt) up to two levels under each root."""
    found: dict[Path, RunSummary] = {}
    for root in roots:
        top = Path(root) if Path(root).is_absolute() else Path(base) / root
        for pattern in ("*", "*/*"):
            for candidate in sorted(top.glob(pattern)):
                is_run = (candidate / "config.json").is_file() or (candidate / "model.pt").is_file()
                if candidate.is_dir() and is_run:
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
