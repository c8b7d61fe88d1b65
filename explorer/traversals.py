"""The studio's traversals, laid out: one factor's strip (each cell saying the dish it
shows, that dish's own value and its distance to the requested point), what else changes
along it, the all-factors grid, and their export as PNG and PDF. The computation is
ivae.traversal's; ``ctx`` is the page's explorer.ui.Context.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import clicks, tables, ui
from ivae import traversal as trav
from ivae.factors import search_weights
from ivae.figures import Cell, figure_bytes, provenance, traversal_figure

FOLLOW = {
    "nearest": "Nearest dish to the requested point",
    "data": "Stay on the data: a dish in the step's band, nearest in the other factors",
}
ANY_DISH = "(any dish type)"
NEIGHBOURHOOD = 25  # dishes per step behind the "what else changes" chart


# Cached per index (``key``: ctx.key, the content fingerprint); ``_ctx`` is not hashed.


@st.cache_data(show_spinner=False, max_entries=64)
def _weights(key: tuple, moved: int | None, mode: str, _ctx) -> np.ndarray:
    return search_weights(_ctx.index.z, moved, mode)


def weights(ctx, moved: int | None, mode: str) -> np.ndarray:
    """The search weights for a moved factor and mode (a pass over every code: 56 ms at a
    million dishes, once per factor and mode instead of on every move)."""
    return _weights(ctx.key, moved, mode, ctx)


@st.cache_data(show_spinner=False, max_entries=4)
def _slopes(key: tuple, _ctx) -> np.ndarray:
    return trav.regression_slopes(_ctx.index.z)


def slopes(ctx) -> np.ndarray:
    """(k, k) how the data moves each factor with another (ivae.traversal.regression_slopes)."""
    return _slopes(ctx.key, ctx)


@st.cache_data(show_spinner=False, max_entries=4)
def _dish_types(key: tuple, _ctx) -> list[str]:
    items = _ctx.items
    return sorted(items["dish"].astype(str).unique()) if "dish" in items else []


# cache_resource, not cache_data: these arrays are (N,) and read only; cache_data would
# unpickle a copy of them on every move (44 MB of nuisances at a million dishes)
@st.cache_resource(show_spinner=False, max_entries=16)
def _dish_mask(key: tuple, dish: str, _ctx) -> np.ndarray:
    return (_ctx.items["dish"].astype(str) == dish).to_numpy()


@st.cache_resource(show_spinner=False, max_entries=4)
def _nuisances(key: tuple, _ctx) -> tuple[dict[str, np.ndarray], dict]:
    """Every ``nuisance.<name>`` column of the items as arrays (empty without labels), and
    each one's mean and spread."""
    columns = [c for c in _ctx.items.columns if c.startswith("nuisance.")]
    values = {c.split(".", 1)[1]: _ctx.items[c].to_numpy(dtype=np.float32) for c in columns}
    return values, trav.column_stats(values)


@st.cache_data(show_spinner=False, max_entries=4)
def _latent_stats(key: tuple, names: tuple[str, ...], _ctx) -> dict[str, tuple[float, float]]:
    return trav.column_stats({name: _ctx.index.z[:, j] for j, name in enumerate(names)})


