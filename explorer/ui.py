"""What every page shares: the chosen run (cached), its index and items, image grids.

Loading and search live in ``ivae``; this module only caches them for Streamlit and turns
failures into messages with a way forward.
"""

from __future__ import annotations

import gc
import os
import re
import string
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from explorer import data, tables, thumbs
from explorer.runs import (
    REPO_ROOT,
    confined,
    file_fingerprint,
    relative_label,
    run_fingerprint,
    summarize_run,
)
from explorer.runs import run_options as find_run_options
from ivae.index import Index, MissingIndexError

RUN_KEY = "run_path"
_ESCAPED = {ord(c): "\\" + c for c in string.punctuation}  # every ASCII punctuation mark


def plain(text: object, lines: bool = False) -> str:
    """``text`` made safe to put in st.markdown, st.caption, st.image captions and widget
    labels: it shows literally, never as Markdown, HTML, math, emoji or a link. Every ASCII
    punctuation mark is backslash-escaped (CommonMark lets any be), so no ``![](...)``
    loads a remote image, no ``[x](...)`` or bare ``http://`` becomes a link, no ``<tag>``,
    ``$math$``, ``:emoji:`` or ``*emphasis*`` renders. Whitespace runs become one space;
    with ``lines`` the line breaks are kept (as hard breaks)."""
    text = "" if text is None else str(text)
    if lines:
        return "  \n".join(plain(line) for line in text.splitlines())
    return " ".join(text.translate(_ESCAPED).split())


def code(text: object) -> str:
    """``text`` (a path, a command) as a Markdown code span, shown literally whatever it holds:
    the fence is one backtick longer than the longest run of backticks inside."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


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
        """The item's image as a small ``data:`` URI (explorer.thumbs); MissingImageError,
        also for a path that leads out of the data set (absolute, or through ``..``)."""
        relative = str(self.items["image"].iat[int(row)])
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise thumbs.MissingImageError(f"{relative} is outside the data set; not shown")
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
    """The picker's text: folder, model and MCC, e.g. ``runs/kitchen [implicit-ivae, MCC 0.93]``,
    or what is wrong with a broken run (``runs/x (broken: config.json is unreadable ...)``)."""
    summary = summarize_run(Path(path))
    return label(path) + summary.label.removeprefix(Path(path).name)


def linked_run() -> str | None:
    """The run a ?run= link names, when it lies inside the run roots (explorer.runs.confined);
    a link to anything else gets one line and is ignored."""
    wanted = st.query_params.get("run")
    if not wanted:
        return None
    inside = confined(wanted)  # links carry the path relative to the repository
    if inside is None:
        shown = plain(wanted[:60] + ("…" if len(wanted) > 60 else ""))
        st.sidebar.warning(
            f"The link's run ({shown}) is not a run folder under the project's run roots; "
            "pick a run below."
        )
    return inside


def run_picker() -> str | None:
    """Sidebar choice of run (also settable with ?run=PATH inside the run roots); remembered
    across pages. The chosen run's full label is written under the picker, which cuts long
    ones off."""
    options = run_options()
    wanted = linked_run()
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
    picked = st.sidebar.selectbox("Run", options, key=RUN_KEY, format_func=run_label)
    st.sidebar.caption(plain(run_label(picked)))
    return picked


def require_context() -> Context:
    """The chosen run, index and items, or a message with a way forward and st.stop()."""
    path = st.session_state.get(RUN_KEY)
    if not path:
        _no_runs()
    run = _run_or_stop(path)
    index = _index_or_stop(run, path)
    data_dir = _data_or_stop(run, index)
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
        run = load_run(path)
        run.factor_names  # noqa: B018 - factors.json checked here, not mid-page
        return run
    except (RunError, OSError) as error:
        st.error(f"Cannot open the run {plain(label(path))}: {plain(error)}")
        st.info("Pick another run in the sidebar, or train a new one (see the Home page).")
        st.stop()


def _index_or_stop(run, path: str) -> Index:
    try:
        return load_index(path)
    except MissingIndexError as error:
        st.warning(plain(error))
        if st.button("Build the index now", key="build_index", type="primary"):
            _build_index(run)
        st.stop()


def _build_index(run) -> None:
    from ivae.familiarity import build_familiarity, reads_photos
    from ivae.index import build_index
    from ivae.io import LockedError, run_lock

    with st.status("Encoding every dish and recipe, then the 2-D map…", expanded=True) as status:
        try:
            with run_lock(run.path, "the dashboard's index build"):
                data_dir = data.ensure_data(run)
                build_index(run, data=run.load_data(data_dir), progress=False)
                if reads_photos(run):  # the Photo reader's unfamiliarity check, as `ivae index`
                    build_familiarity(run, data_dir, progress=False)
        except (ValueError, OSError, LockedError) as error:
            status.update(label="Building the index failed", state="error")
            st.error(plain(error))
            st.stop()
        status.update(label="Index built", state="complete")
    st.cache_resource.clear()
    st.rerun()


@st.cache_data(show_spinner="Checking the data against the index…", max_entries=16)
def _data_digest(directory: str, fingerprint: tuple) -> str:
    """The items' content digest (ivae.index.data_digest), once per version of the file."""
    from ivae.index import data_digest

    return data_digest(directory)


