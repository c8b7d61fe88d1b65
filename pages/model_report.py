"""Model report: training curves, identifiability (MCC), retrieval, and runs side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from explorer import tables, ui
from explorer.runs import compare_runs
from ivae import report
from ivae.alignment import summary as alignment_summary
from ivae.head import encoder_summary
from ivae.health import summary as health_summary
from ivae.run import RunError

st.title("Model report")
st.caption(
    "How the run trained and how well it recovers the true factors (MCC: mean absolute "
    "correlation after matching learned to true factors) and retrieves across modalities."
)
ctx = ui.require_context()
run = ctx.run
HELD_OUT = 10_000  # test-split dishes the informativeness is computed on (a seeded sample)


@st.cache_data(show_spinner="Relating the latents to the labels…", max_entries=4)
def carried(key: tuple) -> tuple[pd.DataFrame | None, pd.DataFrame, int]:
    """On the test split: |Spearman r| of each latent with every true factor and nuisance
    (and eta with the dish type), or None without labels; the words that move each latent."""
    split = ctx.items["split"].to_numpy().astype(str)
    rows = np.flatnonzero(split == "test")
    rows = rows if len(rows) else np.arange(len(split))
    if len(rows) > HELD_OUT:
        rows = np.sort(np.random.default_rng(0).choice(rows, size=HELD_OUT, replace=False))
    items = tables.take_rows(ctx.items, rows)
    z = np.asarray(ctx.index.z[rows])
    labels = report.label_columns(items)
    matrix = report.informativeness(z, labels, ctx.names) if len(labels.columns) else None
    if matrix is not None and "dish" in items:
        eta = report.correlation_ratio(z, items["dish"].to_numpy())
        matrix.loc["dish type (eta)"] = eta
    words = report.latent_words(items["text"].astype(str).tolist(), z, ctx.names)
    if "title" in items:
        titles = report.latent_words(items["title"].astype(str).tolist(), z, ctx.names, top=4)
        words["title words up"], words["title words down"] = (
            titles["rises with"],
            titles["falls with"],
        )
    return matrix, words, len(rows)


st.subheader("How it was trained")
# config.json and the model's words are shown as text: a run folder is anyone's to write
st.markdown(f"**Image encoder:** {ui.plain(encoder_summary(run.config))}.")
terms = getattr(run.model.config, "objective_terms", lambda: [])()
if terms:
    st.markdown("**Objective:**\n" + "\n".join(f"- {ui.plain(term)}" for term in terms))
else:
    st.markdown(f"**Objective:** the {ui.plain(run.model_name)} model's own (see docs/method.md).")

metrics = run.metrics
alignment = metrics.get("alignment")
if isinstance(alignment, dict):
    st.markdown(f"**Final alignment:** {ui.plain(alignment_summary(alignment))}.")
health = metrics.get("health")
st.subheader("Health")
if not health:
    st.caption("This run was trained before runs reported their health; retrain it to get one.")
else:
    for warning in health["warnings"]:
        st.warning(warning, icon="⚠️")
    if not health["warnings"]:
        st.success(
            "No sign of a poor run: the factors had settled when training stopped and the "
            "validation objective did not fall from its best.",
            icon="✅",
        )
    restarts, rollbacks = metrics.get("restarts") or [], metrics.get("rollbacks") or []
    st.caption(health_summary(health, restarts, rollbacks))

st.subheader("Training curves")
try:
    history = run.history
except RunError as error:  # a malformed history.csv: the rest of the report still shows
    st.error(ui.plain(error))
    history = pd.DataFrame()
if history.empty or "epoch" not in history:
    st.info("This run has no history.csv.")
else:
    terms = [c for c in history.columns if c not in ("epoch", "seconds")]
    default = [c for c in terms if c in ("train_loss", "val_loss")] or terms[:2]
    chosen = st.multiselect("Curves", terms, default=default, key="report_curves")
    if chosen:
        long = history.melt(id_vars="epoch", value_vars=chosen, var_name="term")
        st.plotly_chart(
            px.line(long, x="epoch", y="value", color="term", markers=True, height=360),
            key="report_history",
        )

st.subheader("Identifiability")
frame = tables.correlation_frame(metrics, ctx.names)
if not metrics:
    st.info(f"No metrics.json yet: run `ivae evaluate {run.path} --json`.")
elif frame is None:
    st.info("The data has no ground-truth factors, so there is no MCC.")
else:
    left, right = st.columns([3, 2])
    heat = px.imshow(
        frame,
        zmin=-1,
        zmax=1,
        color_continuous_scale="RdBu_r",
        text_auto=".2f",
        labels={"x": "learned factor", "y": "true factor", "color": "r"},
        aspect="auto",
        height=120 + 45 * len(frame),
    )
    left.plotly_chart(heat, key="report_heatmap")
    right.metric("MCC (Pearson)", f"{metrics['mcc']:.3f}")
    if metrics.get("mcc_spearman") is not None:
        right.metric("MCC (Spearman)", f"{metrics['mcc_spearman']:.3f}")
    per_factor = pd.DataFrame(
        {
            "true factor": list(metrics["mcc_per_factor"]),
            "|r| matched": list(metrics["mcc_per_factor"].values()),
        }
    )
    right.dataframe(per_factor.round(3), hide_index=True, width="stretch")

st.subheader("What each latent carries")
matrix, words, n_rows = carried(ctx.key)
if matrix is not None:
    st.caption(
        f"|Spearman r| of each latent with every true factor and nuisance on {n_rows:,} "
        "test dishes (the dish type: the correlation ratio eta). A disentangled latent is "
        "bright in one factor's row and dark in every nuisance's."
    )
    st.plotly_chart(
        px.imshow(
            matrix.round(2),
            zmin=0,
            zmax=1,
            color_continuous_scale="Blues",
            text_auto=".2f",
            labels={"x": "latent", "y": "", "color": "|r|"},
            aspect="auto",
            height=120 + 28 * len(matrix),
        ),
        key="report_informativeness",
    )
    leakage = metrics.get("nuisance_leakage")
    if leakage:
        st.markdown("**Nuisance leakage** (metrics.json, test split)")
        st.caption(
            "Per nuisance, its largest |r| with a latent matched to a true factor: what a "
            "named factor also follows that the recipe does not describe."
        )
        leak = pd.DataFrame({"nuisance": list(leakage), "largest |r|": list(leakage.values())})
        st.plotly_chart(
            px.bar(leak, x="nuisance", y="largest |r|", range_y=[0, 1], height=280),
            key="report_leakage",
        )
else:
    st.caption(
        f"The data has no true factors or nuisances; on {n_rows:,} test dishes, the recipe "
        "words (and title words) whose presence moves each latent most, with Pearson r."
    )
if matrix is None:
    st.dataframe(words, hide_index=True, key="report_words")
else:
    with st.expander("Against recipe words and dish titles"):
        st.dataframe(words, hide_index=True, key="report_words")

retrieval = metrics.get("retrieval") or {}
if retrieval:
    st.subheader("Retrieval")
    st.caption(
        f"Recipe1M protocol: {retrieval.get('repeats', '?')} random subsets of "
        f"{retrieval.get('subset_size', '?')} test pairs; rank of the true partner."
    )
    table = tables.retrieval_table(retrieval)
    st.dataframe(table, width="stretch")

st.subheader("Compare runs")
st.caption("Pick runs (e.g. implicit-ivae against its baselines) to compare on the same data.")
options = ui.run_options()
chosen_runs = st.multiselect(
    "Runs",
    options,
    default=[str(run.path)] if str(run.path) in options else [],
    format_func=ui.label,
    key="report_compare",
)
if not [o for o in options if o != str(run.path)]:
    data_path = run.config.get("data", {}).get("path", "data/kitchen")
    name = f"runs/{run.path.name}-beta-vae"
    st.info(
        f"`{ui.label(str(run.path))}` is the only run here, so there is nothing to compare it "
        "with yet. Train a baseline on the same data and it appears in this list (runs are "
        "found under `runs/` and `assets/`):\n\n"
        f"```\nivae train --data {data_path} --model beta-vae --latent-dim {ctx.k} "
        f"--out {name}\n```"
    )
elif len(chosen_runs) < 2:
    st.info("Pick at least one more run above to compare with.")
if chosen_runs:
    comparison = compare_runs(chosen_runs)
    st.dataframe(comparison, hide_index=True, width="stretch")
    if len(chosen_runs) > 1 and comparison["MCC"].notna().any():
        st.plotly_chart(
            px.bar(comparison, x="run", y="MCC", color="model", height=300),
            key="report_compare_chart",
        )
