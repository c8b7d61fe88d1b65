"""Tokenizer and vocabulary for text queries (recipes, captions).

The vocabulary is built on the *train* split only and saved inside the run, so that a trained
model encodes new text exactly as it encoded its training data. Quantities matter for recipes
("2 1/2 cups stock" says how watery a dish is), so integers and fractions are kept as tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"

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
        """(N, max_len) int64 token ids, truncated to ``max_len`` and padded with 0."""
        texts = list(texts)
        out = np.zeros((len(texts), max_len), dtype=np.int64)
        unk = self.index[UNK]
        for row, text in enumerate(texts):
            ids = [self.index.get(t, unk) for t in tokenize(text)[:max_len]]
            out[row, : len(ids)] = ids
        return out

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
