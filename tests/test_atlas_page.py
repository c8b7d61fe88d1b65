"""The factor atlas: a selection's rows, the histograms and words it shows, the colour menus,
and the page under AppTest with a lasso's selection sent as the browser sends it."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest
from tiny_run import make_tiny_run

from explorer import atlas, tables

HOME = str(Path(__file__).resolve().parent.parent / "explorer" / "Home.py")


# --------------------------------------------------------------------------- plain functions


@pytest.mark.parametrize(
    "points, rows",
    [
        ([{"customdata": {"0": 8}}, {"customdata": {"0": 3}}], [3, 8]),  # a typed array's row
        ([{"customdata": [8]}, {"customdata": [8]}], [8]),  # a list; repeats once
        ([{"customdata": 5}, {"point_index": 2}], [5]),  # a number; no custom data: skipped
        ([], []),
    ],
)
def test_selected_rows_reads_every_form_of_custom_data(points, rows):
    assert tables.selected_rows(points).tolist() == rows


def test_known_labels_name_what_the_data_has():
    kitchen = ["heat", "true heat", "nuisance zoom", "dish type"]
    assert tables.known_labels(kitchen, 1) == (
        "the true factors, the nuisances (what the recipe does not describe) and the dish type."
    )
    assert tables.known_labels(["heat", "dish type"], 1) == "the dish type."
    assert "no true factors" in tables.known_labels(["heat"], 1)


def test_kept_selection_survives_a_new_figure_not_a_clear():
    first, second = ("run", "map", 0), ("run", "greenness", 0)  # (data, view...)
    rows = np.array([1, 2])
    kept = tables.kept_selection(rows, None, first)
    assert kept[0].tolist() == [1, 2] and kept[1] == first
    assert tables.kept_selection(np.array([], int), kept, second) is kept  # other axes: kept
    assert tables.kept_selection(np.array([], int), kept, first) is None  # cleared on its map
    assert tables.kept_selection(np.array([7]), kept, second)[0].tolist() == [7]
    assert tables.kept_selection(np.array([], int), kept, ("other run", 0)) is None


def test_histogram_panels_known_answer():
    table = pd.DataFrame(
        {"heat": [0.0, 0.0, 1.0, 1.0], "dish type": ["soup", "soup", "soup", "salad"]}
    )
    selected = np.array([False, False, True, True])
    heat, dish = tables.histogram_panels(table, selected, ["heat", "dish type"], bins=2)
    assert heat["kind"] == "numeric" and heat["all"].tolist() == [0.5, 0.5]
    assert heat["selected"].tolist() == [0.0, 1.0]
    assert dish["kind"] == "categorical" and dish["x"].tolist() == ["soup", "salad"]
    assert dish["all"].tolist() == [0.75, 0.25] and dish["selected"].tolist() == [0.5, 0.5]


def test_title_words_rank_what_the_selection_holds_more_often():
    titles = np.array(["Green Pea Soup", "Green Curry", "Beef Stew", "Beef Soup"])
    everyone = tables.word_shares(titles)
    assert everyone["green"] == 0.5 and everyone["soup"] == 0.5 and "pea" in everyone
    words = tables.title_words(everyone, len(titles), titles[:2], top=3)
    assert words["word"].tolist() == ["green", "curry", "pea"]  # all twice as common; green
    assert words["selected %"].tolist() == [100, 50, 50]  # in both chosen titles
    assert words["lift"].tolist() == [2, 2, 2] and words["all %"].tolist() == [50, 25, 25]


def decode(spec: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))


def test_colour_menus_carry_every_colour_to_the_browser():
    table = pd.DataFrame(
        {
            "heat": [0.5, -1.0, 2.0], "true heat": [0.1, 0.2, 0.3], "nuisance zoom": [1, 2, 3],
            "dish type": ["soup", "curry", "soup"], "map x": [0.0, 1.0, 2.0],
            "map y": [0.0, 1.0, 0.0], "title": ["a", "b", "c"], "row": [4, 5, 6],
        }
    )  # fmt: skip
    colours = tables.colour_options(table, ["heat"])
    assert colours == ["heat", "true heat", "nuisance zoom", "dish type"]
    figure = atlas.map_figure(table, "map x", "map y", colours, None, 0).to_plotly_json()
    menus = figure["layout"]["updatemenus"]
    labels = [[b["label"] for b in m["buttons"]] for m in menus]
    assert labels == [
        ["learned factor…", "heat"],
        ["true factor or dish…", "true heat", "dish type"],
        ["nuisance…", "nuisance zoom"],
    ]
    style = {b["label"]: b["args"][0] for m in menus for b in m["buttons"][1:]}
    assert decode(style["nuisance zoom"]["marker.color"][0]).tolist() == [1, 2, 3]
    dish = style["dish type"]
    codes = decode(dish["marker.color"][0])
    ticks = dict(zip(dish["marker.colorbar.tickvals"][0], dish["marker.colorbar.ticktext"][0]))
    assert [ticks[c] for c in codes] == ["soup", "curry", "soup"]
    points = figure["data"][0]
    assert decode(points["customdata"]).tolist() == [4, 5, 6]  # the rows a selection returns
    assert points["marker"]["colorbar"]["title"]["text"] == "heat"
    assert all(b["args"][2] == [0] for m in menus for b in m["buttons"][1:])

    density = tables.density(table[["map x", "map y"]].to_numpy(), bins=4)  # a sampled table
    shaded = atlas.map_figure(table, "map x", "map y", colours, density, 0).to_plotly_json()
    assert [t["type"] for t in shaded["data"]] == ["heatmap", "scattergl"]  # shade underneath
    menus = shaded["layout"]["updatemenus"]
    assert all(b["args"][2] == [1] for m in menus for b in m["buttons"][1:]), "the points"
    other_axes = atlas.map_figure(table, "heat", "true heat", colours, density, 0)
    assert [t.type for t in other_axes.data] == ["scattergl"]  # the shade is of the map


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def open_atlas(run: Path) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["run_path"] = str(run)
    at.switch_page("../pages/atlas.py")
    return at.run()


def select(at: AppTest, rows, form=lambda r: {"0": r}) -> AppTest:
    """Rerun with the map's selection holding ``rows``, each point's custom data in ``form``
    (the browser's own: a typed array's row, an object keyed by position). AppTest has no
    setter for a chart's selection, so its widget state is sent as the browser sends it."""
    chart = at.get("plotly_chart")[0]
    states = at._tree.get_widget_states()
    event = {"points": [{"customdata": form(int(r))} for r in rows], "point_indices": [],
             "box": [], "lasso": []}  # fmt: skip
    states.widgets.append(
        WidgetState(id=chart.proto.id, string_value=json.dumps({"selection": event}))
    )
    return at._run(states)


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def chart_titles(at: AppTest, n: int) -> list[str]:
    spec = json.loads(at.get("plotly_chart")[n].proto.spec)
    return [a["text"] for a in spec["layout"]["annotations"]]


