"""The review pages under AppTest: redundant latents on Home and the factor cards, the cards'
figure export, recipe search's honesty, the model report's informativeness and the empty
state of "Compare runs"."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from tiny_run import make_tiny_run

HOME = str(Path(__file__).resolve().parent.parent / "explorer" / "Home.py")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def copied_run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run with its index rewritten so that latent 2 is a sign-flipped copy of
    latent 0 (as `ivae index` would write codes of a model that spent two latents on one)."""
    from ivae.index import INDEX_FILE, read_index, save_index

    run = tmp_path_factory.mktemp("copied") / "run"
    shutil.copytree(tiny_run, run)
    index = read_index(run / INDEX_FILE)
    z = np.array(index.z)
    rng = np.random.default_rng(0)
    z[:, 1] = rng.normal(size=len(z))  # independent of the others
    z[:, 2] = -z[:, 0] + 0.05 * z[:, 0].std() * rng.normal(size=len(z))
    index.z = z.astype(np.float32)
    save_index(index, run / INDEX_FILE)
    return run


def app(run_path: Path | str, page: str | None = None) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.session_state["run_path"] = str(run_path)
    if page:
        at.switch_page(f"../pages/{page}.py")
    return at.run()


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# --------------------------------------------------------------------------- redundancy


def test_home_names_the_copied_pair_and_counts_distinct_factors(copied_run):
    at = app(copied_run)
    assert_ok(at)
    assert metric(at, "Shared factors") == "~2 of 3"
    warning = at.warning[0].value
    assert "3 latents, ~2 distinct factors" in warning
    assert "factor 3 ~ -factor 1, r = -1.00" in warning or "factor 1 ~ -factor 3" in warning
    assert "factor 2" not in warning


def test_home_without_redundant_latents_says_so(tiny_run, tmp_path):
    from ivae.index import INDEX_FILE, read_index, save_index

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    index = read_index(run / INDEX_FILE)
    index.z = np.random.default_rng(1).normal(size=index.z.shape).astype(np.float32)
    save_index(index, run / INDEX_FILE)
    at = app(run)
    assert_ok(at)
    assert metric(at, "Shared factors") == "3"
    assert not at.warning
    assert any("3 latents, all distinct" in c.value for c in at.caption)


def test_factor_card_flags_a_redundant_latent_and_not_a_distinct_one(copied_run):
    at = app(copied_run, "factor_cards")
    assert_ok(at)
    assert "factor 1 ~ -factor 3" in at.warning[0].value
    at.selectbox(key="cards_factor").set_value(1).run()
    assert_ok(at)
    assert not at.warning
    assert any("This latent is distinct" in c.value for c in at.caption)


def test_card_figure_png_and_pdf_carry_the_card_and_its_provenance(tiny_run):
    import ivae
    from explorer import tables
    from ivae import cards, figures, redundancy
    from ivae.index import load_index, load_items

    run = ivae.load_run(tiny_run)
    index = load_index(run)
    items = load_items(run.data_dir(), index.ids)
    words = cards.word_associations(items["text"].tolist(), index.z)
    red = redundancy.redundancy(index.z)
    card = cards.factor_cards(
        run.factor_notes(), words, index.z, index.y_mean, tables.item_titles(items), red=red
    )[0]
    assert card["redundancy"]["closest_latent"] in run.factor_names
    rising, falling = cards.rising_falling(words, 0)
    paths = [[str(run.data_dir() / items["image"].iat[r]) for r in range(3)]] * 2
    caption = figures.provenance(run, "runs/tiny", index.model_digest)
    png = figures.figure_bytes(cards.card_figure(card, rising, falling, paths, caption), "png")
    pdf = figures.figure_bytes(cards.card_figure(card, rising, falling, paths, caption), "pdf")
    assert png.startswith(b"\x89PNG") and b"seed 0" in png  # the caption in the metadata
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf  # TrueType text: vector
    assert "runs/tiny".encode("utf-16-be") in pdf  # the caption in the metadata
