"""The atlas in a real browser: a lasso and a box drawn with the mouse select dishes, and the
selection's dishes and histograms appear without an exception; the chart's menus recolour
the map by a nuisance and by dish type."""

from __future__ import annotations

import re

import pytest

from tests.browser import atlas, driver
from tests.browser.driver import screenshot

pytestmark = pytest.mark.browser

HEADING = re.compile(r"^([\d,]+) selected dishes$")


def assert_no_exception(page) -> None:
    shown = driver.exception_texts(page)
    assert not shown, f"the page shows an exception: {shown}"


def selected_count(page) -> int:
    """Wait for the selection's heading; the number of dishes it names."""
    heading = page.get_by_role("heading").filter(has_text=HEADING).first
    heading.wait_for()
    driver.wait_idle(page)
    return int(HEADING.match(heading.inner_text().strip()).group(1).replace(",", ""))


def histogram_titles(page) -> list[str]:
    """The panel titles of the selection's small multiples (the page's second chart)."""
    chart = page.locator('[data-testid="stPlotlyChart"]').nth(1)
    chart.locator("svg.main-svg").first.wait_for()
    return chart.locator(".annotation-text").all_text_contents()


def test_lasso_and_box_select_dishes(open_page):
    page = open_page("atlas")
    atlas.wait_drawn(page)
    names = atlas.colour_names(page)
    assert page.get_by_text("Draw a lasso or a box on the map").is_visible()

    colour = "dish type" if "dish type" in names else names[-1]
    atlas.recolour(page, colour)
    atlas.draw_lasso(page)
    lassoed = selected_count(page)
    assert lassoed > 0
    assert_no_exception(page)
    bar = page.locator(atlas.MAP).first.locator(".cbtitle text").all_text_contents()
    assert bar == [colour], "the map keeps its colour through the selection's rerun"
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert 0 < len(captions) <= 12, "the selected dishes, with their titles"
    titles = histogram_titles(page)
    assert titles == names, "one histogram per factor, true factor, nuisance and dish type"
    screenshot(page, "atlas-lasso")

    atlas.draw_box(page)
    page.wait_for_function(
        "(old) => Array.from(document.querySelectorAll('h3')).some(h => /selected dishes/"
        ".test(h.innerText) && !h.innerText.startsWith(old + ' '))",
        arg=f"{lassoed:,}",
    )
    boxed = selected_count(page)
    assert boxed > 0 and boxed != lassoed
    assert_no_exception(page)
    screenshot(page, "atlas-box")


def test_the_chart_menus_recolour_the_map(open_page):
    page = open_page("atlas")
    atlas.wait_drawn(page)
    names = atlas.colour_names(page)
    chosen = [n for n in names if n.startswith("nuisance ")][:1] + ["dish type"]
    for name in [n for n in chosen if n in names] or names[1:2]:
        assert atlas.recolour(page, name) < 60
        assert_no_exception(page)
