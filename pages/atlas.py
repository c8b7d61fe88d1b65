"""Factor atlas: every dish on a 2-D map of its factors; select a region to inspect it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from explorer import tables, ui

MAX_POINTS = 50_000  # drawn as points; above this many dishes the rest show as a density

st.title("Factor atlas")
st.caption(
    "A UMAP map of the image codes, computed once per run by `ivae index`. Nearby points are "
    "dishes with similar factors. Colour by any factor; draw a lasso or box to inspect a region."
)
ctx = ui.require_context()


@st.cache_data(show_spinner=False, max_entries=4)
def atlas(key: tuple, names: list[str]) -> pd.DataFrame:
    rows = tables.sample_rows(len(ctx.index), MAX_POINTS)
    return tables.atlas_table(ctx.index.z, ctx.index.map2d, names, ctx.items, ctx.titles, rows)


@st.cache_data(show_spinner=False, max_entries=4)
def density(key: tuple) -> tuple:
    return tables.density(ctx.index.map2d)


shown = atlas(ctx.key, ctx.names)
sampled = len(shown) < len(ctx.index)
if sampled:
    st.caption(
        f"{len(shown):,} of the {len(ctx.index):,} dishes are drawn as points (a fixed random "
        "sample); the grey shade underneath is the density of all of them."
    )
colour_options = tables.colour_options(shown, ctx.names)
colour = st.selectbox("Colour by", colour_options, key="atlas_colour")
figure = px.scatter(
    shown,
    x="map x",
    y="map y",
    color=colour,
    hover_name="title",
    custom_data=["row"],
    render_mode="webgl",
    color_continuous_scale="Viridis",
    height=560,
)
figure.update_traces(marker={"size": 5, "opacity": 0.8})
if sampled:
    counts, x_centres, y_centres = density(ctx.key)
    shade = go.Heatmap(
        z=np.log1p(counts), x=x_centres, y=y_centres, colorscale="Greys", showscale=False,
        hoverinfo="skip", zsmooth="best",
    )  # fmt: skip
    figure.add_trace(shade)
    figure.data = (figure.data[-1], *figure.data[:-1])  # underneath the points
figure.update_layout(dragmode="lasso", margin={"l": 10, "r": 10, "t": 10, "b": 10})
event = st.plotly_chart(figure, key="atlas_map", on_select="rerun", selection_mode=("lasso", "box"))

points = (event.selection.get("points", []) if event else []) or []
selected = [int(p["customdata"][0]) for p in points if p.get("customdata")]
if not selected:
    st.info("Draw a lasso or a box on the map to see the dishes in that region.")
else:
    st.subheader(f"{len(selected)} selected dishes")
    ui.image_grid(ctx, selected[:12])
    overlay = go.Figure()
    factor = st.selectbox("Histogram of", ctx.names, key="atlas_hist_factor")
    j = ctx.names.index(factor)
    everyone = "all dishes" + (" (the drawn sample)" if sampled else "")
    for name, values in ((everyone, shown[factor]), ("selected", ctx.index.z[selected, j])):
        overlay.add_trace(
            go.Histogram(
                x=values, name=name, histnorm="probability density", opacity=0.6, nbinsx=40
            )
        )
    overlay.update_layout(barmode="overlay", height=300, margin={"t": 10, "b": 10})
    st.plotly_chart(overlay, key="atlas_hist")

st.subheader("Factor against factor")
st.caption("The same dishes on real axes: two learned factors, or a learned against a true one.")
axes = ctx.names + [c for c in shown.columns if c.startswith("true ")]
c1, c2, c3 = st.columns(3)
x_axis = c1.selectbox("x", axes, index=0, key="atlas_x")
y_axis = c2.selectbox("y", axes, index=min(1, len(axes) - 1), key="atlas_y")
colour2 = c3.selectbox("Colour", colour_options, index=0, key="atlas_colour2")
scatter = px.scatter(
    shown,
    x=x_axis,
    y=y_axis,
    color=colour2,
    hover_name="title",
    render_mode="webgl",
    height=480,
    color_continuous_scale="Viridis",
)
scatter.update_traces(marker={"size": 4, "opacity": 0.7})
st.plotly_chart(scatter, key="atlas_scatter")
