"""The review pages under AppTest: redundant latents on Home and the factor cards, the cards'
figure export, recipe search's honesty, the model report's informativeness and the empty
state of "Compare runs"."""

from __future__ import annotations

import re
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
    both = cards.cards_pdf(
        [cards.card_figure(card, rising, falling, paths, caption) for _ in range(2)], "t", caption
    )
    assert both.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page(?!s)", both)) == 2


# --------------------------------------------------------------------------- recipe search


def test_ordinals():
    from ivae.queries import ordinal

    cases = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th"}
    cases |= {21: "21st", 62: "62nd", 73: "73rd", 100: "100th", 111: "111th", 0: "0th"}
    assert {n: ordinal(n) for n in cases} == cases


def test_score_percentiles_against_known_pairs():
    from ivae.queries import calibration_rows, column_percentiles, percentile_of

    pairs = np.array([1.0, 2.0, 3.0, 4.0])
    assert percentile_of(pairs, [0.5, 2.0, 2.5, 9.0]).tolist() == [0.0, 50.0, 50.0, 100.0]
    columns = np.sort(np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]]), axis=0)
    assert column_percentiles(columns, np.array([1.5, 40.0])).tolist() == [50.0, 100.0]
    splits = np.array(["train", "val", "test", "train", "val"])
    assert calibration_rows(splits).tolist() == [1, 2, 4]
    assert calibration_rows(np.array(["train"] * 3)).tolist() == [0, 1, 2]
    assert len(calibration_rows(np.array(["val"] * 50), at_most=10)) == 10


def test_pair_scores_are_the_diagonal_of_the_models_score(tiny_run):
    import ivae
    from ivae.index import load_index
    from ivae.queries import pair_scores

    run = ivae.load_run(tiny_run)
    index = load_index(run)
    z, m, lv = index.z[:70], index.y_mean[:70], index.y_logvar[:70]
    full = run.score(z, m, lv)  # (70, 70)
    assert np.allclose(pair_scores(run, z, m, lv, batch=16), np.diagonal(full), atol=1e-5)


def test_words_known_and_unknown(tiny_run):
    import ivae
    from ivae.queries import read_words

    vocab = ivae.load_run(tiny_run).vocab
    reading = read_words(vocab, "Beef, spinach and blorf zanth")
    assert reading.tokens == ["beef", "spinach", "and", "blorf", "zanth"]
    assert reading.known[:2] == [True, True] and reading.unknown == ["and", "blorf", "zanth"]
    assert reading.level == "few"
    assert read_words(vocab, "blorf zanth quix").level == "none"
    recipe = "soup with beef. ingredients: water, salt, beef, mushrooms, soy. serve warm."
    assert read_words(vocab, recipe).level == "ok"


def image_captions(at: AppTest) -> list[str]:
    """Captions of every image grid of the page (st.image with a list)."""
    grids = [e for e in at.main if type(e).__name__ == "Image"]
    return [image.caption for grid in grids for image in grid.proto.imgs]


def search(run: Path, text: str) -> AppTest:
    at = app(run, "recipe_search")
    at.text_area(key="recipe_text").input(text).run()
    assert_ok(at)
    return at


def test_gibberish_gets_no_photos_and_a_plain_error(tiny_run):
    at = search(tiny_run, "blorf zanth quix mumble wibble")
    assert "knows none of these words" in at.error[0].value
    assert "0 of 5 known" in at.markdown[-1].value and "~~blorf~~" in at.markdown[-1].value
    assert not image_captions(at) and not at.dataframe


def test_a_real_recipe_is_read_ranked_among_recipe_priors_and_calibrated(tiny_run):
    import ivae
    from ivae.index import load_items

    run = ivae.load_run(tiny_run)
    text = str(load_items(run.data_dir())["text"].iat[3])
    at = search(tiny_run, text)
    assert not at.error and not at.warning
    table = at.dataframe[0].value
    assert table["mean among the data's recipes"].str.endswith("percentile").all()
    captions = image_captions(at)
    assert len(captions) == 12 and all("pct of real pairs" in c for c in captions)
    assert "among the scores of 48 real matching" in " ".join(c.value for c in at.caption)


