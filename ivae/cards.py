"""Factor cards: the recipe words that rise and fall along each factor, the dishes at its
poles and how well photo and recipe agree on it, as plain dicts and markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ivae.factors import agreement, poles
from ivae.redundancy import Redundancy, partner_text
from ivae.words import text_words


def word_associations(texts: list[str], values: np.ndarray, min_count: int = 5) -> pd.DataFrame:
    """Words whose presence in a recipe correlates with a factor (Pearson, presence 0/1).

    values: (N,) or (N, k). Returns columns word, count and one correlation per factor, for
    the words in at least ``min_count`` texts and fewer than 95% of them.
    """
    n = len(texts)
    values = np.asarray(values, dtype=float).reshape(n, -1)
    docs = [text_words(text) for text in texts]
    counts = Counter(word for doc in docs for word in doc)
    vocab = np.array(
        sorted(w for w, c in counts.items() if c >= min(min_count, n) and c < 0.95 * n), dtype=str
    )  # words in (almost) every recipe say nothing about a factor
    if n == 0 or len(vocab) == 0:
        return pd.DataFrame({"word": [], "count": []})
    column = {word: i for i, word in enumerate(vocab)}
    kept = [[column[w] for w in doc if w in column] for doc in docs]
    word_of = np.fromiter((i for doc in kept for i in doc), dtype=np.int64)  # (P,) per presence
    doc_of = np.repeat(np.arange(n), [len(doc) for doc in kept])  # (P,)
    freq = np.bincount(word_of, minlength=len(vocab)) / n  # (V,)
    centred = values - values.mean(axis=0)
    cov = np.stack(  # (V, k): E[w v] - E[w] E[v], v centred
        [np.bincount(word_of, weights=centred[doc_of, j], minlength=len(vocab)) / n
         for j in range(values.shape[1])],
        axis=1,
    )  # fmt: skip
    std = np.sqrt(np.maximum(freq * (1 - freq), 1e-12))[:, None] * centred.std(axis=0)
    table = pd.DataFrame(cov / np.maximum(std, 1e-12))
    table.insert(0, "count", np.round(freq * n).astype(int))
    table.insert(0, "word", vocab)
    return table


def rising_falling(table: pd.DataFrame, factor: int, top: int = 10) -> tuple[pd.DataFrame, ...]:
    """The ``top`` words that rise and that fall along one factor."""
    if factor not in table.columns:
        empty = pd.DataFrame({"word": [], "correlation": []})
        return empty, empty
    column = table[["word", "count", factor]].rename(columns={factor: "correlation"})
    ordered = column.sort_values("correlation", ascending=False)
    return ordered.head(top).reset_index(drop=True), ordered.tail(top)[::-1].reset_index(drop=True)


def words_markdown(words: pd.DataFrame) -> str:
    """A rising_falling table as a markdown table: word, recipes with it, r."""
    lines = ["| word | recipes | r |", "|---|---:|---:|"]
    lines += [
        f"| {w} | {c:,} | {r:+.3f} |"
        for w, c, r in zip(words["word"], words["count"], words["correlation"])
    ]
    return "\n".join(lines) if len(words) else "—"


def factor_card(
    name: str,
    notes: str,
    rising: pd.DataFrame,
    falling: pd.DataFrame,
    low_titles: list[str],
    high_titles: list[str],
    agreement_value: float,
) -> dict:
    """A factor card as a plain dict, exportable as JSON."""
    return {
        "name": name,
        "notes": notes,
        "rising_words": rising["word"].tolist(),
        "falling_words": falling["word"].tolist(),
        "low_pole": low_titles,
        "high_pole": high_titles,
        "image_recipe_agreement": round(float(agreement_value), 4),
    }


def redundancy_entry(red: Redundancy, names: list[str], j: int) -> dict:
    """Latent j's redundancy for a card: R^2 from the other latents and its closest partner."""
    p = int(red.partner[j])
    return {
        "r2_from_other_latents": round(float(red.r2[j]), 4),
        "redundant": bool(red.redundant[j]),
        "closest_latent": names[p] if p >= 0 else None,
        "closest_r": round(float(red.partner_r[j]), 4),
    }


def redundancy_text(red: Redundancy, names: list[str], j: int) -> str:
    """One sentence on latent j: ``93% predictable from the other latents (closest: ...)``."""
    verdict = "redundant" if red.redundant[j] else "distinct"
    return (
        f"{verdict}: {100 * red.r2[j]:.0f}% predictable from the other latents "
        f"(closest: {partner_text(red, names, j)})"
    )


