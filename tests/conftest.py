"""Shared fixtures: tiny datasets made on the fly, so the default test run stays fast."""

from __future__ import annotations

import numpy as np
import pytest

from ivae.data.toy import generate_toy
from ivae.data.vectors import save_npz


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory) -> str:
    """A small iVAE-protocol dataset: 5 sources, 8 segments x 100 points."""
    arrays = generate_toy(sources=3, data_dim=4, segments=8, per_segment=60, seed=1)
    return str(save_npz(tmp_path_factory.mktemp("toy") / "toy.npz", arrays))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
