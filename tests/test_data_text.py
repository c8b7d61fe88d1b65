"""Tokenizer and vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ivae.data.text import Vocab, tokenize


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Add 1 1/2 cups Stock.", ["add", "1", "1/2", "cups", "stock"]),
        ("Bird's-eye chillies, sliced", ["bird's-eye", "chillies", "sliced"]),
        ("2.5 tbsp soy sauce", ["2.5", "tbsp", "soy", "sauce"]),
        ("- 400 g beef\n1. Brown it", ["400", "g", "beef", "1", "brown", "it"]),
        ("", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


TEXTS = ["a thin brothy soup", "a thick soup", "a thin stew", "rare word", "soup soup"]


def test_build_keeps_frequent_tokens_after_pad_and_unk():
    vocab = Vocab.build(TEXTS, min_count=2)
    assert vocab.tokens[:2] == ["<pad>", "<unk>"]
    assert vocab.tokens[2:] == ["soup", "a", "thin"]  # by count, then alphabetically
    assert len(vocab) == 5


def test_max_size_counts_the_special_tokens():
    assert len(Vocab.build(TEXTS, max_size=3, min_count=1)) == 3


def test_encode_pads_truncates_and_marks_unknowns():
    vocab = Vocab.build(TEXTS, min_count=2)
    ids = vocab.encode(["a thin soup", "rare soup", "soup " * 10], max_len=4)
    assert ids.dtype == np.int32 and ids.shape == (3, 4)
    assert ids[0].tolist() == [3, 4, 2, 0]
    assert ids[1].tolist() == [1, 2, 0, 0]
    assert ids[2].tolist() == [2, 2, 2, 2]


def test_json_round_trip():
    vocab = Vocab.build(TEXTS, min_count=1)
    again = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and again.tokens == vocab.tokens
    assert (again.encode(TEXTS) == vocab.encode(TEXTS)).all()


@pytest.mark.parametrize("bad", [{}, {"tokens": "soup"}, {"tokens": ["soup", "<pad>"]}, []])
def test_from_json_rejects_malformed_input(bad):
    with pytest.raises(ValueError):
        Vocab.from_json(bad)
