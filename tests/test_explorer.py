"""The dashboard's helpers outside the pages: run discovery, first-launch data, fingerprints
and the tables the pages show (explorer.runs, explorer.data, explorer.tables)."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from explorer import data, runs, tables, thumbs
from ivae.run import Run


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
    default = fake_run_dir(tmp_path / "assets" / "default-run", "implicit-ivae", 0.8)
    (tmp_path / "runs" / "not-a-run").mkdir()
    found = {s.path.name: s for s in runs.find_runs(base=tmp_path)}
    assert set(found) == {"a", "b", "default-run"}
    assert found["a"].trained and not found["b"].trained and "MCC 0.90" in found["a"].label
    assert runs.run_options(base=tmp_path, default=default.resolve())[0] == str(default.resolve())
    table = runs.compare_runs([a, b])
    assert table["model"].tolist() == ["implicit-ivae", "vae"]
    assert table["image→recipe medR"].tolist() == [3.0, 3.0]
    assert table["train time (s)"].iat[0] == 12.5
    assert runs.find_runs(base=tmp_path / "nowhere") == []


def test_fingerprint_changes_when_a_file_is_rewritten(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "index").mkdir(parents=True)
    notes = run_dir / "factors.json"
    notes.write_text(json.dumps({"factors": [{"index": 0, "name": "heat"}]}))
    big = run_dir / "index" / "codes.npz"
    big.write_bytes(bytes(300_000))
    before = runs.run_fingerprint(run_dir)
    assert before == runs.run_fingerprint(run_dir)  # stable while nothing changes
    assert before[0] == () and before[2] == ()  # model.pt, vocab.json missing
    stat = notes.stat()
    notes.write_text(json.dumps({"factors": [{"index": 0, "name": "cold"}]}))  # same size
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and same time: the hash tells
    assert runs.run_fingerprint(run_dir)[1] != before[1]
    tail = bytearray(300_000)
    tail[-1] = 1
    stat = big.stat()
    big.write_bytes(bytes(tail))
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert runs.run_fingerprint(run_dir)[3] != before[3]


def fake_run(run_dir: Path, config: dict) -> SimpleNamespace:
    """A run with the real Run.data_dir rule, and no model."""
    run = SimpleNamespace(path=run_dir, config=config)
    run.data_dir = partial(Run.data_dir, run)
    return run


SHIPPED_KITCHEN = {"name": "kitchen", "generator": "ivae data kitchen"}  # a run's dataset.json


def test_ensure_data_generates_once(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "dataset.json").write_text(
        json.dumps(
            {
                **SHIPPED_KITCHEN,
                "seed": 3,
                "image_size": 64,
                "counts": {"train": 8, "test": 2},
            }
        )
    )
    config = {"data": {"path": "/elsewhere/kitchen", "name": "kitchen", "n_items": 10}}
    run = fake_run(run_dir, config)
    calls = []

    def generate(out, n, image_size, seed):
        calls.append((n, image_size, seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "items.parquet").write_bytes(b"")

    target = data.ensure_data(run, root=tmp_path, generate=generate)
    assert target == tmp_path / "data" / "kitchen" and calls == [(10, 64, 3)]
    assert data.ensure_data(run, root=tmp_path, generate=generate) == target and len(calls) == 1
    run.config = {"data": {"path": "/elsewhere/photos", "name": "photos", "n_items": 10}}
    with pytest.raises(FileNotFoundError, match="ivae index"):
        data.ensure_data(run, root=tmp_path, generate=generate)


def test_kitchen_data_of_another_generator_version_is_moved_aside_and_regenerated(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "dataset.json").write_text(
        json.dumps({**SHIPPED_KITCHEN, "version": "1.1", "seed": 0, "n": 4})
    )
    config = {"data": {"path": "data/kitchen", "name": "kitchen", "n_items": 4}}
    run = fake_run(run_dir, config)

    def generate(out, n, image_size, seed, version="1.1"):
        Path(out).mkdir(parents=True)
        (Path(out) / "items.parquet").write_bytes(b"")
        (Path(out) / "dataset.json").write_text(json.dumps({"version": version}))

    old = tmp_path / "data" / "kitchen"
    generate(old, 4, 128, 0, version="1.0")
    (old / "notes.txt").write_text("mine")
    assert data.stale_data(run, old) == "1.0"
    target = data.ensure_data(run, root=tmp_path, generate=generate)
    assert target == old and data.stale_data(run, target) is None
    aside = tmp_path / "data" / "kitchen-v1.0"
    assert (aside / "notes.txt").read_text() == "mine"  # nothing is lost
    (target / "dataset.json").write_text(json.dumps({"version": "1.0"}))
    with pytest.raises(FileExistsError, match="kitchen-v1.0"):  # never overwrites the first
        data.ensure_data(run, root=tmp_path, generate=generate)


def test_count_images(tmp_path):
    assert data.count_images(tmp_path / "missing") == 0
    for name in ("a.png", "b.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert data.count_images(tmp_path) == 2


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "title": [
                "Tomato soup",
                "Green CURRY with a very long name " * 2 + "and basil",
                "Pea salad",
            ],
            "text": ["x", "y", "z"],
            "dish": ["soup", "curry", "salad"],
            "ingredients": [["tomato"], ["peas", "chilli"], ["peas"]],
            "factor.heat": [0.1, 0.9, 0.2],
        }
    )


def test_titles_and_title_search(items):
    titles = tables.item_titles(items)
    assert titles[0] == "Tomato soup" and len(titles[1]) == tables.TITLE_LENGTH
    assert tables.item_titles(items.drop(columns="title")).tolist() == ["x", "y", "z"]
    assert tables.find_titles(items, "curry").tolist() == [1]
    assert tables.find_titles(items, "basil").tolist() == [1]  # past the displayed 60
    assert tables.find_titles(items, "A").tolist() == [0, 1, 2]  # case-insensitive
    assert tables.find_titles(items, "(").tolist() == []  # literal, not a pattern
    assert tables.find_titles(items, "").tolist() == []
    assert tables.find_titles(items, "a", limit=2).tolist() == [0, 1]
    assert tables.find_titles(items.drop(columns="title"), "y").tolist() == [1]


def test_atlas_table(items):
    z = np.arange(6, dtype=np.float32).reshape(3, 2)
    titles = tables.item_titles(items)
    table = tables.atlas_table(z, z[:, ::-1], ["heat", "factor 2"], items, titles)
    assert table["heat"].tolist() == [0, 2, 4] and table["map x"].tolist() == [1, 3, 5]
    assert table["true heat"].tolist() == [0.1, 0.9, 0.2] and table["row"].tolist() == [0, 1, 2]
    assert table["title"].iat[2] == "Pea salad" and table["dish type"].iat[1] == "curry"
    options = tables.colour_options(table, ["heat", "factor 2"])
    assert options == ["heat", "factor 2", "true heat", "dish type"]
    part = tables.atlas_table(z, z[:, ::-1], ["heat", "factor 2"], items, titles, np.array([2, 0]))
    assert part["row"].tolist() == [2, 0] and part["heat"].tolist() == [4, 0]
    assert part["title"].iat[0] == "Pea salad" and part["true heat"].tolist() == [0.2, 0.1]
    assert part["dish type"].tolist() == ["salad", "soup"]


def test_take_rows_reads_arrow_chunks_alone(items):
    import pyarrow as pa

    plain = items.drop(columns="ingredients")
    table = pa.Table.from_pandas(plain, preserve_index=False)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))  # a chunk per row
    mapped = chunked.to_pandas(types_mapper=pd.ArrowDtype)
    assert pa.chunked_array(mapped["title"].array.__arrow_array__()).num_chunks == 3
    rows = [2, 0, 2, 1]
    taken = tables.take_rows(mapped, rows, ["id", "title", "factor.heat"])
    expected = plain.iloc[rows].reset_index(drop=True)[["id", "title", "factor.heat"]]
    assert taken["id"].tolist() == expected["id"].tolist() == ["c", "a", "c", "b"]
    assert taken["title"].tolist() == expected["title"].tolist()
    assert taken["factor.heat"].tolist() == expected["factor.heat"].tolist()
    assert tables.take_rows(items, [1], ["ingredients"])["ingredients"].iat[0] == ["peas", "chilli"]
    assert len(tables.take_rows(mapped, [], ["id"])) == 0


def test_sample_rows_and_density():
    assert tables.sample_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    rows = tables.sample_rows(1000, 50)
    assert len(rows) == 50 == len(set(rows)) and np.all(np.diff(rows) > 0) and rows.max() < 1000
    assert np.array_equal(rows, tables.sample_rows(1000, 50))  # the same sample every time
    runs = tables.sample_rows(1000, 50, run=10)
    assert len(runs) == 50 == len(set(runs)) and runs.max() < 1000
    assert np.sum(np.diff(runs) == 1) >= 45  # five runs of ten consecutive rows
    points = np.random.default_rng(0).normal(size=(5000, 2)) * [1.0, 3.0]
    counts, x, y = tables.density(points, bins=20)
    assert counts.shape == (20, 20) and counts.sum() == 5000
    assert np.ptp(y) > 2 * np.ptp(x)  # rows are y: the wider axis
    assert counts[10, 10] > counts[0, 0]  # denser in the middle


def test_recipe_table(items):
    table = tables.recipe_table(items, tables.item_titles(items), [2, 0], {"score": [1.5, 0.5]})
    assert table.columns.tolist() == ["title", "dish", "ingredients", "score"]
    assert table["title"].tolist() == ["Pea salad", "Tomato soup"]
    assert table["ingredients"].iat[0] == "peas"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.5,-1,2", [0.5, -1.0, 2.0]),
        ("1,2", None),
        ("1,x,2", None),
        ("1,nan,2", None),
        (None, None),
    ],
)
def test_parse_point(text, expected):
    parsed = tables.parse_point(text, 3)
    assert (parsed is None) if expected is None else parsed.tolist() == expected


def test_format_point_round_trips():
    point = np.array([0.123456, -2.0, 1e-5])
    np.testing.assert_allclose(tables.parse_point(tables.format_point(point), 3), point, 1e-3)


def test_correlation_frame_and_retrieval_table():
    metrics = {
        "mcc": 0.8,
        "mcc_per_factor": {"heat": 0.9, "salt": 0.7},
        "correlation_matrix": [[0.9, 0.1, 0.0], [0.2, -0.7, 0.1]],
        "retrieval": {"x_to_y": {"medr": 2.0, "r1": 40.0}, "y_to_x": {"medr": 3.0, "r1": 30.0}},
    }
    frame = tables.correlation_frame(metrics, ["spice", "salinity"])
    assert frame.index.tolist() == ["heat", "salt"]
    assert frame.columns.tolist() == ["spice", "salinity", "dim 3"]
    assert frame.loc["salt", "salinity"] == -0.7
    assert tables.correlation_frame({"mcc": None, "correlation_matrix": None}, ["a"]) is None
    table = tables.retrieval_table(metrics["retrieval"])
    assert table.loc["recipe → image", "median rank"] == 3.0
    assert table.loc["image → recipe", "R@1 %"] == 40.0


# --------------------------------------------------------------------------- thumbnails


def write_image(path: Path, size: tuple[int, int], fmt: str, colour=(200, 80, 40)) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 2] = colour  # half flat, half noise: a real encoder's work
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def decoded(uri: str):
    import base64
    import io

    from PIL import Image

    header, payload = uri.split(",", 1)
    return header, Image.open(io.BytesIO(base64.b64decode(payload)))


def test_small_images_pass_as_they_are_large_ones_are_shrunk(tmp_path):
    small = write_image(tmp_path / "small.png", (64, 48), "PNG")
    header, image = decoded(thumbs.thumbnail(small))
    assert header == "data:image/png;base64" and image.size == (64, 48)
    assert thumbs.thumbnail(small).endswith(
        __import__("base64").b64encode(small.read_bytes()).decode()
    )  # the file's own bytes
    large = write_image(tmp_path / "large.jpg", (1600, 1200), "JPEG")
    header, image = decoded(thumbs.thumbnail(large))
    assert header == "data:image/jpeg;base64" and image.size == (thumbs.MAX_SIDE, 192)
    assert len(thumbs.thumbnail(large)) < large.stat().st_size


def test_a_rewritten_image_is_read_again_and_a_missing_one_is_named(tmp_path):
    path = write_image(tmp_path / "dish.png", (32, 32), "PNG", colour=(255, 0, 0))
    red = thumbs.thumbnail(path)
    write_image(path, (40, 32), "PNG", colour=(0, 0, 255))
    assert thumbs.thumbnail(path) != red and decoded(thumbs.thumbnail(path))[1].size == (40, 32)
    path.unlink()
    with pytest.raises(thumbs.MissingImageError, match="dish.png is missing"):
        thumbs.thumbnail(path)


def test_the_image_cache_is_bounded(tmp_path, monkeypatch):
    from functools import lru_cache

    assert thumbs.cache_info()["bound"] == thumbs.CACHE_IMAGES
    bounded = lru_cache(maxsize=3)(thumbs._encoded.__wrapped__)
    monkeypatch.setattr(thumbs, "_encoded", bounded)
    for i in range(5):
        thumbs.thumbnail(write_image(tmp_path / f"{i}.png", (16, 16), "PNG"))
    assert thumbs.cache_info()["images"] == 3 and thumbs.cache_info()["bound"] == 3


def test_pages_name_a_missing_image_and_the_command(tmp_path):
    """Images moved away from the data set: the studio says which file and what to run, and
    shows the rest of the page."""
    from streamlit.testing.v1 import AppTest
    from tiny_run import make_tiny_run

    import ivae

    tiny = make_tiny_run(tmp_path / "tiny")  # shared by the test session: put back below
    images = ivae.load_run(tiny).data_dir() / "images"
    aside = images.with_name("images-moved")
    images.rename(aside)
    try:
        at = AppTest.from_file(str(runs.REPO_ROOT / "explorer" / "Home.py"), default_timeout=120)
        at.session_state["run_path"] = str(tiny)
        at.switch_page("../pages/studio.py").run()
    finally:
        aside.rename(images)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert errors and all("ivae index" in e and str(images) in e for e in errors)
    assert any("(image missing)" in c.value for c in at.caption)
    assert at.slider(key="studio_z0").value is not None  # the rest of the page is there
