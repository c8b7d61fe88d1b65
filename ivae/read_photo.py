"""Reading a photo: its factor values, their percentiles among the run's dishes, and how
unfamiliar the photo is (ivae.familiarity). One path for ``ivae read-photo``, the Photo reader
page and the studio's "Upload a photo" start."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ivae import factors
from ivae.familiarity import Familiarity, FamiliarityError, FeatureSpace, feature_space
from ivae.uploads import MAX_BYTES, UploadError, read_upload

EXTRAPOLATION_NOTE = (
    "This photo is unlike the dishes the model was trained on: its factor values are "
    "extrapolations, not readings."
)


@dataclass
class Reading:
    """One photo read. z: (k,) factor values; percentiles: (k,) 0-100 among the run's dishes.
    unfamiliarity and threshold are None when the run has no unfamiliarity check."""

    names: list[str]
    z: np.ndarray
    percentiles: np.ndarray
    unfamiliarity: float | None
    threshold: float | None

    @property
    def unfamiliar(self) -> bool:
        return self.unfamiliarity is not None and self.unfamiliarity > self.threshold

    def as_json(self) -> dict:
        values = zip(self.names, self.z, strict=True)
        percentiles = zip(self.names, self.percentiles, strict=True)
        return {
            "factors": {name: round(float(v), 6) for name, v in values},
            "percentiles": {name: round(float(p), 2) for name, p in percentiles},
            "unfamiliar": self.unfamiliar,
            "unfamiliarity": self.unfamiliarity,
            "threshold": self.threshold,
        }


def verdict(reading: Reading, pass_rate: float) -> str:
    """One or two sentences on a reading's unfamiliarity, for the pages."""
    score = f"unfamiliarity {reading.unfamiliarity:.3f}"
    threshold = (
        f"the threshold {reading.threshold:.3f} that {pass_rate:.0%} of held-out photos of the "
        "run's data stay under"
    )
    if reading.unfamiliar:
        return f"{EXTRAPOLATION_NOTE} Its {score} is above {threshold}."
    return f"Like the dishes the model was trained on: {score}, within {threshold}."


class PhotoReader:
    """A run, the codes of its dishes (index z, (N, k)) and its unfamiliarity check; without
    a check (``check`` None), ``problem`` says why and how to build it."""

    def __init__(
        self,
        run,
        z_all: np.ndarray,
        check: Familiarity | None,
        space: FeatureSpace | None,
        problem: str = "",
    ):
        self.run, self.z_all, self.check, self.space = run, z_all, check, space
        self.problem = problem

    @classmethod
    def for_run(cls, run, z_all: np.ndarray | None = None, require_check: bool = True):
        """The reader of a run; FamiliarityError (or BackboneError) when it has no usable check
        and one is required."""
        from ivae.backbones import BackboneError
        from ivae.familiarity import load_familiarity
        from ivae.index import load_index

        z_all = load_index(run).z if z_all is None else z_all
        try:
            check = load_familiarity(run)
            return cls(run, z_all, check, feature_space(run, check.image_size))
        except (FamiliarityError, BackboneError) as error:
            if require_check:
                raise
            return cls(run, z_all, None, None, problem=str(error))

    def read(self, photo: Image.Image) -> Reading:
        features = None
        if self.space is not None and self.run.config.get("backbone"):  # one backbone pass
            features = self.space.features([photo])  # (1, F)
            z = self.run.encode_x(features)[0]
        else:
            z = self.run.encode_x([photo])[0]
        score = threshold = None
        if self.check is not None:
            features = self.space.features([photo]) if features is None else features
            score = float(self.check.scores(features)[0])
            threshold = float(self.check.threshold)
        pct = factors.percentiles(self.z_all, z)
        return Reading(self.run.factor_names, z, pct, score, threshold)


# --------------------------------------------------------------------------- files


def open_photo(path: str | Path) -> Image.Image:
    """A photo file through the upload checks; UploadError (one sentence) when it cannot be."""
    path = Path(path)
    if not path.exists():
        raise UploadError(f"'{path}' does not exist; check the path and try again.")
    if not path.is_file():
        raise UploadError(f"'{path}' is not a file; give the path of a photo (JPEG, PNG, WebP).")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # read_upload refuses anything longer
    except OSError as error:
        raise UploadError(
            f"'{path}' cannot be read ({error.strerror}); check its permissions."
        ) from None
    return read_upload(data, str(path))


def read_files(reader: PhotoReader, paths: list[str]) -> list[dict]:
    """One JSON object per path, in order: the reading, or ``path`` and ``error``."""
    results = []
    for path in paths:
        try:
            photo = open_photo(path)
        except UploadError as error:
            results.append({"path": str(path), "error": str(error)})
            continue
        results.append({"path": str(path), **reader.read(photo).as_json()})
    return results


def format_table(results: list[dict]) -> str:
    """A readable block per photo: verdict, then one line per factor."""
    lines = []
    for result in results:
        if "error" in result:
            lines += [f"{result['path']}: error: {result['error']}", ""]
            continue
        verdict = "UNFAMILIAR" if result["unfamiliar"] else "familiar"
        compare = ">" if result["unfamiliar"] else "<="
        lines.append(
            f"{result['path']}: {verdict} (unfamiliarity {result['unfamiliarity']:.3f} {compare} "
            f"threshold {result['threshold']:.3f})"
        )
        if result["unfamiliar"]:
            lines.append(f"  {EXTRAPOLATION_NOTE}")
        width = max(len(name) for name in result["factors"])
        for name, value in result["factors"].items():
            pct = result["percentiles"][name]
            lines.append(f"  {name:<{width}}  {value:+8.3f}  percentile {pct:5.1f}")
        lines.append("")
    return "\n".join(lines).rstrip()


def read_photo_command(run_dir: str, paths: list[str], as_json: bool) -> int:
    """``ivae read-photo``: print every photo's reading; 1 when any file could not be read."""
    from ivae.familiarity import reads_photos
    from ivae.run import RunError, load_run

    run = load_run(run_dir)
    if not reads_photos(run):
        raise RunError(f"{run_dir}: this run encodes vectors, not photos; give a photo run")
    results = read_files(PhotoReader.for_run(run), paths)
    print(json.dumps(results, indent=2) if as_json else format_table(results))
    return 1 if any("error" in result for result in results) else 0
