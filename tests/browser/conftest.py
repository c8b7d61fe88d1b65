"""A real Streamlit server and the system Chromium, shared by the browser tests.

The server runs ``explorer/Home.py`` on a free 127.0.0.1 port for the whole session; pages
are opened with ``?run=PATH`` (the dashboard's shared-link parameter) on
``assets/default-run`` when it is trained and indexed, else on the tiny run of
``tests/tiny_run.py``. ``$BROWSER_TEST_RUN`` picks another run. Screenshots of every page
are saved under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import dashboard  # noqa: E402

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
DEFAULT_RUN = REPO / "assets" / "default-run"


def _usable(run: Path) -> bool:
    return (run / "model.pt").is_file() and (run / "index" / "codes.npz").is_file()


@pytest.fixture(scope="session")
def run_path(tmp_path_factory) -> Path:
    """The run the pages open: $BROWSER_TEST_RUN, the default run, or a tiny one built now."""
    wanted = os.environ.get("BROWSER_TEST_RUN")
    if wanted:
        return Path(wanted).resolve()
    if _usable(DEFAULT_RUN):
        return DEFAULT_RUN
    from tiny_run import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("browser-run"))


@pytest.fixture(scope="session")
def server(run_path, tmp_path_factory):
    """``streamlit run explorer/Home.py`` on a free loopback port, stopped at the end."""
    if not Path(dashboard.CHROMIUM).exists():
        pytest.skip(f"no Chromium at {dashboard.CHROMIUM} (install it with `make browser-deps`)")
    for old in SCREENSHOTS.glob("FAILED-*.png"):  # from an earlier session: would mislead
        old.unlink()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    started = dashboard.start_server(log, timeout=180)
    yield started
    started.stop()
    if started.process.returncode not in (0, -15):
        print(started.log_tail())


@pytest.fixture(scope="session")
def browser(server, run_path):
    """Headless system Chromium. The home page is opened once first: on a fresh checkout the
    default run's kitchen data is regenerated there (minutes), before any test's clock."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = dashboard.launch_browser(playwright)
        context = chromium.new_context(viewport=dashboard.VIEWPORT)
        warm = context.new_page()
        warm.goto(server.page_url("", run_path))
        warm.get_by_text("Dishes indexed").wait_for(timeout=900_000)
        context.close()
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context (a new Streamlit session) per test."""
    context = browser.new_context(viewport=dashboard.VIEWPORT)
    context.set_default_timeout(120_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def open_page(page, server, run_path):
    """``open_page("studio")``: load a page on the test run and wait until it has rendered."""

    def load(name: str = ""):
        page.goto(server.page_url(name, run_path))
        expect_title(page, dashboard.PAGES[name])
        dashboard.wait_idle(page)
        return page

    return load


def expect_title(page, title: str, timeout_ms: float = 180_000) -> None:
    """Wait until the page's h1 reads ``title`` (the first launch may generate data)."""
    page.locator('[data-testid="stMain"] h1', has_text=title).first.wait_for(timeout=timeout_ms)


def screenshot(page, name: str, max_height: int = 4000) -> Path:
    """Save the whole page as test-artifacts/screenshots/<name>.png.

    Streamlit scrolls inside its main container, so the viewport is stretched to the
    content's height for the shot (up to ``max_height`` pixels) and restored after.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    viewport = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight ?? 0"
    )
    page.set_viewport_size(
        {"width": viewport["width"], "height": min(max(height, viewport["height"]), max_height)}
    )
    try:
        page.wait_for_timeout(300)  # images re-laid out at the new size
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(viewport)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing browser test, keep a screenshot and show the server's log tail."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    tab = item.funcargs.get("page")
    if tab is not None and not tab.is_closed():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"FAILED-{item.name}.png"), full_page=True)
    running = item.funcargs.get("server")
    if running is not None:
        report.sections.append(("streamlit log", running.log_tail()))
