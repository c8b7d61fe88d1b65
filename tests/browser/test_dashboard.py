"""The dashboard end to end: a real server, a real browser, the run's real dishes.

Each test fails when its feature is broken: the studio's results must change when a slider
moves, an uploaded photo must be read into one value per factor, a bad upload must give
its message and leave the app working, and no page may show an exception.
"""

from __future__ import annotations

import re
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from tests.browser import driver
from tests.browser.driver import expect_title, screenshot

pytestmark = pytest.mark.browser

SIDEBAR_LINK = '[data-testid="stSidebarNav"] a[href$="/{}"]'
ERROR = '[data-testid="stAlertContentError"]'
PERCENTILE = re.compile(r"this photo is at the (\d+)(?:st|nd|rd|th) percentile")


def food_photo(path, hue: tuple[int, int, int], size=(640, 480)):
    """A plate with a bowl of food on a table, saved as a JPEG."""
    width, height = size
    yy, xx = np.mgrid[:height, :width]
    image = np.empty((height, width, 3), dtype=float)
    image[:] = (150, 110, 80)  # the table
    plate = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (0.45 * height) ** 2
    bowl = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (0.32 * height) ** 2
    image[plate] = (240, 236, 228)
    image[bowl] = hue
    noise = np.random.default_rng(0).normal(0, 6, image.shape)
    pixels = np.clip(image + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def assert_no_exception(page) -> None:
    shown = driver.exception_texts(page)
    assert not shown, f"the page shows an exception: {shown}"


def result_captions(page) -> list[str]:
    return page.locator(driver.RESULT_CAPTIONS).all_inner_texts()


def query_param(page, name: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).get(name, [""])[0]


def upload(page, path) -> None:
    page.locator(".st-key-reader_upload input[type='file']").set_input_files(str(path))


def read_percentiles(page, photo_name: str) -> list[int]:
    """Upload-and-read: wait for the photo's caption and every factor's percentile."""
    page.get_by_text(re.compile(re.escape(photo_name) + r" \(\d+x\d+\)")).wait_for()
    driver.wait_idle(page)
    labels = page.locator('[data-testid="stExpander"] summary').all_inner_texts()
    return [int(m.group(1)) for m in map(PERCENTILE.search, labels) if m]


def test_home_page_loads(open_page):
    page = open_page("")
    assert page.get_by_text("Shared factors").is_visible()
    assert page.get_by_text("Dishes indexed").is_visible()
    links = page.locator('[data-testid="stMain"] [data-testid="stPageLink"]')
    assert links.count() == len(driver.PAGES) - 1, "a link to every page"
    assert_no_exception(page)
    assert page.locator(ERROR).count() == 0, page.locator(ERROR).all_inner_texts()
    screenshot(page, "home")


def test_slider_changes_the_nearest_dishes(open_page):
    page = open_page("studio")
    page.locator(driver.RESULT_CAPTIONS).nth(7).wait_for()
    before = result_captions(page)
    assert len(before) == 8, before
    z_before = query_param(page, "z")

    seconds = driver.move_slider(page, "studio_z0")  # a tenth of its range
    driver.wait_idle(page)
    after = result_captions(page)
    assert after != before, "moving a factor slider must change the nearest dishes"
    assert len(after) == 8
    assert query_param(page, "z").split(",")[0] != z_before.split(",")[0], "the URL keeps the point"
    assert page.get_by_text("you moved").is_visible()
    assert_no_exception(page)
    screenshot(page, "studio-moved")

    driver.move_slider(page, "studio_z0")  # and a tenth further
    driver.wait_idle(page)
    assert result_captions(page) != after
    assert_no_exception(page)
    assert seconds < 60


def test_every_slider_reaches_both_ends(open_page):
    """End / Home (or a drag to the end of the track) must put the point at the range's
    end, as the URL and the slider label show."""
    page = open_page("studio")
    k = page.locator("[data-testid='stSlider'] input[type='range']").count() - 1  # - "Steps"
    for j in range(k):
        thumb = driver.slider_input(page, f"studio_z{j}")
        low, high = thumb.evaluate("e => [+e.min, +e.max]")
        for press, end in (("End", high), ("Home", low)):
            thumb.focus()
            page.keyboard.press(press)
            page.wait_for_timeout(500)  # the rerun starts
            driver.wait_idle(page)
            point = [float(v) for v in query_param(page, "z").split(",")]
            assert point[j] == pytest.approx(end, rel=1e-3, abs=1e-3), (
                f"factor {j + 1}: {press} shows {thumb.evaluate('e => e.value')} but the "
                f"point is {point[j]}, not {end}"
            )
    assert_no_exception(page)


def test_photo_upload_reads_its_factors(open_page, tmp_path):
    page = open_page("photo_reader")
    red = food_photo(tmp_path / "tomato-soup.jpg", (200, 60, 30))
    upload(page, red)
    red_read = read_percentiles(page, "tomato-soup.jpg")
    k = page.locator('[data-testid="stExpander"]').count()
    assert k >= 1 and len(red_read) == k, "one percentile per factor"
    assert all(0 <= p <= 100 for p in red_read)
    assert page.get_by_text("Standardised distance to the nearest real dish").is_visible()
    assert len(result_captions(page)) == 8, "the nearest real dishes are shown"
    assert page.locator(ERROR).count() == 0, page.locator(ERROR).all_inner_texts()
    assert_no_exception(page)
    screenshot(page, "photo_reader-upload")

    green = food_photo(tmp_path / "pea-soup.jpg", (70, 170, 60))
    upload(page, green)
    green_read = read_percentiles(page, "pea-soup.jpg")
    assert len(green_read) == k
    assert green_read != red_read, "a different photo must read differently"


def test_bad_upload_gives_a_message_and_the_app_keeps_working(open_page, tmp_path):
    page = open_page("photo_reader")
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a photo at all\n" * 40)
    upload(page, bad)
    message = page.locator(ERROR).first
    message.wait_for()
    assert "not an image" in message.inner_text()
    assert "holiday.jpg" in message.inner_text()
    driver.wait_idle(page)
    assert_no_exception(page)
    screenshot(page, "photo_reader-bad-upload")

    upload(page, food_photo(tmp_path / "good.jpg", (180, 120, 40)))  # the same session
    assert len(read_percentiles(page, "good.jpg")) >= 1
    assert page.locator(ERROR).count() == 0
    page.locator(SIDEBAR_LINK.format("studio")).click()
    expect_title(page, "Factor studio")
    driver.wait_idle(page)
    assert len(result_captions(page)) == 8
    assert_no_exception(page)


def test_every_page_switches_without_an_exception(open_page):
    page = open_page("")
    for name, title in [*list(driver.PAGES.items())[1:], ("", "Factor Explorer")]:
        page.locator(SIDEBAR_LINK.format(name)).click()
        expect_title(page, title)
        driver.wait_rendered(page)
        assert_no_exception(page)
        errors = page.locator(ERROR).all_inner_texts()
        assert not errors, f"{title}: {errors}"
        if name:
            screenshot(page, name)
