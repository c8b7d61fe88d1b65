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


def test_the_pretrained_network_reads_it_too_from_fewer_train_photos():
    """``--encoder efficientnet-lite0 --train-items N``: the whole network from its ImageNet
    weights, on the first N train photos."""
    from bench.pixel_ceiling import network

    rng = np.random.default_rng(1)
    n, size = 200, 32
    shown = rng.uniform(0, 1, n)
    x = np.clip(
        40 + 170 * shown[:, None, None, None] + rng.normal(0, 8, (n, 3, size, size)), 0, 255
    )
    split = np.array(["train"] * 150 + ["test"] * 50)
    data = SimpleNamespace(x=x.astype(np.uint8), factors=shown[:, None], split=split)
    history = fit(data, epochs=10, seed=0, encoder="efficientnet-lite0", items=120)
    assert len(history) == 10 and history[-1][0] > 0.9
    net, groups = network("efficientnet-lite0", size, 1)
    assert [g["lr"] for g in groups] == [2e-4, 2e-3]  # the network at a tenth
    net.train()
    assert not any(m.training for m in net.modules() if "BatchNorm" in type(m).__name__)
