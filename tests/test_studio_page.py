"""The factor studio's states under AppTest, on the tiny trained run: honest strips, the
strip following the slider and the distance mode, staying on the data, one dish type, the
all-factors grid, moving along the data's correlations, redundant latents, starts outside
the sliders' range and the photo reader's hand-off."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tiny_run import make_tiny_run

import ivae
from ivae.factors import search_weights
from ivae.index import INDEX_FILE, read_index, save_index
from ivae.traversal import regression_slopes, traverse

HOME = str(Path(__file__).resolve().parent.parent / "explorer" / "Home.py")
CELL = re.compile(
    r"asked (-?[\d.]+) · shown (-?[\d.]+) · distance ([\d.]+)( · same as step (\d+))? · (.*)"
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def codes(tiny_run):
    return read_index(tiny_run / INDEX_FILE)


def studio(run_path, **params: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["run_path"] = str(run_path)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page("../pages/studio.py")
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def find(node, key: str):
    for child in getattr(node, "children", {}).values():
        if getattr(child, "key", None) == key:
            return child
        found = find(child, key)
        if found is not None:
            return found
    return None


def captions(at: AppTest, grid: str) -> list[str]:
    """The captions of a pickable grid's images, markdown escapes removed."""
    box = find(at.main, f"pick-{grid}")
    assert box is not None, f"no grid {grid}"
    (images,) = box.children.values()
    return [re.sub(r"\\(.)", r"\1", image.caption) for image in images.proto.imgs]


def cells(at: AppTest, grid: str = "strip") -> list[dict]:
    out = []
    for text in captions(at, grid):
        match = CELL.fullmatch(text)
        assert match, text
        asked, shown, distance, _, repeat, title = match.groups()
        out.append(
            {"asked": float(asked), "shown": float(shown), "d": float(distance), "title": title}
            | {"repeat": int(repeat) if repeat else None}
        )
    return out


def point(at: AppTest, k: int) -> np.ndarray:
    return np.array([at.session_state[f"studio_z{j}"] for j in range(k)])


def test_strip_cells_say_their_dish_its_value_and_distance(tiny_run, codes):
    """Every cell's shown value and distance are the dish's own, as an independent
    computation with the hold mode's weights for the traversed factor finds them."""
    at = studio(tiny_run, z="0.1,-0.2,0.3")
    at.radio(key="studio_weights").set_value("hold").run()
    at.selectbox(key="studio_traverse_factor").set_value(1).run()
    ok(at)
    start = point(at, 3)
    weights = search_weights(codes.z, 1, "hold")
    expected = traverse(codes, start, 1, weights, steps=7).table(codes.z)
    shown = cells(at)
    assert [c["shown"] for c in shown] == pytest.approx(expected["shown"], abs=0.006)
    assert [c["asked"] for c in shown] == pytest.approx(expected["requested"], abs=0.006)
    assert [c["d"] for c in shown] == pytest.approx(expected["distance"], abs=0.006)
    repeats = [r + 1 if r >= 0 else None for r in expected["repeat_of"]]
    assert [c["repeat"] for c in shown] == repeats
    # the equal mode weighs the other factors less: another strip from the same point
    at.radio(key="studio_weights").set_value("equal").run()
    equal = traverse(codes, start, 1, search_weights(codes.z), steps=7).table(codes.z)
    assert [c["shown"] for c in cells(ok(at))] == pytest.approx(equal["shown"], abs=0.006)


def test_the_strip_follows_the_slider_moved(tiny_run):
    at = studio(tiny_run)
    assert at.selectbox(key="studio_traverse_factor").value == 0
    at.slider(key="studio_z2").set_value(at.slider(key="studio_z2").max).run()
    assert ok(at).selectbox(key="studio_traverse_factor").value == 2
    assert at.session_state["studio_moved"] == 2


def test_staying_on_the_data_moves_the_factor_every_step(tiny_run):
    at = studio(tiny_run, z="0,0,0")
    at.radio(key="studio_follow").set_value("data").run()
    shown = [c["shown"] for c in cells(ok(at))]
    assert shown == sorted(shown) and len(set(shown)) == len(shown)
    assert all(c["repeat"] is None for c in cells(at))


def test_within_one_dish_type(tiny_run):
    at = studio(tiny_run)
    at.selectbox(key="studio_dish_type").set_value("soup").run()
    titles = [c["title"] for c in cells(ok(at))]
    assert titles and all(t.startswith("soup") for t in titles)
    at.radio(key="studio_follow").set_value("data").run()
    assert all(c["title"].startswith("soup") for c in cells(ok(at)))


def test_the_all_factors_grid_and_its_exports(tiny_run):
    at = studio(tiny_run)
    at.toggle(key="studio_grid").set_value(True).run()
    ok(at)
    for j in range(3):
        assert len(captions(at, f"grid{j}")) == 7
    keys = {b.key for b in at.get("download_button")}
    assert {"studio_grid_png", "studio_grid_pdf", "studio_strip_png", "studio_strip_pdf"} <= keys


def test_what_else_changes_is_charted(tiny_run):
    at = studio(tiny_run)
    shown = [c.value for c in at.caption]
    assert any("Nuisances" in c for c in shown) and any("Dish types" in c for c in shown)
    assert len(at.get("vega_lite_chart")) == 3
    at.toggle(key="studio_changes").set_value(False).run()
    assert len(ok(at).get("vega_lite_chart")) == 0


