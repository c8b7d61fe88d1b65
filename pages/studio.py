"""Factor studio: move one factor at a time and see which real dishes and recipes sit there."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import clicks, tables, traversals, ui
from ivae.factors import emptiness, factor_ranges, slider_grid, typical_gap
from ivae.read_photo import verdict
from ivae.redundancy import describe, redundancy
from ivae.traversal import coupled_point
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
    "percentiles, widened when a start lies outside them. Click any dish to start from it. "
    "The view is in the URL: copy it to share."
)
ctx = ui.require_context()
z_all, k = ctx.index.z, ctx.k


@st.cache_data(show_spinner=False, max_entries=4)
def base_ranges(key: tuple) -> np.ndarray:
    """(k, 2) the data's 1st and 99th percentiles per factor (a pass over every code)."""
    return factor_ranges(z_all)


@st.cache_data(show_spinner=False, max_entries=4)
def redundant_lines(key: tuple, names: tuple[str, ...]) -> list[str]:
    """Markdown lines: the names, editable by any visitor, as text (ui.plain)."""
    return describe(redundancy(z_all), [ui.plain(name) for name in names])


def slider_key(j: int) -> str:
    return f"studio_z{j}"


def ranges() -> np.ndarray:
    """(k, 2) the sliders' ranges: the data's, widened to the start when it lies outside."""
    return np.array(st.session_state.get("studio_ranges", base_ranges(ctx.key)))


def set_point(values: np.ndarray, dish: str | None, source: str = "") -> None:
    """Move every slider to ``values`` and remember the dish; a value outside a slider's
    range widens that range (and says so) instead of being clipped."""
    values = np.asarray(values, dtype=float)
    base = base_ranges(ctx.key)
    wide = np.stack([np.minimum(base[:, 0], values), np.maximum(base[:, 1], values)], axis=1)
    st.session_state["studio_ranges"] = wide.tolist()
    st.session_state["studio_outside"] = [
        (j, float(values[j]), *map(float, base[j]))
        for j in range(k)
        if not base[j, 0] <= values[j] <= base[j, 1]
    ]
    for j in range(k):
        st.session_state[slider_key(j)] = float(values[j])
    st.session_state["studio_dish"] = dish
    st.session_state["studio_source"] = source
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


def from_handoff(handoff: dict) -> None:
    """A start handed over by another page (a clicked dish, a photo's code)."""
    row = dish_row(handoff.get("dish"))
    if handoff.get("z") is not None and len(handoff["z"]) == k:
        set_point(np.array(handoff["z"]), handoff.get("dish"), handoff.get("source", ""))
    elif row is not None:
        start_from_row(row)


if st.session_state.get("studio_run") != str(ctx.run.path):
    st.session_state["studio_run"] = str(ctx.run.path)
    st.session_state.pop("studio_ranges", None)
    from_query_params()
elif slider_key(0) not in st.session_state:  # back from another page: sliders were reset
    set_point(
        np.array(st.session_state["studio_point"]),
        st.session_state.get("studio_dish"),
        st.session_state.get("studio_source", ""),
    )
if clicks.HANDOFF_KEY in st.session_state:
    from_handoff(st.session_state.pop(clicks.HANDOFF_KEY))

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
                    args=(reading.z, None, f"the photo {upload.name}"),
                )
    st.subheader("Retrieval")
    weight_mode = st.radio("Distance", list(MODES), format_func=MODES.get, key="studio_weights")
    along = st.toggle(
        "Move along the data's correlations",
        key="studio_along",
        help="Moving one slider also moves the others by their linear regression on it over "
        "all dishes, so correlated latents move together and the point stays near real dishes.",
    )


def mark_moved(j: int) -> None:
    """A slider moved: remember it, let the strip follow it and, when asked, move the other
    factors along the data's correlations (clipped to their ranges)."""
    st.session_state["studio_moved"] = j
    st.session_state["studio_traverse_factor"] = j
    if st.session_state.get("studio_along") and "studio_point" in st.session_state:
        value = st.session_state[slider_key(j)]
        moved = coupled_point(st.session_state["studio_point"], j, value, traversals.slopes(ctx))
        limits = ranges()
        for i in range(k):
            if i != j:
                st.session_state[slider_key(i)] = float(np.clip(moved[i], *limits[i]))


@st.cache_data(show_spinner=False, max_entries=16)
def gaps(key: tuple, weights_key: tuple[float, ...]) -> np.ndarray:
    # 2000 dishes' nearest-other gaps up to 200k dishes, fewer above (the work grows with both)
    sample = int(np.clip(4e8 // len(ctx.index), 200, 2000))
    return typical_gap(ctx.index, np.array(weights_key), sample=sample)


# Moving a slider reruns only this fragment: the sidebar and the page header are not rebuilt
# on every move (bench/latency.py, slider -> results).
@st.fragment
def explore() -> None:
    clicks.listen("studio_clicks", start_from_row)
    # ---- sliders -------------------------------------------------------------------------------
    dish = st.session_state.get("studio_dish")
    start_row = dish_row(dish)
    limits = ranges()
    left, right = st.columns([1, 2])
    with left:
        if start_row is not None:
            ui.show_image(st, ctx, start_row, f"start: {ctx.title(start_row)}", width=200)
        else:
            source = st.session_state.get("studio_source") or "a point set by hand"
            st.caption(f"Start: {ui.plain(source)}.")  # may hold an uploaded file's name
        for j, value, low, high in st.session_state.get("studio_outside", []):
            st.info(
                "The start lies outside the data's 1st–99th percentiles on "
                f"**{ui.plain(ctx.names[j])}** "
                f"({value:.2f}; the data's range {low:.2f} to {high:.2f}): that slider's range "
                "was widened to include it, not clipped."
            )
        for j in range(k):
            low, high, step = slider_grid(*limits[j])
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
        redundant = redundant_lines(ctx.key, tuple(ctx.names))
        if redundant:
            st.caption(
                "**Redundant latents** (the others predict them, on the codes alone): "
                + " ".join(redundant)
                + " Moving one of them alone leaves the data: try *Move along the data's "
                "correlations* in the sidebar."
            )
        if start_row is not None:
            st.button(
                "Back to the start", key="studio_reset", on_click=start_from_row, args=(start_row,)
            )

    point = np.array([st.session_state[slider_key(j)] for j in range(k)], dtype=np.float32)
    moved = st.session_state.get("studio_moved")
    st.session_state["studio_point"] = point.tolist()
    weights = traversals.weights(ctx, moved, weight_mode)
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
        what = "" if moved is None else f" (you moved **{ui.plain(ctx.names[moved])}**)"
        st.subheader("Nearest real dishes" + what)
        with clicks.pickable("results", rows):
            ui.image_grid(
                ctx,
                rows,
                [f"{ctx.title(r)} · d={d:.2f}" for r, d in zip(rows, distances, strict=True)],
            )
        st.subheader("Nearest recipes")
        st.caption("Recipes whose conditional prior mean p(z | recipe) is nearest to the point.")
        recipe_rows, recipe_d = ctx.index.nearest(point, n=8, weights=weights, space="recipe")
        table = ui.recipe_table(ctx, recipe_rows, {"distance": np.round(recipe_d, 3)})
        st.dataframe(table, hide_index=True, width="stretch")

    traversals.section(ctx, point, weight_mode)


explore()
