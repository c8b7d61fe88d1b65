"""Every dashboard page under streamlit's AppTest, on a tiny trained and indexed run."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tiny_run import make_tiny_run

import ivae
from explorer.navigation import page_names

HOME = str(Path(__file__).resolve().parent.parent / "explorer" / "Home.py")
PAGES = {  # page -> keys of widgets it must show before any input
    "studio": ["studio_z0", "studio_start_mode", "studio_weights", "studio_traverse_factor"],
    "photo_reader": ["reader_upload"],
    "recipe_search": ["recipe_text"],
    "atlas": ["atlas_x", "atlas_y"],
    "factor_cards": ["cards_factor"],
    "model_report": ["report_curves", "report_compare"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def app(run_path: Path | str, page: str | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["run_path"] = str(run_path)
    for key, value in params.items():
        at.query_params[key] = value
    if page:
        at.switch_page(f"../pages/{page}.py")
    return at.run()


def widget_keys(at: AppTest) -> set[str]:
    return {w.key for w in at.main if getattr(w, "key", None)} | {
        w.key for w in at.sidebar if getattr(w, "key", None)
    }


def param(at: AppTest, key: str) -> str:
    value = at.query_params[key]
    return value[0] if isinstance(value, list) else value


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def png_bytes(colour=(180, 60, 40), size=(48, 40), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def test_every_registered_page_is_under_test():
    assert sorted(PAGES) == sorted(page_names())


def test_home(tiny_run):
    at = app(tiny_run)
    assert_ok(at)
    assert at.title[0].value == "Factor Explorer"
    assert any(m.label == "Shared factors" for m in at.metric)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(tiny_run, page):
    at = app(tiny_run, page)
    assert_ok(at)
    assert at.title, "every page has a title"
    missing = set(PAGES[page]) - widget_keys(at)
    assert not missing, f"{page} lacks widgets {missing}"


def test_studio_reads_and_writes_the_url(tiny_run):
    at = app(tiny_run, "studio", z="0.01,-0.02,0.03", dish="d0005")
    assert_ok(at)
    low, high = at.slider(key="studio_z1").min, at.slider(key="studio_z1").max
    assert at.slider(key="studio_z1").value == pytest.approx(np.clip(-0.02, low, high))
    assert at.session_state["studio_dish"] == "d0005"
    at.slider(key="studio_z0").set_value(at.slider(key="studio_z0").max).run()
    assert_ok(at)
    assert at.session_state["studio_moved"] == 0
    first = float(param(at, "z").split(",")[0])
    assert first == pytest.approx(at.slider(key="studio_z0").max, rel=1e-3)
    at.radio(key="studio_weights").set_value("hold").run()
    assert_ok(at)
    point = at.session_state["studio_point"]
    at.switch_page("../pages/atlas.py").run()
    at.switch_page("../pages/studio.py").run()
    assert_ok(at)
    assert at.slider(key="studio_z0").value == pytest.approx(point[0])  # kept across pages


def test_studio_search_by_title(tiny_run):
    at = app(tiny_run, "studio")
    at.radio(key="studio_start_mode").set_value("Search by title").run()
    at.text_input(key="studio_search").input("soup").run()
    assert_ok(at)
    at.button(key="studio_use_match").click().run()
    assert_ok(at)
    dish = at.session_state["studio_dish"]
    assert dish and param(at, "dish") == dish


def test_photo_reader_good_and_bad_uploads(tiny_run):
    at = app(tiny_run, "photo_reader")
    at.file_uploader(key="reader_upload").set_value(("dish.png", png_bytes(), "image/png")).run()
    assert_ok(at)
    assert not at.error and len(at.dataframe) >= 2  # factor table and nearest recipes
    bad = ("photo.jpg", b"definitely not a jpeg" * 20, "image/jpeg")
    at.file_uploader(key="reader_upload").set_value(bad).run()
    assert_ok(at)
    assert "not an image" in at.error[0].value
    empty = ("empty.png", b"", "image/png")
    at.file_uploader(key="reader_upload").set_value(empty).run()
    assert_ok(at)
    assert at.error and "empty" in at.error[0].value


def test_recipe_search(tiny_run):
    at = app(tiny_run, "recipe_search")
    at.text_area(key="recipe_text").input("soup with beef, mushrooms and soy").run()
    assert_ok(at)
    assert not at.info  # results shown, not the prompt


def test_factor_card_notes_are_saved(tiny_run, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(tiny_run, run_copy)
    at = app(run_copy, "factor_cards")
    at.text_input(key="cards_name_0").input("redness")
    at.text_area(key="cards_notes_0").input("tomato and chilli")
    at.button[0].click().run()  # the form's submit button
    assert_ok(at)
    saved = json.loads((run_copy / "factors.json").read_text())
    assert saved["factors"][0] == {
        "index": 0,
        "name": "redness",
        "notes": "tomato and chilli",
        "sign": 1,
    }  # the orientation is kept


@pytest.mark.parametrize("page", [None, *PAGES])
def test_missing_run_gives_a_message(tmp_path, page):
    at = app(tmp_path / "no-such-run", page)
    assert_ok(at)
    assert at.error and "no such run directory" in at.error[0].value


def test_run_without_index_offers_to_build_it(tiny_run, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(tiny_run, run_copy, ignore=shutil.ignore_patterns("index"))
    at = app(run_copy, "studio")
    assert_ok(at)
    assert "ivae index" in at.warning[0].value
    assert any(b.key == "build_index" for b in at.button)


def test_rewritten_run_files_show_on_the_next_rerun(tiny_run, tmp_path):
    """`ivae name` rewrites factors.json and `ivae index` codes.npz while the dashboard runs:
    the same session shows the new names, orientations and index on its next rerun."""
    from ivae.index import INDEX_FILE, read_index, save_index

    run_copy = tmp_path / "run"
    shutil.copytree(tiny_run, run_copy)
    reader = app(run_copy, "photo_reader")
    reader.file_uploader(key="reader_upload").set_value(("dish.png", png_bytes(), "image/png"))
    before = reader.run().dataframe[0].value  # factor, value, percentile
    atlas = app(run_copy, "atlas")
    assert "redness" not in atlas.selectbox(key="atlas_x").options

    notes = ivae.load_run(run_copy).factor_notes()  # as `ivae name` writes it
    notes["factors"][0].update(name="redness", sign=-1)
    (run_copy / "factors.json").write_text(json.dumps(notes))
    after = reader.run().dataframe[0].value
    assert_ok(reader)
    assert after["factor"].iat[0] == "redness"
    assert after["value"].iat[0] == pytest.approx(-before["value"].iat[0], abs=2e-3)
    assert after["value"].iat[1] == pytest.approx(before["value"].iat[1], abs=2e-3)
    assert "redness" in atlas.run().selectbox(key="atlas_x").options

    index = read_index(run_copy / INDEX_FILE)
    for name in ("ids", "z", "y_mean", "y_logvar", "map2d"):
        setattr(index, name, getattr(index, name)[:100])
    save_index(index, run_copy / INDEX_FILE)
    home = app(run_copy)
    assert_ok(home)
    assert next(m.value for m in home.metric if m.label == "Dishes indexed") == "100"
    assert_ok(atlas.run())  # its cached table follows the smaller index


# --------------------------------------------------------------------------- unfamiliar photos


@pytest.fixture(scope="module")
def checked_run(tmp_path_factory) -> Path:
    """The tiny run with its unfamiliarity check (tests/checked_run.py)."""
    from checked_run import make_checked_run

    return make_checked_run(tmp_path_factory.mktemp("checked"))


def own_dish_png(run: Path) -> bytes:
    data = Path(json.loads((run / "config.json").read_text())["data"]["path"])
    return (data / "images" / "0009.png").read_bytes()  # a test-split dish of the run's data


def test_photo_reader_warns_on_an_unfamiliar_photo_only(checked_run):
    from checked_run import real_photo_jpeg

    at = app(checked_run, "photo_reader")
    upload = at.file_uploader(key="reader_upload")
    upload.set_value(("coffee.jpg", real_photo_jpeg(), "image/jpeg")).run()
    assert_ok(at)
    assert "unlike the dishes the model was trained on" in at.warning[0].value
    assert "extrapolations" in at.warning[0].value and len(at.dataframe) >= 2  # still shown
    at.file_uploader(key="reader_upload").set_value(
        ("d.png", own_dish_png(checked_run), "image/png")
    )
    at.run()
    assert_ok(at)
    assert not at.warning and "Like the dishes" in at.success[0].value


def test_photo_reader_example_photos(checked_run):
    at = app(checked_run, "photo_reader")
    examples = at.selectbox(key="reader_example").options
    assert "real-coffee.jpg" in examples and sum(e.startswith("kitchen") for e in examples) >= 2
    at.selectbox(key="reader_example").set_value("real-coffee.jpg").run()
    assert_ok(at)
    assert "unlike the dishes" in at.warning[0].value


def test_studio_photo_start_uses_the_same_check(checked_run):
    from checked_run import real_photo_jpeg

    at = app(checked_run, "studio")
    at.radio(key="studio_start_mode").set_value("Upload a photo").run()
    at.file_uploader(key="studio_upload").set_value(("c.jpg", real_photo_jpeg(), "image/jpeg"))
    at.run()
    assert_ok(at)
    assert any("unlike the dishes the model was trained on" in w.value for w in at.warning)
    at.file_uploader(key="studio_upload").set_value(
        ("d.png", own_dish_png(checked_run), "image/png")
    )
    at.run()
    assert_ok(at)
    assert not any("unlike the dishes" in w.value for w in at.warning)


def test_the_model_report_says_when_a_run_is_probably_poor(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    sentence = "The factors were still moving when training stopped (test)."
    restarts = [
        {"candidate": 0, "seed": 0, "score": 0.5, "chosen": False},
        {"candidate": 1, "seed": 9, "score": 0.9, "chosen": True},
    ]
    health = {"warnings": [sentence], "status": "poor", "val_score": 0.9, "best_epoch": 3}
    rollbacks = [
        {"epoch": 6, "reason": "the run blew up", "to_epoch": 5, "lr": 0.01, "lr_scale": 0.5}
    ]
    metrics.update(health=health, restarts=restarts, rollbacks=rollbacks)
    (run / "metrics.json").write_text(json.dumps(metrics))
    at = app(run, "model_report")
    assert_ok(at)
    assert [w.value for w in at.warning] == [sentence]
    caption = " ".join(c.value for c in at.caption)
    assert "2 initialisations tried" in caption and "start 2 kept" in caption
    assert "blew up in epoch 6" in caption and "0.5 of the learning rate" in caption

    metrics["alignment"] = {"steps": 24000, "validation_ratio_before": 3.72}
    (run / "metrics.json").write_text(json.dumps(metrics))
    at = app(run, "model_report")
    assert_ok(at)
    said = " ".join(m.value for m in at.markdown).replace("\\", "")  # markdown escapes
    assert "**Final alignment:** 24,000 steps of the density ratio" in said
    assert "validation ratio" not in said  # only one of the two figures: none shown

    del metrics["health"]  # a run from before health reports: said so, no crash
    (run / "metrics.json").write_text(json.dumps(metrics))
    at = app(run, "model_report")
    assert_ok(at)
    assert "before runs reported their health" in " ".join(c.value for c in at.caption)
