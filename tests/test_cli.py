"""The `ivae` command end to end on tiny data, including interrupted runs and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ivae
from ivae.cli import TRAIN_FLAGS, build_parser, main, train_options
from ivae.data import load_dataset
from ivae.presets import PRESETS
from ivae.train import TrainConfig, TrainingError, train

FAST = ["--epochs", "2", "--batch-size", "64", "--quiet", "--set", "hidden=32"]


def ivae_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ivae", *args], capture_output=True, text=True, **kw
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_toy_train_evaluate_index_round_trip(tmp_path):
    data, run = tmp_path / "toy.npz", tmp_path / "run"
    assert (
        main(
            [
                "data",
                "toy",
                "--out",
                str(data),
                "--sources",
                "3",
                "--segments",
                "6",
                "--per-segment",
                "50",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--model",
                "implicit-ivae",
                "--out",
                str(run),
                "--latent-dim",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    assert {"config.json", "model.pt", "last.pt", "history.csv", "metrics.json"} <= {
        p.name for p in run.iterdir()
    }
    report = json.loads(ivae_cli("evaluate", str(run), "--json").stdout)
    assert set(report) == {
        "model",
        "latent_dim",
        "n_items",
        "split",
        "mcc",
        "mcc_spearman",
        "mcc_per_factor",
        "correlation_matrix",
        "retrieval",
    }
    assert report["latent_dim"] == 3 and report["split"] == "test"
    assert set(report["mcc_per_factor"]) == {"source 1", "source 2", "source 3"}
    assert np.shape(report["correlation_matrix"]) == (3, 3)
    assert set(report["retrieval"]["x_to_y"]) == {"medr", "r1", "r5", "r10"}


def test_python_api_matches_the_saved_codes(tmp_path, toy_npz):
    run_dir = tmp_path / "run"
    train(
        load_dataset(toy_npz),
        run_dir,
        "vae",
        {"latent_dim": 2, "hidden": 16},
        TrainConfig(epochs=1, batch_size=32),
        progress=False,
    )
    run = ivae.load_run(run_dir)
    data = run.load_data()
    z = run.encode_x(data.x[:5])
    mean, logvar = run.encode_y(data.y[:5])
    assert z.shape == mean.shape == logvar.shape == (5, 2)
    assert run.factor_names == ["factor 1", "factor 2"]
    assert len(run.history) == 1 and "train_recon_loss" in run.history


def test_evaluate_reports_null_mcc_without_ground_truth(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, u=np.arange(300) % 5)
    run = tmp_path / "run"
    ivae_cli(
        "train",
        "--data",
        str(tmp_path / "d.npz"),
        "--model",
        "contrastive",
        "--out",
        str(run),
        *FAST,
    )
    report = json.loads(ivae_cli("evaluate", str(run), "--json").stdout)
    assert report["mcc"] is None and report["mcc_per_factor"] is None
    assert report["retrieval"]["subset_size"] == report["n_items"]


def _checkpoint_step(path: Path) -> tuple[int, int]:
    try:
        state = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return (-1, -1)
    return state["epoch"], state["step"]


def test_kill_mid_epoch_then_resume_finishes(tmp_path, toy_npz):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ivae",
        "train",
        "--data",
        toy_npz,
        "--model",
        "vae",
        "--out",
        str(run),
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--quiet",
        "--checkpoint-seconds",
        "0",
        "--set",
        "hidden=16",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for a checkpoint in the middle of epoch >= 2
        epoch, step = _checkpoint_step(run / "last.pt")
        if epoch >= 1 and step > 0:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model.pt").exists(), "killed before the end"
    with pytest.raises(ivae.RunError, match="--resume"):
        ivae.load_run(run)
    ivae_cli(*cmd[3:], "--resume")
    history = ivae.load_run(run).history
    assert list(history["epoch"]) == list(range(1, 7))


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, toy_npz, monkeypatch):
    from ivae.models.implicit_ivae import ImplicitIVAE

    calls = {"n": 0}
    original = ImplicitIVAE.loss

    def poisoned(self, batch):
        calls["n"] += 1
        terms = original(self, batch)
        if calls["n"] > 20:
            terms["log_volume"] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(ImplicitIVAE, "loss", poisoned)
    with pytest.raises(TrainingError, match=r"step \d+: log_volume = nan.*intact"):
        train(
            load_dataset(toy_npz),
            tmp_path / "run",
            "implicit-ivae",
            {"hidden": 16},
            TrainConfig(epochs=5, batch_size=32),
            progress=False,
        )
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] >= 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


BAD_INPUT = [
    (["evaluate", "no/such/run"], "no such run directory"),
    (["train", "--data", "missing.npz", "--model", "vae", "--out", "RUN"], "no such"),
    (["train", "--data", "TOY", "--model", "nope", "--out", "RUN"], "choose one of"),
    (["train", "--data", "TOY", "--model", "vae", "--out", "RUN", "--epochs", "0"], "out of range"),
    (["train", "--data", "TOY", "--model", "vae", "--out", "RUN", "--lr", "-1"], "out of range"),
    (["train", "--data", "TOY", "--model", "vae", "--out", "RUN", "--set", "wat=1"], "unknown"),
    (["train", "--data", "BAD", "--model", "vae", "--out", "RUN"], "must have 2 dimension"),
    (["train", "--data", "NOTZIP", "--model", "vae", "--out", "RUN"], "not a readable"),
    (["train", "--data", "TOY", "--model", "vae", "--out", "RUN", "--resume"], "nothing to resume"),
    (["data", "toy", "--out", "X.npz", "--data-dim", "2"], "at least sources"),
    (["train", "--data", "TOY", "--preset", "nope", "--out", "RUN"], "choose one of: kitchen, toy"),
    (["train", "--data", "TOY", "--out", "RUN"], "needs --model NAME or --preset NAME"),
]


@pytest.mark.parametrize(
    "args, message",
    BAD_INPUT,
    ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in enumerate(BAD_INPUT)],
)
def test_bad_input_is_one_line_on_stderr(tmp_path, toy_npz, args, message):
    np.savez(tmp_path / "bad.npz", x=np.zeros(10), u=np.zeros(10, int))
    (tmp_path / "notzip.npz").write_text("hello")
    subs = {
        "TOY": toy_npz,
        "BAD": str(tmp_path / "bad.npz"),
        "RUN": str(tmp_path / "run"),
        "NOTZIP": str(tmp_path / "notzip.npz"),
        "X.npz": str(tmp_path / "x.npz"),
    }
    proc = ivae_cli(*[subs.get(a, a) for a in args], check=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


def test_existing_run_is_never_overwritten(tmp_path, toy_npz):
    run = tmp_path / "run"
    args = ["train", "--data", toy_npz, "--model", "vae", "--out", str(run), *FAST]
    ivae_cli(*args)
    before = (run / "model.pt").read_bytes()
    proc = ivae_cli(*args, check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (run / "model.pt").read_bytes() == before


def parsed_train(*flags: str) -> tuple[str, dict, dict]:
    return train_options(build_parser().parse_args(["train", "--data", "D", "--out", "O", *flags]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_alone_fills_every_option(name):
    preset = PRESETS[name]
    model, options, fields = parsed_train("--preset", name)
    assert model == preset.model
    assert options == {**preset.model_options, "latent_dim": preset.latent_dim}
    assert fields == {k: getattr(preset, k) for k in TRAIN_FLAGS}
    # the recipe spelled out (`ivae presets`) parses back to the same options
    assert parsed_train(*preset.command().split()) == (model, options, fields)


def test_flags_given_override_the_preset_and_the_rest_stay():
    model, options, fields = parsed_train(
        "--preset", "kitchen", "--epochs", "2", "--latent-dim", "3", "--set", "hidden=32"
    )
    kitchen = PRESETS["kitchen"]
    assert model == kitchen.model and fields["epochs"] == 2
    assert options == {**kitchen.model_options, "hidden": 32, "latent_dim": 3}
    assert fields["lr"] == kitchen.lr and fields["batch_size"] == kitchen.batch_size
    assert fields["augment"] == "dihedral"


def test_without_a_preset_unset_flags_keep_the_trainer_defaults():
    assert parsed_train("--model", "vae") == ("vae", {}, {})
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:  # the defaults --help states are the trainer's
        if action.dest in TRAIN_FLAGS:
            value = getattr(TrainConfig, action.dest)
            shown = value if isinstance(value, str) else f"{value:g}"
            assert f"default {shown})" in action.help, action.dest


def test_train_with_a_preset_records_it_in_the_run(tmp_path, toy_npz):
    run = tmp_path / "run"
    ivae_cli(
        "train", "--data", toy_npz, "--preset", "toy", "--out", str(run), "--epochs", "1",
        "--latent-dim", "3", "--quiet",
    )  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    toy = PRESETS["toy"]
    assert config["preset"] == "toy" and config["model"] == toy.model
    assert config["train"]["epochs"] == 1 and config["train"]["lr"] == toy.lr
    assert config["train"]["batch_size"] == toy.batch_size
    assert config["model_config"]["hidden"] == toy.model_options["hidden"]
    assert config["model_config"]["latent_dim"] == 3


def test_presets_lists_every_preset_with_its_recipe():
    out = ivae_cli("presets").stdout
    for preset in PRESETS.values():
        assert preset.name in out and preset.command() in out


def test_models_lists_every_registered_model():
    out = ivae_cli("models").stdout
    for name in ("implicit-ivae", "ivae", "vae", "beta-vae", "contrastive"):
        assert name in out


def test_name_orients_every_matched_factor_to_rise_with_its_truth(tmp_path, toy_npz):
    from ivae.metrics import mcc
    from ivae.run import name_from_truth

    train(
        load_dataset(toy_npz),
        tmp_path / "run",
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16},
        TrainConfig(epochs=2, batch_size=32),
        progress=False,
    )
    run = ivae.load_run(tmp_path / "run")
    data = run.load_data()
    notes = name_from_truth(run, data)
    part = data.part("test")
    result = mcc(part.factors, run.encode_x(part.x))
    for row, column in enumerate(result["matching"]):
        assert run.factor_names[column] == part.factor_names[row]
        assert result["correlation"][row, column] > 0
    assert ivae.load_run(tmp_path / "run").factor_notes() == notes
    z, (mean, logvar) = run.encode_x(part.x), run.encode_y(part.y)
    raw = run.model.score(*(torch.as_tensor(a) for a in (z / run.signs, mean / run.signs, logvar)))
    assert np.allclose(run.score(z, mean, logvar), raw.numpy(), atol=1e-4)  # scores unchanged


def test_name_notes_the_latents_beyond_the_true_factors(tmp_path, toy_npz):
    from ivae.run import name_from_truth

    train(
        load_dataset(toy_npz),
        tmp_path / "run",
        "implicit-ivae",
        {"latent_dim": 5, "hidden": 16},
        TrainConfig(epochs=1, batch_size=32),
        progress=False,
    )
    run = ivae.load_run(tmp_path / "run")
    notes = name_from_truth(run, run.load_data())["factors"]  # 3 sources, 5 latents
    extra = [f for f in notes if f["notes"].startswith("Not matched")]
    assert len(extra) == 2
    assert all(f["name"].startswith("factor ") for f in extra)
    assert {f["name"] for f in notes} >= {"source 1", "source 2", "source 3"}


def test_weights_from_another_network_give_one_short_line(tmp_path, toy_npz):
    from ivae.run import RunError

    train(
        load_dataset(toy_npz),
        tmp_path / "run",
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16},
        TrainConfig(epochs=1, batch_size=32),
        progress=False,
    )
    checkpoint = tmp_path / "run" / "model.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"] = {k: torch.zeros(2, 2) for k in state["state_dict"]}  # wrong shapes
    torch.save(state, checkpoint)
    with pytest.raises(RunError) as caught:
        ivae.load_run(tmp_path / "run")
    message = str(caught.value)
    assert "retrain the run" in message and "\n" not in message and len(message) < 400


def test_a_run_saved_before_an_option_was_added_loads_and_resumes_as_trained(tmp_path):
    """The coupling flow's scale bound came after square runs were saved at 2: such a run
    keeps 2 when loaded and when resumed, not today's default."""
    from ivae.data.toy import generate_toy
    from ivae.data.vectors import save_npz
    from ivae.models import model_class

    added = model_class("implicit-ivae").Config.added
    npz = save_npz(tmp_path / "square.npz", generate_toy(3, 3, 8, 60, seed=1))
    run_dir = tmp_path / "run"
    options = {"latent_dim": 3, "hidden": 16, "flow_layers": 2, **added}
    train(
        load_dataset(npz),
        run_dir,
        "implicit-ivae",
        options,
        TrainConfig(epochs=2, batch_size=32),
        progress=False,
    )
    x = load_dataset(npz).x[:8]
    codes = ivae.load_run(run_dir).encode_x(x)
    for name in ("model.pt", "last.pt"):  # as saved before the option existed
        state = torch.load(run_dir / name, weights_only=True)
        for option in added:
            del state["config"]["model_config"][option]
        torch.save(state, run_dir / name)
    run = ivae.load_run(run_dir)
    assert run.model.encoder.scale_bound == added["flow_scale_bound"] != 0.5
    assert np.array_equal(run.encode_x(x), codes)
    train(
        load_dataset(npz),
        run_dir,
        "implicit-ivae",
        resume=True,
        progress=False,
        changes={"epochs": 3},
    )
    assert (
        json.loads((run_dir / "config.json").read_text())["model_config"]["flow_scale_bound"]
        == added["flow_scale_bound"]
    )


