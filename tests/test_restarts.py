"""Robust training: restarts chosen by the validation objective, and the run's health report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ivae.data import load_dataset
from ivae.data.toy import write_toy
from ivae.health import MOVING, assess, summary
from ivae.train import TrainConfig, Trainer, candidate_seed, train


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.npz"
    write_toy(path, per_segment=40, segments=10, seed=2)
    return load_dataset(path)


OPTIONS = {"hidden": 16, "flow_layers": 2}


def weights(run) -> dict:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def test_the_best_scoring_start_goes_on_and_every_start_is_reported(toy, tmp_path, monkeypatch):
    scores = iter([0.1, 0.9, 0.5])  # the second initialisation scores best
    monkeypatch.setattr(Trainer, "selection_score", lambda self: next(scores))
    config = TrainConfig(epochs=3, batch_size=64, restarts=3, restart_epochs=1)
    metrics = train(toy, tmp_path / "chosen", "implicit-ivae", OPTIONS, config, progress=False)
    tried = metrics["restarts"]
    assert [t["score"] for t in tried] == [0.1, 0.9, 0.5]
    assert [t["chosen"] for t in tried] == [False, True, False]
    assert [t["seed"] for t in tried] == [candidate_seed(0, c) for c in range(3)]
    assert len(set(t["seed"] for t in tried)) == 3
    history = (tmp_path / "chosen" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3  # the chosen start's epoch, then two more

    # the same run from the chosen start's seed alone differs from the run from seed 0:
    # the chosen weights are not candidate 0's
    alone = TrainConfig(epochs=3, batch_size=64)
    train(toy, tmp_path / "seed0", "implicit-ivae", OPTIONS, alone, progress=False)
    chosen, first = weights(tmp_path / "chosen"), weights(tmp_path / "seed0")
    assert any(not torch.equal(chosen[k], first[k]) for k in chosen)


def diverging(monkeypatch, candidates, step: int = 3) -> None:
    """The loss turns NaN at the ``step``-th step of the given starts (or of a run with one
    start, when ``candidates`` holds 0); every other start trains as usual."""
    real = Trainer.train_step

    def step_of(self, batch):
        if self.candidate in candidates and self.step == step and self.epoch == 0:
            batch = {**batch, "x": torch.full_like(batch["x"], float("nan"))}
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", step_of)


def test_a_start_whose_loss_turns_nan_is_dropped_and_the_next_goes_on(toy, tmp_path, monkeypatch):
    diverging(monkeypatch, {0})
    config = TrainConfig(epochs=3, batch_size=64, restarts=2, restart_epochs=1)
    metrics = train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)
    first, second = metrics["restarts"]
    assert first["score"] is None and "non-finite loss" in first["diverged"]
    assert second["chosen"] and math.isfinite(second["score"]) and not first.get("chosen")
    assert math.isfinite(metrics["mcc"])
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3 and "nan" not in "".join(history[1:]).lower()


@pytest.mark.parametrize("restarts, diverge", [(1, {0}), (2, {0, 1})])
def test_a_nan_loss_stops_the_run_when_no_start_is_left(
    toy, tmp_path, monkeypatch, restarts, diverge
):
    from ivae.train import NonFiniteLoss

    diverging(monkeypatch, diverge)
    config = TrainConfig(epochs=2, batch_size=64, restarts=restarts, restart_epochs=1)
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 1, step 4"):
        train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)


def test_one_start_is_the_run_it_always_was(toy, tmp_path):
    """restarts=1 trains candidate 0 from the run's own seed: no choice, no extra epochs."""
    config = TrainConfig(epochs=2, batch_size=64, restarts=1)
    metrics = train(toy, tmp_path / "one", "implicit-ivae", OPTIONS, config, progress=False)
    assert metrics["restarts"] == []
    assert candidate_seed(7, 0) == 7
    assert TrainConfig.from_json({"epochs": 3}).restarts == 1  # a run saved before restarts


