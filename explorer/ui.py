"""What every page shares: the chosen run (cached), its index and items, image grids.

Loading and search live in ``ivae``; this module only caches them for Streamlit and turns
failures into messages with a way forward.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from explorer import data, tables, thumbs
from explorer.runs import REPO_ROOT, relative_label, resolve, run_fingerprint, summarize_run
from explorer.runs import run_options as find_run_options
from ivae.index import Index, MissingIndexError

RUN_KEY = "run_path"


@dataclass
class Context:
    """The chosen run with everything the pages read from it; rows of ``items`` = index rows.

    ``key`` fingerprints the content of the index and the items table: page caches of what is
    computed from them take it as an argument, so a rebuilt index shows on the next rerun.
    """

    run: object  # ivae.run.Run
    index: Index
    items: pd.DataFrame
    titles: np.ndarray  # (N,) display title per row
    data_dir: Path
    key: tuple
    names: list[str]  # the run's factor names, read from factors.json once per rerun

    @property
    def k(self) -> int:
        return self.index.z.shape[1]

    def image_path(self, row: int) -> str:
        return str(self.data_dir / self.items["image"].iat[int(row)])

    def thumbnail(self, row: int) -> str:
        """The item's image as a small ``data:`` URI (explorer.thumbs); MissingImageError."""
        return thumbs.thumbnail(self.image_path(row))

    def title(self, row: int) -> str:
        return str(self.titles[int(row)])


# --------------------------------------------------------------------------- cached loading
# Every loader takes the content fingerprint of the files it reads (explorer.runs), so that
# `ivae name` / `ivae index` rewriting them invalidates the cached object on the next rerun.


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_run(path: str, fingerprint: tuple):
    import torch
    from threadpoolctl import threadpool_limits

    import ivae

    # One photo at a time: a single thread avoids contention between sessions and is
    # faster than two on a busy 2-core machine (bench/latency.py, photo -> factors).
    torch.set_num_threads(1)
    # The same for numpy's BLAS: a search of 7 traversal points over 20k codes took 8.6 ms
    # with OpenBLAS's threads waiting for a busy core, 1.6 ms on one.
    threadpool_limits(1, user_api="blas")
    return ivae.load_run(path)


@st.cache_resource(show_spinner="Loading the index…", max_entries=4)
def _load_index(path: str, fingerprint: tuple, _run) -> Index:
    from ivae.index import load_index

    return load_index(_run)


@st.cache_resource(show_spinner="Reading the recipes…", max_entries=4)
def _load_items(data_dir: str, fingerprint: tuple, _index: Index) -> tuple:
    from ivae.index import load_items

    items = load_items(Path(data_dir), _index.ids)
    return items, tables.item_titles(items)


def load_run(path: str):
    return _load_run(path, run_fingerprint(path, ("model.pt", "factors.json", "vocab.json")))


def load_index(path: str) -> Index:
    run = load_run(path)
    return _load_index(path, run_fingerprint(path, ("model.pt", "index/codes.npz")), run)


@st.cache_resource(show_spinner="Loading the photo check…", max_entries=4)
def _load_photo_reader(path: str, fingerprint: tuple, _run, _index: Index):
    from ivae.read_photo import PhotoReader

    return PhotoReader.for_run(_run, _index.z, require_check=False)


def photo_reader(path: str):
    """The run's ivae.read_photo.PhotoReader: factors, percentiles and unfamiliarity."""
    files = ("model.pt", "factors.json", "vocab.json", "index/codes.npz", "index/familiarity.npz")
    return _load_photo_reader(path, run_fingerprint(path, files), load_run(path), load_index(path))


# --------------------------------------------------------------------------- the run picker


def run_options() -> list[str]:
    """Every run under runs/ and assets/, the default run first; unfinished ones included so
    that choosing one explains what is missing."""
    return find_run_options()


def label(path: str) -> str:
    return relative_label(path)


def run_label(path: str) -> str:
    """The picker's text: folder, model and MCC, e.g. ``runs/kitchen [implicit-ivae, MCC 0.93]``."""
    summary = summarize_run(Path(path))
    return label(path) + summary.label.removeprefix(Path(path).name)