def factor_cards(
    notes: dict,
    words: pd.DataFrame,
    z: np.ndarray,
    y_mean: np.ndarray,
    titles: Sequence[str],
    pole_size: int = 5,
    red: Redundancy | None = None,
) -> list[dict]:
    """One card per factor of ``notes`` (a run's factor_notes()): ``words`` from
    word_associations, z / y_mean (N, k) from the index, ``titles`` (N,) per index row;
    with ``red`` (ivae.redundancy), each card also says how predictable its latent is."""
    agree = agreement(z, y_mean)
    names = [entry["name"] for entry in notes["factors"]]
    cards = []
    for j, entry in enumerate(notes["factors"]):
        rising, falling = rising_falling(words, j)
        low, high = poles(z, j, n=pole_size)
        low_titles, high_titles = [str(titles[r]) for r in low], [str(titles[r]) for r in high]
        card = factor_card(
            entry["name"], entry["notes"], rising, falling, low_titles, high_titles, agree[j]
        )
        if red is not None:
            card["redundancy"] = redundancy_entry(red, names, j) | {
                "text": redundancy_text(red, names, j)
            }
        cards.append(card)
    return cards


def card_markdown(card: dict) -> str:
    """The card as markdown, for notes and papers."""
    return "\n".join(
        [
            f"## {card['name']}",
            "",
            card["notes"] or "_no notes yet_",
            "",
            f"- rises with: {', '.join(card['rising_words']) or '—'}",
            f"- falls with: {', '.join(card['falling_words']) or '—'}",
            f"- low pole: {'; '.join(card['low_pole'])}",
            f"- high pole: {'; '.join(card['high_pole'])}",
            f"- image–recipe agreement (Pearson r): {card['image_recipe_agreement']:.2f}",
        ]
        + ([f"- {card['redundancy']['text']}"] if "redundancy" in card else [])
        + [""]
    )


def card_figure(
    card: dict,
    rising: pd.DataFrame,
    falling: pd.DataFrame,
    pole_paths: list[list[str]],
    caption: str,
):
    """A factor card as a matplotlib figure for papers (ivae.figures.figure_bytes writes it
    as PNG or PDF): the name, notes, rising and falling words with their r, agreement and
    redundancy, the photos at the low and the high pole, the provenance ``caption`` at the
    foot. Text is vector; each photo is embedded at its own resolution."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cell, n = 1.1, max(len(p) for p in pole_paths)  # inches per photo, photos per pole
    width = max(7.0, 1.0 + cell * n)
    foot = textwrap.wrap(caption, width=int(width * 24))
    stats = [f"image–recipe agreement (Pearson r): {card['image_recipe_agreement']:.2f}"]
    if "redundancy" in card:
        stats.append(card["redundancy"]["text"])
    notes = textwrap.wrap(card["notes"], width=int(width * 16))[:3]
    words_h = 0.115 * max(len(rising), len(falling), 1) + 0.35
    top_h = 0.45 + 0.17 * len(notes) + words_h + 0.17 * len(stats) + 0.1
    height = top_h + 2 * (cell + 0.3) + 0.15 + 0.1 * len(foot)
    fig = Figure(figsize=(width, height))
    y = 1 - 0.3 / height
    fig.text(0.02, y, f"Factor card: {card['name']}", fontsize=11, weight="bold", va="center")
    fig.text(0.02, 0.06 / height, "\n".join(foot), fontsize=5.5, va="bottom", color="0.3")
    y -= 0.3 / height
    for line in notes:
        fig.text(0.02, y, line, fontsize=7, va="top", style="italic")
        y -= 0.17 / height
    for x, title, words in ((0.02, "Rises with", rising), (0.5, "Falls with", falling)):
        lines = [f"{w}  ({r:+.2f})" for w, r in zip(words["word"], words["correlation"])]
        fig.text(x, y, title, fontsize=7.5, weight="bold", va="top")
        fig.text(x, y - 0.2 / height, "\n".join(lines) or "—", fontsize=6.5, va="top")
    y -= words_h / height
    for line in stats:
        fig.text(0.02, y, line, fontsize=7, va="top")
        y -= 0.17 / height
    for label, paths in zip(("Low pole", "High pole"), pole_paths):
        y -= 0.12 / height
        fig.text(0.02, y - cell / 2 / height, label, fontsize=7, va="center", weight="bold")
        for i, path in enumerate(paths):
            box = [
                (0.9 + i * cell) / width,
                y - cell / height,
                (cell - 0.06) / width,
                (cell - 0.06) / height,
            ]
            _photo(fig.add_axes(box), path)
        y -= (cell + 0.18) / height
    return fig


def _photo(ax, path: str) -> None:
    from PIL import Image

    ax.set_xticks([])
    ax.set_yticks([])
    try:
        with Image.open(path) as img:
            ax.imshow(img.convert("RGB"), interpolation="none")
    except OSError:
        ax.text(0.5, 0.5, "image missing", ha="center", va="center", fontsize=6, color="0.4")


def cards_pdf(figures_: list, title: str, caption: str) -> bytes:
    """Several card figures (card_figure) as one PDF, a card a page, text as TrueType."""
    import io

    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    metadata = {"Title": title, "Subject": caption, "Creator": "Factor Explorer"}
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buffer, metadata=metadata) as pdf:
        for fig in figures_:
            pdf.savefig(fig)
    return buffer.getvalue()