def _checked_data(run, index: Index, directory: Path) -> Path:
    """``directory`` when it holds the items the index was built from; else one line saying
    which command rebuilds the index, and st.stop()."""
    if index.data_digest:
        fingerprint = file_fingerprint(directory / "items.parquet")
        try:
            same = _data_digest(str(directory), fingerprint) == index.data_digest
        except (ValueError, OSError) as error:
            st.error(plain(error))
            st.stop()
        if not same:
            command = f"ivae index {label(str(run.path))} --data {label(str(directory))}"
            st.error(
                f"The index of {code(label(str(run.path)))} was built from other dishes than "
                f"{code(label(str(directory)))} holds now (built from "
                f"{code(label(index.data_source))}); rebuild it on this data: {code(command)}"
            )
            st.stop()
    return directory


def _data_or_stop(run, index: Index) -> Path:
    """Where the index's items and photos are read from (ivae.index.index_data_dir: the data
    it was built from), checked against the index's data fingerprint. The run's own kitchen
    data is generated there on first launch when missing."""
    from ivae.index import index_data_dir

    found = index_data_dir(index, run, REPO_ROOT)
    target = run.data_dir(REPO_ROOT)
    if os.path.abspath(found) != os.path.abspath(target) or (
        (target / "items.parquet").is_file() and data.stale_data(run, target) is None
    ):
        if not (found / "items.parquet").is_file():
            st.error(f"The data of this index is missing ({code(label(str(found)))}).")
            st.stop()
        return _checked_data(run, index, found)
    return _checked_data(run, index, _generated_data(run, target))


def _generated_data(run, target: Path) -> Path:
    stale = data.stale_data(run, target)
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
            st.error(plain(error))
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
    captions = [plain(c) for c in (captions or [ctx.title(r) for r in rows])]
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
        place.image(ctx.thumbnail(row), caption=plain(caption), width=width)
    except thumbs.MissingImageError:
        place.caption(f"{plain(caption)} (image missing)")
        return ctx.image_path(row)
    return None


def missing_images(ctx: Context, paths: list[str | None]) -> None:
    """One line when images of the data set are not where its items table says."""
    paths = [p for p in paths if p]
    if paths:
        st.error(
            f"{len(paths)} image file(s) of the data set are missing or unreadable, e.g. "
            f"{code(paths[0])}. Put the images back under {code(label(str(ctx.data_dir)))}, or "
            f"index the data where it is now: {code(f'ivae index {label(str(ctx.run.path))}')}"
            " with `--data PATH`."
        )


def recipe_table(ctx: Context, rows, extra: dict | None = None) -> pd.DataFrame:
    """Title, dish type and ingredients of item rows, for st.dataframe."""
    return tables.recipe_table(ctx.items, ctx.titles, rows, extra)


def factor_label(ctx: Context, j: int) -> str:
    """A factor's name for widget labels and options, shown as text (``plain``): names are
    editable by any visitor."""
    return plain(factor_option(ctx, j))


def factor_option(ctx: Context, j: int) -> str:
    """A factor's name as the text of a select option (``format_func``), which Streamlit
    shows as it is; anywhere Markdown renders, use ``factor_label``."""
    name = ctx.names[j]
    return name if name.startswith("factor ") else f"{name} (factor {j + 1})"
