"""Factor studio: move one factor at a time and see which real dishes and recipes sit there."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import tables, ui
from ivae.factors import (
    emptiness,
    factor_ranges,
    search_weights,
    slider_grid,
    traversal,
    typical_gap,
)
from ivae.figures import contact_sheet
from ivae.read_photo import verdict
from ivae.uploads import ACCEPTED_EXTENSIONS, UploadError, read_upload

MODES = {
    "equal": "All factors count alike",
    "emphasise": "Weight the moved factor (x4)",
    "hold": "Hold the other factors (x4)",
}

st.title("Factor studio")
st.caption(
    "One slider per shared factor. Moving a slider sets a point in factor space; the page "
    "shows the real dishes and recipes nearest to it. Ranges span the data's 1st–99th "
    "percentiles. The view is in the URL: copy it to share."
)
ctx = ui.require_context()
z_all, k = ctx.index.z, ctx.k
grids = [slider_grid(*r) for r in factor_ranges(z_all)]  # (low, high, step)
ranges = np.array([grid[:2] for grid in grids])


def slider_key(j: int) -> str:
    return f"studio_z{j}"


def set_point(values: np.ndarray, dish: str | None) -> None:
    """Move every slider to ``values`` (clipped to the ranges) and remember the dish."""
    for j in range(k):
        st.session_state[slider_key(j)] = float(np.clip(values[j], *ranges[j]))
    st.session_state["studio_dish"] = dish
    st.session_state["studio_moved"] = None


def dish_row(dish: str | None) -> int | None:
    """The index row of a dish id, or None (no dish, or one this run does not have)."""
    try:
        return ctx.index.position(dish) if dish else None
    except KeyError:
        return None


def start_from_row(row: int) -> None:
    set_point(z_all[row], str(ctx.index.ids[row]))


def random_dish() -> None:
    start_from_row(int(np.random.default_rng().integers(len(ctx.index))))


def from_query_params() -> None:
    """First visit: the dish and factor vector from the URL, else a random dish."""
    params = st.query_params
    dish = params.get("dish")
    row = dish_row(dish)
    values = tables.parse_point(params.get("z"), k)
    if values is not None:
        set_point(values, dish if row is not None else None)
    elif row is not None:
        start_from_row(row)
    else:
        random_dish()


if st.session_state.get("studio_run") != str(ctx.run.path):
    st.session_state["studio_run"] = str(ctx.run.path)
    from_query_params()
elif slider_key(0) not in st.session_state:  # back from another page: sliders were reset
    set_point(np.array(st.session_state["studio_point"]), st.session_state.get("studio_dish"))

# ---- the starting dish -------------------------------------------------------------------
with st.sidebar:
    st.subheader("Start from")
    mode = st.radio(
        "Starting dish",
        ["Random", "Search by title", "Upload a photo"],
        key="studio_start_mode",
        label_visibility="collapsed",
    )
    if mode == "Random":
        st.button("Another random dish", key="studio_random", on_click=random_dish)
    elif mode == "Search by title":
        query = st.text_input("Title contains", key="studio_search", placeholder="e.g. curry")
        hits = tables.find_titles(ctx.items, query)
        if query and len(hits) == 0:
            st.info("No dish title contains that.")
        elif query:
            pick = st.selectbox("Matches", hits, format_func=ctx.title, key="studio_match")
            st.button(
                "Start from this dish",
                key="studio_use_match",
                on_click=start_from_row,
                args=(int(pick),),
            )
    else:
        upload = st.file_uploader("A food photo", type=ACCEPTED_EXTENSIONS, key="studio_upload")
        if upload is not None:
            try:
                photo = read_upload(upload.getvalue(), upload.name)
            except UploadError as error:
                st.error(str(error))
            else:
                st.image(photo, caption="your photo", width=160)
                reader = ui.photo_reader(str(ctx.run.path))
                reading = reader.read(photo)  # the Photo reader's factors and check
                if reading.unfamiliar:
                    st.warning(verdict(reading, reader.check.pass_rate))
                elif reading.unfamiliarity is not None:
                    st.caption(verdict(reading, reader.check.pass_rate))
                st.button(
                    "Start from this photo",
                    key="studio_use_photo",
                    on_click=set_point,
                    args=(reading.z, None),
                )
    st.subheader("Retrieval")
    weight_mode = st.radio("Distance", list(MODES), format_func=MODES.get, key="studio_weights")


def mark_moved(j: int) -> None:
    st.session_state["studio_moved"] = j


@st.cache_data(show_spinner=False, max_entries=64)
def distance_weights(key: tuple, moved: int | None, mode: str) -> np.ndarray:
    """The search weights for a moved factor and mode (a pass over every code: 56 ms at a
    million dishes, once per factor and mode instead of on every move)."""
    return search_weights(z_all, moved, mode)


@st.cache_data(show_spinner=False, max_entries=16)
def gaps(key: tuple, weights_key: tuple[float, ...]) -> np.ndarray:
    # 2000 dishes' nearest-other gaps up to 200k dishes, fewer above (the work grows with both)
    sample = int(np.clip(4e8 // len(ctx.index), 200, 2000))
    return typical_gap(ctx.index, np.array(weights_key), sample=sample)


# Moving a slider reruns only this fragment: the sidebar and the page header are not rebuilt
# on every move (bench/latency.py, slider -> results).
@st.fragment
def explore() -> None:
    # ---- sliders -------------------------------------------------------------------------------
    dish = st.session_state.get("studio_dish")
    start_row = dish_row(dish)
    left, right = st.columns([1, 2])
    with left:
        if start_row is not None:
            ui.show_image(st, ctx, start_row, f"start: {ctx.title(start_row)}", width=200)
        else:
            st.caption("Start: a point set by hand or from a photo.")
        for j in range(k):
            low, high, step = grids[j]
            st.slider(
                ui.factor_label(ctx, j),
                low,
                high,
                step=step,
                key=slider_key(j),
                on_change=mark_moved,
                args=(j,),
                format="%.2f",
            )
        if start_row is not None:
            st.button(
                "Back to the start", key="studio_reset", on_click=start_from_row, args=(start_row,)
            )

    point = np.array([st.session_state[slider_key(j)] for j in range(k)], dtype=np.float32)
    moved = st.session_state.get("studio_moved")
    st.session_state["studio_point"] = point.tolist()
    weights = distance_weights(ctx.key, moved, weight_mode)
    st.query_params["run"] = ui.label(str(ctx.run.path))
    st.query_params.update({"z": tables.format_point(point), **({"dish": dish} if dish else {})})
    if not dish and "dish" in st.query_params:
        del st.query_params["dish"]

    # ---- results -------------------------------------------------------------------------------
    rows, distances = ctx.index.nearest(point, n=8, weights=weights)
    with right:
        share, level = emptiness(float(distances[0]), gaps(ctx.key, tuple(weights.tolist())))
        st.markdown(
            f"**Distance to the nearest real dish:** {distances[0]:.2f} "
            f"(farther than {share:.0f}% of dish-to-dish gaps)"
        )
        st.progress(min(share / 100.0, 1.0))
        if level == "empty":
            st.warning(
                "Empty region: no real dish is near this point. The images below are only "
                "the closest there are."
            )
        elif level == "sparse":
            st.info("Sparse region: few dishes are this far from their neighbours.")
        what = "" if moved is None else f" (you moved **{ctx.names[moved]}**)"
        st.subheader("Nearest real dishes" + what)
        ui.image_grid(
            ctx, rows, [f"{ctx.title(r)} · d={d:.2f}" for r, d in zip(rows, distances, strict=True)]
        )
        st.subheader("Nearest recipes")
        st.caption("Recipes whose conditional prior mean p(z | recipe) is nearest to the point.")
        recipe_rows, recipe_d = ctx.index.nearest(point, n=8, weights=weights, space="recipe")
        table = ui.recipe_table(ctx, recipe_rows, {"distance": np.round(recipe_d, 3)})
        st.dataframe(table, hide_index=True, width="stretch")

    # ---- traversal -----------------------------------------------------------------------------
    st.subheader("Traversal strip")
    st.caption(
        "Traversal by retrieval: there is no decoder, so each step shows the nearest real dish to "
        "the point with one factor set to a quantile of the data and the others as on the sliders."
    )
    c1, c2 = st.columns(2)
    factor = c1.selectbox(
        "Factor",
        range(k),
        index=moved or 0,
        format_func=lambda j: ctx.names[j],
        key="studio_traverse_factor",
    )
    steps = c2.slider("Steps", 3, 11, 7, key="studio_traverse_steps")
    strip = traversal(ctx.index, point, factor, weights, steps=steps)
    captions = [
        f"q{q:.0f}: {v:.2f}\n{ctx.title(r)}"
        for q, v, r in zip(strip["quantile"], strip["value"], strip["item"], strict=True)
    ]
    width = min(ui.THUMB_WIDTH, 920 // steps)  # the strip on one line of the page
    ui.image_grid(ctx, strip["item"], [c.replace("\n", " · ") for c in captions], width=width)
    paths = [ctx.image_path(r) for r in strip["item"]]
    st.download_button(
        "Download the strip (PNG)",
        lambda: contact_sheet(paths, captions),  # built only when clicked
        on_click="ignore",
        file_name=f"traversal-{ctx.names[factor]}.png",
        mime="image/png",
        key="studio_strip_png",
    )


explore()
