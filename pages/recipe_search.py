"""Recipe search: a recipe's conditional prior p(z | y), and the photos that fit it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import clicks, ui
from ivae import queries
from ivae.factors import factor_ranges, recipe_to_images

st.title("Recipe search")
st.caption(
    "Type a recipe or a list of ingredients. The recipe encoder gives the conditional prior "
    "p(z | recipe): a mean and a spread per factor. A wide spread means the text says little "
    "about that factor. Photos are ranked by the model's image–recipe score, shown also as a "
    "percentile of the scores of real (photo, recipe) pairs the model did not train on."
)
ctx = ui.require_context()
clicks.go_to_studio_if_asked()


@st.cache_resource(show_spinner=False, max_entries=4)
def recipe_priors(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data's recipe priors, each column sorted (means, spreads), and their 1-99% range."""
    means, spreads = np.asarray(ctx.index.y_mean), np.exp(0.5 * np.asarray(ctx.index.y_logvar))
    return np.sort(means, axis=0), np.sort(spreads, axis=0), factor_ranges(means)


@st.cache_resource(show_spinner="Scoring the held-out pairs once…", max_entries=4)
def real_pair_scores(key: tuple) -> np.ndarray:
    """Sorted scores of each held-out photo against its own recipe (ivae.queries)."""
    rows = queries.calibration_rows(ctx.items["split"].to_numpy())
    index = ctx.index
    scores = queries.pair_scores(ctx.run, index.z[rows], index.y_mean[rows], index.y_logvar[rows])
    return np.sort(scores)


def show_words(reading: queries.Reading) -> None:
    """The query's words, those the model does not know struck through on red."""
    shown = " ".join(
        t if k else f":red-background[~~{t}~~]" for t, k in zip(reading.tokens, reading.known)
    )
    st.markdown(
        f"**Words the model reads** ({reading.n_known} of {len(reading.tokens)} known): {shown}"
    )
    if reading.level == "none":
        st.error(
            "The model knows none of these words, so this is no reading of the recipe: any "
            "unreadable text gets a prior like the one it would show, and its photos would "
            "score as if they matched. Use the words of a recipe (ingredients, cooking steps)."
        )
        st.stop()
    if reading.level == "few":
        unknown = reading.unknown
        st.warning(
            f"Only {reading.n_known} of these {len(reading.tokens)} words are known to the "
            "model" + (f" (unknown: {', '.join(unknown[:12])})" if unknown else "") + ". The "
            "prior and the photos below rest on those few words; add ingredients or cooking "
            "steps for a reading you can trust."
        )


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

vocab = ctx.run.vocab
if vocab is not None:
    show_words(queries.read_words(vocab, text))

mean, logvar = (a[0] for a in ctx.run.encode_y([text]))
sd = np.exp(0.5 * logvar)
sorted_means, sorted_spreads, ranges = recipe_priors(ctx.key)

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
        name="the data's recipe priors: 1st / 99th percentile of the means",
    )
)
figure.update_layout(
    height=120 + 50 * ctx.k, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="value"
)
st.subheader("Conditional prior per factor")
st.plotly_chart(figure, key="recipe_prior_chart")
mean_pct = queries.column_percentiles(sorted_means, mean)
sd_pct = queries.column_percentiles(sorted_spreads, sd)
st.dataframe(
    pd.DataFrame(
        {
            "factor": ctx.names,
            "mean": mean.round(2),
            "sd": sd.round(2),
            "mean among the data's recipes": [f"{queries.ordinal(p)} percentile" for p in mean_pct],
            "sd among the data's recipes": [f"{queries.ordinal(p)} percentile" for p in sd_pct],
        }
    ),
    hide_index=True,
    key="recipe_prior_table",
)
st.caption(
    "Percentiles rank this recipe's prior among the priors of every recipe of the data "
    "(not among photo codes). A low sd percentile: the model is surer of this recipe than of "
    "most real ones."
)

st.subheader("Photos that fit this recipe")
top, scores = recipe_to_images(ctx.run, ctx.index, mean, logvar, n=12)
pairs = real_pair_scores(ctx.key)
score_pct = queries.percentile_of(pairs, scores)
st.caption(
    f"Each score's percentile among the scores of {len(pairs):,} real matching (photo, recipe) "
    "pairs of the val and test splits: 50th, a match as good as a typical real pair's."
)
clicks.listen("recipe_clicks", lambda row: clicks.start_studio(dish=str(ctx.index.ids[row])))
with clicks.pickable("recipe_photos", top):  # click a photo to start the studio there
    ui.image_grid(
        ctx,
        top,
        [
            f"{ctx.title(r)} · score {s:.1f} ({queries.ordinal(p)} pct of real pairs)"
            for r, s, p in zip(top, scores, score_pct, strict=True)
        ],
    )
