"""Approximate candidates for nearest-neighbour search above a million codes (faiss IVF).

An inverted-file (IVF) index splits the codes into ``nlist`` k-means cells (Jegou et al.
2011; faiss, Douze et al. 2024). A query probes the ``nprobe`` cells whose centres are
closest *under the query's own per-factor weights*, and every code in them is re-ranked
exactly by ``ivae.index.NearestNeighbors``; then it scans, in a second round, the cells whose
bounding box lies nearer (under the same weights) than the n-th best code found so far, up
to ``EXTRA_PROBES * nprobe`` cells in all. Without that cap the answer would be exact; with
it, a weighting far from uniform (one factor counted 4x) still finds the cells its squeezed
ball reaches, which the centres alone rank too low. Why IVF and not HNSW: the studio weights the
factors per query ("weight the moved factor", "hold the others"); an IVF probe can use those
weights, an HNSW graph is fixed to the metric it was built with. The comparison is measured
in ``bench/search_scale.py`` (docs/results.md, "Search beyond a million items").

``ivae index`` builds the index once and saves it next to the codes (``index/ann-*.faiss``);
``load_ann`` reads it back, checks it against the codes' metadata, and never rebuilds it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ivae.io import atomic_write

ANN_THRESHOLD = 1_000_000  # above this many points search goes through faiss; at or below, exact
ANN_FORMAT = 1  # bump when what is saved (or how it is read) changes
# A query scans its nprobe nearest cells, then the cells whose bounding box is nearer than
# the n-th best code found, up to this many times nprobe cells in all (bench/search_scale.py).
EXTRA_PROBES = 8
ANN_FILES = {
    "image": Path("index") / "ann-image.faiss",
    "recipe": Path("index") / "ann-recipe.faiss",
}


class AnnFileError(ValueError):
    """A saved approximate index that cannot be used; the message names the file."""


@dataclass(frozen=True)
class IvfParams:
    nlist: int  # k-means cells
    nprobe: int  # cells a query scans (its candidates: about nprobe * N / nlist codes)
    train_points: int  # codes the k-means is fitted on (a seeded sample)


def default_params(n_points: int) -> IvfParams:
    """About 2 sqrt(N) cells (a power of two, 8192 at 10M), 48 of them probed per query."""
    nlist = int(2 ** np.clip(np.round(np.log2(2 * np.sqrt(n_points))), 2, 13))
    nlist = min(nlist, max(1, n_points // 39))  # faiss wants >= 39 training points per cell
    return IvfParams(nlist=nlist, nprobe=min(48, nlist), train_points=min(n_points, 40 * nlist))


class IvfCandidates:
    """The cells of a built IVF index, as numpy: centres (nlist, k), member ids, offsets, and
    each cell's bounding box.

    The cells live in standardised space (codes times ``scale``, 1 / their spread), where the
    studio's "equal" weights are the plain metric. Only the cell memberships are kept; the
    faiss object (and its copy of the codes) is dropped, since candidates are re-ranked from
    the exact codes. The boxes (the least and greatest standardised code per cell and factor)
    give, for any weights, a lower bound on the distance from a query to every member of a
    cell: the second round of a search (``cells_within``) scans the cells that may still hold
    a closer code than the first round found.
    """

    def __init__(self, index, nprobe: int, scale: np.ndarray, points: np.ndarray):
        import faiss

        self.scale = np.asarray(scale, dtype=np.float32)  # (k,)
        invlists = index.invlists
        sizes = np.array([invlists.list_size(cell) for cell in range(index.nlist)], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])  # (nlist + 1,)
        self.ids = np.empty(int(self.offsets[-1]), dtype=np.int64)  # (N,) grouped by cell
        for cell in np.flatnonzero(sizes):
            ids = faiss.rev_swig_ptr(invlists.get_ids(int(cell)), int(sizes[cell]))
            self.ids[self.offsets[cell] : self.offsets[cell + 1]] = ids
        self.centres = index.quantizer.reconstruct_n(0, index.nlist).astype(np.float32)
        self.nprobe = min(int(nprobe), index.nlist)
        self.max_cells = min(EXTRA_PROBES * self.nprobe, index.nlist)
        self.low, self.high = cell_boxes(points, self.ids, self.offsets, self.scale)

    def __len__(self) -> int:
        return len(self.ids)

    def standard_weights(self, weights: np.ndarray | None) -> np.ndarray:
        """(k,) the query's weights in standardised space."""
        ones = np.ones_like(self.scale)
        return (ones if weights is None else weights) / self.scale**2

    def first_cells(self, query: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """The nprobe cells whose centres are nearest ``query`` (k,) under ``weights``."""
        d2 = ((self.centres - query * self.scale) ** 2) @ self.standard_weights(weights)
        return np.argpartition(d2, self.nprobe - 1)[: self.nprobe]

    def cells_within(
        self, query: np.ndarray, weights: np.ndarray | None, d2: float, probed: np.ndarray
    ) -> np.ndarray:
        """Cells not in ``probed`` that may hold a code nearer than squared distance ``d2``
        (their box is nearer), nearest box first, at most ``max_cells`` with ``probed``."""
        q = query * self.scale
        outside = np.maximum(np.maximum(self.low - q, q - self.high), 0.0)  # (nlist, k)
        bound = (outside * outside) @ self.standard_weights(weights)  # (nlist,)
        bound[probed] = np.inf
        cells = np.flatnonzero(bound < d2)
        room = self.max_cells - len(probed)
        if len(cells) > room:
            cells = cells[np.argpartition(bound[cells], room - 1)[:room]] if room > 0 else cells[:0]
        return cells

    def members(self, cells: np.ndarray) -> np.ndarray:
        """Ids of every code in ``cells``."""
        if len(cells) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self.ids[self.offsets[c] : self.offsets[c + 1]] for c in cells])

    def candidates(self, query: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """Ids of every code in the first round's cells."""
        return self.members(self.first_cells(query, weights))


def cell_boxes(
    points: np.ndarray, ids: np.ndarray, offsets: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(nlist, k) least and greatest standardised code of each cell, read a block of cells at
    a time (memory: one block's codes, not a copy of all)."""
    nlist, k = len(offsets) - 1, points.shape[1]
    low = np.full((nlist, k), np.inf, dtype=np.float32)
    high = np.full((nlist, k), -np.inf, dtype=np.float32)
    start = 0
    while start < nlist:
        stop = int(np.searchsorted(offsets, offsets[start] + (1 << 20), side="right"))
        stop = min(max(stop - 1, start + 1), nlist)
        rows = ids[offsets[start] : offsets[stop]]
        order = np.argsort(rows)  # read in row order: sequential reads of a memory map
        block = np.empty((len(rows), k), dtype=np.float32)
        block[order] = np.take(points, rows[order], axis=0)
        block *= scale
        sizes = np.diff(offsets[start : stop + 1])
        full = np.flatnonzero(sizes) + start
        starts = (offsets[full] - offsets[start]).astype(np.int64)
        low[full] = np.minimum.reduceat(block, starts, axis=0)
        high[full] = np.maximum.reduceat(block, starts, axis=0)
        start = stop
    return low, high


def build_ivf(points: np.ndarray, params: IvfParams, seed: int = 0):
    """(faiss IndexIVFFlat, scale (k,)): the IVF over ``points`` (N, k) times ``scale`` (1 / each
    factor's spread); on faiss-gpu, trained and filled on the GPU."""
    import faiss

    k = points.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(k), k, params.nlist)
    index.cp.seed = seed
    rows = np.sort(np.random.default_rng(seed).choice(len(points), params.train_points, False))
    sample = np.asarray(points[rows], dtype=np.float32)
    scale = (1.0 / np.maximum(sample.std(axis=0), 1e-6)).astype(np.float32)
    work = faiss.index_cpu_to_all_gpus(index) if _gpus() else index
    work.train(sample * scale)
    for start in range(0, len(points), 1 << 20):  # chunks: no standardised copy of all codes
        work.add(np.asarray(points[start : start + (1 << 20)], dtype=np.float32) * scale)
    index = faiss.index_gpu_to_cpu(work) if work is not index else index
    index.nprobe = params.nprobe
    return index, scale


def _gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def codes_digest(points: np.ndarray) -> str:
    """sha256 of the codes' float32 bytes and shape (0.4 s per GB)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    digest = hashlib.sha256(repr(points.shape).encode())
    digest.update(memoryview(points).cast("B"))
    return digest.hexdigest()[:32]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def save_ann(index, scale: np.ndarray, points: np.ndarray, params: IvfParams, path: Path) -> dict:
    """Write the faiss file atomically; returns its metadata (kept in codes.npz)."""
    import faiss

    atomic_write(path, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)))
    return {
        "format": ANN_FORMAT,
        "faiss_version": faiss.__version__,
        "kind": "IVFFlat",
        "params": asdict(params),
        "scale": [float(s) for s in scale],
        "points": int(len(points)),
        "codes_digest": codes_digest(points),
        "file_bytes": int(path.stat().st_size),
        "file_digest": file_digest(path),
    }


def load_ann(path: Path, meta: dict | None, points: np.ndarray) -> IvfCandidates:
    """The saved index at ``path``, after checking it is the one ``meta`` describes and was
    built from ``points``; AnnFileError (naming the file) otherwise. Never rebuilds."""
    import faiss

    if meta is None:
        raise AnnFileError(f"{path}: the index has no approximate-search metadata (older version)")
    if not path.exists():
        raise AnnFileError(f"{path} is missing")
    if meta.get("format") != ANN_FORMAT or _minor(meta.get("faiss_version")) != _minor(
        faiss.__version__
    ):
        raise AnnFileError(
            f"{path} was built by format {meta.get('format')} / faiss {meta.get('faiss_version')}"
            f", this is format {ANN_FORMAT} / faiss {faiss.__version__}"
        )
    size = path.stat().st_size
    if size != meta["file_bytes"]:
        raise AnnFileError(
            f"{path} is truncated or altered ({size} bytes, {meta['file_bytes']} saved)"
        )
    if file_digest(path) != meta["file_digest"] or codes_digest(points) != meta["codes_digest"]:
        raise AnnFileError(f"{path} was built for other codes (another run or an older index)")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        raise AnnFileError(f"{path} is unreadable ({str(error).splitlines()[0]})") from None
    if index.ntotal != len(points) or index.d != points.shape[1]:
        raise AnnFileError(f"{path} holds {index.ntotal} codes of {index.d}-d, not {points.shape}")
    return IvfCandidates(index, meta["params"]["nprobe"], np.asarray(meta["scale"]), points)


def _minor(version: str | None) -> str:
    return ".".join(str(version).split(".")[:2])
