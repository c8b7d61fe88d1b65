"""The tiny run with its unfamiliarity check, built by `ivae index` in EfficientNet-Lite0's
features (64 reference photos, to keep the tests quick); shared by the photo reading tests."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tiny_run import make_tiny_run

_CACHE: dict[str, Path] = {}


def make_checked_run(root: Path) -> Path:
    """A copy of the tiny run, indexed again by the command line (map by PCA, not UMAP)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    import ivae.familiarity as familiarity
    import ivae.index as index_module
    from ivae.cli import main

    path = Path(root) / "checked"
    shutil.copytree(make_tiny_run(Path(root) / "tiny"), path)
    saved = index_module.map_2d, familiarity.REFERENCE_SIZE, familiarity.K
    index_module.map_2d, familiarity.REFERENCE_SIZE, familiarity.K = index_module._pca_2d, 64, 5
    try:
        assert main(["index", str(path)]) == 0
    finally:
        index_module.map_2d, familiarity.REFERENCE_SIZE, familiarity.K = saved
    _CACHE["run"] = path
    return path


def real_photo_jpeg() -> bytes:
    """scikit-image's espresso cup (CC0) as JPEG bytes: a real photo, unlike any tiny dish."""
    import skimage.data

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(skimage.data.coffee())).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
