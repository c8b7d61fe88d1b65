"""A real Streamlit server and the system Chromium, shared by the browser tests.

The server runs ``explorer/Home.py`` on a free 127.0.0.1 port for the whole session; pages
are opened with ``?run=PATH`` (the dashboard's shared-link parameter) on
``assets/default-run`` when it is trained and indexed, else on the tiny run of
``tests/tiny_run.py``. ``$BROWSER_TEST_RUN`` picks another run. Screenshots of every page
are saved under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import driver
from tests.browser.driver import SCREENSHOTS, expect_title

DEFAULT_RUN = driver.REPO / "assets" / "default-run"


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
    if not Path(driver.CHROMIUM).exists():
        pytest.skip(f"no Chromium at {driver.CHROMIUM} (install it with `make browser-deps`)")
    for old in SCREENSHOTS.glob("FAILED-*.png"):  # from an earlier session: would mislead
        old.unlink()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    started = driver.start_server(log, timeout=180)
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
        chromium = driver.launch_browser(playwright)
        context = chromium.new_context(viewport=driver.VIEWPORT)
        warm = context.new_page()
        warm.goto(server.page_url("", run_path))
        warm.get_by_text("Dishes indexed").wait_for(timeout=900_000)
        context.close()
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context (a new Streamlit session) per test."""
    context = browser.new_context(viewport=driver.VIEWPORT)
    context.set_default_timeout(120_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def open_page(page, server, run_path):
    """``open_page("studio")``: load a page on the test run and wait until it has rendered."""

    def load(name: str = ""):
        page.goto(server.page_url(name, run_path))
        expect_title(page, driver.PAGES[name])
        driver.wait_idle(page)
        return page

    return load


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
