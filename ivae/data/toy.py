"""The iVAE synthetic protocol (Khemakhem et al., AISTATS 2020, Sec. 6.1, arXiv 1907.04809).

Sources are Gaussian within each segment; the segment label ``u`` modulates their variances
(``modulate="variance"``) or their means and variances (``"mean-variance"``). A random
leaky-ReLU MLP with well-conditioned, unit-norm mixing matrices maps them to observations.
With ``data_dim > sources`` the mixing is injective but not square.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

MODULATIONS = ("variance", "mean-variance")
MIXINGS = ("repeat", "independent")  # one matrix reused after the first layer, or one per layer


def _well_conditioned(
    rng: np.random.Generator, rows: int, cols: int, tries: int = 1000
) -> np.ndarray:
    """A uniform(-1, 1) matrix with unit-norm columns whose condition number is in the best
    quarter of random draws, so the mixing neither collapses nor explodes any direction."""

    def draw() -> np.ndarray:
        a = rng.uniform(-1.0, 1.0, (rows, cols))
        return a / np.linalg.norm(a, axis=0, keepdims=True)

    threshold = np.percentile([np.linalg.cond(draw()) for _ in range(tries)], 25)
    while True:
        a = draw()
        if np.linalg.cond(a) < threshold:
            return a


def _leaky_relu(v: np.ndarray, slope: float) -> np.ndarray:
    return np.where(v > 0, v, slope * v)


def mix(
    sources: np.ndarray,
    data_dim: int,
    rng: np.random.Generator,
    layers: int = 3,
    slope: float = 0.1,
    repeat: bool = True,
) -> np.ndarray:
    """(N, n) sources -> (N, data_dim) observations through a `layers`-deep leaky-ReLU MLP.

    ``repeat``: the layers after the first share one (data_dim, data_dim) matrix -- the first
    one itself when the mixing is square -- as the authors' iVAE code does; otherwise every
    layer draws its own."""
    x, a = sources, _well_conditioned(rng, sources.shape[1], data_dim)
    for layer in range(layers):
        if layer > 0 and (not repeat or a.shape != (data_dim, data_dim)):
            a = _well_conditioned(rng, data_dim, data_dim)
        x = x @ a
        if layer < layers - 1:
            x = _leaky_relu(x, slope)
    return x


def generate_toy(
    sources: int = 5,
    data_dim: int = 5,
    segments: int = 40,
    per_segment: int = 1000,
    modulate: str = "variance",
    noise: float = 0.0,
    seed: int = 0,
    mixing: str = "repeat",
) -> dict:
    """Arrays in the docs/design.md vector format: x, u, factors, factor_names, split."""
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    if modulate not in MODULATIONS:
        raise ValueError(f"modulate must be one of {MODULATIONS}, got {modulate!r}")
    if data_dim < sources:
        raise ValueError(
            f"data_dim ({data_dim}) must be at least sources ({sources}) for an injective mixing"
        )
    rng = np.random.default_rng(seed)
    mean, std = _segments(rng, sources, segments, modulate)
    u, s = _draw(rng, mean, std, per_segment)
    x = mix(s, data_dim, rng, repeat=mixing == "repeat")
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    split = rng.choice(np.array(["train", "val", "test"]), size=len(u), p=[0.8, 0.1, 0.1])
    return {
        "x": x.astype(np.float32),
        "u": u.astype(np.int64),
        "factors": s.astype(np.float32),
        "factor_names": np.array([f"source {i + 1}" for i in range(sources)]),
        "split": split,
    }


def _segments(
    rng: np.random.Generator, sources: int, segments: int, modulate: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's source means and sds, (segments, n) each."""
    std = rng.uniform(0.5, 3.0, (segments, sources))
    mean = np.zeros_like(std)
    if modulate == "mean-variance":
        mean = rng.uniform(-5.0, 5.0, (segments, sources))
    return mean, std


def _draw(
    rng: np.random.Generator, mean: np.ndarray, std: np.ndarray, per_segment: int
) -> tuple[np.ndarray, np.ndarray]:
    """The segment labels u (N,) and the sources (N, n)."""
    u = np.repeat(np.arange(len(mean)), per_segment)
    return u, mean[u] + std[u] * rng.standard_normal((len(u), mean.shape[1]))


def _replay(options: dict) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """generate_toy's options with their defaults, its segments' means and sds, and the
    state of its generator just before the mixing matrices are drawn."""
    o = {name: p.default for name, p in inspect.signature(generate_toy).parameters.items()}
    o |= options
    rng = np.random.default_rng(o["seed"])
    mean, std = _segments(rng, o["sources"], o["segments"], o["modulate"])
    _draw(rng, mean, std, o["per_segment"])
    return o, mean, std, rng.bit_generator.state


def toy_mixing(**options) -> Callable[[np.ndarray], np.ndarray]:
    """The noiseless map sources (N, n) -> x (N, data_dim) of ``generate_toy(**options)``."""
    o, _, _, state = _replay(options)
    return _mixing(o, state)


def _mixing(o: dict, state: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``mix`` with the matrices drawn from a generator in ``state`` (``_replay``'s)."""

    def apply(sources: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng()
        rng.bit_generator.state = state  # the same matrices on every call
        return mix(sources, o["data_dim"], rng, repeat=o["mixing"] == "repeat")

    return apply


def resample_toy(options: dict, per_segment: int, fresh_seed: int) -> dict:
    """``per_segment`` new points per segment from the generator that ``generate_toy(**options)``
    used (its segments' means and sds, its mixing, its noise level), drawn from
    ``fresh_seed``: to check an encoder on many more points than the data set holds.
    Arrays x, u, factors."""
    o, mean, std, state = _replay(options)
    fresh = np.random.default_rng(fresh_seed)
    u, s = _draw(fresh, mean, std, per_segment)
    x = _mixing(o, state)(s)
    if o["noise"] > 0:
        x = x + o["noise"] * fresh.standard_normal(x.shape)
    return {"x": x.astype(np.float32), "u": u.astype(np.int64), "factors": s.astype(np.float32)}


def write_toy(out: str | Path, **options) -> Path:
    """Generate and save atomically; returns the path written."""
    from ivae.data.vectors import save_npz

    return save_npz(out, generate_toy(**options))
