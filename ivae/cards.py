"""Factor cards: the recipe words that rise and fall along each factor, the dishes at its
poles and how well photo and recipe agree on it, as plain dicts and markdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ivae.factors import agreement, poles


def word_associations(texts: list[str], values: np.ndarray, min_count: int = 5) -> pd.DataFrame:
    """Words whose presence in a recipe correlates with a factor (Pearson, presence 0/1).

    values: (N,) or (N, k). Returns columns word, count and one correlation per factor.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    values = np.asarray(values, dtype=float).reshape(len(texts), -1)
    vectorizer = CountVectorizer(
        binary=True,
        min_df=min(min_count, len(texts)),
        token_pattern=r"(?u)\b[a-z][a-z]+\b",
        stop_words="english",
    )
    try:
        counts = vectorizer.fit_transform(texts).astype(float)  # (N, V) sparse 0/1
    except ValueError:  # no word occurs often enough
        return pd.DataFrame({"word": [], "count": []})
    n = len(texts)
    freq = np.asarray(counts.mean(axis=0)).ravel()  # (V,)
    informative = freq < 0.95  # words in (almost) every recipe say nothing about a factor
    counts, freq = counts[:, informative], freq[informative]
    words = vectorizer.get_feature_names_out()[informative]
    centred = values - values.mean(axis=0)
    cov = np.asarray(counts.T @ centred) / n  # (V, k): E[w v] - E[w] E[v], v centred
    std = np.sqrt(np.maximum(freq * (1 - freq), 1e-12))[:, None] * centred.std(axis=0)
    table = pd.DataFrame(cov / np.maximum(std, 1e-12))
    table.insert(0, "count", np.asarray(counts.sum(axis=0)).ravel().astype(int))
    table.insert(0, "word", words)
    return table


def rising_falling(table: pd.DataFrame, factor: int, top: int = 10) -> tuple[pd.DataFrame, ...]:
    """The ``top`` words that rise and that fall along one factor."""
    if factor not in table.columns:
        empty = pd.DataFrame({"word": [], "correlation": []})
        return empty, empty
    column = table[["word", "count", factor]].rename(columns={factor: "correlation"})
    ordered = column.sort_values("correlation", ascending=False)
    return ordered.head(top).reset_index(drop=True), ordered.tail(top)[::-1].reset_index(drop=True)


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


def factor_cards(
    notes: dict,
    words: pd.DataFrame,
    z: np.ndarray,
    y_mean: np.ndarray,
    titles: Sequence[str],
    pole_size: int = 5,
) -> list[dict]:
    """One card per factor of ``notes`` (a run's factor_notes()): ``words`` from
    word_associations, z / y_mean (N, k) from the index, ``titles`` (N,) per index row."""
    agree = agreement(z, y_mean)
    cards = []
    for j, entry in enumerate(notes["factors"]):
        rising, falling = rising_falling(words, j)
        low, high = poles(z, j, n=pole_size)
        low_titles, high_titles = [str(titles[r]) for r in low], [str(titles[r]) for r in high]
        cards.append(
            factor_card(
                entry["name"], entry["notes"], rising, falling, low_titles, high_titles, agree[j]
            )
        )
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
            "",
        ]
    )