def test_a_flow_run_saved_with_one_module_per_coupling_loads_and_refuses_to_resume(tmp_path):
    """Runs saved before the flow's parameters were stacked: the weights load (the same
    codes); the optimizer state cannot continue, and says so in a sentence."""
    from bench.flow_steps import PerCouplingFlow
    from ivae.data.toy import generate_toy
    from ivae.data.vectors import save_npz
    from ivae.train import optimizer

    npz = save_npz(tmp_path / "square.npz", generate_toy(3, 3, 8, 60, seed=1))
    run_dir = tmp_path / "run"
    options = {"latent_dim": 3, "hidden": 16, "flow_layers": 3}
    train(
        load_dataset(npz), run_dir, "implicit-ivae", options, TrainConfig(epochs=1), progress=False
    )
    run = ivae.load_run(run_dir)
    run.model.encoder = PerCouplingFlow(3, hidden=16, layers=3)  # as saved then
    adam = optimizer(run.model, TrainConfig())
    run.model.loss({"x": torch.randn(4, 3), "y": torch.randn(4, 8)})["loss"].backward()
    adam.step()
    x = torch.randn(9, 3)
    with torch.no_grad():
        codes = run.model.code(x)
    model_pt = torch.load(run_dir / "model.pt", weights_only=True)
    model_pt["state_dict"] = run.model.state_dict()
    assert "encoder.couplings.0.net.0.weight" in model_pt["state_dict"]
    torch.save(model_pt, run_dir / "model.pt")
    last = torch.load(run_dir / "last.pt", weights_only=True)
    last["model"], last["optimizer"] = run.model.state_dict(), adam.state_dict()
    torch.save(last, run_dir / "last.pt")

    with torch.no_grad():
        assert torch.allclose(ivae.load_run(run_dir).model.code(x), codes, atol=1e-5)
    with pytest.raises(TrainingError, match="earlier layout.*train anew"):
        train(load_dataset(npz), run_dir, "implicit-ivae", resume=True, progress=False)
    kept = torch.load(run_dir / "last.pt", weights_only=True)["optimizer"]["state"]
    assert len(kept) == len(adam.state_dict()["state"])  # the checkpoint is left as it was


