"""bench/scale.py: the synthetic data set is in Recipe1M's exact layout and `ivae data
recipe1m` imports it whole; a stage's peak memory is read from the process tree."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench import scale
from ivae.cli import main

N = 50


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "recipe1m"
    scale.write_recipe1m(out, N, size=32, workers=1)
    return out


def test_the_layout_is_recipe1m_s(written):
    layer1 = json.loads((written / "layer1.json").read_text())
    layer2 = json.loads((written / "layer2.json").read_text())
    det = json.loads((written / "det_ingrs.json").read_text())
    assert len(layer1) == len(layer2) == len(det) == N
    assert [r["id"] for r in layer1] == [r["id"] for r in layer2] == [r["id"] for r in det]
    first = layer1[0]
    assert set(first) == {"id", "title", "ingredients", "instructions", "partition", "url"}
    assert len(first["id"]) == 10 and all(c in "0123456789abcdef" for c in first["id"])
    assert all(set(x) == {"text"} for x in first["ingredients"] + first["instructions"])
    assert not first["instructions"][0]["text"][0].isdigit()  # "1. " numbering stripped
    assert len(det[0]["valid"]) == len(det[0]["ingredients"]) == len(first["ingredients"])
    for recipe, images in zip(layer1, layer2, strict=True):
        image = images["images"][0]["id"]
        path = written / "images" / recipe["partition"] / "/".join(image[:4]) / image
        assert path.is_file(), path
    photos = list((written / "images").rglob("*.jpg"))
    assert len(photos) == N and not list(written.rglob("*.partial"))
    assert {r["partition"] for r in layer1} == {"train", "val", "test"}


def test_ivae_data_recipe1m_imports_every_pair(written, tmp_path, capsys):
    args = ["data", "recipe1m", "--out", str(tmp_path / "data")]
    for name in ("layer1", "layer2", "det-ingrs"):
        args += [f"--{name}", str(written / f"{name.replace('-', '_')}.json")]
    assert main([*args, "--images", str(written / "images")]) == 0
    info = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert sum(info["counts"].values()) == N and not any(info["skipped"].values())
    items = pd.read_parquet(tmp_path / "data" / "items.parquet")
    assert items.text.str.contains("Instructions:").all() and len(items) == N


def test_a_rerun_renders_only_the_missing_photos(written, capsys):
    photo = next((written / "images").rglob("*.jpg"))
    photo.unlink()
    scale.write_recipe1m(written, N, size=32, workers=1)
    said = capsys.readouterr().out
    assert photo.is_file() and f"{N - 1} photos already there, 1 to render" in said


def test_a_stage_s_peak_memory_is_its_own(tmp_path):
    grow = "x = bytearray(300 * 2**20); import time; time.sleep(1)"
    record = scale.run_stage([sys.executable, "-c", grow], tmp_path / "log.txt")
    assert 300 < record["peak_mb"] < 400 and record["processes"] == 1
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grow!r}])"
    record = scale.run_stage([sys.executable, "-c", parent], tmp_path / "log.txt")
    assert record["processes"] == 2 and record["peak_mb"] > 300  # the child's, not the parent's
    with pytest.raises(SystemExit, match="failed"):
        scale.run_stage([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "log.txt")
    assert subprocess.run(["du", "--version"], capture_output=True).returncode == 0


def test_redo_keeps_the_first_figures_as_before_and_removes_the_stage_s_output(tmp_path):
    run = tmp_path / "run-1"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    first = {"peak_mb": 900.0}
    measured = {"train, 1 process": first, "import": {"peak_mb": 400.0, "version": 2}}
    scale.redo(tmp_path, measured, ["train, 1 process"])
    assert measured["before"] == {"train, 1 process": first} and not run.exists()
    measured["train, 1 process"] = {"peak_mb": 500.0, "version": scale.VERSION}
    scale.redo(tmp_path, measured, ["train, 1 process"])  # again: the first figure stays
    assert measured["before"]["train, 1 process"] is first and "import" in measured


def test_per_item_growth_before_and_after_and_its_projection():
    def run(n, before, now):
        measured = {"features": {"peak_mb": now, "version": scale.VERSION}}
        measured["before"] = {"features": {"peak_mb": before}}
        return {"n": n, "measured": measured}

    runs = [run(2_000, 800, 500), run(10_000, 850, 502), run(50_000, 1060, 510)]
    assert scale.peaks("features", runs, current=False) == [
        (2_000, 800),
        (10_000, 850),
        (50_000, 1060),
    ]
    slope, n, peak = scale.growth(scale.peaks("features", runs, current=True))
    assert (n, peak) == (50_000, 510) and slope == pytest.approx(8 / 40_000)
    assert scale.growth([(2_000, 1.0)]) is None
    rows = scale.growth_rows(runs)
    features = next(row for row in rows if row.startswith("| features |"))
    assert "5.38 KB (10k and 50k)" in features and "0.20 KB (10k and 50k)" in features
    assert f"{(510 + slope * (800_000 - 50_000)) / 1024:,.1f} GB" in features


def test_an_unknown_stage_to_redo_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        scale.main(["--n", "10", "--work", str(tmp_path), "--redo", "image cache"])
    assert "unknown stage" in capsys.readouterr().err
