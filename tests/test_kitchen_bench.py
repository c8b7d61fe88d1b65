"""bench/kitchen.py's row of the shipped recipe with the Jacobian term on."""

from __future__ import annotations

import json
from argparse import Namespace

from bench.kitchen import BACKBONE_ROWS, KITCHEN, one_run, row_features, run_dir
from tests.tiny_run import make_tiny_dataset


def test_the_shipped_recipe_with_the_jacobian_term_trains_on_a_subset_of_the_photos(tmp_path):
    (row,) = [row for row in BACKBONE_ROWS if row.jacobian_samples]
    assert (row.epochs, row.augment, row.lr) == (KITCHEN.epochs, KITCHEN.augment, KITCHEN.lr)
    assert not row.backbone and not row.encoder  # the shipped CNN, on the photos
    assert row.label(0).endswith("Jacobian term on (eq. 1 weight 0.01, on 8 photos a step)")
    data_dir = make_tiny_dataset(tmp_path / "data", n=64)
    row = row._replace(epochs=1)
    data, features, _ = row_features(Namespace(backbone_data=str(data_dir)), row, {})
    path = run_dir(tmp_path / "runs", data, "kitchen", row, 0)
    assert path.name.endswith("-lw0.01-js8-s0")
    figures = one_run(data, "kitchen", row, 0, path, features)
    options = json.loads((path / "config.json").read_text())["model_config"]
    assert (options["likelihood_weight"], options["jacobian_samples"]) == (0.01, 8)
    history = (path / "history.csv").read_text().splitlines()
    assert "train_log_volume" in history[0]  # eq. 1's Jacobian term was in the objective
    assert 0 <= figures["mcc"] <= 1