def test_a_recipe_with_few_known_words_is_warned_about(tiny_run):
    at = search(tiny_run, "beef blorf zanth quix")
    assert "Only 1 of these 4 words" in at.warning[0].value
    assert len(image_captions(at)) == 12


# --------------------------------------------------------------------------- model report


def test_informativeness_known_answers():
    import pandas as pd

    from ivae import report

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(500, 2))
    z = np.column_stack([np.exp(truth[:, 0]), rng.normal(size=500)])  # monotone in factor 0
    labels = pd.DataFrame({"factor: a": truth[:, 0], "nuisance: b": truth[:, 1]})
    matrix = report.informativeness(z, labels, ["z1", "z2"])
    assert matrix.loc["factor: a", "z1"] == pytest.approx(1.0)
    assert matrix.loc["nuisance: b", "z1"] < 0.1 and matrix["z2"].max() < 0.15
    groups = np.repeat(["soup", "stew"], 250)
    split = np.column_stack([np.repeat([0.0, 1.0], 250), rng.normal(size=500)])
    eta = report.correlation_ratio(split, groups)
    assert eta[0] == pytest.approx(1.0) and eta[1] < 0.15
    cols = report.label_columns(pd.DataFrame({"factor.x": [1.0], "nuisance.y": [2.0], "t": [0]}))
    assert list(cols.columns) == ["factor: x", "nuisance: y"]


def chart_ids(at: AppTest) -> list[str]:
    return [e.proto.id for e in at.main if type(e).__name__ == "UnknownElement"]


def test_model_report_shows_informativeness_and_leakage(tiny_run):
    import ivae

    at = app(tiny_run, "model_report")
    assert_ok(at)
    charts = chart_ids(at)
    assert any("report_informativeness" in c for c in charts)
    assert any("|Spearman r| of each latent" in c.value for c in at.caption)
    assert any("rises with" in d.value.columns for d in at.dataframe)
    leakage = ivae.load_run(tiny_run).metrics.get("nuisance_leakage")
    assert leakage and any("report_leakage" in c for c in charts)


def test_model_report_without_labels_shows_words(tiny_run, tmp_path):
    import pandas as pd
    import torch

    import ivae
    from ivae.index import INDEX_FILE, model_digest, read_index, save_index

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = ivae.load_run(tiny_run).data_dir()
    unlabelled = tmp_path / "data"
    shutil.copytree(data, unlabelled, ignore=shutil.ignore_patterns(".cache"))
    items = pd.read_parquet(unlabelled / "items.parquet")
    items.drop(columns=[c for c in items if c.startswith(("factor.", "nuisance."))]).to_parquet(
        unlabelled / "items.parquet"
    )
    checkpoint = torch.load(run / "model.pt", weights_only=True)  # the run's data: its copy
    checkpoint["config"]["data"]["path"] = str(unlabelled)
    torch.save(checkpoint, run / "model.pt")
    index = read_index(run / INDEX_FILE)
    index.model_digest = model_digest(run)
    index.data_source = str(unlabelled)
    save_index(index, run / INDEX_FILE)
    at = app(run, "model_report")
    assert_ok(at)
    assert not any("report_informativeness" in c for c in chart_ids(at))
    assert any("The data has no true factors" in c.value for c in at.caption)
    words = next(d.value for d in at.dataframe if "rises with" in d.value.columns)
    assert len(words) == 3 and "beef" in " ".join(words["rises with"] + words["falls with"])


def test_compare_runs_with_one_run_says_how_to_add_another(tiny_run, monkeypatch):
    from explorer import ui

    monkeypatch.setattr(ui, "run_options", lambda: [str(tiny_run)])
    at = app(tiny_run, "model_report")
    assert_ok(at)
    text = " ".join(i.value for i in at.info)
    assert "only run here" in text and "ivae train --data" in text and "--model beta-vae" in text
    assert "report_compare_chart" not in str([e.proto for e in at.main])
