"""How unlike the training photos a photo is: deep nearest neighbours.

Sun, Ming, Zhu & Li, "Out-of-distribution detection with deep nearest neighbors" (ICML 2022):
a photo's unfamiliarity is the Euclidean distance from its L2-normalised backbone feature to
the k-th nearest L2-normalised feature among the training photos. Nothing is trained and no
density is assumed: a photo whose k-th neighbour is far lies where the training photos do not.
The threshold is the score that 95% of held-out photos (the val split) stay at or under, the
paper's operating point (95% of in-distribution photos pass).

``ivae index`` writes ``RUN_DIR/index/familiarity.npz``: the reference features (a seeded
subset of the train split, float16, unit rows), k, the threshold and the backbone's name and
weights hash. A run whose encoder is not a pretrained backbone (the from-scratch ``cnn``)
is checked in the features of ``FALLBACK_BACKBONE``: its own features were learned on
procedural dishes only and say nothing reliable about a real photo.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ivae.images import DECODE_ERRORS, SkippedImages
from ivae.index import NearestNeighbors
from ivae.io import read_built, save_npz

FAMILIARITY_FILE = Path("index") / "familiarity.npz"
PASS_RATE = 0.95  # share of held-out kitchen photos that pass the threshold
K = 5  # the k-th neighbour (bench/photo_ood.py: AUROC and false alarms vs k)
REFERENCE_SIZE = 2000  # train photos kept (bench/photo_ood.py: AUROC vs subset size)
FALLBACK_BACKBONE = "efficientnet-lite0"
FEATURE_BATCH = 64


class FamiliarityError(ValueError):
    """A run has no usable unfamiliarity check; the message says which command builds it."""


# --------------------------------------------------------------------------- the score


def normalise(features: np.ndarray) -> np.ndarray:
    """(N, F) float32 rows scaled to unit length (an all-zero row stays zero)."""
    f = np.atleast_2d(np.asarray(features, dtype=np.float32))
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def kth_distance(reference: NearestNeighbors, features: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from each normalised feature row to its k-th nearest reference point."""
    if not 1 <= k <= len(reference):
        raise FamiliarityError(f"k = {k} needs 1 <= k <= {len(reference)} reference photos")
    _, distances = reference.search(normalise(features), n=k)  # (N, k), closest first
    return distances[:, k - 1].astype(np.float64)


def pass_threshold(scores: np.ndarray, pass_rate: float = PASS_RATE) -> float:
    """The ceil(pass_rate * n)-th smallest score: at least ``pass_rate`` of ``scores`` are at
    or under it (exactly that share when the scores are distinct and pass_rate * n is whole)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if len(ordered) == 0:
        raise FamiliarityError("no calibration photos: the threshold needs held-out scores")
    rank = int(np.ceil(round(pass_rate * len(ordered), 9)))  # round: 0.95 * 100 = 95.00000001
    return float(ordered[min(max(rank, 1), len(ordered)) - 1])


def reference_rows(n_train: int, size: int = REFERENCE_SIZE, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded subset of ``size`` train rows (all of them when fewer): the
    first ``size`` of one seeded permutation, so a smaller subset lies inside a larger one."""
    return np.sort(np.random.default_rng(seed).permutation(n_train)[:size])