def section(ctx, point: np.ndarray, weight_mode: str) -> None:
    """The strip of one factor, what else changes along it, and the all-factors grid."""
    st.subheader("Traversal strip")
    st.caption(
        "Traversal by retrieval: there is no decoder, so each step shows a real dish for the "
        "point with one factor set to a quantile of the data. Each cell says the value asked "
        "for, the dish's own value and its distance to the requested point (the distance "
        "mode's weights, for the traversed factor); a dish shown twice is marked."
    )
    c1, c2, c3, c4 = st.columns([2, 1, 3, 2])
    factor = c1.selectbox(
        "Factor", range(ctx.k), format_func=lambda j: ctx.names[j], key="studio_traverse_factor"
    )
    steps = c2.slider("Steps", 3, 11, 7, key="studio_traverse_steps")
    follow = c3.radio("Each step shows", list(FOLLOW), format_func=FOLLOW.get, key="studio_follow")
    types = _dish_types(ctx.key, ctx)
    dish = c4.selectbox("Within one dish type", [ANY_DISH, *types], key="studio_dish_type")
    options = {
        "steps": steps,
        "follow": follow,
        "allowed": None if dish == ANY_DISH else _dish_mask(ctx.key, dish, ctx),
        "slopes": slopes(ctx) if st.session_state.get("studio_along") else None,
    }
    strip_weights = weights(ctx, factor, weight_mode)
    strip = trav.traverse(
        ctx.index, point, factor, strip_weights, neighbours=NEIGHBOURHOOD, **options
    )
    table = strip.table(ctx.index.z)
    show_strip(ctx, "strip", table, width=min(ui.THUMB_WIDTH, 920 // steps))
    name = ctx.names[factor]
    downloads(ctx, "strip", [strip_cells(ctx, table)], [name], f"Traversal of {name}")
    if st.toggle("What else changes along the strip", value=True, key="studio_changes"):
        st.caption(
            f"Means over each step's {NEIGHBOURHOOD} dishes nearest the step (as the strip "
            "picks them): a line that moves with the traversed factor is a confound."
        )
        what_changes(ctx, strip)

    st.subheader("All factors")
    if st.toggle("Show the all-factors grid", key="studio_grid"):
        st.caption(
            "Every factor traversed from the current point (the start dish until a slider "
            "moves): one row per factor, the steps and options of the strip above."
        )
        grid = trav.traversal_grid(
            ctx.index, point, lambda j: weights(ctx, j, weight_mode), **options
        )
        cells = []
        for j, row in enumerate(grid):
            row_table = row.table(ctx.index.z)
            st.markdown(f"**{ui.factor_label(ctx, j)}**")
            show_strip(ctx, f"grid{j}", row_table, width=min(110, 920 // steps))
            cells.append(strip_cells(ctx, row_table))
        downloads(ctx, "grid", cells, list(ctx.names), "Traversal grid")


def cell_text(step, title: str) -> str:
    """A strip cell's three lines: asked vs shown value, distance (and repeat), title."""
    if step.item < 0:
        return f"asked {step.requested:.2f}\nno dish here\n"
    repeat = f" · same as step {step.repeat_of + 1}" if step.repeat_of >= 0 else ""
    values = f"asked {step.requested:.2f} · shown {step.shown:.2f}"
    # "distance", not the results' "d=": tests and bench/latency.py find the results by "· d="
    return f"{values}\ndistance {step.distance:.2f}{repeat}\n{title}"


def strip_cells(ctx, table) -> list[Cell]:
    return [
        Cell(ctx.image_path(s.item) if s.item >= 0 else None, cell_text(s, ctx.title(s.item)))
        for s in table.itertuples()
    ]


def show_strip(ctx, name: str, table, width: int) -> None:
    """A strip's dishes, clickable, each labelled with its own value and distance."""
    found = table[table["item"] >= 0]
    with clicks.pickable(name, found["item"]):
        ui.image_grid(
            ctx,
            found["item"],
            [cell_text(s, ctx.title(s.item)).replace("\n", " · ") for s in found.itertuples()],
            width=width,
        )
    if len(found) < len(table):
        st.caption(f"{len(table) - len(found)} step(s) have no dish of this kind in their band.")


def downloads(ctx, name: str, rows: list[list[Cell]], labels: list[str], title: str) -> None:
    """PNG and PDF buttons for a strip or grid; the figure is drawn only when clicked."""
    caption = provenance(ctx.run, ui.label(str(ctx.run.path)), ctx.index.model_digest)
    figure = lambda fmt: figure_bytes(traversal_figure(rows, labels, title, caption), fmt)  # noqa: E731
    left, right = st.columns(2)
    for column, fmt in ((left, "png"), (right, "pdf")):
        column.download_button(
            f"Download the {name} ({fmt.upper()})",
            lambda fmt=fmt: figure(fmt),
            on_click="ignore",
            file_name=f"{title.lower().replace(' ', '-')}.{fmt}",
            mime=f"image/{fmt}" if fmt == "png" else "application/pdf",
            key=f"studio_{name}_{fmt}",
        )


def what_changes(ctx, strip: trav.Traversal) -> None:
    """Per step, the mean of the latents and nuisances and the share of each dish type over
    the step's dishes; where the data has no such labels, the recipe and title words."""
    rows = strip.rows
    found = rows[rows >= 0]
    per_step = np.split(np.arange(len(found)), np.cumsum((rows >= 0).sum(axis=1))[:-1])
    latents = {name: ctx.index.z[:, j] for j, name in enumerate(ctx.names)}
    charts = [
        (
            "The latents (standard deviations from the data's mean)",
            trav.standardised_means(rows, latents, _latent_stats(ctx.key, tuple(ctx.names), ctx)),
        )
    ]
    nuisances, stats = _nuisances(ctx.key, ctx)
    if nuisances:
        frame = trav.standardised_means(rows, nuisances, stats)
        charts.append(("Nuisances (standard deviations)", frame))
    if "dish" in ctx.items:
        labels = tables.take_rows(ctx.items, found, ["dish"])["dish"].astype(str).to_numpy()
        charts.append(("Dish types (share)", trav.shares([labels[i] for i in per_step])))
    if not nuisances:  # no labels: what the recipes and titles say
        texts = tables.take_rows(ctx.items, found, ["text"])["text"].astype(str).to_numpy()
        charts.append(("Recipe words (share)", trav.word_shares([texts[i] for i in per_step])))
        titles = ctx.titles[found]
        charts.append(("Title words (share)", trav.word_shares([titles[i] for i in per_step])))
    x = np.round(strip.points[:, strip.factor], 3)
    for column, (title, frame) in zip(st.columns(len(charts)), charts, strict=True):
        column.caption(title)
        # a hand-written Vega-Lite spec: st.line_chart builds it through Altair, ~80 ms a chart
        long = frame.assign(x=x).melt("x", var_name="what", value_name="y")
        column.vega_lite_chart(long, line_spec(ctx.names[strip.factor]), height=200)


def line_spec(x_label: str) -> dict:
    return {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "title": x_label},
            "y": {"field": "y", "type": "quantitative", "title": None},
            "color": {"field": "what", "type": "nominal", "title": None},
            "tooltip": [{"field": "what"}, {"field": "y", "format": ".2f"}],
        },
    }
