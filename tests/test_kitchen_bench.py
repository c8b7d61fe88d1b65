"""bench/kitchen.py's backbone table: the shipped recipe's rows with the Jacobian term on (of
the whole CNN on the pixels, and of its head on the trunk's features), and the table over every
finished seed of a row."""

from __future__ import annotations

import json
from argparse import Namespace

import pandas as pd

from bench.kitchen import BACKBONE_ROWS, FACTORS, KITCHEN, one_run, row_features, run_dir
from tests.tiny_run import make_tiny_dataset


def test_the_shipped_recipe_with_the_jacobian_term_trains_on_a_subset_of_the_photos(tmp_path):
    (row,) = [row for row in BACKBONE_ROWS if row.jacobian_samples == 8 and not row.likelihood_from]
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


def test_the_shipped_recipe_with_the_heads_jacobian_trains_it_on_the_trunks_features(tmp_path):
    (row,) = [row for row in BACKBONE_ROWS if row.jacobian == "head" and not row.likelihood_from]
    assert (row.epochs, row.augment, row.lr) == (KITCHEN.epochs, KITCHEN.augment, KITCHEN.lr)
    assert row.label(0).endswith(
        "Jacobian term on (eq. 1 weight 0.01, J of the CNN's head on its trunk's features, "
        "on 32 photos a step)"
    )
    data_dir = make_tiny_dataset(tmp_path / "data", n=64)
    row = row._replace(epochs=1)
    data, features, _ = row_features(Namespace(backbone_data=str(data_dir)), row, {})
    path = run_dir(tmp_path / "runs", data, "kitchen", row, 0)
    assert path.name.endswith("-lw0.01-js32-jhead-s0")
    one_run(data, "kitchen", row, 0, path, features)
    options = json.loads((path / "config.json").read_text())["model_config"]
    assert (options["jacobian"], options["jacobian_samples"]) == ("head", 32)
    assert "train_log_volume" in (path / "history.csv").read_text().splitlines()[0]


def finished_run(path, mcc: float) -> None:
    """A run directory as bench.kitchen finds a finished one: its metrics.json."""
    retrieval = {"r10": 50.0, "medr": 5.0}
    metrics = {
        "mcc": mcc,
        "mcc_per_factor": dict.fromkeys(FACTORS, mcc),
        "nuisance_leakage": {"warmth": 0.05},
        "retrieval": {"x_to_y": retrieval, "y_to_x": retrieval},
        "train_seconds": 60.0,
    }
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_the_backbone_table_is_over_every_finished_seed_not_only_those_asked_for(
    tmp_path, monkeypatch
):
    """Rerunning one row with fewer --seeds must not drop another row's extra seeds."""
    import bench.kitchen as kitchen

    written = {}
    monkeypatch.setattr(kitchen, "read_section", lambda name: "")
    monkeypatch.setattr(kitchen, "write_section", lambda name, body: written.update({name: body}))
    data_dir = make_tiny_dataset(tmp_path / "data", n=64)
    (row,) = [row for row in BACKBONE_ROWS if row.jacobian_samples == 8 and not row.likelihood_from]
    data, _, _ = row_features(Namespace(backbone_data=str(data_dir)), row, {})
    for seed, mcc in ((0, 0.7), (2, 0.9)):  # seed 2 beyond the --seeds 1 below
        finished_run(run_dir(tmp_path / "runs", data, "kitchen", row, seed), mcc)
    args = Namespace(
        backbone_data=str(data_dir),
        out=str(tmp_path / "runs"),
        seeds=1,
        threads=1,
        rows=[BACKBONE_ROWS.index(row)],
        report_only=True,
    )
    kitchen.backbone_main(args)
    (line,) = [line for line in written["kitchen-backbone"].splitlines() if "Jacobian" in line]
    assert "| 0.800 ± 0.141 |" in line and line.endswith("| 2 |")  # both finished seeds


def test_the_rows_with_eq1_from_epoch_11_name_and_train_it_so(tmp_path):
    rows = [row for row in BACKBONE_ROWS if row.likelihood_from]
    assert {row.jacobian for row in rows} == {"", "head"}  # on the pixels, on the head
    assert all(row.label(0).endswith("from epoch 11 on)") for row in rows)
    data_dir = make_tiny_dataset(tmp_path / "data", n=64)
    row = rows[0]._replace(epochs=3)  # eq. 1 from epoch 2 of 3
    data, features, _ = row_features(Namespace(backbone_data=str(data_dir)), row, {})
    path = run_dir(tmp_path / "runs", data, "kitchen", row, 0)
    assert path.name.endswith("-js8-from2-s0")
    one_run(data, "kitchen", row, 0, path, features)
    options = json.loads((path / "config.json").read_text())["model_config"]
    assert options["likelihood_from"] == 0.33
    history = pd.read_csv(path / "history.csv")
    assert history["train_log_volume"].isna().tolist() == [True, False, False]


def test_term_gradients_measures_each_terms_pull_on_the_parameters():
    import torch

    from bench.term_gradients import gradient_norms
    from ivae.models import build_model
    from ivae.nets import Modality

    torch.manual_seed(0)
    options = {"latent_dim": 2, "hidden": 8, "width": 8, "likelihood_weight": 0.01}
    model = build_model(
        "implicit-ivae", options, Modality("image", (3, 16, 16)), Modality("vector", (3,))
    )
    batch = {"x": torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), "y": torch.randn(6, 3)}
    norms = gradient_norms(model, batch)
    assert set(norms) == {"ratio", "log_prior", "log_volume"}
    assert all(0 < v < float("inf") for v in norms.values())
    model.zero_grad()
    model.loss(batch)["ratio"].backward()
    by_hand = torch.stack([p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None])
    assert abs(norms["ratio"] - float(by_hand.sum().sqrt())) < 1e-4
