"""The studio in a real browser: the all-factors grid, click-to-start on retrieved dishes,
and the photo reader's hand-off of a photo and of a dish to the studio."""

from __future__ import annotations

import re
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from tests.browser import driver
from tests.browser.driver import expect_title, screenshot

pytestmark = pytest.mark.browser

GRID_IMAGES = '.st-key-pick-{} [data-testid="stImageContainer"]'


def query_param(page, name: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).get(name, [""])[0]


def assert_no_exception(page) -> None:
    shown = driver.exception_texts(page)
    assert not shown, f"the page shows an exception: {shown}"


def images(page, grid: str):
    return page.locator(GRID_IMAGES.format(grid))


def start_caption(page) -> str:
    return page.locator('[data-testid="stImageCaption"]:has-text("start: ")').first.inner_text()


def shown_value(cell) -> float:
    text = cell.locator("[data-testid='stImageCaption']").inner_text()
    return float(re.search(r"shown (-?[\d.]+)", text).group(1))


def photo(path, colour=(70, 170, 60)):
    yy, xx = np.mgrid[:240, :320]
    pixels = np.empty((240, 320, 3), dtype=np.uint8)
    pixels[:] = (150, 110, 80)
    pixels[(yy - 120) ** 2 + (xx - 160) ** 2 < 80**2] = colour
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def click_starts_the_studio(page, image, title: str) -> None:
    """Click a dish's image on any page: the studio opens, started from that dish."""
    image.locator("img").click()
    expect_title(page, "Factor studio")
    driver.wait_idle(page)
    assert start_caption(page) == f"start: {title}"
    assert_no_exception(page)


def test_the_all_factors_grid(open_page):
    page = open_page("studio")
    k = len(query_param(page, "z").split(","))
    page.locator(".st-key-studio_grid label").click()
    images(page, f"grid{k - 1}").first.wait_for()
    driver.wait_rendered(page)
    steps = images(page, "strip").count()
    assert steps == 7
    for j in range(k):
        assert images(page, f"grid{j}").count() == steps, f"factor {j + 1}: one dish per step"
    captions = page.locator(".st-key-pick-grid0 [data-testid='stImageCaption']").all_inner_texts()
    assert all(re.match(r"asked -?[\d.]+ · shown -?[\d.]+ · distance [\d.]+", c) for c in captions)
    assert page.locator(".st-key-studio_grid_pdf button").is_visible()
    assert_no_exception(page)
    screenshot(page, "studio-grid")


def test_clicking_a_retrieved_dish_starts_there(open_page):
    page = open_page("studio")
    before = query_param(page, "dish")
    third = images(page, "results").nth(2)
    title = third.locator("[data-testid='stImageCaption']").inner_text().rsplit(" · d=", 1)[0]
    third.locator("img").click()
    page.wait_for_function(
        "(old) => new URLSearchParams(location.search).get('dish') !== old", arg=before
    )
    driver.wait_idle(page)
    assert start_caption(page) == f"start: {title}"
    first = page.locator(driver.RESULT_CAPTIONS).first.inner_text()
    assert first.startswith(title) and first.endswith("d=0.00"), "the start is its own nearest"

    # a strip cell starts there too: the end whose dish is not the start (its own value of
    # the traversed factor, 0 here, differs from the start's)
    start_value = float(query_param(page, "z").split(",")[0])
    ends = [images(page, "strip").first, images(page, "strip").last]
    step = max(ends, key=lambda cell: abs(shown_value(cell) - start_value))
    strip_title = step.locator("[data-testid='stImageCaption']").inner_text().split(" · ")[-1]
    dish = query_param(page, "dish")
    step.locator("img").click()
    page.wait_for_function(
        "(old) => new URLSearchParams(location.search).get('dish') !== old", arg=dish
    )
    driver.wait_idle(page)
    assert start_caption(page) == f"start: {strip_title}"
    assert_no_exception(page)


def read_factors(run_path, path) -> np.ndarray:
    """The photo's factor values as ``ivae read-photo`` reads them (the reader's own path)."""
    import ivae
    from ivae.read_photo import PhotoReader, open_photo

    reader = PhotoReader.for_run(ivae.load_run(run_path), require_check=False)
    return reader.read(open_photo(path)).z


def test_the_photo_reader_hands_over_a_photo_and_a_dish(open_page, run_path, tmp_path):
    page = open_page("photo_reader")
    name = "pea-soup.jpg"
    page.locator(".st-key-reader_upload input[type='file']").set_input_files(
        str(photo(tmp_path / name))
    )
    page.locator(".st-key-reader_to_studio button").first.wait_for()
    driver.wait_idle(page)
    page.locator(".st-key-reader_to_studio button").first.click()
    expect_title(page, "Factor studio")
    driver.wait_idle(page)
    assert page.get_by_text(f"Start: the photo {name}.").is_visible()
    assert query_param(page, "dish") == ""
    z = [float(v) for v in query_param(page, "z").split(",")]  # 4 significant digits
    assert z == pytest.approx(read_factors(run_path, tmp_path / name), rel=1e-3, abs=1e-3)
    assert_no_exception(page)
    screenshot(page, "studio-from-photo")

    # the reader again: a retrieved dish there starts the studio too
    page.locator('[data-testid="stSidebarNav"] a[href$="/photo_reader"]').click()
    expect_title(page, "Photo reader")
    page.locator(".st-key-reader_upload input[type='file']").set_input_files(
        str(photo(tmp_path / name))
    )
    near = images(page, "reader_near").nth(1)
    near.wait_for()
    driver.wait_idle(page)
    title = near.locator("[data-testid='stImageCaption']").inner_text().rsplit(" · d=", 1)[0]
    click_starts_the_studio(page, near, title)


def test_a_photo_found_by_recipe_search_starts_the_studio(open_page):
    page = open_page("recipe_search")
    page.locator(".st-key-recipe_text textarea").fill("beef soup with chilli and spinach")
    page.keyboard.press("Control+Enter")
    first = images(page, "recipe_photos").first
    first.wait_for()
    driver.wait_idle(page)
    title = first.locator("[data-testid='stImageCaption']").inner_text().rsplit(" · score", 1)[0]
    click_starts_the_studio(page, first, title)


def test_clicking_a_dish_on_the_factor_cards_starts_the_studio_there(open_page):
    page = open_page("factor_cards")
    first = images(page, "cards_low").first
    title = first.locator("[data-testid='stImageCaption']").inner_text()
    click_starts_the_studio(page, first, title)