def run_picker() -> str | None:
    """Sidebar choice of run (also settable with ?run=PATH); remembered across pages."""
    options = run_options()
    wanted = st.query_params.get("run")
    if wanted:  # links carry the path relative to the repository
        wanted = resolve(wanted)
    chosen = st.session_state.get(RUN_KEY)
    for explicit in (wanted, chosen):  # a path from a shared link or set before; checked on load
        if explicit and explicit not in options:
            options.append(explicit)
    if not options:
        st.session_state[RUN_KEY] = None
        st.sidebar.info("No trained runs found under `runs/` or `assets/`.")
        return None
    if RUN_KEY not in st.session_state or st.session_state[RUN_KEY] not in options:
        st.session_state[RUN_KEY] = wanted if wanted else options[0]
    return st.sidebar.selectbox("Run", options, key=RUN_KEY, format_func=run_label)


def require_context() -> Context:
    """The chosen run, index and items, or a message with a way forward and st.stop()."""
    path = st.session_state.get(RUN_KEY)
    if not path:
        _no_runs()
    run = _run_or_stop(path)
    index = _index_or_stop(run, path)
    data_dir = _data_or_stop(run)
    key = run_fingerprint(path, ("index/codes.npz",)) + run_fingerprint(
        data_dir, ("items.parquet",)
    )
    try:
        items, titles = _load_items(str(data_dir), key, index)
    except (ValueError, OSError) as error:
        st.error(f"The run's data does not match its index: {error}")
        st.stop()
    _freeze_once(key)
    return Context(
        run=run,
        index=index,
        items=items,
        titles=titles,
        data_dir=data_dir,
        key=key,
        names=run.factor_names,
    )


_FROZEN: set[tuple] = set()


def _freeze_once(key: tuple) -> None:
    """Move what is loaded by now (torch, the run, its index and items) out of the garbage
    collector's reach, once per index.

    Streamlit collects garbage after every rerun (``runner.postScriptGC``): a full pass over
    the ~400k objects of the imports and the loaded run took 200-300 ms of CPU on every slider
    move, on a 2-core machine shared with the browser. Frozen, the pass sees only what reruns
    create (bench/latency.py, slider -> screen: the server's CPU per move).
    """
    if key not in _FROZEN:
        _FROZEN.add(key)
        gc.collect()
        gc.freeze()


def _no_runs() -> None:
    st.warning("No trained run to explore yet.")
    st.markdown(
        "Train one and index it, then reload this page:\n\n"
        "```\nivae data kitchen --out data/kitchen\n"
        "ivae train --data data/kitchen --model implicit-ivae --out runs/kitchen\n"
        "ivae index runs/kitchen\n```"
    )
    st.stop()


def _run_or_stop(path: str):
    from ivae.run import RunError

    try:
        return load_run(path)
    except RunError as error:
        st.error(f"Cannot open the run `{label(path)}`.\n\n{error}")
        st.info("Pick another run in the sidebar, or train a new one (see the Home page).")
        st.stop()


def _index_or_stop(run, path: str) -> Index:
    try:
        return load_index(path)
    except MissingIndexError as error:
        st.warning(str(error))
        if st.button("Build the index now", key="build_index", type="primary"):
            _build_index(run)
        st.stop()


def _build_index(run) -> None:
    from ivae.familiarity import build_familiarity, reads_photos
    from ivae.index import build_index

    with st.status("Encoding every dish and recipe, then the 2-D map…", expanded=True) as status:
        try:
            data_dir = data.ensure_data(run)
            build_index(run, data=run.load_data(data_dir), progress=False)
            if reads_photos(run):  # the Photo reader's unfamiliarity check, as `ivae index`
                build_familiarity(run, data_dir, progress=False)
        except (ValueError, OSError) as error:
            status.update(label="Building the index failed", state="error")
            st.error(str(error))
            st.stop()
        status.update(label="Index built", state="complete")
    st.cache_resource.clear()
    st.rerun()


