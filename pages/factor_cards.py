"""Factor cards: what each factor means, in words, dishes and the researcher's notes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from explorer import clicks, tables, ui
from ivae import cards, figures, redundancy
from ivae.factors import agreement, minimal_pairs, poles

st.title("Factor cards")
st.caption(
    "Per factor: the recipe words that rise and fall along it, the dishes at its poles, how "
    "well the photo and the recipe agree on it, and pairs of dishes that differ in it alone. "
    "Name the factor and keep notes; they are saved in the run's factors.json."
)
ctx = ui.require_context()
clicks.go_to_studio_if_asked()


# Recipes the word associations are counted on (a seeded sample of this many): tokenising was
# most of a first visit's time (1.3 s for the shipped run's 20,000 recipes on a busy 2-core
# machine); over 5,000 recipes a correlation's standard error is about 0.014.
WORD_SAMPLE = 5_000


@st.cache_data(show_spinner="Relating recipe words to the factors…", max_entries=4)
def words(key: tuple) -> pd.DataFrame:
    rows = tables.sample_rows(len(ctx.index), WORD_SAMPLE, run=500)  # 10 runs of 500
    texts = tables.take_rows(ctx.items, rows, ["text"])["text"].astype(str).tolist()
    return cards.word_associations(texts, ctx.index.z[rows])


@st.cache_data(show_spinner="Finding minimal pairs…", max_entries=32)
def pairs(key: tuple, factor: int) -> pd.DataFrame:
    # 1000 anchors up to 200k dishes, fewer above: each is searched against every dish
    # (3000 took 0.5 s of a factor switch on the shipped run)
    sample = int(np.clip(2e8 // len(ctx.index), 300, 1000))
    return minimal_pairs(ctx.index.z, factor, n=4, sample=sample)


@st.cache_data(show_spinner=False, max_entries=4)
def agreements(key: tuple) -> np.ndarray:
    return agreement(ctx.index.z, ctx.index.y_mean)


@st.cache_data(show_spinner=False, max_entries=4)
def latent_redundancy(key: tuple) -> redundancy.Redundancy:
    return redundancy.redundancy(ctx.index.z)


run_path = str(ctx.run.path)
table = words(ctx.key)
agreement_values = agreements(ctx.key)
red = latent_redundancy(ctx.key)
notes = ctx.run.factor_notes()
j = st.selectbox(
    "Factor", range(ctx.k), format_func=lambda i: ui.factor_option(ctx, i), key="cards_factor"
)

with st.form(f"cards_notes_{j}"):
    name = st.text_input("Name", value=notes["factors"][j]["name"], key=f"cards_name_{j}")
    text = st.text_area("Notes", value=notes["factors"][j]["notes"], key=f"cards_notes_{j}")
    if st.form_submit_button("Save name and notes"):
        if not name.strip():
            st.error("A factor needs a name.")
        else:
            notes["factors"][j].update(name=name.strip(), notes=text)
            try:
                ctx.run.save_factor_notes(notes)
                st.success(f"Saved to {ui.code(ctx.run.path / 'factors.json')}")
            except OSError as error:
                st.error(f"Could not save the notes: {ui.plain(error)}")

rising, falling = cards.rising_falling(table, j)
c1, c2, c3 = st.columns([2, 2, 1])
# Static markdown tables: two interactive st.dataframe grids were a third of a switch's time
# in the browser (bench/latency.py, part cards).
c1.markdown("**Words that rise with it**\n\n" + cards.words_markdown(rising))
c2.markdown("**Words that fall with it**\n\n" + cards.words_markdown(falling))
c3.metric(
    "Image–recipe agreement",
    f"{agreement_values[j]:.2f}",
    help="Pearson correlation between the factor read from the photo and the mean of "
    "p(z | recipe) for the same dish. High: both modalities carry this factor.",
)

shown_names = [ui.plain(name) for name in ctx.names]  # names are editable by any visitor
redundancy_line = cards.redundancy_text(red, shown_names, j)
if red.redundant[j]:
    st.warning(
        f"**{redundancy.pair_label(red, shown_names, j)}** — {redundancy_line}. Moving this "
        "factor alone while its partners stay put leaves the data.",
        icon="⚠️",
    )
else:
    st.caption(f"This latent is {redundancy_line}.")

low, high = poles(ctx.index.z, j, n=6)
clicks.listen("cards_clicks", lambda row: clicks.start_studio(dish=str(ctx.index.ids[row])))
st.markdown("**Low pole** (click a dish to start the studio there)")
with clicks.pickable("cards_low", low):
    ui.image_grid(ctx, low)
st.markdown("**High pole**")
with clicks.pickable("cards_high", high):
    ui.image_grid(ctx, high)

st.subheader("Minimal pairs")
st.caption("Dishes alike in every other factor but far apart on this one (left: lower).")
found = pairs(ctx.key, j)
if found.empty:
    st.info("No close pairs found for this factor.")
missing = []
for row in found.itertuples():
    cells = st.columns([1, 1, 2])
    missing.append(ui.show_image(cells[0], ctx, row.low, ctx.title(row.low)))
    missing.append(ui.show_image(cells[1], ctx, row.high, ctx.title(row.high)))
    delta = ctx.index.z[row.high, j] - ctx.index.z[row.low, j]
    cells[2].markdown(
        f"Δ {shown_names[j]} = {delta:+.2f}  \nother factors apart by {row.other_distance:.2f} sd"
    )
ui.missing_images(ctx, missing)

st.subheader("Export")


def all_cards() -> list[dict]:
    return cards.factor_cards(notes, table, ctx.index.z, ctx.index.y_mean, ctx.titles, red=red)


def caption() -> str:
    return figures.provenance(ctx.run, ui.label(run_path), ctx.index.model_digest)


def figure_of(card: dict, factor: int):
    rising_words, falling_words = cards.rising_falling(table, factor)
    paths = [[ctx.image_path(r) for r in pole] for pole in poles(ctx.index.z, factor, n=6)]
    return cards.card_figure(card, rising_words, falling_words, paths, caption())


def card_figure(fmt: str) -> bytes:
    return figures.figure_bytes(figure_of(all_cards()[j], j), fmt)


def every_card_pdf() -> bytes:
    made = [figure_of(card, i) for i, card in enumerate(all_cards())]
    return cards.cards_pdf(made, "Factor cards", caption())


stem = f"factor-card-{j + 1}"
DOWNLOADS = [  # label, the file's content (made on click), file name, MIME type, widget key
    ("This card (PNG)", lambda: card_figure("png"), f"{stem}.png", figures.FORMATS["png"], "png"),
    ("This card (PDF)", lambda: card_figure("pdf"), f"{stem}.pdf", figures.FORMATS["pdf"], "pdf"),
    ("All cards (markdown)", lambda: "\n".join(cards.card_markdown(c) for c in all_cards()),
     "factor-cards.md", "text/markdown", "md"),
    ("All cards (PDF)", every_card_pdf, "factor-cards.pdf", figures.FORMATS["pdf"], "all_pdf"),
    ("All cards (JSON)", lambda: json.dumps({"run": run_path, "factors": all_cards()}, indent=2),
     "factor-cards.json", "application/json", "json"),
]  # fmt: skip
for column, (label, content, file_name, mime, key) in zip(
    st.columns(len(DOWNLOADS)), DOWNLOADS, strict=True
):
    column.download_button(
        label, content, on_click="ignore", file_name=file_name, mime=mime, key=f"cards_{key}"
    )