def test_atlas_selection_shows_dishes_and_every_column(tiny_run):
    at = open_atlas(tiny_run)
    assert_ok(at)
    assert at.info and "Draw a lasso" in at.info[0].value
    assert len(at.get("plotly_chart")) == 1  # the map alone until something is selected
    menus = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["updatemenus"]
    colours = [b["label"] for m in menus for b in m["buttons"][1:]]
    assert {"factor 1", "true greenness", "nuisance noise", "dish type"} <= set(colours)
    at = select(at, [3, 5, 8])
    assert_ok(at)
    assert any("3 selected dishes" in h.value for h in at.subheader)
    assert len(at.get("image")) == 1  # one grid of their images
    titles = chart_titles(at, 1)
    for column in ("factor 1", "factor 3", "true greenness", "nuisance noise", "dish type"):
        assert column in titles, f"no histogram of {column}: {titles}"
    words = at.dataframe[0].value
    assert len(words) and set(words.columns) == {"word", "selected %", "all %", "lift"}
    at = select(at, range(40, 70))  # a larger region: 12 of its dishes, drawn at random
    assert_ok(at)
    assert any("30 selected dishes" in h.value for h in at.subheader)
    assert any("12 of the 30" in c.value for c in at.caption)
    assert len(at.get("image")[0].proto.imgs) == 12


def test_atlas_selection_is_kept_on_other_axes_and_cleared(tiny_run):
    at = select(open_atlas(tiny_run), [1, 2], form=lambda r: [r])
    assert any("2 selected dishes" in h.value for h in at.subheader)
    at.selectbox(key="atlas_x").set_value("true greenness").run()
    assert_ok(at)
    assert any("2 selected dishes" in h.value for h in at.subheader), "kept on the new axes"
    assert any("earlier view" in c.value for c in at.caption)
    at.button(key="atlas_clear").click().run()
    assert_ok(at)
    assert at.info and "Draw a lasso" in at.info[0].value


def test_atlas_without_labels_shows_factors_and_title_words(tiny_run, tmp_path):
    """Recipe1M-style data: no true factors, nuisances or dish types."""
    import torch

    import ivae
    import ivae.index as index_module
    from ivae.data import load_dataset

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = tmp_path / "data"
    shutil.copytree(Path(tiny_run).parents[1] / "data", data)
    items = pd.read_parquet(data / "items.parquet")
    drop = [c for c in items if c.startswith(("factor.", "nuisance.")) or c == "dish"]
    items.drop(columns=drop).to_parquet(data / "items.parquet")
    info = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps(info | {"factor_names": []}))
    state = torch.load(run / "model.pt", weights_only=True)  # the run's data: the copy
    state["config"]["data"]["path"] = str(data)
    torch.save(state, run / "model.pt")
    mapper, index_module.map_2d = index_module.map_2d, index_module._pca_2d  # as tiny_run
    try:
        index_module.build_index(
            ivae.load_run(run), data=load_dataset(data, image_size=32), progress=False
        )
    finally:
        index_module.map_2d = mapper
    at = select(open_atlas(run), [0, 4])
    assert_ok(at)
    assert not at.error
    assert chart_titles(at, 1) == ["factor 1", "factor 2", "factor 3"]
    assert any("no true factors, nuisances or dish types" in c.value for c in at.caption)
    assert len(at.dataframe[0].value), "the title words stand in for the missing labels"


def test_latency_rows_of_the_atlas_say_what_is_met():
    from bench.latency_report import atlas_rows

    measured = {"load_s": [4.0, 2.0, 2.5, 2.2], "fresh_s": [5.0], "recolour_s": [0.3, 0.5, 1.4],
                "colours": 3, "points": 20_000, "load": 1.5}  # fmt: skip
    load, recolour = atlas_rows({"atlas": measured, "dates": {"atlas": "day 1"}})
    assert "first visit 4.00 s" in load and "later loads 2.20 s median of 3" in load
    assert "new browser context 5.00 s" in load and "| **no** |" in load  # the first > 3 s
    assert "0.50 s median over its 3 colours (max 1.40 s" in recolour
    assert recolour.endswith("| yes | 1.5 | day 1 |")
    assert atlas_rows({}) == []
