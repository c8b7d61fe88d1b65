"""Page load and switch times in a real browser, for ``python -m bench.latency`` (part
``cards``): the factor cards opened from a fresh page load and switched from one factor to
another, each timed up to the moment the page is idle with every image and chart drawn.

A time ends when the page *first* reached that state and then stayed in it for a quiet
second (Streamlit shows its running indicator only a moment after a run starts), so the
quiet second itself is not counted.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.browser.driver import IDLE_JS, RENDERED_JS, wait_idle

# Date.now() of the first moment the page was idle, rendered and showed ``marker`` (a CSS
# selector), once it has stayed so for ``quietMs``; false until then.
SETTLED_JS = (
    "([marker, quietMs]) => { const now = Date.now();"
    " const ok = (" + IDLE_JS + ")() && (" + RENDERED_JS + ")()"
    " && !!document.querySelector(marker);"
    " if (!ok) { window.__settledAt = null; return false; }"
    " if (window.__settledAt == null) window.__settledAt = now;"
    " return now - window.__settledAt >= quietMs ? window.__settledAt : false; }"
)


def settled_seconds(page, start: float, marker: str, timeout_ms: float = 120_000) -> float:
    """Seconds from ``start`` (time.time()) to the page first settling with ``marker`` shown."""
    page.evaluate("() => { window.__settledAt = null; }")
    handle = page.wait_for_function(
        SETTLED_JS, arg=[marker, 1000], timeout=timeout_ms, polling="raf"
    )
    return handle.json_value() / 1e3 - start


def open_page(page, server, run: Path, name: str, marker: str) -> float:
    """Seconds from asking for page ``name`` (a full page load) to it settled."""
    start = time.time()
    page.goto(server.page_url(name, run))
    return settled_seconds(page, start, marker)


def choose(page, key: str, option: str) -> None:
    """Open the selectbox with widget key ``key`` and click the option reading ``option``."""
    page.locator(f".st-key-{key} [role='combobox']").click()
    page.get_by_role("option", name=option, exact=True).click()


def cards_latency(page, server, run: Path, loads: int, switches: int) -> dict:
    """Factor cards, after Home has loaded the run: ``loads`` full page loads (on a server that
    has not shown the cards yet, the first computes the page's caches) and ``switches``
    factor changes, cycling through the factors (the first round computes each factor's
    minimal pairs), in seconds."""
    marker = ".st-key-cards_name_{} input"
    open_page(page, server, run, "", '[data-testid="stMetric"]')
    load_s = [open_page(page, server, run, "factor_cards", marker.format(0)) for _ in range(loads)]
    page.locator(".st-key-cards_factor [role='combobox']").click()
    labels = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")
    wait_idle(page, quiet_ms=300)
    switch_s = []
    for i in range(switches):
        j = (i + 1) % len(labels)
        start = time.time()
        choose(page, "cards_factor", labels[j])
        switch_s.append(settled_seconds(page, start, marker.format(j)))
    return {"load_s": load_s, "switch_s": switch_s, "factors": len(labels)}
