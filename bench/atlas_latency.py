"""The atlas's load and recolour times in a real browser, for ``python -m bench.latency``
(part ``atlas``), on the page's own waits (bench/page_latency.py, tests/browser/atlas.py):

- a page load after Home in the same tab (the first visit computes the page's caches), each
  timed to the first moment the map's colour bar is drawn and the app idle, images loaded
  and every chart drawn, held for a quiet second that is not counted;
- the same from a new browser context (nothing cached: Streamlit's and Plotly's scripts
  downloaded and compiled again);
- a recolour from the chart's menus, from the click on a colour to the map's colour bar
  naming it, the app idle and two animation frames painted; every colour once, in turn.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.page_latency import open_page, settled_seconds
from tests.browser import atlas
from tests.browser.driver import VIEWPORT

DRAWN = '[data-testid="stPlotlyChart"] .cbtitle'  # the map's colour bar: the map is drawn
HOME_SHOWN = '[data-testid="stMetric"]'


def fresh_load(browser, server, run: Path) -> float:
    """Seconds from asking for the atlas in a new browser context to the map settled."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        start = time.time()
        page.goto(server.page_url("atlas", run))
        return settled_seconds(page, start, DRAWN)
    finally:
        context.close()


def atlas_latency(browser, page, server, run: Path, loads: int, fresh: int) -> dict:
    """``loads`` atlas loads after Home in ``page`` (the first on a server that has not shown
    the atlas), ``fresh`` loads in new contexts, then one recolour to every colour in turn."""
    open_page(page, server, run, "", HOME_SHOWN)
    load_s = [open_page(page, server, run, "atlas", DRAWN) for _ in range(loads)]
    names = atlas.colour_names(page)
    points = page.evaluate(
        "(sel) => document.querySelector(sel + ' .js-plotly-plot')._fullData.at(-1)._length",
        atlas.MAP,
    )
    recolour_s = [atlas.recolour(page, name) for name in [*names[1:], names[0]]]
    fresh_s = [fresh_load(browser, server, run) for _ in range(fresh)]
    return {
        "load_s": load_s, "fresh_s": fresh_s, "recolour_s": recolour_s,
        "colours": len(names), "points": points,
    }  # fmt: skip
