"""The tables and small parsers the pages show or read, as plain functions on arrays and
tables (no streamlit): the atlas table, recipe tables, the identifiability matrix, titles.

``items`` is the dataset's ``items.parquet`` aligned with the index rows; ``titles`` (N,) the
display title of each row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ivae.words import text_words

TITLE_LENGTH = 60


def item_titles(items: pd.DataFrame) -> np.ndarray:
    """(N,) display titles: the title column, else the recipe text, cut to 60 characters."""
    column = items["title"] if "title" in items else items["text"]
    return column.astype(str).str.slice(0, TITLE_LENGTH).to_numpy()


def take_rows(items: pd.DataFrame, rows, columns: list[str] | None = None) -> pd.DataFrame:
    """``columns`` (default all) of the given rows of the items table, in that order, reading
    only those rows.

    The dashboard's items table is memory-mapped Arrow (ivae.index.mapped_items), in chunks;
    pyarrow's take on a chunked column joins the chunks first, which reads and copies the
    whole column (a million recipes' texts to show eight). Here each chunk is taken alone.
    """
    import pyarrow as pa

    rows = np.asarray(rows, dtype=np.int64).ravel()
    out = {}
    for name in items.columns if columns is None else columns:
        column = items[name]
        if not isinstance(column.dtype, pd.ArrowDtype):
            out[name] = column.to_numpy()[rows]
            continue
        chunked = column.array.__arrow_array__()  # the ChunkedArray itself, no copy
        starts = np.cumsum([0] + [len(chunk) for chunk in chunked.chunks])
        which = np.searchsorted(starts, rows, side="right") - 1  # (R,) chunk of each row
        order = np.argsort(which, kind="stable")  # rows grouped by chunk
        pieces = [
            chunked.chunk(int(c)).take(pa.array(rows[order][which[order] == c] - starts[c]))
            for c in np.unique(which)
        ]
        taken = pa.concat_arrays(pieces) if pieces else pa.array([], type=chunked.type)
        out[name] = pd.arrays.ArrowExtensionArray(taken.take(pa.array(np.argsort(order))))
    return pd.DataFrame(out)


def true_factor_columns(items: pd.DataFrame) -> list[str]:
    return [c for c in items.columns if c.startswith("factor.")]


def nuisance_columns(items: pd.DataFrame) -> list[str]:
    """The ``nuisance.<name>`` columns: ground truth that the recipe does not describe."""
    return [c for c in items.columns if c.startswith("nuisance.")]


def atlas_table(
    z: np.ndarray,
    map2d: np.ndarray,
    names: list[str],
    items: pd.DataFrame,
    titles: np.ndarray,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per item (of ``rows`` when given, else all): learned factors (named), map
    position, title, index row, and when the data has them the true factors (``true
    <name>``), the nuisances (``nuisance <name>``) and the dish type."""
    rows = np.arange(len(z)) if rows is None else np.asarray(rows)
    table = pd.DataFrame(np.asarray(z[rows]), columns=names)
    table["map x"], table["map y"] = map2d[rows, 0], map2d[rows, 1]
    table["title"] = titles[rows]
    table["row"] = rows
    truth = true_factor_columns(items) + nuisance_columns(items)
    chosen = take_rows(items, rows, truth + (["dish"] if "dish" in items else []))
    for column in truth:
        prefix = "true " if column.startswith("factor.") else "nuisance "
        table[prefix + column.split(".", 1)[1]] = chosen[column].to_numpy(dtype=float)
    if "dish" in items:
        table["dish type"] = chosen["dish"].astype(str).to_numpy()
    return table


def sample_rows(n: int, at_most: int, seed: int = 0, run: int = 1) -> np.ndarray:
    """All n rows, or a seeded sorted sample of ``at_most`` of them (a plotting budget), in
    runs of ``run`` consecutive rows: runs read a memory-mapped table's pages once each,
    single rows scattered over a million read nearly all of them."""
    if n <= at_most:
        return np.arange(n)
    runs = max(1, at_most // run)
    starts = np.random.default_rng(seed).choice(n // run, runs, replace=False) * run
    return np.sort((starts[:, None] + np.arange(at_most // runs)).ravel())


def density(map2d: np.ndarray, bins: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bins, bins) counts of map positions (rows: y) and the x and y bin centres."""
    counts, x_edges, y_edges = np.histogram2d(map2d[:, 0], map2d[:, 1], bins=bins)
    centres = [(edges[:-1] + edges[1:]) / 2 for edges in (x_edges, y_edges)]
    return counts.T, centres[0], centres[1]


def colour_options(table: pd.DataFrame, names: list[str]) -> list[str]:
    """Columns of an atlas table to colour points by: factors, true factors, nuisances, dish
    type."""
    options = names + [c for c in table.columns if c.startswith(("true ", "nuisance "))]
    return options + (["dish type"] if "dish type" in table else [])


def known_labels(options: list[str], k: int) -> str:
    """What the data knows of each dish beyond the ``k`` learned factors (the rest of
    ``options``, colour_options' list), in words ending a sentence."""
    kinds = [
        ("the true factors", any(c.startswith("true ") for c in options)),
        ("the nuisances (what the recipe does not describe)",
         any(c.startswith("nuisance ") for c in options)),
        ("the dish type", "dish type" in options[k:]),
    ]  # fmt: skip
    found = [name for name, present in kinds if present]
    if not found:
        return "the words of their titles, below (the data has no true factors, nuisances or "\
            "dish types)."  # fmt: skip
    return ", ".join(found[:-1]) + (" and " if len(found) > 1 else "") + found[-1] + "."


def selected_rows(points: list[dict]) -> np.ndarray:
    """The index rows of the points of a Plotly selection event, from their custom data.

    The browser sends a point's custom data as a number, a list (``[8]``) or, when the figure
    carried it as a typed array, an object keyed by position (``{"0": 8}``).
    """
    rows = []
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, dict):
            data = data.get("0", next(iter(data.values()), None))
        elif isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if data is not None:
            rows.append(int(data))
    return np.unique(np.asarray(rows, dtype=np.int64))


def kept_selection(event_rows: np.ndarray, kept: tuple | None, figure: tuple) -> tuple | None:
    """The selection to show, as ``(rows, figure)``: the event's rows when it has any; else
    the kept selection while the figure it was drawn on has changed (other axes send a new
    chart, whose selection starts empty); else none (cleared on its own figure). A figure
    is a tuple whose first item identifies the data (the rows' index): a selection on other
    data is never kept."""
    if len(event_rows):
        return event_rows, figure
    if kept is not None and kept[1] != figure and kept[1][0] == figure[0]:
        return kept
    return None


def histogram_panels(
    table: pd.DataFrame, selected: np.ndarray, columns: list[str], bins: int = 24
) -> list[dict]:
    """Per column, the share of all dishes and of the selected ones in each bin, for drawing
    the selection against everything: ``{"name", "x", "all", "selected", "kind"}`` with kind
    ``"numeric"`` (x: bin centres over the column's 0.5-99.5% range, ends included in the
    outer bins) or ``"categorical"`` (x: categories, most common first). ``selected``: a
    boolean mask over the table's rows."""
    panels = []
    for name in columns:
        values = table[name].to_numpy()
        if values.dtype.kind in "fiu":
            low, high = np.nanpercentile(values, [0.5, 99.5])
            edges = np.linspace(low, high if high > low else low + 1, bins + 1)
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
            x, kind = (edges[:-1] + edges[1:]) / 2, "numeric"
        else:
            x, which = np.unique(values.astype(str), return_inverse=True)
            kind = "categorical"
        counts_all = np.bincount(which, minlength=len(x))
        counts_sel = np.bincount(which[selected], minlength=len(x))
        if kind == "categorical":
            order = np.argsort(-counts_all, kind="stable")
            x, counts_all, counts_sel = x[order], counts_all[order], counts_sel[order]
        panels.append({
            "name": name, "x": x, "kind": kind,
            "all": counts_all / max(counts_all.sum(), 1),
            "selected": counts_sel / max(counts_sel.sum(), 1),
        })  # fmt: skip
    return panels


def word_shares(texts) -> dict[str, float]:
    """The share of ``texts`` holding each word (``ivae.words``: three letters or more, lower
    case, function words left out)."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in text_words(text):
            counts[word] = counts.get(word, 0) + 1
    return {word: count / max(len(texts), 1) for word, count in counts.items()}


def title_words(everyone: dict[str, float], n: int, chosen_titles, top: int = 15) -> pd.DataFrame:
    """The words most over-represented in ``chosen_titles`` against ``everyone`` (word_shares
    of all ``n`` titles): ``word``, ``selected %`` and ``all %`` of titles holding it, and
    ``lift``, their ratio (a word in no other title counts as in one); ties go to the word
    more of the selection holds."""
    chosen = word_shares(chosen_titles)
    lift = {w: s / max(everyone.get(w, 0), 1 / max(n, 1)) for w, s in chosen.items()}
    words = sorted(lift, key=lambda w: (-lift[w], -chosen[w], w))[:top]
    return pd.DataFrame({
        "word": words,
        "selected %": [100 * chosen[w] for w in words],
        "all %": [100 * everyone.get(w, 0) for w in words],
        "lift": [lift[w] for w in words],
    })  # fmt: skip


def recipe_table(
    items: pd.DataFrame, titles: np.ndarray, rows, extra: dict | None = None
) -> pd.DataFrame:
    """Title, dish type and ingredients of item rows, plus ``extra`` columns."""
    rows = np.asarray(rows).ravel().astype(int)
    chosen = take_rows(items, rows, [c for c in ("dish", "ingredients") if c in items])
    table = pd.DataFrame({"title": titles[rows]})
    if "dish" in chosen:
        table["dish"] = chosen["dish"].to_numpy()
    if "ingredients" in chosen:
        table["ingredients"] = [", ".join(map(str, v)) for v in chosen["ingredients"]]
    for name, values in (extra or {}).items():
        table[name] = values
    return table


def find_titles(items: pd.DataFrame, query: str, limit: int = 200) -> np.ndarray:
    """Rows whose full title (else recipe text) contains ``query`` (case-insensitive,
    literal), at most ``limit``."""
    if not query:
        return np.zeros(0, dtype=int)
    column = items["title"] if "title" in items else items["text"]
    found = column.astype(str).str.contains(query, case=False, regex=False).to_numpy()
    return np.flatnonzero(found)[:limit]


def parse_point(text: str | None, k: int) -> np.ndarray | None:
    """A factor vector from a link's ``z=v1,v2,...``; None unless it is k finite numbers."""
    try:
        values = np.array([float(v) for v in (text or "").split(",")])
    except ValueError:
        return None
    return values if len(values) == k and np.all(np.isfinite(values)) else None


def format_point(point: np.ndarray) -> str:
    """The inverse of parse_point, 4 significant digits per factor."""
    return ",".join(f"{v:.4g}" for v in point)


def correlation_frame(metrics: dict, names: list[str]) -> pd.DataFrame | None:
    """True factors x learned factors signed correlations from metrics.json, labelled; None
    when the run has no MCC (no ground truth)."""
    matrix = metrics.get("correlation_matrix")
    if matrix is None or metrics.get("mcc") is None:
        return None
    true_names = list((metrics.get("mcc_per_factor") or {}).keys())
    frame = pd.DataFrame(matrix)
    if len(true_names) != len(frame):
        true_names = [f"true {i + 1}" for i in range(len(frame))]
    frame.index = true_names
    frame.columns = names[: frame.shape[1]] + [
        f"dim {i + 1}" for i in range(len(names), frame.shape[1])
    ]
    return frame


def retrieval_table(retrieval: dict) -> pd.DataFrame:
    """Median rank and recalls per direction, from metrics.json's ``retrieval``."""
    rows = {
        label: retrieval.get(key, {})
        for key, label in (("x_to_y", "image → recipe"), ("y_to_x", "recipe → image"))
    }
    return pd.DataFrame(rows).T.rename(
        columns={"medr": "median rank", "r1": "R@1 %", "r5": "R@5 %", "r10": "R@10 %"}
    )
