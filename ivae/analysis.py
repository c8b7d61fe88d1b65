"""The computations behind the dashboard pages, as plain functions on arrays and tables.

Codes ``z`` are (N, k) image factor values from the index; ``items`` is the dataset's
``items.parquet`` table aligned with the index rows. Nothing here imports streamlit.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ivae.index import Index, NearestNeighbors

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = REPO_ROOT / "assets" / "default-run"
RUN_ROOTS = ("runs", "assets")


# --------------------------------------------------------------------------- runs


@dataclass
class RunSummary:
    """What a run directory holds, read from its JSON files without loading the model."""

    path: Path
    model: str
    latent_dim: int | None
    trained: bool
    indexed: bool
    mcc: float | None

    @property
    def label(self) -> str:
        state = "" if self.trained else " (unfinished)"
        mcc = "" if self.mcc is None else f", MCC {self.mcc:.2f}"
        return f"{self.path.name} [{self.model}{mcc}]{state}"


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def summarize_run(path: Path) -> RunSummary:
    config, metrics = _json(path / "config.json"), _json(path / "metrics.json")
    latent = metrics.get("latent_dim") or config.get("model_config", {}).get("latent_dim")
    return RunSummary(
        path=path,
        model=str(config.get("model") or metrics.get("model") or "?"),
        latent_dim=latent,
        trained=(path / "model.pt").is_file(),
        indexed=(path / "index" / "codes.npz").is_file(),
        mcc=metrics.get("mcc"),
    )


def find_runs(roots: tuple[str, ...] = RUN_ROOTS, base: Path = REPO_ROOT) -> list[RunSummary]:
    """Run directories (holding config.json or model.pt) up to two levels under each root."""
    found: dict[Path, RunSummary] = {}
    for root in roots:
        top = Path(root) if Path(root).is_absolute() else Path(base) / root
        for pattern in ("*", "*/*"):
            for candidate in sorted(top.glob(pattern)):
                is_run = (candidate / "config.json").is_file() or (candidate / "model.pt").is_file()
                if candidate.is_dir() and is_run:
                    found.setdefault(candidate.resolve(), summarize_run(candidate))
    return list(found.values())


def compare_runs(paths: list[Path]) -> pd.DataFrame:
    """One row per run: model, MCC, retrieval recalls and median ranks, training time."""
    rows = []
    for path in paths:
        metrics, config = _json(Path(path) / "metrics.json"), _json(Path(path) / "config.json")
        retrieval = metrics.get("retrieval") or {}
        row = {
            "run": Path(path).name,
            "model": metrics.get("model") or config.get("model"),
            "latent dim": metrics.get("latent_dim"),
            "MCC": metrics.get("mcc"),
            "MCC (Spearman)": metrics.get("mcc_spearman"),
        }
        for direction, label in (("x_to_y", "image→recipe"), ("y_to_x", "recipe→image")):
            scores = retrieval.get(direction) or {}
            row[f"{label} medR"] = scores.get("medr")
            row[f"{label} R@1"] = scores.get("r1")
            row[f"{label} R@10"] = scores.get("r10")
        row["train time (s)"] = metrics.get("train_seconds")
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- data


def data_dir(run) -> Path:
    """Where the run's paired dataset lives (or should be regenerated): its configured path
    when present, else ``data/<name>`` in the repository."""
    configured = Path(run.config["data"]["path"])
    candidates = [configured if configured.is_absolute() else REPO_ROOT / configured, configured]
    for candidate in candidates:
        if (candidate / "items.parquet").is_file():
            return candidate
    if not configured.is_absolute():
        return REPO_ROOT / configured
    return REPO_ROOT / "data" / configured.name


def generation_settings(run) -> dict:
    """n, image_size and seed to regenerate the run's kitchen data deterministically.

    Read from ``<run>/dataset.json`` (the data's own info, shipped with a run) when present,
    else from config.json; the generator's defaults fill the rest.
    """
    info = _json(Path(run.path) / "dataset.json")
    data = run.config.get("data", {})
    return {
        "n": int(info.get("n") or sum((info.get("counts") or {}).values()) or data["n_items"]),
        "image_size": int(info.get("image_size") or data.get("image_size") or 128),
        "seed": int(info.get("seed", data.get("seed", 0))),
    }


def stale_data(run, target: Path) -> str | None:
    """The version of the generator that made the data in ``target`` when it differs from the
    one the run was trained on (``<run>/dataset.json``), else None (also when there is no
    data yet): same seed, other recipes."""
    if not (target / "items.parquet").is_file():
        return None
    shipped = _json(Path(run.path) / "dataset.json").get("version")
    found = _json(target / "dataset.json").get("version")
    if shipped and found and found != shipped and "kitchen" in str(run.config["data"]["name"]):
        return str(found)
    return None


def ensure_data(run, generate: Callable | None = None) -> Path:
    """The run's data directory, regenerating the kitchen set there first if it is missing.

    Kitchen data made by another generator version than the run's is moved aside to
    ``<dir>-v<version>`` (nothing is deleted) and generated anew. Raises FileNotFoundError
    with what to do when the data is missing and is not kitchen data.
    """
    target = data_dir(run)
    old = stale_data(run, target)
    if old is not None:
        aside = target.with_name(f"{target.name}-v{old}")
        if aside.exists():
            raise FileExistsError(
                f"{target} was made by kitchen generator {old}, not the run's; "
                f"move it away ({aside} is taken) and reload to regenerate it"
            )
        target.rename(aside)
    if (target / "items.parquet").is_file():
        return target
    name = str(run.config["data"].get("name", ""))
    if "kitchen" not in name:
        raise FileNotFoundError(
            f"the data of run {run.path} is missing ({target}); put it back there or rebuild the "
            f"index on other data with `ivae index {run.path} --data PATH`"
        )
    if generate is None:
        from ivae.data.kitchen import generate_kitchen as generate
    generate(target, **generation_settings(run))
    return target


def count_images(directory: Path) -> int:
    """Image files under a data directory so far (to follow a generator's progress)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    return sum(1 for p in directory.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".webp"))


def load_items(directory: Path, ids: np.ndarray | None = None) -> pd.DataFrame:
    """The dataset's items table (no image decoding), in the order of ``ids`` when given."""
    from ivae.data.paired import read_items

    items = read_items(Path(directory))
    if ids is None:
        return items.reset_index(drop=True)
    position = pd.Series(np.arange(len(items)), index=items["id"].astype(str))
    missing = [i for i in ids[:5] if i not in position.index]
    if missing or len(set(ids) - set(position.index)):
        raise ValueError(
            f"{directory} does not hold the items this index was built on (e.g. ids {missing}); "
            "rebuild the index with `ivae index RUN_DIR --data PATH`"
        )
    return items.iloc[position.loc[ids].to_numpy()].reset_index(drop=True)


def true_factor_columns(items: pd.DataFrame) -> list[str]:
    return [c for c in items.columns if c.startswith("factor.")]


# --------------------------------------------------------------------------- factor values


def slider_grid(low: float, high: float, steps: int = 200) -> tuple[float, float, float]:
    """(low, high, step) with a one-significant-digit step and both ends on its grid.

    A step with many decimals lets the browser send the maximum one unit in the last place
    above ``high``; Streamlit then rejects the value and resets the slider to its minimum.
    """
    step = float(f"{(float(high) - float(low)) / steps:.1g}") or 0.01
    return (
        round(math.floor(low / step) * step, 10),
        round(math.ceil(high / step) * step, 10),
        step,
    )


def factor_ranges(z: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """(k, 2) slider range per factor: the low and high percentiles of the data."""
    return np.stack([np.percentile(z, low, axis=0), np.percentile(z, high, axis=0)], axis=1)


def percentiles(z: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(k,) percentile (0-100) of each factor value among the data's codes."""
    z_sorted = np.sort(z, axis=0)
    ranks = [np.searchsorted(z_sorted[:, j], values[j]) for j in range(z.shape[1])]
    return 100.0 * np.asarray(ranks, dtype=float) / len(z)


def poles(z: np.ndarray, factor: int, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the n lowest and n highest items on one factor (most extreme first)."""
    order = np.argsort(z[:, factor], kind="stable")
    return order[:n], order[::-1][:n]


def search_weights(z: np.ndarray, moved: int | None = None, mode: str = "equal") -> np.ndarray:
    """(k,) distance weights: each factor standardised (1 / variance), then by ``mode``:

    ``equal`` all factors count alike; ``emphasise`` the moved factor counts 4x;
    ``hold`` the other factors count 4x, so results stay alike in them.
    """
    weights = 1.0 / np.maximum(z.var(axis=0), 1e-12)
    if moved is None or mode == "equal":
        return weights
    if mode not in ("emphasise", "hold"):
        raise ValueError(f"mode must be equal, emphasise or hold, got {mode!r}")
    boost = np.ones_like(weights)
    if mode == "emphasise":
        boost[moved] = 4.0
    else:
        boost[:] = 4.0
        boost[moved] = 1.0
    return weights * boost


def typical_gap(index: Index, weights: np.ndarray, sample: int = 2000, seed: int = 0) -> np.ndarray:
    """Nearest-other-item distances of a sample of items: what "close to a real dish" means."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(index), size=min(sample, len(index)), replace=False)
    _, distances = index.nearest(index.z[pick], n=2, weights=weights)
    return distances[:, 1]


def emptiness(distance: float, gaps: np.ndarray) -> tuple[float, str]:
    """How far a query is from the data compared with item-to-item gaps: (percentile, level)."""
    share = float(np.mean(gaps <= distance) * 100.0)
    level = "ok" if share < 90 else ("sparse" if share < 99 else "empty")
    return share, level


def traversal(
    index: Index,
    start: np.ndarray,
    factor: int,
    weights: np.ndarray,
    steps: int = 7,
    low: float = 2.0,
    high: float = 98.0,
) -> pd.DataFrame:
    """Move one factor through quantiles of the data, others fixed; the nearest real item at
    each step (there is no decoder: a traversal is a sequence of retrievals)."""
    quantiles = np.linspace(low, high, steps)
    values = np.percentile(index.z[:, factor], quantiles)
    queries = np.repeat(np.asarray(start, dtype=np.float32)[None], steps, axis=0)
    queries[:, factor] = values
    hits, distances = index.nearest(queries, n=1, weights=weights)
    return pd.DataFrame(
        {"quantile": quantiles, "value": values, "item": hits[:, 0], "distance": distances[:, 0]}
    )


def image_to_recipes(run, index: Index, z: np.ndarray, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The n recipes whose prior p(z|y) best matches an image code (the model's own score)."""
    scores = run.score(np.asarray(z, dtype=np.float32)[None], index.y_mean, index.y_logvar)[0]
    top = np.argsort(-scores, kind="stable")[:n]
    return top, scores[top]


# --------------------------------------------------------------------------- factor cards


def word_associations(
    texts: list[str], values: np.ndarray, top: int = 10, min_count: int = 5
) -> pd.DataFrame:
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


def agreement(z: np.ndarray, y_mean: np.ndarray) -> np.ndarray:
    """(k,) Pearson correlation, per factor, of the image code and the recipe's prior mean."""
    zc, yc = z - z.mean(axis=0), y_mean - y_mean.mean(axis=0)
    denom = np.sqrt((zc**2).sum(axis=0) * (yc**2).sum(axis=0))
    return (zc * yc).sum(axis=0) / np.maximum(denom, 1e-12)


def minimal_pairs(
    z: np.ndarray, factor: int, n: int = 4, sample: int = 3000, seed: int = 0
) -> pd.DataFrame:
    """Pairs of items alike in every factor but ``factor`` and far apart on it.

    For a sample of items, the 8 nearest others ignoring ``factor`` (standardised distance);
    among the closest fifth of those pairs, the n with the largest gap on ``factor``.
    """
    scale = np.maximum(z.std(axis=0), 1e-12)
    zs = z / scale
    weights = np.ones(z.shape[1])
    weights[factor] = 0.0
    rng = np.random.default_rng(seed)
    anchors = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    hits, others = NearestNeighbors(zs).search(zs[anchors], n=min(9, len(z)), weights=weights)
    a = np.repeat(anchors, hits.shape[1] - 1)
    b, other = hits[:, 1:].ravel(), others[:, 1:].ravel()
    gap = np.abs(zs[a, factor] - zs[b, factor])
    close = other <= np.quantile(other, 0.2)
    order = np.argsort(-np.where(close, gap, -np.inf), kind="stable")
    pairs, seen = [], set()
    for i in order:
        key = (min(a[i], b[i]), max(a[i], b[i]))
        if key in seen or not close[i] or len(pairs) == n:
            continue
        seen.add(key)
        low, high = sorted(key, key=lambda j: z[j, factor])
        pairs.append({"low": low, "high": high, "gap": gap[i], "other_distance": other[i]})
    return pd.DataFrame(pairs, columns=["low", "high", "gap", "other_distance"])


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


# --------------------------------------------------------------------------- export


def contact_sheet(paths: list[str], captions: list[str], cell: int = 160) -> bytes:
    """A row of images with a caption under each, as PNG bytes (a traversal strip)."""
    from PIL import Image, ImageDraw

    band = 34
    sheet = Image.new("RGB", (cell * len(paths), cell + band), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, caption) in enumerate(zip(paths, captions, strict=True)):
        with Image.open(path) as img:
            sheet.paste(img.convert("RGB").resize((cell, cell)), (i * cell, 0))
        for line, text in enumerate(str(caption).split("\n")[:2]):
            draw.text((i * cell + 4, cell + 3 + 15 * line), text[: cell // 7], fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
