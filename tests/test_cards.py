"""Factor cards (ivae.cards) and figure export (ivae.figures), with known answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
from PIL import Image

from ivae import cards
from ivae.figures import contact_sheet


def test_every_word_table_reads_the_same_words():
    from ivae.traversal import RECIPE_WORDS
    from ivae.words import STOP_WORDS, text_words

    text = "Simmer 2 cups of the Broth with peas; add an egg (or two)."
    assert text_words(text) == {"simmer", "cups", "broth", "peas", "add", "egg", "two"}
    assert text_words(text, STOP_WORDS | RECIPE_WORDS) == {"simmer", "broth", "peas", "egg", "two"}


def test_word_associations_find_the_driving_word():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, 400)
    texts = [("chilli " if v > 0.5 else "") + "rice water salt" for v in values]
    table = cards.word_associations(texts, values)
    assert "salt" not in set(table["word"])  # in every recipe: uninformative
    rising, falling = cards.rising_falling(table, 0, top=1)
    assert rising["word"].iat[0] == "chilli" and rising["correlation"].iat[0] > 0.8
    assert cards.rising_falling(table, 5)[0].empty


def test_contact_sheet_and_card_export(tmp_path):
    paths = []
    for i, colour in enumerate(["red", "green"]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (20, 20), colour).save(paths[-1])
    sheet = Image.open(io.BytesIO(contact_sheet(paths, ["a\nb", "c"], cell=50)))
    assert sheet.format == "PNG" and sheet.size == (100, 84)
    assert sheet.getpixel((25, 25)) == (255, 0, 0)
    table = pd.DataFrame({"word": ["chilli"]})
    card = cards.factor_card("heat", "", table, table.iloc[:0], ["mild"], ["hot"], 0.8123)
    text = cards.card_markdown(card)
    assert "## heat" in text and "chilli" in text and "0.81" in text
    assert json.loads(json.dumps(card))["image_recipe_agreement"] == 0.8123


def test_factor_cards_one_per_factor_with_words_poles_and_agreement():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 2))
    texts = [("chilli " if v > 0 else "mild ") + "rice water" for v in z[:, 0]]
    words = cards.word_associations(texts, z)
    titles = np.array([f"dish {i}" for i in range(len(z))])
    y_mean = np.stack([z[:, 0], rng.standard_normal(len(z))], axis=1)
    notes = {
        "factors": [
            {"index": 0, "name": "heat", "notes": "chilli", "sign": 1},
            {"index": 1, "name": "factor 2", "notes": "", "sign": 1},
        ]
    }
    made = cards.factor_cards(notes, words, z, y_mean, titles, pole_size=2)
    assert [c["name"] for c in made] == ["heat", "factor 2"]
    assert made[0]["rising_words"][0] == "chilli" and made[0]["falling_words"][0] == "mild"
    assert made[0]["high_pole"][0] == f"dish {np.argmax(z[:, 0])}"
    assert made[0]["low_pole"] == [f"dish {i}" for i in np.argsort(z[:, 0])[:2]]
    assert made[0]["image_recipe_agreement"] == 1.0
    assert abs(made[1]["image_recipe_agreement"]) < 0.2