@dataclass
class Familiarity:
    """A run's unfamiliarity check. reference: (M, F) float16 unit rows of train photos."""

    reference: np.ndarray
    k: int
    threshold: float
    backbone: str
    weights_hash: str
    image_size: int = 0  # the backbone's input size (photos are resized to it)
    pass_rate: float = PASS_RATE
    _searcher: NearestNeighbors | None = field(default=None, repr=False, compare=False)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N,) unfamiliarity of (N, F) backbone features: the k-th neighbour distance."""
        if self._searcher is None:
            self._searcher = NearestNeighbors(self.reference.astype(np.float32))
        features = np.atleast_2d(features)
        if features.shape[1] != self.reference.shape[1]:
            raise FamiliarityError(
                f"features have {features.shape[1]} dimensions but the check was built on "
                f"{self.reference.shape[1]} ({self.backbone}); rebuild it with `ivae index`"
            )
        return kth_distance(self._searcher, features, self.k)

    def unfamiliar(self, scores: np.ndarray) -> np.ndarray:
        """(N,) True where a score is above the threshold."""
        return np.asarray(scores) > self.threshold


def fit_familiarity(
    reference_features: np.ndarray,
    calibration_features: np.ndarray,
    k: int = K,
    backbone: str = "",
    weights_hash: str = "",
    image_size: int = 0,
    pass_rate: float = PASS_RATE,
) -> Familiarity:
    """The check over ``reference_features`` (train photos), its threshold set so that
    ``pass_rate`` of ``calibration_features`` (held-out photos) pass."""
    reference = normalise(reference_features).astype(np.float16)  # stored as float16
    check = Familiarity(reference, k, np.inf, backbone, weights_hash, image_size, pass_rate)
    check.threshold = pass_threshold(check.scores(calibration_features), pass_rate)
    return check


# --------------------------------------------------------------------------- storage


def save_familiarity(check: Familiarity, path: Path) -> None:
    save_npz(
        Path(path),
        {
            "reference": check.reference.astype(np.float16),
            "k": np.asarray(check.k),
            "threshold": np.asarray(check.threshold),
            "pass_rate": np.asarray(check.pass_rate),
            "backbone": np.asarray(check.backbone),
            "weights_hash": np.asarray(check.weights_hash),
            "image_size": np.asarray(check.image_size),
        },
    )


def read_familiarity(path: Path) -> Familiarity:
    """Load familiarity.npz (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        return Familiarity(
            reference=f["reference"].astype(np.float16),
            k=int(f["k"]),
            threshold=float(f["threshold"]),
            backbone=str(f["backbone"]),
            weights_hash=str(f["weights_hash"]),
            image_size=int(f["image_size"]),
            pass_rate=float(f["pass_rate"]),
        )


# --------------------------------------------------------------------------- a run's check


@dataclass
class FeatureSpace:
    """The backbone a run's photos are compared in: name, weights hash, input size and the
    features of a list of PIL images, (N, F) float32."""

    name: str
    weights_hash: str
    image_size: int
    features: Callable[[list[Image.Image]], np.ndarray]


@functools.lru_cache(maxsize=4)
def _backbone(name: str, image_size: int | None):
    from ivae.backbones import get_backbone

    return get_backbone(name, image_size=image_size)


def feature_space(run, image_size: int | None = None) -> FeatureSpace:
    """The run's own pretrained backbone, or else FALLBACK_BACKBONE at ``image_size`` (the
    data set's own size, as ivae.features computes features: photos are not upsampled)."""
    spec = run.config.get("backbone") or {}
    if spec.get("name") not in (None, "cnn"):
        size = int(spec.get("image_size", 0))
        return FeatureSpace(spec["name"], spec.get("weights_hash", ""), size, run.image_features)
    backbone = _backbone(FALLBACK_BACKBONE, image_size or None)
    return FeatureSpace(
        backbone.name, backbone.weights_hash, backbone.image_size, backbone.features
    )


def photo_features(space: FeatureSpace, paths: list[Path], progress: bool = False) -> np.ndarray:
    """(N, F) features of image files, read in batches (the train photos, not uploads)."""
    starts = range(0, len(paths), FEATURE_BATCH)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"{space.name} features", unit="batch")
    parts, skipped = [], SkippedImages()
    for start in starts:
        opened = [_open_rgb(p, skipped) for p in paths[start : start + FEATURE_BATCH]]
        photos = [photo for photo in opened if photo is not None]
        if photos:
            parts.append(np.asarray(space.features(photos), dtype=np.float32))
    if not parts:
        raise FamiliarityError(f"none of the {len(paths)} photos can be decoded (e.g. {paths[0]})")
    return np.concatenate(parts)