def test_a_run_saved_with_a_removed_option_loads_only_at_its_no_op_value(tmp_path, toy_npz):
    from ivae.models import model_class
    from ivae.run import RunError

    run_dir = tmp_path / "run"
    train(
        load_dataset(toy_npz),
        run_dir,
        "implicit-ivae",
        {"latent_dim": 3, "hidden": 16},
        TrainConfig(epochs=1, batch_size=32),
        progress=False,
    )
    checkpoint = run_dir / "model.pt"
    state = torch.load(checkpoint, weights_only=True)
    codes = ivae.load_run(run_dir).encode_x(load_dataset(toy_npz).x[:4])
    retired = model_class("implicit-ivae").Config.retired
    state["config"]["model_config"].update(retired)  # as a run saved before their removal
    torch.save(state, checkpoint)
    assert np.array_equal(ivae.load_run(run_dir).encode_x(load_dataset(toy_npz).x[:4]), codes)
    state["config"]["model_config"]["input_noise"] = 0.1
    torch.save(state, checkpoint)
    with pytest.raises(RunError, match="input_noise=0.1 was removed"):
        ivae.load_run(run_dir)


def test_a_backbone_run_of_the_kitchen_preset_codes_one_view_of_features():
    """The preset's mean over a photo's 8 views is a photo encoder's; a head on backbone
    features drops it, unless asked for by name (then the model refuses it, saying why)."""
    assert PRESETS["kitchen"].model_options["symmetry"] == "dihedral"
    _, options, _ = parsed_train("--preset", "kitchen", "--backbone", "efficientnet-lite0")
    assert "symmetry" not in options
    _, options, _ = parsed_train(
        "--preset", "kitchen", "--backbone", "efficientnet-lite0", "--set", "symmetry=dihedral"
    )
    assert options["symmetry"] == "dihedral"
