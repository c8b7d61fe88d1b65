"""Tokenizer and vocabulary for text queries (recipes, captions), and the token cache.

The vocabulary is built on the *train* split only and saved inside the run, so that a trained
model encodes new text exactly as it encoded its training data. Quantities matter for recipes
("2 1/2 cups stock" says how watery a dish is), so integers and fractions are kept as tokens.

Token ids are int32 (4 bytes, not 8: a vocabulary never nears 2^31 tokens). A data set's ids
are written once into a memory-mapped file (``cached_tokens``, beside the image cache), a
batch of texts at a time, so that no process holds every recipe's ids: 256 of them a recipe
are 1 KB, 0.8 GB at Recipe1M's 800k photos.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ivae.data.dataset import release
from ivae.io import atomic_write, remove_stale

PAD, UNK = "<pad>", "<unk>"
TOKEN_DTYPE = np.int32

# A fraction ("1/2"), a number ("400", "2.5"), or a word (letters, inner apostrophes/hyphens).
_TOKEN = re.compile(r"\d+/\d+|\d+(?:\.\d+)?|[a-z]+(?:['-][a-z]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercase word, number and fraction tokens; punctuation is dropped."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """A token <-> index table; index 0 is padding and 1 stands for unknown tokens."""

    def __init__(self, tokens: list[str]) -> None:
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {tokens[:2]}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 5000, min_count: int = 2) -> Vocab:
        """The ``max_size`` most frequent tokens seen at least ``min_count`` times.

        Ties are broken alphabetically so that the same texts always give the same vocabulary.
        """
        counts = Counter(token for text in texts for token in tokenize(text))
        frequent = [(-c, t) for t, c in counts.items() if c >= min_count]
        kept = [t for _, t in sorted(frequent)[: max(0, max_size - 2)]]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Iterable[str], max_len: int = 256) -> np.ndarray:
        """(N, max_len) int32 token ids, truncated to ``max_len`` and padded with 0."""
        texts = list(texts)
        out = np.zeros((len(texts), max_len), dtype=TOKEN_DTYPE)
        unk = self.index[UNK]
        for row, text in enumerate(texts):
            ids = [self.index.get(t, unk) for t in tokenize(text)[:max_len]]
            out[row, : len(ids)] = ids
        return out

    def digest(self) -> str:
        """A short hash of the tokens in order: which vocabulary a token cache was made with."""
        return hashlib.sha1("\n".join(self.tokens).encode()).hexdigest()[:12]

    def to_json(self) -> dict:
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, d: dict) -> Vocab:
        if not isinstance(d, dict) or not isinstance(d.get("tokens"), list):
            raise ValueError("a saved vocabulary must be a JSON object with a 'tokens' list")
        return cls(d["tokens"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"


# --------------------------------------------------------------------------- the token cache


def cached_tokens(
    path: Path, stamp: str, vocab: Vocab, max_len: int, batches: Callable[[], Iterable], n: int
) -> np.ndarray:
    """(n, L) int32 token ids of ``n`` texts, memory-mapped from ``path`` (``.npy``).

    L is the longest text's token count (at most ``max_len``, at least 1): the all-padding
    tail is dropped, as the text encoder pools over the tokens anyway. ``stamp`` says what
    the texts are (the items' hash); ``path.with_suffix(".json")`` records it with the
    vocabulary's digest, and a cache whose record differs is written again. ``batches()``
    yields the texts in order, a list at a time. Written into ``<path>.<pid>.partial`` a batch
    at a time (the written pages handed back after each), then renamed into place: processes
    that write it at once (torchrun's ranks) each write their own. Copy-on-write: the array
    is writable, the file never changes.
    """
    if n == 0:
        return np.zeros((0, 1), TOKEN_DTYPE)
    record = {"items": stamp, "vocab": vocab.digest(), "max_len": max_len, "n": n}
    found = _read_tokens(path, record)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f"{path.name}.*.partial", position=-2)  # killed writers
    wide = path.with_name(f"{path.name}.wide.{os.getpid()}.partial")
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        width = _encode_into(wide, vocab, max_len, batches, n)
        _narrow(wide, partial, width)
        partial.replace(path)
    finally:
        wide.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    text = json.dumps({**record, "width": width})
    atomic_write(path.with_suffix(".json"), lambda f: f.write(text.encode()))
    return np.load(path, mmap_mode="c")


def _read_tokens(path: Path, record: dict) -> np.ndarray | None:
    try:
        saved = json.loads(path.with_suffix(".json").read_text())
        if {k: saved.get(k) for k in record} != record:
            return None
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError):
        return None  # missing or damaged: written again
    ok = array.dtype == TOKEN_DTYPE and array.shape == (record["n"], saved.get("width"))
    return array if ok else None


def _encode_into(partial: Path, vocab: Vocab, max_len: int, batches, n: int) -> int:
    """Encode every batch into a (n, max_len) file; the longest text's token count."""
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=TOKEN_DTYPE, shape=(n, max_len))
    start = width = 0
    for texts in batches():
        ids = vocab.encode(texts, max_len)
        if start + len(ids) > n:
            raise ValueError(f"more than the {n} texts announced")
        out[start : start + len(ids)] = ids
        width = max(width, int((ids > 0).sum(1).max(initial=0)))
        start += len(ids)
        out.flush()
        release(out)
    if start != n:
        raise ValueError(f"{start} texts, {n} announced")
    del out
    return max(width, 1)


def _narrow(wide: Path, out: Path, width: int, chunk: int = 8192) -> None:
    """The (n, max_len) file ``wide`` as an (n, width) one at ``out``, ``chunk`` rows at a time
    (8 MB of ``wide`` at max_len 256; both maps released after each)."""
    source = np.load(wide, mmap_mode="r")
    if source.shape[1] == width:
        del source
        wide.replace(out)
        return
    narrow = np.lib.format.open_memmap(out, "w+", TOKEN_DTYPE, (len(source), width))
    for start in range(0, len(source), chunk):
        narrow[start : start + chunk] = source[start : start + chunk, :width]
        narrow.flush()
        release(narrow)
        release(source)