def test_moving_along_the_correlations(tiny_run, codes):
    """With the toggle on, moving factor 0 by d moves factor i by slope[0, i] * d."""
    at = studio(tiny_run, z="0,0,0")
    at.toggle(key="studio_along").set_value(True).run()
    before = point(at, 3)
    target = at.slider(key="studio_z0").min
    at.slider(key="studio_z0").set_value(target).run()
    after = point(ok(at), 3)
    expected = before + regression_slopes(codes.z)[0] * (target - before[0])
    lows = [at.slider(key=f"studio_z{j}").min for j in range(3)]
    highs = [at.slider(key=f"studio_z{j}").max for j in range(3)]
    assert after == pytest.approx(np.clip(expected, lows, highs), abs=1e-4)
    assert not np.allclose(after[1:], before[1:])


def test_a_start_outside_the_range_widens_it(tiny_run):
    at = studio(tiny_run, z="0,25,0")
    slider = at.slider(key="studio_z1")
    assert slider.value == pytest.approx(25) and slider.max >= 25
    assert any("widened to include it, not clipped" in m.value for m in at.info)
    at.button(key="studio_random").click().run()  # a dish of the data: the data's ranges
    assert ok(at).slider(key="studio_z1").max < 25
    assert not any("25.00" in m.value for m in at.info)


def test_redundant_latents_are_named(tiny_run, tmp_path):
    """A run whose second latent is a copy of minus the first says so by name."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    index = read_index(run / INDEX_FILE)
    rng = np.random.default_rng(0)
    z = rng.normal(size=index.z.shape).astype(np.float32)
    z[:, 1] = -z[:, 0] + 0.3 * rng.normal(size=len(z))  # r near -0.96
    index.z = z
    save_index(index, run / INDEX_FILE)
    text = " ".join(c.value for c in studio(run).caption)
    assert "Redundant latents" in text
    r = np.corrcoef(z[:, 0], z[:, 1])[0, 1]
    assert f"factor 1 ~ -factor 2, r = {r:.2f}" in text, text
    assert "factor 3" not in text.split("Redundant latents")[1].split("Moving")[0]


def test_the_photo_reader_hands_its_photo_to_the_studio(tiny_run):
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["run_path"] = str(tiny_run)
    at.switch_page("../pages/photo_reader.py")
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (180, 60, 40)).save(buffer, format="PNG")
    at.run().file_uploader(key="reader_upload").set_value(
        ("red.png", buffer.getvalue(), "image/png")
    )
    read = ok(at.run()).dataframe[0].value["value"].to_numpy()
    at.button(key="reader_to_studio").click().run()
    ok(at)
    assert at.title[0].value == "Factor studio"
    assert point(at, 3) == pytest.approx(read, abs=2e-3)  # not clipped
    assert at.session_state["studio_dish"] is None
    shown = [re.sub(r"\\(.)", r"\1", c.value) for c in at.caption]  # Markdown escapes undone
    assert any("the photo red.png" in c for c in shown)


def test_a_dish_handed_over_starts_the_studio_there(tiny_run, codes):
    """What a click on a retrieved dish on another page hands over (explorer.clicks)."""
    at = studio(tiny_run)
    at.session_state["studio_handoff"] = {"dish": "d0042", "z": None, "source": ""}
    at.switch_page("../pages/studio.py").run()
    assert ok(at).session_state["studio_dish"] == "d0042"
    assert point(at, 3) == pytest.approx(codes.z[codes.position("d0042")], abs=1e-5)
    assert ivae  # the package imports with the studio's modules


def test_without_labels_the_recipe_and_title_words_say_what_changes(tiny_run, tmp_path):
    """A data set with no nuisance or dish-type columns (Recipe1M's case): the studio charts
    the latents, the recipe words and the title words along the strip."""
    import pandas as pd
    import torch

    from ivae.index import model_digest

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_run, run)
    saved = torch.load(run / "model.pt", weights_only=True)
    shutil.copytree(saved["config"]["data"]["path"], data, ignore=shutil.ignore_patterns(".cache"))
    items = pd.read_parquet(data / "items.parquet")
    labels = [c for c in items.columns if c.startswith(("nuisance.", "dish"))]
    items.drop(columns=labels).to_parquet(data / "items.parquet")
    saved["config"]["data"]["path"] = str(data)  # the run reads its data set from here
    torch.save(saved, run / "model.pt")
    index = read_index(run / INDEX_FILE)
    index.model_digest = model_digest(run)
    index.data_source = str(data)  # the index reads its items from the data it was built on
    if getattr(index, "data_digest", ""):
        from ivae.index import data_digest

        index.data_digest = data_digest(data)
    save_index(index, run / INDEX_FILE)

    at = studio(run)
    shown = [c.value for c in at.caption]
    assert any("Recipe words" in c for c in shown) and any("Title words" in c for c in shown)
    assert not any("Nuisances" in c or "Dish types" in c for c in shown)
    assert len(at.get("vega_lite_chart")) == 3
    assert at.selectbox(key="studio_dish_type").options == ["(any dish type)"]
