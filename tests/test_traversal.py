"""Traversals by retrieval on a hand-made index whose right dish per step is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ivae.index import Index
from ivae.traversal import (
    band_edges,
    column_stats,
    coupled_point,
    regression_slopes,
    repeats,
    shares,
    standardised_means,
    traversal_grid,
    traverse,
    word_shares,
)

# Two factors. Factor 0's values sorted: 0 0 1 2 3 4 4.5, so its 0th/50th/100th percentiles
# are 0, 2 and 4.5 and the 25th/75th (the bands' edges for 3 steps) 0.5 and 3.5.
CODES = np.array([[0, 0], [4.5, 0], [0, 3], [1, 3], [2, 2.5], [3, 3.5], [4, 3]], dtype=np.float32)
HOLD = np.array([1.0, 4.0])  # the other factor counts 4x, as "hold the other factors"
THREE = {"steps": 3, "low": 0.0, "high": 100.0}


def hand_index(z: np.ndarray = CODES) -> Index:
    n = len(z)
    return Index(
        ids=np.array([f"d{i}" for i in range(n)]),
        z=z,
        y_mean=z.copy(),
        y_logvar=np.zeros_like(z),
        map2d=np.zeros((n, 2), dtype=np.float32),
    )


def test_nearest_steps_say_what_they_show():
    """Asked for 0, 2, 4.5 on factor 0 from (0, 0): the middle step's nearest dish is the
    start dish again (its own value 0, distance 2), and the table says so."""
    index = hand_index()
    strip = traverse(index, np.array([0.0, 0.0]), 0, HOLD, **THREE)
    table = strip.table(index.z)
    assert table["requested"].tolist() == pytest.approx([0, 2, 4.5])
    assert table["item"].tolist() == [0, 0, 1]
    assert table["shown"].tolist() == pytest.approx([0, 0, 4.5])
    assert table["distance"].tolist() == pytest.approx([0, 2, 0])
    assert table["repeat_of"].tolist() == [-1, 0, -1]


def test_staying_on_the_data_moves_the_factor_every_step():
    """Bands [0, 0.5), [0.5, 3.5), [3.5, 4.5]: in the middle band (rows 3, 4, 5) the dish
    nearest to the start in factor 1 is row 4 (2, 2.5), at distance sqrt(4 * 2.5^2) = 5 from
    the requested (2, 0)."""
    index = hand_index()
    assert band_edges(index, 0, np.array([0, 50, 100])).tolist() == [
        [0, 0.5],
        [0.5, 3.5],
        [3.5, 4.5],
    ]
    strip = traverse(index, np.array([0.0, 0.0]), 0, HOLD, follow="data", **THREE)
    table = strip.table(index.z)
    assert table["item"].tolist() == [0, 4, 1]
    assert table["shown"].tolist() == pytest.approx([0, 2, 4.5])
    assert table["distance"].tolist() == pytest.approx([0, 5, 0])
    assert (table["repeat_of"] == -1).all()


def test_allowed_dishes_only():
    """Only rows 2-6 allowed (one dish type): with equal weights (0, 3) is nearest to (0, 0)
    and (4, 3) to (4.5, 0); staying on the data, a band without enough allowed dishes shows
    fewer (-1) instead of dishes from outside."""
    index = hand_index()
    allowed = np.array([False, False, True, True, True, True, True])
    strip = traverse(index, np.array([0.0, 0.0]), 0, np.ones(2), allowed=allowed, **THREE)
    assert strip.shown.tolist() == [2, 4, 6]
    data = traverse(
        index, np.array([0.0, 0.0]), 0, HOLD, follow="data", allowed=allowed, neighbours=2, **THREE
    )
    assert data.rows.tolist() == [[2, -1], [4, 3], [6, -1]]
    assert np.isinf(data.distances[0, 1])


def test_neighbourhoods_are_ordered_by_distance():
    index = hand_index()
    strip = traverse(index, np.array([0.0, 0.0]), 0, np.ones(2), neighbours=3, **THREE)
    assert strip.rows.shape == (3, 3)
    assert np.all(np.diff(strip.distances, axis=1) >= 0)


def test_regression_slopes_and_the_coupled_point():
    """Factor 1 = -2 x factor 0 on the data: moving factor 0 by +1 moves factor 1 by -2."""
    x = np.linspace(-1, 1, 21)
    z = np.stack([x, -2 * x, np.ones_like(x)], axis=1)
    slopes = regression_slopes(z)
    assert slopes[0] == pytest.approx([1, -2, 0])
    assert slopes[1] == pytest.approx([-0.5, 1, 0])
    assert coupled_point(np.zeros(3), 0, 1.0, slopes) == pytest.approx([1, -2, 0])
    assert coupled_point(np.zeros(3), 0, 1.0) == pytest.approx([1, 0, 0])


def test_traversing_along_the_correlations_stays_on_the_data():
    """Codes on the line z1 = -z0: moving z0 alone from the middle asks for points off the
    line, whose nearest dish (equal weights) stays near the middle; along the correlation the
    requested points are on the line and every step is at distance 0."""
    x = np.linspace(-2, 2, 41, dtype=np.float32)
    index = hand_index(np.stack([x, -x], axis=1))
    start = np.zeros(2)
    alone = traverse(index, start, 0, np.ones(2), **THREE).table(index.z)
    along = traverse(index, start, 0, np.ones(2), slopes=regression_slopes(index.z), **THREE)
    assert alone["shown"].tolist() == pytest.approx([-1, 0, 1])
    assert along.table(index.z)["shown"].tolist() == pytest.approx([-2, 0, 2])
    assert along.distances[:, 0] == pytest.approx([0, 0, 0], abs=1e-5)


def test_the_grid_has_one_traversal_per_factor():
    index = hand_index()
    grid = traversal_grid(index, CODES[0], lambda j: np.ones(2), **THREE)
    assert [t.factor for t in grid] == [0, 1]
    assert grid[1].points[:, 0] == pytest.approx([0, 0, 0])  # factor 0 held at the start


def test_repeats():
    assert repeats(np.array([3, 3, 5, 3, -1, 5])).tolist() == [-1, 0, -1, 0, -1, 2]


def test_unknown_follow_lists_the_valid_ones():
    with pytest.raises(ValueError, match="nearest, data"):
        traverse(hand_index(), np.zeros(2), 0, np.ones(2), follow="sideways")


def test_what_else_changes():
    values = np.array([0.0, 2.0, 4.0, 6.0])  # mean 3, std sqrt(5)
    rows = np.array([[0, 1], [2, 3], [3, -1]])
    frame = standardised_means(rows, {"zoom": values})
    assert frame["zoom"].tolist() == pytest.approx(np.array([-2, 2, 3]) / np.sqrt(5))
    assert column_stats({"zoom": values}) == {"zoom": (3.0, pytest.approx(np.sqrt(5)))}
    given = standardised_means(rows, {"zoom": values}, stats={"zoom": (0.0, 2.0)})
    assert given["zoom"].tolist() == pytest.approx([0.5, 2.5, 3.0])
    dish = shares([["soup", "soup", "stew"], ["stew"]])
    pd.testing.assert_frame_equal(dish, pd.DataFrame({"soup": [2 / 3, 0.0], "stew": [1 / 3, 1.0]}))
    texts = [["Beef stew", "beef soup"], ["pea soup", "Pea stew with mint"]]
    words = word_shares(texts, top=2)
    assert list(words.columns) == ["beef", "pea"]
    assert words.to_numpy().tolist() == [[1.0, 0.0], [0.0, 1.0]]
