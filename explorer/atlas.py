"""The atlas's figures: the map of every dish (one WebGL trace, coloured by any column) and a
selection against all dishes (small multiples). Plotly only; the numbers come from
``explorer.tables`` (atlas_table, histogram_panels).

The map is one trace whatever the colour: a categorical column (dish type) is drawn as
integer codes on a stepped colour scale labelled with the categories, not as one trace per
category, so a recolour changes one colour array and the browser redraws one trace.
"""

from __future__ import annotations

import base64
import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SELECTED = "#d62728"
EVERYONE = "#9a9a9a"


def text(value) -> str:
    """``value`` shown literally by Plotly, which renders a subset of HTML (links, line breaks,
    styles) in every label and hover text: titles come from the data and factor names from any
    visitor. ``%`` is escaped too, out of the hover templates' reach."""
    return html.escape(str(value), quote=False).replace("%", "&#37;")


def discrete_scale(n: int) -> list[list]:
    """A stepped colour scale of ``n`` qualitative colours over codes 0 .. n-1."""
    colours = [qualitative.Plotly[i % len(qualitative.Plotly)] for i in range(n)]
    scale = []
    for i, colour in enumerate(colours):
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


def colour_style(values: np.ndarray, name: str) -> dict:
    """The trace attributes (Plotly restyle paths) that colour the map by ``values``: a
    continuous scale, or a stepped one labelled with the categories. Every option sets the
    same paths (None: back to Plotly's default), so any option can follow any other."""
    if values.dtype.kind in "fiu":
        return {
            "marker.color": values.astype(np.float32), "marker.colorscale": "Viridis",
            "marker.cmin": None, "marker.cmax": None, "marker.colorbar.tickvals": None,
            "marker.colorbar.ticktext": None, "marker.colorbar.title.text": text(name),
            "hovertemplate": "%{hovertext}<br>" + text(name) + " %{marker.color:.3g}"
                             "<extra></extra>",
        }  # fmt: skip
    labels, codes = np.unique(values.astype(str), return_inverse=True)
    return {
        "marker.color": codes.astype(np.int16), "marker.colorscale": discrete_scale(len(labels)),
        "marker.cmin": -0.5, "marker.cmax": len(labels) - 0.5,
        "marker.colorbar.tickvals": list(range(len(labels))),
        "marker.colorbar.ticktext": [text(label) for label in labels],
        "marker.colorbar.title.text": text(name),
        "hovertemplate": "%{hovertext}<extra></extra>",
    }  # fmt: skip


def typed(values):
    """A numpy array as Plotly's base64 typed-array form, which plotly.js decodes where it
    reads data arrays; plotly.py writes arrays in a menu's arguments as JSON lists (a
    float32 as ~19 characters, where this takes 5.3)."""
    if not isinstance(values, np.ndarray):
        return values
    return {"dtype": values.dtype.str.lstrip("<|="), "bdata": base64.b64encode(values).decode()}


def colour_groups(colours: list[str]) -> dict[str, list[str]]:
    """The colour options by kind, each a menu of its own (a menu taller than the chart
    would not fit): learned factors, what the data knows of each dish, its nuisances."""
    groups = {
        "learned factor…": [c for c in colours if not c.startswith(("true ", "nuisance "))
                            and c != "dish type"],
        "true factor or dish…": [c for c in colours if c.startswith("true ") or c == "dish type"],
        "nuisance…": [c for c in colours if c.startswith("nuisance ")],
    }  # fmt: skip
    return {title: names for title, names in groups.items() if names}


