"""Factor atlas: every dish on a 2-D map of its factors; select a region to inspect it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import atlas, clicks, tables, ui

MAX_POINTS = 50_000  # drawn as points; above this many dishes the rest show as a density
KEPT = "atlas_kept"  # (rows, figure) of the selection shown: tables.kept_selection
REVISION = "atlas_revision"  # bumped by "Clear": a new chart, with no selection

st.title("Factor atlas")
st.caption(
    "A UMAP map of the image codes, computed once per run by `ivae index`. Nearby points are "
    "dishes with similar factors. Colour it by any factor, nuisance or dish type with the menu "
    "on the chart, or put any two of them on the axes; draw a lasso or a box to see the "
    "dishes of a region against all others."
)
ctx = ui.require_context()
clicks.go_to_studio_if_asked()


@st.cache_data(show_spinner=False, max_entries=4)
def atlas_table(key: tuple, names: list[str]):
    rows = tables.sample_rows(len(ctx.index), MAX_POINTS)
    return tables.atlas_table(ctx.index.z, ctx.index.map2d, names, ctx.items, ctx.titles, rows)


@st.cache_data(show_spinner=False, max_entries=4)
def density(key: tuple) -> tuple:
    return tables.density(ctx.index.map2d)


@st.cache_data(show_spinner=False, max_entries=4)
def word_shares(key: tuple, names: list[str]) -> dict[str, float]:
    return tables.word_shares(atlas_table(key, names)["title"])


# One figure per view (axes, revision), kept: going back to a view sends it again unbuilt.
# Each holds every colour array (~4 MB at 20,000 dishes, ~10 MB at the 50,000 drawn).
@st.cache_resource(show_spinner=False, max_entries=8)
def map_figure(key: tuple, names: list[str], x: str, y: str, revision: int):
    table = atlas_table(key, names)
    shade = density(key) if len(table) < len(ctx.index) else None
    colours = tables.colour_options(table, names)
    return atlas.map_figure(table, x, y, colours, shade, revision)


def clear_selection() -> None:
    st.session_state[KEPT] = None
    st.session_state[REVISION] = st.session_state.get(REVISION, 0) + 1


shown = atlas_table(ctx.key, ctx.names)
sampled = len(shown) < len(ctx.index)
if sampled:
    st.caption(
        f"{len(shown):,} of the {len(ctx.index):,} dishes are drawn as points (a fixed random "
        "sample); the grey shade underneath is the density of all of them."
    )
options = tables.colour_options(shown, ctx.names)
numeric = [c for c in options if c != "dish type"]
c1, c2 = st.columns(2)
x_axis = c1.selectbox("x", ["map x", *numeric], key="atlas_x")
y_axis = c2.selectbox("y", ["map y", *numeric], key="atlas_y")
revision = st.session_state.get(REVISION, 0)
figure = map_figure(ctx.key, ctx.names, x_axis, y_axis, revision)
event = st.plotly_chart(figure, key="atlas_map", on_select="rerun", selection_mode=("lasso", "box"))

view = (ctx.key, x_axis, y_axis, revision)
points = event.selection.get("points", []) if event else []
kept = tables.kept_selection(tables.selected_rows(points), st.session_state.get(KEPT), view)
st.session_state[KEPT] = kept
if kept is None:
    st.info("Draw a lasso or a box on the map to see the dishes in that region.")
    st.stop()

selected = kept[0]
mask = np.isin(shown["row"].to_numpy(), selected)
c1, c2 = st.columns([4, 1])
c1.subheader(f"{len(selected):,} selected dishes")
c2.button("Clear the selection", key="atlas_clear", on_click=clear_selection)
if kept[1] != view:
    st.caption("Selected on an earlier view of the map; draw on this one to replace it.")
shown_rows = selected
if len(selected) > 12:  # a fixed draw, so a rerun shows the same dishes
    shown_rows = np.sort(np.random.default_rng(0).choice(selected, 12, replace=False))
    st.caption(f"12 of the {len(selected):,}, drawn at random.")
clicks.listen("atlas_clicks", lambda row: clicks.start_studio(dish=str(ctx.index.ids[row])))
with clicks.pickable("atlas_selected", shown_rows):  # click a dish to start the studio there
    ui.image_grid(ctx, shown_rows)

everyone = "all dishes" + (" (the drawn sample)" if sampled else "")
st.subheader("The selection against " + everyone)
in_menus = [c for group in atlas.colour_groups(options).values() for c in group]  # their order
panels = tables.histogram_panels(shown, mask, in_menus)
st.caption(
    "Share of the selected dishes (red) and of " + everyone + " (grey) in each bin: every "
    "learned factor, then " + tables.known_labels(options, len(ctx.names))
)  # fmt: skip
st.plotly_chart(atlas.selection_figure(panels), key="atlas_hist")
st.markdown("**Words of the selected titles**, most over-represented first")
words = tables.title_words(word_shares(ctx.key, ctx.names), len(shown), shown["title"][mask])
st.dataframe(words.round({"selected %": 1, "all %": 1, "lift": 2}), hide_index=True, height=240)
