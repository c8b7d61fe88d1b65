"""The dashboard's computations, on small arrays with known answers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ivae import analysis
from ivae.index import Index


def make_index(z: np.ndarray, y_mean: np.ndarray | None = None) -> Index:
    n, k = z.shape
    return Index(
        ids=np.array([f"i{j}" for j in range(n)]),
        z=z.astype(np.float32),
        y_mean=(z if y_mean is None else y_mean).astype(np.float32),
        y_logvar=np.zeros((n, k), np.float32),
        map2d=z[:, :2].astype(np.float32),
        split=np.array(["train"] * n),
    )


@pytest.fixture
def z():
    return np.random.default_rng(0).standard_normal((1000, 3)).astype(np.float32)


def test_ranges_percentiles_and_poles(z):
    ranges = analysis.factor_ranges(z)
    assert ranges.shape == (3, 2) and np.all(ranges[:, 0] < ranges[:, 1])
    np.testing.assert_allclose(analysis.percentiles(z, np.median(z, axis=0)), 50, atol=0.2)
    assert analysis.percentiles(z, z.max(axis=0) + 1).tolist() == [100, 100, 100]
    low, high = analysis.poles(z, 1, n=3)
    assert z[low[0], 1] == z[:, 1].min() and z[high[0], 1] == z[:, 1].max()


def test_search_weights_modes(z):
    scaled = z * np.array([1.0, 10.0, 0.1], np.float32)
    equal = analysis.search_weights(scaled)
    np.testing.assert_allclose(equal * scaled.var(axis=0), 1, rtol=1e-5)  # standardised
    emphasise = analysis.search_weights(scaled, moved=2, mode="emphasise")
    np.testing.assert_allclose(emphasise / equal, [1, 1, 4], rtol=1e-5)
    hold = analysis.search_weights(scaled, moved=2, mode="hold")
    np.testing.assert_allclose(hold / equal, [4, 4, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        analysis.search_weights(scaled, moved=0, mode="sideways")


def test_emptiness_levels(z):
    index = make_index(z)
    gaps = analysis.typical_gap(index, analysis.search_weights(z), sample=300)
    assert np.all(gaps > 0)
    assert analysis.emptiness(0.0, gaps)[1] == "ok"
    assert analysis.emptiness(float(gaps.max()) * 10, gaps) == (100.0, "empty")


def test_traversal_moves_only_one_factor(z):
    index = make_index(z)
    strip = analysis.traversal(index, z[0], factor=1, weights=np.ones(3), steps=5)
    assert len(strip) == 5 and strip["value"].is_monotonic_increasing
    assert z[strip["item"].iat[0], 1] < z[strip["item"].iat[-1], 1]


def test_agreement_known_answer(z):
    y_mean = z.copy()
    y_mean[:, 2] = np.random.default_rng(1).standard_normal(len(z))
    values = analysis.agreement(z, y_mean)
    np.testing.assert_allclose(values[:2], 1.0, atol=1e-5)
    assert abs(values[2]) < 0.1


def test_word_associations_find_the_driving_word():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, 400)
    texts = [("chilli " if v > 0.5 else "") + "rice water salt" for v in values]
    table = analysis.word_associations(texts, values)
    assert "salt" not in set(table["word"])  # in every recipe: uninformative
    rising, falling = analysis.rising_falling(table, 0, top=1)
    assert rising["word"].iat[0] == "chilli" and rising["correlation"].iat[0] > 0.8
    assert analysis.rising_falling(table, 5)[0].empty


def test_minimal_pairs_finds_planted_pair():
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, (300, 3))
    z[10] = [0.0, -2.0, 0.0]  # alike in factors 0 and 2, far apart on factor 1
    z[20] = [0.0, 2.0, 0.0]
    pairs = analysis.minimal_pairs(z, factor=1, n=3)
    assert (pairs["low"].iat[0], pairs["high"].iat[0]) == (10, 20)
    assert list(pairs.columns) == ["low", "high", "gap", "other_distance"]


def fake_run_dir(path: Path, model: str, mcc: float | None, trained: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": model, "data": {"n_items": 10}}))
    metrics = {
        "model": model,
        "latent_dim": 4,
        "mcc": mcc,
        "train_seconds": 12.5,
        "retrieval": {"x_to_y": {"medr": 3.0, "r1": 20.0, "r10": 70.0}},
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    if trained:
        (path / "model.pt").write_bytes(b"")
    return path


def test_find_and_compare_runs(tmp_path):
    a = fake_run_dir(tmp_path / "runs" / "a", "implicit-ivae", 0.9)
    b = fake_run_dir(tmp_path / "runs" / "group" / "b", "vae", None, trained=False)
    fake_run_dir(tmp_path / "assets" / "default-run", "implicit-ivae", 0.8)
    (tmp_path / "runs" / "not-a-run").mkdir()
    found = {s.path.name: s for s in analysis.find_runs(base=tmp_path)}
    assert set(found) == {"a", "b", "default-run"}
    assert found["a"].trained and not found["b"].trained and "MCC 0.90" in found["a"].label
    table = analysis.compare_runs([a, b])
    assert table["model"].tolist() == ["implicit-ivae", "vae"]
    assert table["image→recipe medR"].tolist() == [3.0, 3.0]
    assert table["train time (s)"].iat[0] == 12.5
    assert analysis.find_runs(base=tmp_path / "nowhere") == []


def test_ensure_data_generates_once(tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "REPO_ROOT", tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "dataset.json").write_text(
        json.dumps({"seed": 3, "image_size": 64, "counts": {"train": 8, "test": 2}})
    )
    config = {"data": {"path": "/elsewhere/kitchen", "name": "kitchen", "n_items": 10}}
    run = SimpleNamespace(path=run_dir, config=config)
    calls = []

    def generate(out, n, image_size, seed):
        calls.append((n, image_size, seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "items.parquet").write_bytes(b"")

    target = analysis.ensure_data(run, generate=generate)
    assert target == tmp_path / "data" / "kitchen" and calls == [(10, 64, 3)]
    assert analysis.ensure_data(run, generate=generate) == target and len(calls) == 1
    run.config = {"data": {"path": "/elsewhere/photos", "name": "photos", "n_items": 10}}
    with pytest.raises(FileNotFoundError, match="ivae index"):
        analysis.ensure_data(run, generate=generate)


def test_kitchen_data_of_another_generator_version_is_moved_aside_and_regenerated(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(analysis, "REPO_ROOT", tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "dataset.json").write_text(json.dumps({"version": "1.1", "seed": 0, "n": 4}))
    run = SimpleNamespace(
        path=run_dir, config={"data": {"path": "data/kitchen", "name": "kitchen", "n_items": 4}}
    )

    def generate(out, n, image_size, seed, version="1.1"):
        Path(out).mkdir(parents=True)
        (Path(out) / "items.parquet").write_bytes(b"")
        (Path(out) / "dataset.json").write_text(json.dumps({"version": version}))

    old = tmp_path / "data" / "kitchen"
    generate(old, 4, 128, 0, version="1.0")
    (old / "notes.txt").write_text("mine")
    assert analysis.stale_data(run, old) == "1.0"
    target = analysis.ensure_data(run, generate=generate)
    assert target == old and analysis.stale_data(run, target) is None
    aside = tmp_path / "data" / "kitchen-v1.0"
    assert (aside / "notes.txt").read_text() == "mine"  # nothing is lost
    (target / "dataset.json").write_text(json.dumps({"version": "1.0"}))
    with pytest.raises(FileExistsError, match="kitchen-v1.0"):  # never overwrites the first
        analysis.ensure_data(run, generate=generate)


def test_load_items_aligns_to_index_ids(tmp_path):
    from ivae.data.paired import write_paired

    items = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "image": ["a.png", "b.png", "c.png"],
            "text": ["x", "y", "z"],
            "split": ["train", "val", "test"],
        }
    )
    for name in items["image"]:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    write_paired(tmp_path, items, {"name": "t", "factor_names": []})
    aligned = analysis.load_items(tmp_path, np.array(["c", "a", "b"]))
    assert aligned["id"].tolist() == ["c", "a", "b"]
    with pytest.raises(ValueError, match="ivae index"):
        analysis.load_items(tmp_path, np.array(["a", "zzz"]))


def test_contact_sheet_and_card_export(tmp_path):
    paths = []
    for i, colour in enumerate(["red", "green"]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (20, 20), colour).save(paths[-1])
    sheet = Image.open(io.BytesIO(analysis.contact_sheet(paths, ["a\nb", "c"], cell=50)))
    assert sheet.format == "PNG" and sheet.size == (100, 84)
    assert sheet.getpixel((25, 25)) == (255, 0, 0)
    table = pd.DataFrame({"word": ["chilli"]})
    card = analysis.factor_card("heat", "", table, table.iloc[:0], ["mild"], ["hot"], 0.8123)
    text = analysis.card_markdown(card)
    assert "## heat" in text and "chilli" in text and "0.81" in text
    assert json.loads(json.dumps(card))["image_recipe_agreement"] == 0.8123


@pytest.mark.parametrize(
    "low, high", [(-1.2345678, 0.999447226524353), (0.0, 1.0), (-3.3, -3.2999), (5.0, 5.0)]
)
def test_slider_grid_puts_both_ends_on_a_round_step(low, high):
    from ivae.analysis import slider_grid

    lo, hi, step = slider_grid(low, high)
    assert lo <= low and hi >= high and step > 0
    assert float(f"{step:.1g}") == step
    for end in (lo, hi):
        assert abs(round(end / step) * step - end) < 1e-9