def colour_menus(table: pd.DataFrame, colours: list[str], traces: list[int]) -> list[dict]:
    """Menus in the chart that recolour the map's points (trace ``traces``) by each of
    ``colours`` in the browser: every colour array travels with the figure, so a recolour is
    a restyle of one trace, with no rerun and no new chart (a new figure from the server is
    a new chart, drawn from scratch). Each menu's first entry is its title; choosing a colour
    sets the other menus back to theirs, so the headers name the colour shown."""
    groups = colour_groups(colours)
    menus = []
    for m, (title, names) in enumerate(groups.items()):
        buttons = [{"label": title, "method": "skip", "args": []}]
        for i, name in enumerate(names):
            style = colour_style(table[name].to_numpy(), name)
            # restyle reads a list value as one value per trace: the arrays are wrapped
            style = {k: [typed(v)] if isinstance(v, (list, np.ndarray)) else v
                     for k, v in style.items()}  # fmt: skip
            headers = {
                f"updatemenus[{n}].active": i + 1 if n == m else 0 for n in range(len(groups))
            }
            buttons.append(
                {"label": text(name), "method": "update", "args": [style, headers, traces]}
            )
        menus.append({
            "buttons": buttons, "active": 1 if m == 0 else 0, "x": 0.08 + 0.22 * m,
            "xanchor": "left", "y": 1.0, "yanchor": "bottom", "direction": "down",
            "pad": {"t": 2, "b": 2},
        })  # fmt: skip
    return menus


def map_figure(
    table: pd.DataFrame, x: str, y: str, colours: list[str], density: tuple | None, revision: int
) -> go.Figure:
    """Every row of an atlas table at (``x``, ``y``), coloured by the first of ``colours``,
    with menus of all of them (colour_menus); each point carries its index row as custom data
    (what a selection returns). ``density``: (counts, x centres, y centres) of all dishes,
    shaded underneath when the table is a sample. ``revision``: a new one resets zoom and
    selection."""
    points = go.Scattergl(
        x=table[x].to_numpy(dtype=np.float32), y=table[y].to_numpy(dtype=np.float32),
        mode="markers", marker={"size": 5, "opacity": 0.8, "showscale": True},
        customdata=table["row"].to_numpy(dtype=np.int32),
        hovertext=[text(title) for title in table["title"]], showlegend=False,
    )  # fmt: skip
    points.update(colour_style(table[colours[0]].to_numpy(), colours[0]))
    traces = [points]
    if density is not None and (x, y) == ("map x", "map y"):
        counts, x_centres, y_centres = density
        shade = go.Heatmap(
            z=np.log1p(counts), x=x_centres, y=y_centres, colorscale="Greys", showscale=False,
            hoverinfo="skip", zsmooth="best",
        )  # fmt: skip
        traces = [shade, points]  # underneath the points
    figure = go.Figure(traces)
    menus = colour_menus(table, colours, [len(figure.data) - 1])  # the points, not the shade
    figure.update_layout(
        dragmode="lasso", height=600, uirevision=revision, xaxis_title=x, yaxis_title=y,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, updatemenus=menus,
        annotations=[{"text": "Colour by", "x": 0, "xref": "paper", "xanchor": "left",
                      "y": 1.0, "yref": "paper", "yanchor": "bottom", "showarrow": False}],
    )  # fmt: skip
    return figure


def selection_figure(panels: list[dict], columns: int = 4) -> go.Figure:
    """Small multiples: per panel (tables.histogram_panels), the share of all dishes (grey)
    and of the selected ones (red) in each bin or category (the page's caption says which is
    which: a legend would sit on the first panel's title)."""
    rows = max(1, math.ceil(len(panels) / columns))
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=[text(p["name"]) for p in panels],
        horizontal_spacing=0.05, vertical_spacing=0.5 / rows,
    )  # fmt: skip
    for i, panel in enumerate(panels):
        place = {"row": i // columns + 1, "col": i % columns + 1}
        categorical = panel["kind"] == "categorical"
        x = [text(v) for v in panel["x"]] if categorical else np.round(panel["x"], 4)
        width = None if categorical else float(np.diff(panel["x"][:2])[0])
        for name, shares, colour in (
            ("all dishes", panel["all"], EVERYONE),
            ("selected", panel["selected"], SELECTED),
        ):
            bar = go.Bar(
                x=x, y=np.round(shares, 4), width=width, name=name, marker_color=colour,
                opacity=0.6, showlegend=False,
                hovertemplate=f"{name}: %{{y:.1%}}<extra>%{{x}}</extra>",
            )  # fmt: skip
            figure.add_trace(bar, **place)
    figure.update_layout(
        barmode="overlay", height=190 * rows + 60, bargap=0,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )  # fmt: skip
    figure.update_yaxes(tickformat=".0%")
    figure.update_annotations(font_size=12)
    return figure
