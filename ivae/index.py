"""Codes, exact nearest-neighbour search and the 2-D map behind the dashboard.

``ivae index RUN_DIR`` encodes every image (``z``) and every recipe (the conditional prior
``p(z | y)``: ``y_mean``, ``y_logvar``) of a run's dataset once, adds a UMAP map of ``z`` and
writes ``RUN_DIR/index/codes.npz``. Search is exact up to ``ANN_THRESHOLD`` (a million)
points: a blocked numpy matmul plus ``argpartition``. Above it, a faiss IVF index
(``ivae.ann``, built by ``ivae index`` and saved next to the codes) proposes candidates and
they are re-ranked exactly, with the query's weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ivae import ann as ann_module
from ivae.data.table import ITEMS_CACHE, mapped_items  # noqa: F401 (ITEMS_CACHE: re-exported)
from ivae.io import read_built, save_npz

INDEX_FILE = Path("index") / "codes.npz"
SCAN_ELEMENTS = 1 << 23  # distances held at once by an exact scan (32 MB): queries x block
MAP_SAMPLE = 50_000  # codes the 2-D map is fitted on; the rest are placed by their neighbours


class MissingIndexError(ValueError):
    """A run has no usable index; the message says which command builds it."""


class NearestNeighbors:
    """(Weighted) Euclidean nearest neighbours over fixed points.

    points: (N, k). Up to ``ann.ANN_THRESHOLD`` points ``search`` is exact, scanning them in
    blocks so memory stays O(block * queries). Above it, or whenever ``ann`` is given (an
    ``ivae.ann.IvfCandidates`` over these points; built here on first use when missing), the
    IVF proposes candidates and every candidate is re-ranked exactly. ``exact=True`` scans at
    any size (benchmarks' ground truth).
    """

    def __init__(self, points: np.ndarray, block_size: int = 131072, ann=None, exact: bool = False):
        self.points = np.ascontiguousarray(points, dtype=np.float32)  # (N, k)
        self.ann = ann
        self.exact = exact
        self.sq_norms = np.einsum("ij,ij->i", self.points, self.points)  # (N,)
        self.block_size = block_size
        self._weighted = (b"", self.sq_norms)  # (weights' bytes, sum_j w_j p_j^2): one tuple,
        # replaced whole, so concurrent sessions never see a half-updated cache

    def __len__(self) -> int:
        return len(self.points)

    def search(
        self,
        queries: np.ndarray,
        n: int = 8,
        weights: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The n nearest points to each query, closest first.

        queries: (k,) or (Q, k). weights: (k,) non-negative per-dimension weights of the
        squared distance (None = all ones). exclude: indices or an (N,) boolean mask of
        points never returned. Returns (indices, distances), each (n,) or (Q, n).
        """
        single = np.ndim(queries) == 1
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))  # (Q, k)
        w = None if weights is None else _check_weights(weights, q.shape[1])
        banned = self._exclusion_mask(exclude)
        n = int(min(n, len(self) - (0 if banned is None else banned.sum())))
        if n <= 0:
            empty = np.zeros((len(q), 0))
            return (empty[0].astype(int), empty[0]) if single else (empty.astype(int), empty)
        if not self.exact and (self.ann is not None or len(self) > ann_module.ANN_THRESHOLD):
            best_d, best_i = self._approximate(q, n, w, banned)
        else:
            best_d, best_i = self._scan(q, n, w, banned)
        order = np.argsort(best_d, axis=1, kind="stable")
        indices = np.take_along_axis(best_i, order, axis=1)
        distances = np.sqrt(np.maximum(np.take_along_axis(best_d, order, axis=1), 0.0))
        return (indices[0], distances[0]) if single else (indices, distances)

    def _exclusion_mask(self, exclude: np.ndarray | None) -> np.ndarray | None:
        if exclude is None:
            return None
        exclude = np.asarray(exclude)
        if exclude.dtype == bool:
            return exclude
        mask = np.zeros(len(self), dtype=bool)
        mask[exclude.astype(int)] = True
        return mask

    def _weighted_norms(self, w: np.ndarray) -> np.ndarray:
        """(N,) sum_j w_j p_j^2, cached for the last weights (a studio reuses them)."""
        key, norms = self._weighted
        if key != w.tobytes():
            norms = (self.points * self.points) @ w
            self._weighted = (w.tobytes(), norms)
        return norms

    def _approximate(self, q, n, w, banned) -> tuple[np.ndarray, np.ndarray]:
        """Per query: the IVF's nearest cells, re-ranked exactly, then the cells whose box is
        nearer than the n-th best found (``IvfCandidates.cells_within``); an exact scan for a
        query whose candidates (after ``exclude``) are fewer than n, so n results come back."""
        if self.ann is None:
            params = ann_module.default_params(len(self))
            built, scale = ann_module.build_ivf(self.points, params)
            self.ann = ann_module.IvfCandidates(built, params.nprobe, scale, self.points)
        best_d = np.empty((len(q), n), dtype=np.float32)
        best_i = np.empty((len(q), n), dtype=np.int64)
        for row, query in enumerate(q):
            cells = self.ann.first_cells(query, w)
            d2, found = self._rerank(query, self.ann.members(cells), n, w, banned)
            if len(found) < n:
                best_d[row], best_i[row] = (a[0] for a in self._scan(query[None], n, w, banned))
                continue
            more = self.ann.cells_within(query, w, float(d2.max()), cells)
            if len(more):
                d2_more, found_more = self._rerank(query, self.ann.members(more), n, w, banned)
                d2, found = np.concatenate([d2, d2_more]), np.concatenate([found, found_more])
                top = np.argpartition(d2, n - 1)[:n]
                d2, found = d2[top], found[top]
            best_d[row], best_i[row] = d2, found
        return best_d, best_i

    def _rerank(self, query, found, n, w, banned) -> tuple[np.ndarray, np.ndarray]:
        """The n nearest of the candidate ids ``found`` (fewer when fewer are left)."""
        if banned is not None:
            found = found[~banned[found]]
        # np.take, not points[found]: 100x faster on (N, k) rows with small k (numpy 2)
        gaps = np.take(self.points, found, axis=0)  # (C, k), squared in place
        gaps -= query
        gaps *= gaps
        d2 = gaps.sum(axis=1) if w is None else gaps @ w
        if len(found) <= n:
            return d2, found
        top = np.argpartition(d2, n - 1)[:n]
        return d2[top], found[top]

    def _scan(self, q, n, w, banned) -> tuple[np.ndarray, np.ndarray]:
        """Per block: squared distances, then keep the n smallest; merge across blocks."""
        # ||p - q||_w^2 = sum w p^2 - 2 p . (w q) + sum w q^2, all as matmuls.
        wq = q if w is None else q * w  # (Q, k)
        q_sq = np.einsum("ij,ij->i", wq, q)[:, None]  # (Q, 1)
        sq_norms = self.sq_norms if w is None else self._weighted_norms(w)
        minus_2wq = -2.0 * wq
        cand_d, cand_i = [], []
        block_size = max(1024, min(self.block_size, SCAN_ELEMENTS // len(q)))  # (Q, B) bounded
        for start in range(0, len(self), block_size):
            stop = min(start + block_size, len(self))
            block = self.points[start:stop]  # (B, k)
            p_sq = sq_norms[start:stop]
            d2 = minus_2wq @ block.T  # (Q, B), then in place: one array per block
            d2 += p_sq[None, :]
            d2 += q_sq
            if banned is not None:
                d2[:, banned[start:stop]] = np.inf
            keep = min(n, stop - start)
            part = np.argpartition(d2, keep - 1, axis=1)[:, :keep]  # (Q, keep)
            cand_d.append(np.take_along_axis(d2, part, axis=1))
            cand_i.append(part + start)
        d_all, i_all = np.concatenate(cand_d, axis=1), np.concatenate(cand_i, axis=1)
        top = np.argpartition(d_all, n - 1, axis=1)[:, :n]
        return np.take_along_axis(d_all, top, axis=1), np.take_along_axis(i_all, top, axis=1)


def _check_weights(weights: np.ndarray, k: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {k} finite non-negative numbers, got {weights!r}")
    return w


@dataclass
class Index:
    """Every item of a run's dataset, encoded once.

    ids: (N,) str. z: (N, k) image codes (run.encode_x). y_mean, y_logvar: (N, k) the
    recipe's conditional prior (run.encode_y). map2d: (N, 2) UMAP of z. ann_meta: per space
    (``image``, ``recipe``) the saved faiss index's metadata (``ivae.ann.save_ann``), above
    ``ANN_THRESHOLD`` items only; ann: those indexes, loaded.
    """

    ids: np.ndarray
    z: np.ndarray
    y_mean: np.ndarray
    y_logvar: np.ndarray
    map2d: np.ndarray
    model_digest: str = ""
    data_source: str = ""
    data_digest: str = ""
    ann_meta: dict = field(default_factory=dict)
    ann: dict = field(default_factory=dict, repr=False, compare=False)
    _searchers: dict = field(default_factory=dict, repr=False, compare=False)
    _quantiles: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def quantiles(self, factor: int, percents: np.ndarray) -> np.ndarray:
        """np.percentile of one factor's codes, computed once per (factor, percents): a
        traversal asks for the same ones on every slider move (36 ms at a million codes)."""
        key = (factor, tuple(np.round(np.asarray(percents, dtype=float), 9)))
        if key not in self._quantiles:
            self._quantiles[key] = np.percentile(self.z[:, factor], percents)
        return self._quantiles[key]

    def searcher(self, space: str = "image") -> NearestNeighbors:
        """The search structure over image codes (``image``) or recipe prior means (``recipe``)."""
        if space not in ("image", "recipe"):
            raise ValueError(f"space must be 'image' or 'recipe', got {space!r}")
        if space not in self._searchers:
            points = self.z if space == "image" else self.y_mean
            self._searchers[space] = NearestNeighbors(points, ann=self.ann.get(space))
        return self._searchers[space]

    def nearest(
        self,
        query: np.ndarray,
        n: int = 8,
        weights: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        space: str = "image",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices and distances of the n items whose codes are closest to ``query``."""
        return self.searcher(space).search(query, n=n, weights=weights, exclude=exclude)

    def position(self, item_id: str) -> int:
        """Row of an item id; KeyError with the id when it is not in the index."""
        hits = np.flatnonzero(self.ids == str(item_id))
        if len(hits) == 0:
            raise KeyError(f"no item with id {item_id!r} in the index")
        return int(hits[0])


def model_digest(run_path: Path) -> str:
    """A short fingerprint of model.pt, so an index built for other weights is detected."""
    model_file = Path(run_path) / "model.pt"
    if not model_file.exists():
        return ""
    digest = hashlib.sha256()
    with open(model_file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def data_digest(source: str | Path) -> str:
    """The fingerprint of a data set's content: for a paired directory the SHA-256 of its
    items' ids, image paths and texts (``items_content_digest``), for a file its SHA-256;
    "" for a source not on disk (data made in memory), which the dashboard takes as it is."""
    source = Path(source)
    if not source.exists():
        return ""
    if source.is_dir():
        from ivae.data.paired import items_content_digest

        return items_content_digest(source)
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_index(run, data=None, progress: bool = True) -> Index:
    """Encode every item of ``data`` (default: the run's own dataset) and save the index,
    with the fingerprints of the model and the data it was built from."""
    data = run.load_data() if data is None else data
    source = str(getattr(data, "source", "") or "")
    z = run.encode_x(data.x, progress=progress).astype(np.float32)
    y_mean, y_logvar = run.encode_y(data.y, progress=progress)
    index = Index(
        ids=np.asarray(data.ids).astype(str),
        z=z,
        y_mean=y_mean.astype(np.float32),
        y_logvar=y_logvar.astype(np.float32),
        map2d=map_2d(z),
        model_digest=model_digest(run.path),
        data_source=str(Path(source).resolve()) if source else "",
        data_digest=data_digest(source) if source else "",
    )
    if len(index) > ann_module.ANN_THRESHOLD:
        build_ann(index, Path(run.path))
    save_index(index, Path(run.path) / INDEX_FILE)
    return index


def build_ann(index: Index, run_path: Path) -> None:
    """The faiss index of each space, saved under ``run_path`` (index/ann-*.faiss), kept in
    ``index.ann`` and described in ``index.ann_meta`` (saved with the codes afterwards)."""
    for space, points in (("image", index.z), ("recipe", index.y_mean)):
        params = ann_module.default_params(len(points))
        built, scale = ann_module.build_ivf(points, params)
        path = run_path / ann_module.ANN_FILES[space]
        index.ann_meta[space] = ann_module.save_ann(built, scale, points, params, path)
        index.ann[space] = ann_module.IvfCandidates(built, params.nprobe, scale, points)


def map_2d(z: np.ndarray, seed: int = 0, sample: int = MAP_SAMPLE) -> np.ndarray:
    """(N, 2) UMAP embedding of the codes; PCA when there are too few points for UMAP.

    Above ``sample`` codes UMAP is fitted on a seeded sample of that many and every other
    code is placed at the inverse-distance-weighted mean position of its 8 nearest sampled
    codes (``place_on_map``): minutes instead of hours at a million, and the same map.
    """
    z = np.asarray(z, dtype=np.float32)
    if len(z) < 16 or z.shape[1] < 2:
        return _pca_2d(z)
    import umap  # imported here: it compiles with numba, seconds the dashboard need not pay

    rows = np.arange(len(z))
    if len(z) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(z), sample, replace=False))
    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, len(rows) - 1), random_state=seed, n_jobs=1
    )
    fitted = reducer.fit_transform(z[rows]).astype(np.float32)
    if len(rows) == len(z):
        return fitted
    return place_on_map(z, z[rows], fitted)


def place_on_map(z: np.ndarray, sample: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(N, 2): each code at the inverse-distance-weighted mean ``positions`` (M, 2) of its 8
    nearest codes in ``sample`` (M, k), in chunks; a code equal to a sampled one lands on it."""
    search = NearestNeighbors(sample, exact=True)
    out = np.empty((len(z), 2), dtype=np.float32)
    for start in range(0, len(z), 4096):
        found, distances = search.search(z[start : start + 4096], n=min(8, len(sample)))
        weights = 1.0 / np.maximum(distances, 1e-6) ** 2  # (B, 8)
        weights /= weights.sum(axis=1, keepdims=True)
        out[start : start + 4096] = np.einsum("bn,bnd->bd", weights, positions[found])
    return out


def _pca_2d(z: np.ndarray) -> np.ndarray:
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))).astype(np.float32)


def save_index(index: Index, path: Path) -> None:
    """Atomic write: a temp file in the same folder, then os.replace."""
    arrays = {
        name: np.asarray(getattr(index, name)) for name in ("z", "y_mean", "y_logvar", "map2d")
    }
    arrays.update(
        ids=np.asarray(index.ids).astype(str),
        model_digest=np.asarray(index.model_digest),
        data_source=np.asarray(index.data_source),
        data_digest=np.asarray(index.data_digest),
        ann_meta=np.asarray(json.dumps(index.ann_meta)),
    )
    save_npz(path, arrays)


def read_index(path: Path) -> Index:
    """Load codes.npz (never unpickles: allow_pickle=False). The arrays are memory-mapped from
    the file where it stores them uncompressed (as ``save_index`` writes it): the page cache,
    not the process, holds the codes, and only the pages a search touches are read."""
    arrays = mapped_npz(path, ("ids", "z", "y_mean", "y_logvar", "map2d"))  # checks the zip
    with np.load(path, allow_pickle=False) as f:
        small = {name: str(f[name]) for name in SMALL_FIELDS if name in f.files}
    return Index(
        ids=arrays["ids"],
        z=arrays["z"],
        y_mean=arrays["y_mean"],
        y_logvar=arrays["y_logvar"],
        map2d=arrays["map2d"],
        model_digest=small.get("model_digest", ""),
        data_source=small.get("data_source", ""),
        data_digest=small.get("data_digest", ""),
        ann_meta=json.loads(small.get("ann_meta", "{}")),
    )


SMALL_FIELDS = ("model_digest", "data_source", "data_digest", "ann_meta")


def index_data_dir(index: Index, run, root: Path | None = None) -> Path:
    """Where the items and photos of an index are read from: the data set it was built from
    (``ivae index RUN --data OTHER`` makes it OTHER), or, when that folder is not on this
    machine (a run copied here), the run's own data folder (``run.data_dir(root)``); which
    one holds the same items is then checked by ``check_index_data``."""
    if index.data_source:
        source = Path(index.data_source)
        if not source.is_absolute():  # indexes written before sources were resolved
            source = (Path.cwd() if root is None else Path(root)) / source
        if source.is_dir():
            return source
    return run.data_dir(root)


def check_index_data(index: Index, run, directory: Path) -> None:
    """MissingIndexError (one line, the command that fixes it) when ``directory`` holds
    other items than the index was built from: its ids would land on other dishes. An index
    written before indexes recorded their data's digest is taken as it is."""
    if not index.data_digest:
        return
    if data_digest(directory) != index.data_digest:
        built = index.data_source or "another data set"
        raise MissingIndexError(
            f"the index of {run.path} was built from other items than {directory} holds now "
            f"(built from {built}); rebuild it on this data: `ivae index {run.path} --data "
            f"{directory}`"
        )


def mapped_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays of an .npz as memory maps where stored uncompressed, read otherwise;
    codes as float32 and ids as str. KeyError naming a missing array."""
    import zipfile

    out = {}
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            for name in names:
                info = archive.getinfo(f"{name}.npy")
                array = _mapped_member(path, raw, info) if info.compress_type == 0 else None
                if array is None:
                    with archive.open(info) as member:
                        array = np.lib.format.read_array(member, allow_pickle=False)
                out[name] = array.astype(str if name == "ids" else np.float32, copy=False)
    except zipfile.BadZipFile as error:
        raise ValueError(f"not a complete .npz ({error})") from None
    return out


def _mapped_member(path: Path, raw, info) -> np.ndarray | None:
    """The .npy member ``info`` of a stored (uncompressed) zip as a memory map, or None when
    its layout cannot be mapped (Fortran order, object arrays)."""
    raw.seek(info.header_offset)
    local = raw.read(30)  # the zip local file header: name and extra field lengths at 26, 28
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
    start += int.from_bytes(local[28:30], "little")
    raw.seek(start)
    version = np.lib.format.read_magic(raw)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
        version, np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(raw)
    if fortran or dtype.hasobject or 0 in shape:
        return None
    # copy-on-write: torch takes it as it is (it warns on read-only arrays); the file never changes
    return np.memmap(path, dtype=dtype, mode="c", offset=raw.tell(), shape=shape)


def load_index(run) -> Index:
    """The run's saved index; MissingIndexError saying to run ``ivae index`` when absent/stale."""
    path = Path(run.path) / INDEX_FILE
    command = f"ivae index {run.path}"
    missing = f"run {run.path} has no index yet"
    index = read_built(path, read_index, MissingIndexError, missing, command)
    if index.z.shape[1] != run.latent_dim:
        raise MissingIndexError(
            f"{path} has {index.z.shape[1]}-d codes but the model has {run.latent_dim}; "
            f"rebuild it with `{command}`"
        )
    digest = model_digest(run.path)
    if index.model_digest and digest and index.model_digest != digest:
        raise MissingIndexError(
            f"{path} was built for different weights; rebuild it with `{command}`"
        )
    if len(index) > ann_module.ANN_THRESHOLD:
        index.ann = _load_anns(index, Path(run.path), command)
    return index


def _load_anns(index: Index, run_path: Path, command: str) -> dict:
    """Both spaces' saved faiss indexes, or MissingIndexError naming the file: all or none."""
    anns = {}
    for space, points in (("image", index.z), ("recipe", index.y_mean)):
        try:
            anns[space] = ann_module.load_ann(
                run_path / ann_module.ANN_FILES[space], index.ann_meta.get(space), points
            )
        except ann_module.AnnFileError as error:
            raise MissingIndexError(f"{error}; rebuild it with `{command}`") from None
    return anns


def load_items(directory: Path, ids: np.ndarray | None = None) -> pd.DataFrame:
    """The dataset's items table (no image decoding), in the order of ``ids`` (an index's
    rows) when given; ValueError saying to rebuild the index when the data lacks some ids.

    The table is memory-mapped (``mapped_items``): its columns are Arrow arrays over a file,
    so a million recipes' texts and ingredients stay on disk until rows of them are shown.
    """
    items = mapped_items(Path(directory))
    if ids is None:
        return items
    item_ids = items["id"].astype(str).to_numpy()
    if len(item_ids) == len(ids) and np.array_equal(item_ids, ids):
        return items  # the index's own order: no copy
    position = pd.Series(np.arange(len(items)), index=item_ids)
    missing = [i for i in ids[:5] if i not in position.index]
    if missing or len(set(ids) - set(position.index)):
        raise ValueError(
            f"{directory} does not hold the items this index was built on (e.g. ids {missing}); "
            "rebuild the index with `ivae index RUN_DIR --data PATH`"
        )
    return items.iloc[position.loc[ids].to_numpy()].reset_index(drop=True)