def test_a_run_interrupted_while_choosing_resumes_to_the_same_weights(toy, tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, batch_size=64, restarts=3, restart_epochs=1)
    train(toy, tmp_path / "whole", "implicit-ivae", OPTIONS, config, progress=False)
    step = Trainer.train_step

    def interrupted(self, batch):
        if self.candidate == 1 and self.step == 1:  # inside the second start
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(toy, tmp_path / "parts", "implicit-ivae", OPTIONS, config, progress=False)
    monkeypatch.setattr(Trainer, "train_step", step)
    state = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert state["choosing"] and state["candidate"] == 1
    train(toy, tmp_path / "parts", "implicit-ivae", resume=True, progress=False)
    whole, parts = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
    metrics = json.loads((tmp_path / "parts" / "metrics.json").read_text())
    assert [t["candidate"] for t in metrics["restarts"]] == [0, 1, 2]


def test_history_and_metrics_carry_the_health_signal(toy, tmp_path):
    config = TrainConfig(epochs=3, batch_size=64, restarts=1)
    metrics = train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"val_score", "val_code_change"} <= set(header)
    health = metrics["health"]
    assert health["status"] in ("ok", "poor")
    assert health["status"] == ("poor" if health["warnings"] else "ok")
    n_val = int((toy.split == "val").sum())  # fewer than a batch: the ratio's B
    assert health["ratio_ceiling"] == pytest.approx(math.log(min(64, n_val)))


# ---- the health report: known answers ---------------------------------------------------
def rows(scores, changes, ratio=3.0):
    return [
        {"epoch": i + 1, "val_score": s, "val_code_change": c, "val_ratio": ratio}
        for i, (s, c) in enumerate(zip(scores, changes, strict=True))
    ]


def test_a_settled_run_is_healthy():
    report = assess(rows([1.0, 2.0, 2.5, 2.6], [0.1, 0.001, 0.001, 0.001]), 5.0)
    assert report["status"] == "ok" and report["warnings"] == []
    assert report["code_change"] == pytest.approx(0.001)
    assert report["ratio_share"] == pytest.approx(0.6)


def test_codes_still_moving_are_reported():
    moving = 2 * MOVING
    report = assess(rows([1.0, 2.0, 2.5, 2.6], [0.1, moving, moving, moving]), 5.0)
    assert report["status"] == "poor"
    assert "still moving" in report["warnings"][0] and "--epochs" in report["warnings"][0]


def test_a_falling_validation_objective_is_reported_as_overfitting():
    report = assess(rows([1.0, 3.0, 2.0, 1.8], [0.1, 0.001, 0.001, 0.001]), 5.0)
    assert report["best_epoch"] == 2
    assert any("peaked at epoch 2" in w for w in report["warnings"])


def test_codes_that_say_nothing_of_the_query_are_reported():
    report = assess(rows([0.01, 0.01, 0.01], [0.001] * 3, ratio=0.01), 5.0)
    assert any("almost nothing" in w for w in report["warnings"])
    # a model without a density ratio: no ceiling, no such warning
    assert not assess(rows([0.01] * 3, [0.001] * 3, ratio=0.01), None)["warnings"]


