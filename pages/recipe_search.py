"""Recipe search: a recipe's conditional prior p(z | y), and the photos that fit it."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explorer import ui
from ivae.factors import factor_ranges, percentiles, recipe_to_images

st.title("Recipe search")
st.caption(
    "Type a recipe or a list of ingredients. The recipe encoder gives the conditional prior "
    "p(z | recipe): a mean and a spread per factor. A wide spread means the text says little "
    "about that factor. Photos are ranked by the model's image–recipe score."
)
ctx = ui.require_context()
example = str(ctx.items["text"].iat[0])
text = st.text_area(
    "Recipe or ingredients",
    key="recipe_text",
    height=140,
    placeholder=f"e.g. {example[:160]}",
)
if not text.strip():
    st.info("Type a recipe or some ingredients above (or paste one from the data).")
    st.stop()

mean, logvar = (a[0] for a in ctx.run.encode_y([text]))
sd = np.exp(0.5 * logvar)
ranges = factor_ranges(ctx.index.z)

figure = go.Figure()
figure.add_trace(
    go.Scatter(
        x=mean,
        y=ctx.names,
        mode="markers",
        marker={"size": 12},
        error_x={"type": "data", "array": sd, "visible": True},
        name="p(z | recipe): mean ± sd",
    )
)
figure.add_trace(
    go.Scatter(
        x=np.concatenate([ranges[:, 0], ranges[:, 1]]),
        y=ctx.names * 2,
        mode="markers",
        marker={"symbol": "line-ns-open", "size": 14, "color": "grey"},
        name="data 1st / 99th percentile",
    )
)
figure.update_layout(
    height=120 + 50 * ctx.k, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="value"
)
st.subheader("Conditional prior per factor")
st.plotly_chart(figure, key="recipe_prior_chart")
pct = percentiles(ctx.index.z, mean)
st.caption(
    " · ".join(
        f"{n}: {m:.2f} ± {s:.2f} ({p:.0f}th pct)"
        for n, m, s, p in zip(ctx.names, mean, sd, pct, strict=True)
    )
)

st.subheader("Photos that fit this recipe")
top, scores = recipe_to_images(ctx.run, ctx.index, mean, logvar, n=12)
ui.image_grid(
    ctx, top, [f"{ctx.title(r)} · score {s:.1f}" for r, s in zip(top, scores, strict=True)]
)
