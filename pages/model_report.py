"""Model report: training curves, identifiability (MCC), retrieval, and runs side by side."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from explorer import tables, ui
from explorer.runs import compare_runs
from ivae.head import encoder_summary
from ivae.health import summary as health_summary

st.title("Model report")
st.caption(
    "How the run trained and how well it recovers the true factors (MCC: mean absolute "
    "correlation after matching learned to true factors) and retrieves across modalities."
)
ctx = ui.require_context()
run = ctx.run

st.subheader("How it was trained")
st.markdown(f"**Image encoder:** {encoder_summary(run.config)}.")
terms = getattr(run.model.config, "objective_terms", lambda: [])()
if terms:
    st.markdown("**Objective:**\n" + "\n".join(f"- {term}" for term in terms))
else:
    st.markdown(f"**Objective:** the {run.model_name} model's own (see docs/method.md).")

metrics = run.metrics
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
    st.caption(health_summary(health, metrics.get("restarts") or []))

st.subheader("Training curves")
history = run.history
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
if chosen_runs:
    comparison = compare_runs(chosen_runs)
    st.dataframe(comparison, hide_index=True, width="stretch")
    if comparison["MCC"].notna().any():
        st.plotly_chart(
            px.bar(comparison, x="run", y="MCC", color="model", height=300),
            key="report_compare_chart",
        )
