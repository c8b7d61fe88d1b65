"""What each latent carries, for the model report: its association with every true factor,
nuisance and dish type of a labelled data set, and with recipe words and dish titles when
the data has no labels (Recipe1M).

Pure functions on the index's codes and the items table (rows aligned).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ivae.cards import rising_falling, word_associations

LABEL_PREFIXES = {"factor.": "factor", "nuisance.": "nuisance"}


def label_columns(items: pd.DataFrame) -> pd.DataFrame:
    """The items' ground truth as columns named ``<kind>: <name>`` (true factors, then
    nuisances); empty when the data has none."""
    out = {}
    for prefix, kind in LABEL_PREFIXES.items():
        for column in items.columns:
            if column.startswith(prefix):
                out[f"{kind}: {column[len(prefix) :]}"] = items[column].to_numpy(dtype=float)
    return pd.DataFrame(out)


def informativeness(z: np.ndarray, labels: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """|Spearman r| of every latent (columns, ``names``) with every label column (rows):
    how much of each true factor or nuisance a latent follows, monotonically."""
    # ranks with ties averaged (pandas: scipy.stats takes 0.6 s to import)
    ranked_z = _standardise(pd.DataFrame(np.asarray(z, dtype=float)).rank().to_numpy())
    ranked_l = _standardise(labels.astype(float).rank().to_numpy())
    r = ranked_l.T @ ranked_z / len(ranked_z)  # (L, k)
    return pd.DataFrame(np.abs(r), index=labels.columns, columns=names)


def correlation_ratio(z: np.ndarray, groups) -> np.ndarray:
    """(k,) correlation ratio eta of each latent with a categorical label (dish type): the
    square root of the share of the latent's variance between the groups' means."""
    z = np.asarray(z, dtype=float)
    codes, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    centred = z - z.mean(axis=0)
    sums = np.zeros((len(codes), z.shape[1]))
    np.add.at(sums, inverse, centred)
    counts = np.bincount(inverse, minlength=len(codes))[:, None]
    between = (sums**2 / counts).sum(axis=0)
    total = (centred**2).sum(axis=0)
    return np.sqrt(between / np.maximum(total, 1e-12))


def _standardise(a: np.ndarray) -> np.ndarray:
    centred = a - a.mean(axis=0)
    return centred / np.maximum(centred.std(axis=0), 1e-12)


def latent_words(texts: list[str], z: np.ndarray, names: list[str], top: int = 6) -> pd.DataFrame:
    """Per latent, the words whose presence in a text moves it most up and down, with
    their Pearson r (cards.word_associations): the unlabelled data's informativeness."""
    table = word_associations(texts, z)
    rows = []
    for j, name in enumerate(names):
        rising, falling = rising_falling(table, j, top=top)
        rows.append(
            {
                "latent": name,
                "rises with": _words(rising, above=True),
                "falls with": _words(falling, above=False),
            }
        )
    return pd.DataFrame(rows)


def _words(frame: pd.DataFrame, above: bool) -> str:
    kept = frame[frame["correlation"] > 0] if above else frame[frame["correlation"] < 0]
    return ", ".join(f"{w} ({r:+.2f})" for w, r in zip(kept["word"], kept["correlation"])) or "—"