# ---- roll-backs: a run that blows up goes back to its last good epoch ---------------------
def test_a_nan_after_the_first_epoch_rolls_back_and_the_run_finishes(toy, tmp_path, monkeypatch):
    real = Trainer.train_step

    def once(self, batch):  # NaN in epoch 2, at the full learning rate only
        if self.epoch == 1 and self.step == 2 and self.lr_scale == 1.0:
            batch = {**batch, "x": torch.full_like(batch["x"], float("nan"))}
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", once)
    config = TrainConfig(epochs=3, batch_size=64)
    metrics = train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)
    (rollback,) = metrics["rollbacks"]
    assert rollback["epoch"] == 2 and rollback["to_epoch"] == 1 and rollback["lr_scale"] == 0.5
    assert "non-finite loss at epoch 2, step 3" in rollback["reason"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    assert "nan" not in "".join(history[1:]).lower() and math.isfinite(metrics["mcc"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["rollbacks"] == metrics["rollbacks"]  # a resumed run goes on at its rate


def test_an_epoch_whose_codes_point_away_from_their_queries_is_rolled_back(
    toy, tmp_path, monkeypatch
):
    """A finite blow-up (measured: the density ratio went from 0.25 to -2e28 in one epoch)
    is caught at the epoch's end: the ratio fell below -log B."""
    real = Trainer.validate
    blown = []

    def validate(self):
        row = real(self)
        if self.epoch == 1 and not blown:
            blown.append(self.epoch)
            row = {**row, "val_ratio": -2e28}
        return row

    monkeypatch.setattr(Trainer, "validate", validate)
    config = TrainConfig(epochs=3, batch_size=64)
    metrics = train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)
    (rollback,) = metrics["rollbacks"]
    assert rollback["epoch"] == 2 and "density ratio -2e+28, below" in rollback["reason"]
    assert min(r["val_ratio"] for r in metrics_history(tmp_path / "run")) > -1
    assert metrics["health"]["status"] in ("ok", "poor") and "-2e+28" not in str(metrics["health"])


def test_a_run_that_keeps_blowing_up_stops_after_its_roll_backs(toy, tmp_path, monkeypatch):
    from ivae.train import ROLLBACKS, NonFiniteLoss

    real = Trainer.train_step

    def always(self, batch):
        if self.epoch == 1 and self.step == 2:
            batch = {**batch, "x": torch.full_like(batch["x"], float("nan"))}
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", always)
    config = TrainConfig(epochs=3, batch_size=64)
    with pytest.raises(NonFiniteLoss, match=f"epoch 2, step 3.*after {ROLLBACKS} roll-backs"):
        train(toy, tmp_path / "run", "implicit-ivae", OPTIONS, config, progress=False)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["rollbacks"]) == ROLLBACKS  # the good epoch kept
    # the one line says what to do: the good epoch is in last.pt ...
    with pytest.raises(NonFiniteLoss, match="last.pt is intact; lower --lr and continue"):
        train(toy, tmp_path / "run", "implicit-ivae", resume=True, progress=False)
    # ... and a lower rate on --resume starts with its own roll-backs, at its full value
    lower = {"lr": 1e-4}
    with pytest.raises(NonFiniteLoss, match=f"after {ROLLBACKS} roll-backs"):
        train(toy, tmp_path / "run", "implicit-ivae", resume=True, progress=False, changes=lower)
    rates = [
        (r["lr"], r["lr_scale"])
        for r in torch.load(tmp_path / "run" / "last.pt", weights_only=True)["rollbacks"]
    ]
    assert rates == [
        (1e-3, 0.5),
        (1e-3, 0.25),
        (1e-3, 0.125),
        (1e-4, 0.5),
        (1e-4, 0.25),
        (1e-4, 0.125),
    ]


def metrics_history(run) -> list[dict]:
    import pandas as pd

    return pd.read_csv(run / "history.csv").to_dict("records")


def test_the_health_summary_says_where_a_run_was_rolled_back():
    rollback = {"epoch": 6, "reason": "the run blew up", "to_epoch": 5, "lr": 0.01, "lr_scale": 0.5}
    text = summary({"val_score": 0.3, "best_epoch": 9}, [], [rollback])
    assert text == (
        "Validation objective 0.3 at the end, best at epoch 9; blew up in epoch 6 (the run "
        "blew up) and went on from epoch 5 at 0.5 of the learning rate."
    )
    assert "blew up" not in summary({"val_score": 0.3, "best_epoch": 9}, [])


def test_a_snapshot_is_a_host_copy_that_training_does_not_touch():
    from ivae.train import host_copy

    weight = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([weight], lr=0.1)
    weight.sum().backward()
    adam.step()
    state = {"model": {"w": weight}, "optimizer": adam.state_dict(), "history": [{"epoch": 1}]}
    copied = host_copy(state)
    assert copied["model"]["w"].device.type == "cpu" and not copied["model"]["w"].requires_grad
    moment = copied["optimizer"]["state"][0]["exp_avg"]
    before = moment.clone()
    weight.sum().backward()
    adam.step()  # the optimizer's own moment tensors change in place...
    assert torch.equal(moment, before)  # ...the copy's do not
    assert copied["optimizer"]["param_groups"][0]["lr"] == 0.1
    state["history"].append({"epoch": 2})
    assert copied["history"] == [{"epoch": 1}]
    # put back, the optimizer goes on from the copied moments
    adam.load_state_dict(copied["optimizer"])
    assert torch.equal(adam.state[weight]["exp_avg"], before)
