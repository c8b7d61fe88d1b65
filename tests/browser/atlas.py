"""Driving the atlas in a real browser: its colour menus, a lasso and a box drawn with the
mouse, and the waits that say the map has been drawn. Used by tests/browser/test_atlas.py
and by ``python -m bench.latency`` (the atlas rows)."""

from __future__ import annotations

import time

from explorer.atlas import colour_groups
from tests.browser.driver import IDLE_JS

MAP = '[data-testid="stPlotlyChart"]'  # the first chart of the page is the map
# The map is drawn, the app idle, and the colour bar names ``name`` (any name when null).
DRAWN_JS = (
    "(name) => { const map = document.querySelector('" + MAP + "');"
    " if (!map || !map.querySelector('svg.main-svg') || !(" + IDLE_JS + ")()) return false;"
    " const titles = Array.from(map.querySelectorAll('.cbtitle text')).map(t => t.textContent);"
    " return name === null ? titles.length > 0 : titles.includes(name); }"
)
TWO_FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
# The points' bounding box on the page: [left, top, width, height] of the plot area.
PLOT_AREA_JS = (
    "() => { const r = document.querySelector('" + MAP + " .nsewdrag').getBoundingClientRect();"
    " return [r.left, r.top, r.width, r.height]; }"
)


def wait_drawn(page, name: str | None = None, timeout_ms: float = 120_000) -> None:
    page.wait_for_function(DRAWN_JS, arg=name, timeout=timeout_ms, polling="raf")


def colour_names(page) -> list[str]:
    """Every colour the map's menus offer, in their order (the figure's own menus)."""
    return page.evaluate(
        "(sel) => document.querySelector(sel + ' .js-plotly-plot').layout.updatemenus"
        ".flatMap(m => m.buttons.slice(1).map(b => b.label))",
        MAP,
    )


def open_colour(page, name: str):
    """Open the menu holding colour ``name``; returns its entry, ready to click."""
    groups = colour_groups(colour_names(page))
    menu = next(i for i, names in enumerate(groups.values()) if name in names)
    page.locator(MAP).first.locator(".updatemenu-header-group").nth(menu).click()
    entries = page.locator(MAP).first.locator(".updatemenu-dropdown-button")
    texts = [entries.nth(i).text_content().strip() for i in range(entries.count())]
    return entries.nth(texts.index(name))


def recolour(page, name: str, timeout_ms: float = 120_000) -> float:
    """Choose colour ``name`` in the map's menus; seconds until the map's colour bar names it,
    the app is idle and two animation frames have been painted (the points' new colours)."""
    entry = open_colour(page, name)
    start = time.perf_counter()
    entry.click()
    wait_drawn(page, name, timeout_ms)
    page.evaluate(TWO_FRAMES_JS)
    return time.perf_counter() - start


def drag(page, select: str, path: list[tuple[float, float]]) -> None:
    """Draw with the ``select`` tool ("lasso" or "select", Plotly's box) along ``path``, in
    fractions of the plot area (0, 0 top left)."""
    page.locator(MAP).first.hover()
    page.locator(f'{MAP} .modebar-btn[data-val="{select}"]').first.click()
    left, top, width, height = page.evaluate(PLOT_AREA_JS)
    points = [(left + fx * width, top + fy * height) for fx, fy in path]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def draw_lasso(page) -> None:
    """A lasso around the middle of the map."""
    drag(page, "lasso", [(0.3, 0.3), (0.7, 0.25), (0.75, 0.7), (0.35, 0.75), (0.3, 0.3)])


def draw_box(page) -> None:
    """A box over the left half of the map."""
    drag(page, "select", [(0.05, 0.05), (0.5, 0.95)])
