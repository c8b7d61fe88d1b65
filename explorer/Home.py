"""Factor Explorer: `streamlit run explorer/Home.py`.

The entry point registers the pages in the top-level ``pages/`` folder and holds the run
picker shared by all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts only explorer/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from explorer import ui  # noqa: E402
from explorer.navigation import PAGES  # noqa: E402
from ivae import redundancy  # noqa: E402


@st.cache_data(show_spinner=False, max_entries=4)
def latent_redundancy(key: tuple, _z) -> redundancy.Redundancy:
    """ivae.redundancy on the index's codes, once per index (``key``: its fingerprint)."""
    return redundancy.redundancy(_z)


def home() -> None:
    st.title("Factor Explorer")
    st.caption(
        "Factors shared by food photos and their recipes, learned by an implicit identifiable "
        "VAE. There is no decoder: every image you see is a real dish, retrieved by its factors."
    )
    ctx = ui.require_context()
    run = ctx.run
    red = latent_redundancy(ctx.key, ctx.index.z)
    left, middle, right = st.columns(3)
    left.metric("Model", run.model_name)
    middle.metric(
        "Shared factors",
        f"~{red.distinct} of {ctx.k}" if red.distinct < ctx.k else ctx.k,
        help="Distinct factors: the latents left after dropping, one at a time, each latent "
        f"the others predict with R² ≥ {red.threshold:.1f} (linear, on the image codes).",
    )
    right.metric("Dishes indexed", f"{len(ctx.index):,}")
    redundant_latents(red, ctx.names)
    mcc = run.metrics.get("mcc")
    if mcc is not None:
        st.caption(f"Mean correlation with the true factors (MCC, test split): {mcc:.2f}")
    st.subheader("Factors")
    st.write(", ".join(f"**{ui.plain(name)}**" for name in ctx.names))  # names are editable
    st.subheader("Where to go")
    for path, title, icon in PAGES:
        st.page_link(path, label=title, icon=icon)
    folder, data = (ui.code(ui.label(str(p))) for p in (run.path, ctx.data_dir))
    st.caption(f"Run folder: {folder} · data: {data}")


def redundant_latents(red: redundancy.Redundancy, names: list[str]) -> None:
    """The distinct-factor count in words, and each redundant latent named with its partner."""
    lines = redundancy.describe(red, [ui.plain(name) for name in names])  # names: editable
    if not lines:
        st.caption(f"{redundancy.summary(red)}: no latent is predicted by the others.")
        return
    st.warning(
        f"**{redundancy.summary(red)}.** Some latents are largely predicted by the others "
        "(on the image codes alone): moving one slider while its partners stay put leaves the "
        "data.\n\n" + "\n".join(f"- {line}" for line in lines)
    )


def main() -> None:
    st.set_page_config(
        page_title="Factor Explorer", page_icon=":material/ramen_dining:", layout="wide"
    )
    ui.run_picker()
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES]
    st.navigation(pages).run()


main()
