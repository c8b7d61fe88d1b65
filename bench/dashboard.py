"""Driving the dashboard from outside: a Streamlit server on a loopback port, the system
Chromium through Playwright, and waits that mean "the page has finished rendering".

Shared by the browser tests (tests/browser/) and the latency benchmark (bench/latency.py).
Playwright's own browser download is not used: Chromium comes from the system
(``/usr/bin/chromium`` or ``$CHROMIUM``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / "explorer" / "Home.py"
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
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
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
    """Headless system Chromium."""
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


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


# --------------------------------------------------------------------------- measurements


def slider_latency(page, server, run: Path, moves: int) -> list[float]:
    """Seconds from a slider key press to the new nearest dish shown, ``moves`` times.

    Each move steps a factor a tenth of its range toward its farther end (PageUp /
    PageDown), two moves per factor, factor after factor, so the results change every time;
    the next move waits until the page is idle again."""
    open_studio(page, server, run)
    k = page.locator("[data-testid='stSlider'] input[type='range']").count() - 1  # - "Steps"
    times = []
    for i in range(moves + 2):
        seconds = move_slider(page, f"studio_z{(i // 2) % k}")
        wait_idle(page, quiet_ms=500)
        if i >= 2:  # the first two load the slider's code and warm the caches
            times.append(seconds)
    return times


def open_studio(page, server, run: Path, timeout_ms: float = 180_000) -> None:
    page.goto(server.page_url("studio", run))
    page.locator(RESULT_CAPTIONS).first.wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def exercise_every_page(page, server, run: Path, photo: Path) -> list[str]:
    """Open every page (``photo`` read on the reader, a slider moved in the studio); returns
    any exception texts seen."""
    problems = []
    for name, title in PAGES.items():
        page.goto(server.page_url(name, run))
        page.locator('[data-testid="stMain"] h1', has_text=title).wait_for(timeout=180_000)
        wait_rendered(page, 180_000)
        if name == "photo_reader":
            page.locator(".st-key-reader_upload input[type='file']").set_input_files(str(photo))
            page.get_by_text("Factor values").wait_for(timeout=120_000)
            wait_rendered(page, 180_000)
        if name == "studio":
            move_slider(page, "studio_z0")
            wait_idle(page)
        problems += exception_texts(page)
    return problems


def launch_time(browser, run: Path, log: Path) -> dict:
    """Seconds from starting the server to the studio's first result image on screen."""
    start = time.perf_counter()
    server = start_server(log, timeout=180)
    healthy = time.perf_counter() - start
    try:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(server.page_url("studio", run))
        page.wait_for_function(RESULT_CHANGED_JS, arg="", timeout=180_000)
        usable = time.perf_counter() - start
        context.close()
    finally:
        server.stop()
    return {"healthy_s": healthy, "usable_s": usable}


# concurrency: one browser, a context per user


async def _session(browser, url: str, start, seconds: float, stats: dict) -> None:
    """One user: open the studio, wait for the others, then move a slider until time is up."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    try:
        await page.goto(url)
        await page.locator(RESULT_CAPTIONS).first.wait_for(timeout=180_000)
        await page.wait_for_function(IDLE_JS, timeout=180_000)
        await start.wait()  # every session is open: the 60 s start together
        deadline = time.perf_counter() + seconds
        thumb = page.locator(".st-key-studio_z0 input[type='range']")
        while time.perf_counter() < deadline:
            old = await page.locator(RESULT_CAPTIONS).first.inner_text()
            value, low, high = await thumb.evaluate("e => [+e.value, +e.min, +e.max]")
            await thumb.focus()
            begin = time.perf_counter()
            await page.keyboard.press("PageUp" if high - value >= value - low else "PageDown")
            await page.wait_for_function(RESULT_CHANGED_JS, arg=old, timeout=60_000, polling="raf")
            stats["latencies"].append(time.perf_counter() - begin)
            await page.wait_for_function(IDLE_JS, timeout=60_000)
            stats["errors"] += await page.locator('[data-testid="stException"]').all_inner_texts()
    except Exception as error:  # noqa: BLE001 - every failure of a session is a finding
        first_line = (str(error).splitlines() or [""])[0]
        stats["errors"].append(f"{type(error).__name__}: {first_line}")
        start.abort()  # the others stop waiting for this one
    finally:
        await context.close()


async def _concurrent(url: str, sessions: int, seconds: float) -> dict:
    from playwright.async_api import async_playwright

    stats = {"latencies": [], "errors": []}
    start = asyncio.Barrier(sessions)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        users = [_session(browser, url, start, seconds, stats) for _ in range(sessions)]
        await asyncio.wait_for(asyncio.gather(*users), timeout=seconds + 400)
        await browser.close()
    return stats


def concurrent_sessions(server, run: Path, sessions: int, seconds: float) -> dict:
    """``sessions`` users (one browser, a context each) move a studio slider together for
    ``seconds``: every move's latency (s) and every error or exception text seen."""
    return asyncio.run(_concurrent(server.page_url("studio", run), sessions, seconds))


# --------------------------------------------------------------------------- fresh clone


def fresh_clone(browser, dest: Path, timeout: float = 1200) -> dict:
    """Clone the repository, then ``make run`` as the README says; seconds per phase up to
    the studio's first results. pip may take wheels from a local cache or wheelhouse."""
    shutil.rmtree(dest, ignore_errors=True)
    phases, logs = {}, dest.parent / f"{dest.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    phases["git clone"] = time.perf_counter() - start
    with open(logs / "setup.log", "w") as log:  # `make run` = setup, then streamlit
        step = time.perf_counter()
        subprocess.run(["make", "setup"], cwd=dest, stdout=log, stderr=subprocess.STDOUT,
                       check=True, timeout=timeout)  # fmt: skip
        phases["make setup (venv, pip)"] = time.perf_counter() - step
    if not (dest / "assets" / "default-run" / "model.pt").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        return {"phases": phases, "note": "the clone has no assets/default-run/model.pt"}
    port = free_port()
    env = os.environ | {
        "STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
        "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }  # fmt: skip
    env.pop("VIRTUAL_ENV", None)
    step = time.perf_counter()
    log = open(logs / "run.log", "w")
    process = subprocess.Popen(["make", "run"], cwd=dest, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    server = Server(process, port, logs / "run.log")
    try:
        wait_healthy(server, timeout)
        phases["server healthy"] = time.perf_counter() - step
        step = time.perf_counter()
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(server.page_url(""))  # the first launch regenerates the kitchen data here
        page.get_by_text("Dishes indexed").wait_for(timeout=timeout * 1e3)
        phases["home usable (data generated)"] = time.perf_counter() - step
        step = time.perf_counter()
        page.goto(server.page_url("studio"))
        page.wait_for_function(RESULT_CHANGED_JS, arg="", timeout=timeout * 1e3)
        phases["studio results"] = time.perf_counter() - step
        context.close()
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)  # make and the streamlit it started
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
        log.close()
    shutil.rmtree(dest, ignore_errors=True)
    return {"phases": phases, "total_s": sum(phases.values())}