def _data_or_stop(run) -> Path:
    target = run.data_dir(REPO_ROOT)
    stale = data.stale_data(run, target)
    if (target / "items.parquet").is_file() and stale is None:
        return target
    settings = data.generation_settings(run)
    title = f"First launch: generating the kitchen data into `{label(str(target))}`"
    if stale is not None:
        title = (
            f"`{label(str(target))}` was made by kitchen generator {stale}: moving it to "
            f"`{target.name}-v{stale}` and generating the run's version"
        )
    with st.status(title, expanded=True) as status:
        st.write(
            f"{settings['n']:,} dishes at {settings['image_size']}px, seed "
            f"{settings['seed']}. This happens once; later launches read the files."
        )
        try:
            path = _generate_with_progress(run, target, settings["n"])
        except (FileNotFoundError, ValueError, OSError) as error:
            status.update(label="The run's data is missing", state="error")
            st.error(str(error))
            st.stop()
        status.update(label=f"Kitchen data ready in {label(str(path))}", state="complete")
    return path


def _generate_with_progress(run, target: Path, n: int) -> Path:
    """Generate in a worker thread; the bar follows the image files appearing on disk."""
    result: dict = {}

    def work() -> None:
        try:
            result["path"] = data.ensure_data(run)
        except (FileNotFoundError, ValueError, OSError) as error:
            result["error"] = error

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    bar = st.progress(0.0, text="rendering dishes…")
    while worker.is_alive():
        done = data.count_images(target)
        bar.progress(min(done / max(n, 1), 1.0), text=f"rendered {done:,} of {n:,} dishes")
        worker.join(timeout=1.0)
    bar.progress(1.0, text="done")
    if "error" in result:
        raise result["error"]
    return result["path"]


# --------------------------------------------------------------------------- display


THUMB_WIDTH = 150  # px per image of a grid: four beside the studio's sliders, six full width


def image_grid(
    ctx: Context, rows, captions: list[str] | None = None, width: int = THUMB_WIDTH
) -> None:
    """Images of the given item rows, each captioned with its recipe title, side by side and
    wrapping, as one element: a studio move sends one message per grid, not one per cell."""
    rows = [int(r) for r in np.asarray(rows).ravel()]
    captions = captions or [ctx.title(r) for r in rows]
    shown, kept, missing = [], [], []
    for row, caption in zip(rows, captions, strict=False):
        try:
            shown.append(ctx.thumbnail(row))
            kept.append(caption)
        except thumbs.MissingImageError:
            missing.append((ctx.image_path(row), caption))
    if shown:
        st.image(shown, caption=kept, width=width)
    if missing:
        st.caption("(image missing) " + " · ".join(caption for _, caption in missing))
    missing_images(ctx, [path for path, _ in missing])


def show_image(place, ctx: Context, row: int, caption: str, width="stretch") -> str | None:
    """The item's image in ``place`` (a column, the sidebar, ``st``); when its file is missing,
    the caption alone, and the missing path is returned (for ``missing_images``)."""
    try:
        place.image(ctx.thumbnail(row), caption=caption, width=width)
    except thumbs.MissingImageError:
        place.caption(f"{caption} (image missing)")
        return ctx.image_path(row)
    return None


def missing_images(ctx: Context, paths: list[str | None]) -> None:
    """One line when images of the data set are not where its items table says."""
    paths = [p for p in paths if p]
    if paths:
        st.error(
            f"{len(paths)} image file(s) of the data set are missing, e.g. `{paths[0]}`. Put the "
            f"images back under `{label(str(ctx.data_dir))}`, or index the data where it is now: "
            f"`ivae index {label(str(ctx.run.path))} --data PATH`."
        )


def recipe_table(ctx: Context, rows, extra: dict | None = None) -> pd.DataFrame:
    """Title, dish type and ingredients of item rows, for st.dataframe."""
    return tables.recipe_table(ctx.items, ctx.titles, rows, extra)


def factor_label(ctx: Context, j: int) -> str:
    name = ctx.names[j]
    return name if name.startswith("factor ") else f"{name} (factor {j + 1})"
