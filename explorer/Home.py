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


def home() -> None:
    st.title("Factor Explorer")
    st.caption(
        "Factors shared by food photos and their recipes, learned by an implicit identifiable "
        "VAE. There is no decoder: every image you see is a real dish, retrieved by its factors."
    )
    ctx = ui.require_context()
    run = ctx.run
    left, middle, right = st.columns(3)
    left.metric("Model", run.model_name)
    middle.metric("Shared factors", ctx.k)
    right.metric("Dishes indexed", f"{len(ctx.index):,}")
    mcc = run.metrics.get("mcc")
    if mcc is not None:
        st.caption(f"Mean correlation with the true factors (MCC, test split): {mcc:.2f}")
    st.subheader("Factors")
    st.write(", ".join(f"**{name}**" for name in ctx.names))
    st.subheader("Where to go")
    for path, title, icon in PAGES:
        st.page_link(path, label=title, icon=icon)
    st.caption(f"Run folder: `{ui.label(str(run.path))}` · data: `{ui.label(str(ctx.data_dir))}`")


def main() -> None:
    st.set_page_config(
        page_title="Factor Explorer", page_icon=":material/ramen_dining:", layout="wide"
    )
    ui.run_picker()
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES]
    st.navigation(pages).run()


main()
