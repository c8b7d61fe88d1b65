"""The review pages in a real browser: no Deploy button, redundant latents named on Home and
the cards, factor cards that load and switch, and recipe search that does not dress up
gibberish as a match."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.page_latency import cards_latency
from tests.browser import driver
from tests.browser.driver import screenshot

pytestmark = pytest.mark.browser

ERROR = '[data-testid="stAlertContentError"]'
GRID_CAPTIONS = '[data-testid="stImageCaption"]'


def assert_no_exception(page) -> None:
    shown = driver.exception_texts(page)
    assert not shown, f"the page shows an exception: {shown}"


def test_home_has_a_viewer_toolbar_and_an_honest_factor_count(open_page):
    page = open_page("")
    assert page.get_by_text("Shared factors").is_visible()
    assert page.get_by_role("button", name="Deploy").count() == 0, "no Deploy button"
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "latents, " in text and ("distinct factors" in text or "all distinct" in text)
    assert_no_exception(page)


def test_factor_cards_load_and_switch_with_their_redundancy(page, server, run_path):
    timings = cards_latency(page, server, run_path, loads=1, switches=2)
    assert len(timings["switch_s"]) == 2 and timings["factors"] >= 2
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "predictable from the other latents" in text
    assert_no_exception(page)
    screenshot(page, "factor-cards")
    for label, magic in (("This card (PNG)", b"\x89PNG"), ("This card (PDF)", b"%PDF")):
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name=label).click()
        data = Path(download.value.path()).read_bytes()
        assert data.startswith(magic) and len(data) > 10_000, label


def test_recipe_search_refuses_gibberish_and_calibrates_a_real_recipe(open_page):
    page = open_page("recipe_search")
    box = page.locator(".st-key-recipe_text textarea")
    box.fill("blorf zanth quix mumble wibble frotz")
    box.press("Control+Enter")
    page.locator(ERROR).first.wait_for()
    driver.wait_idle(page)
    assert "knows none of these words" in page.locator(ERROR).first.inner_text()
    assert page.locator(GRID_CAPTIONS).count() == 0, "no photos for gibberish"

    example = page.locator(".st-key-recipe_text textarea").get_attribute("placeholder")
    box.fill(example.removeprefix("e.g. "))  # the first recipe of the data (its start)
    box.press("Control+Enter")
    page.get_by_text("pct of real pairs").first.wait_for()
    driver.wait_idle(page)
    captions = page.locator(GRID_CAPTIONS).all_inner_texts()
    assert len(captions) == 12 and all("pct of real pairs" in c for c in captions)
    assert page.locator(ERROR).count() == 0
    assert_no_exception(page)
    screenshot(page, "recipe-search")