def _open_rgb(path: Path, skipped: SkippedImages) -> Image.Image | None:
    """The photo in RGB, or None (skipped, one line on stderr) when it cannot be decoded."""
    try:
        with warnings.catch_warnings():  # a photo of > 89M pixels: a decompression bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.convert("RGB")
    except (*DECODE_ERRORS, Image.DecompressionBombWarning) as error:
        if isinstance(error, FileNotFoundError):
            raise FamiliarityError(f"{path} is missing; restore it or rebuild the data") from None
        skipped.skip(len(skipped), path, error)
        return None


def build_familiarity(
    run,
    data_dir: Path | None = None,
    k: int | None = None,
    reference_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Familiarity:
    """Features of a seeded subset of the train photos and of every val photo, the check fitted
    on them and saved to ``RUN_DIR/index/familiarity.npz``. k and reference_size default to
    K and REFERENCE_SIZE."""
    from ivae.data.paired import read_info

    k, reference_size = k or K, reference_size or REFERENCE_SIZE
    data_dir = Path(data_dir or run.data_dir())
    space = feature_space(run, read_info(data_dir).get("image_size"))
    if run.config.get("backbone"):  # its data's features are cached already (ivae.features)
        train, val = _cached_features(run, data_dir, reference_size, seed)
    else:
        train, val = _file_features(space, data_dir, reference_size, seed, progress)
    check = fit_familiarity(
        train, val, min(k, len(train)), space.name, space.weights_hash, space.image_size
    )
    save_familiarity(check, Path(run.path) / FAMILIARITY_FILE)
    return check


def _check_splits(data_dir: Path, n_train: int, n_val: int) -> None:
    if not n_train or not n_val:
        raise FamiliarityError(
            f"{data_dir}: the unfamiliarity check needs train and val photos "
            f"({n_train} train, {n_val} val)"
        )


def _file_features(space, data_dir: Path, size: int, seed: int, progress: bool) -> tuple:
    """(reference, calibration) features of the image files: the train subset, every val."""
    from ivae.data.paired import read_items

    items = read_items(data_dir)
    train, val = (items[items["split"] == s]["image"].tolist() for s in ("train", "val"))
    _check_splits(data_dir, len(train), len(val))
    rows = reference_rows(len(train), size, seed)
    reference = photo_features(space, [data_dir / train[i] for i in rows], progress)
    return reference, photo_features(space, [data_dir / p for p in val], progress)


def _cached_features(run, data_dir: Path, size: int, seed: int) -> tuple:
    """The same from a backbone run's data, whose x is the photos' cached features (N, F)."""
    data = run.load_data(data_dir)
    train, val = (np.flatnonzero(data.split == s) for s in ("train", "val"))
    _check_splits(data_dir, len(train), len(val))
    # read only the reference rows of the train split, not all of it
    return data.x[train[reference_rows(len(train), size, seed)]], data.x[val]


def reads_photos(run) -> bool:
    """Whether a run's encoder takes photos (pixels, or a backbone's features of them)."""
    return bool(run.config.get("backbone")) or run.config["data"]["x"]["kind"] == "image"


def load_familiarity(run, space: FeatureSpace | None = None) -> Familiarity:
    """The run's saved check; FamiliarityError saying to run ``ivae index`` when it is absent,
    unreadable or built in another backbone's features."""
    path = Path(run.path) / FAMILIARITY_FILE
    command = f"ivae index {run.path}"
    missing = f"run {run.path} has no unfamiliarity check yet"
    check = read_built(path, read_familiarity, FamiliarityError, missing, command)
    space = space or feature_space(run, check.image_size)
    built = (check.backbone, check.weights_hash, check.image_size)
    now = (space.name, space.weights_hash, space.image_size)
    if built != now:
        raise FamiliarityError(
            f"{path} was built in the features of {_describe(built)}, the run reads photos "
            f"with {_describe(now)}; rebuild it with `{command}`"
        )
    return check


def _describe(space: tuple[str, str, int]) -> str:
    name, weights_hash, image_size = space
    return f"{name} (weights {weights_hash or '?'}, {image_size} px)"
