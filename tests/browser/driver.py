"""Driving the dashboard from outside: a Streamlit server on a loopback port, the system
Chromium through Playwright, and waits that mean "the page has finished rendering".

Used by the browser tests (this folder) and by the dashboard benchmarks
(``python -m bench.latency``, through ``bench/dashboard.py``). Playwright's own browser
download is not used: Chromium comes from the system (``/usr/bin/chromium`` or ``$CHROMIUM``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOME = REPO / "explorer" / "Home.py"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}
# url path -> the page's title (its h1); "" is the home page
PAGES = {
    "": "Factor Explorer",
    "studio": "Factor studio",
    "photo_reader": "Photo reader",
    "recipe_search": "Recipe search",
    "atlas": "Factor atlas",
    "factor_cards": "Factor cards",
    "model_report": "Model report",
}
# The studio's nearest-dish captions end in " · d=<distance>"; the first is the nearest.
RESULT_CAPTIONS = '[data-testid="stImageCaption"]:has-text("· d=")'

# True when the app is idle: no script running, no element left stale from the last run, no
# placeholder still waiting for its widget's code.
IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && !document.querySelector('[data-testid="stSpinner"]')
    && !!document.querySelector('[data-testid="stMain"] h1')"""
# Idle without a break for ``quietMs`` (window.__busySince: the last time it was not).
QUIET_JS = (
    "(quietMs) => { const now = performance.now(); const idle = (" + IDLE_JS + ")();"
    " if (!idle) { window.__busySince = now; return false; }"
    " return now - window.__busySince >= quietMs; }"
)
# Every image has loaded and every Plotly chart has drawn its SVG.
RENDERED_JS = """() => Array.from(document.images).every(i => i.complete)
    && Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        .every(c => c.querySelector('svg.main-svg'))"""
# The first nearest-dish caption differs from ``old`` and its image has loaded.
RESULT_CHANGED_JS = """(old) => {
    const caps = Array.from(document.querySelectorAll('[data-testid="stImageCaption"]'))
        .filter(c => c.innerText.includes('· d='));
    if (!caps.length || caps[0].innerText === old) return false;
    const img = caps[0].closest('[data-testid="stImage"]')?.querySelector('img')
        ?? caps[0].parentElement.querySelector('img');
    return !!img && img.complete && img.naturalWidth > 0;
}"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (asked of the kernel, so parallel runs do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running ``streamlit run explorer/Home.py`` on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def page_url(self, page: str = "", run: str | Path | None = None) -> str:
        query = f"?run={run}" if run else ""
        return f"{self.url}/{page}{query}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """Terminate the server (and wait for it); kill it when it does not stop in 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(
    log: Path, port: int | None = None, python: str = sys.executable, timeout: float = 120.0
) -> Server:
    """Start the dashboard on a free loopback port and wait for ``/_stcore/health``."""
    port = port or free_port()
    command = [
        python, "-m", "streamlit", "run", str(HOME),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    # Test and benchmark runs live under the temp folder (the tiny run, the million-dish run):
    # a run root of this server (docs/design.md, "Which runs the dashboard opens").
    roots = os.pathsep.join(
        p for p in (os.environ.get("IVAE_RUN_ROOTS"), tempfile.gettempdir()) if p
    )
    env = {**os.environ, "IVAE_RUN_ROOTS": roots}
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(process, port, log)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, timeout: float = 120.0) -> float:
    """Seconds until the server answers ``/_stcore/health`` with ``ok``."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {server.process.returncode}:\n" + server.log_tail()
            )
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise TimeoutError(f"streamlit was not healthy after {timeout:.0f} s:\n" + server.log_tail())


def launch_browser(playwright, **options):
    """Headless system Chromium; with Playwright's async API, an awaitable of it."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
    )


def wait_idle(page, timeout_ms: float = 120_000, quiet_ms: int = 1000) -> None:
    """Wait until the app has been idle for ``quiet_ms`` without a break: Streamlit shows its
    running indicator only a moment after a run starts, so one idle glance is not enough."""
    page.evaluate("() => { window.__busySince = performance.now(); }")
    page.wait_for_function(QUIET_JS, arg=quiet_ms, timeout=timeout_ms, polling=100)


def wait_rendered(page, timeout_ms: float = 120_000) -> None:
    """Idle, every image loaded and every chart drawn: what a screenshot should wait for."""
    wait_idle(page, timeout_ms)
    page.wait_for_function(RENDERED_JS, timeout=timeout_ms)


def exception_texts(page) -> list[str]:
    """The text of every exception box Streamlit shows (``stException``)."""
    return page.locator('[data-testid="stException"]').all_inner_texts()


def first_result(page) -> str:
    """The caption of the studio's nearest dish (``"<title> · d=<distance>"``)."""
    return page.locator(RESULT_CAPTIONS).first.inner_text()


def slider_input(page, key: str):
    """The keyboard-operable range input of the slider with widget key ``key``."""
    return page.locator(f".st-key-{key} input[type='range']")


def step_toward_farther_end(page, key: str) -> str:
    """``PageUp`` or ``PageDown``: a tenth of the slider's range toward its farther end, so
    the point always moves and never hits an end."""
    value, low, high = slider_input(page, key).evaluate("e => [+e.value, +e.min, +e.max]")
    return "PageUp" if high - value >= value - low else "PageDown"


def move_slider(page, key: str, press: str | None = None, timeout_ms: float = 60_000) -> float:
    """Press a key on a studio slider (default: a tenth of its range toward the farther end)
    and return the seconds until the nearest-dish result has changed and its image loaded."""
    old = first_result(page)
    thumb = slider_input(page, key)
    press = press or step_toward_farther_end(page, key)
    thumb.focus()
    start = time.perf_counter()
    page.keyboard.press(press)
    page.wait_for_function(RESULT_CHANGED_JS, arg=old, timeout=timeout_ms, polling="raf")
    return time.perf_counter() - start


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
