"""The pixel ceiling's supervised read-out: it reads a factor the photos show, and not one
they do not."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.pixel_ceiling import fit


def test_the_supervised_read_out_finds_what_the_pixels_show_and_only_that():
    rng = np.random.default_rng(0)
    n, size = 600, 16
    shown = rng.uniform(0, 1, n)  # the photo's brightness
    hidden = rng.uniform(0, 1, n)  # nothing in the photo depends on it
    noise = rng.normal(0, 8, (n, 3, size, size))
    x = np.clip(40 + 170 * shown[:, None, None, None] + noise, 0, 255).astype(np.uint8)
    split = np.array(["train"] * 400 + ["test"] * 200)
    data = SimpleNamespace(x=x, factors=np.stack([shown, hidden], 1), split=split)
    history = fit(data, epochs=4, seed=0)
    assert len(history) == 4
    assert history[-1][0] > 0.95 and abs(history[-1][1]) < 0.2
