"""The dashboard's measurements in a real browser, for ``python -m bench.latency``: slider
latency, launch time, memory after every page, concurrent sessions, and a fresh clone run
as the README says. The server and browser come from the browser tests' driver
(``tests/browser/driver.py``), so the benchmark and the tests wait for the same things.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.browser.driver import (
    IDLE_JS,
    PAGES,
    REPO,
    RESULT_CAPTIONS,
    RESULT_CHANGED_JS,
    VIEWPORT,
    Server,
    exception_texts,
    expect_title,
    free_port,
    launch_browser,
    move_slider,
    start_server,
    wait_healthy,
    wait_idle,
    wait_rendered,
)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def slider_latency(page, server, run: Path, moves: int) -> dict[str, list[float]]:
    """Seconds from a slider key press to the new nearest dish shown, ``moves`` times, and
    where they go: per move, milliseconds from the key press to the browser sending the new
    value (``sent``), to the server's first reply (``first_reply``) and its last reply before
    the new dish showed (``last_reply``), and the server's CPU milliseconds (``server_cpu``).

    Each move steps a factor a tenth of its range toward its farther end (PageUp /
    PageDown), two moves per factor, factor after factor, so the results change every time;
    the next move waits until the page is idle again."""
    frames: list[tuple[str, float]] = []
    page.on(
        "websocket",
        lambda ws: (
            ws.on("framesent", lambda _: frames.append(("sent", time.perf_counter()))),
            ws.on("framereceived", lambda _: frames.append(("reply", time.perf_counter()))),
        ),
    )
    open_studio(page, server, run)
    k = page.locator("[data-testid='stSlider'] input[type='range']").count() - 1  # - "Steps"
    out: dict[str, list[float]] = {
        "seconds": [], "sent": [], "first_reply": [], "last_reply": [], "server_cpu": [],
    }  # fmt: skip
    for i in range(moves + 2):
        cpu, frames[:] = cpu_ms(server.pid), []
        start = time.perf_counter()
        seconds = move_slider(page, f"studio_z{(i // 2) % k}")
        shown = start + seconds
        wait_idle(page, quiet_ms=500)
        if i < 2:  # the first two load the slider's code and warm the caches
            continue
        sent = [t for kind, t in frames if kind == "sent" and t <= shown]
        replies = [t for kind, t in frames if kind == "reply" and t <= shown]
        out["seconds"].append(seconds)
        out["server_cpu"].append(cpu_ms(server.pid) - cpu)
        for name, times in (("sent", sent[:1]), ("first_reply", replies[:1]),
                            ("last_reply", replies[-1:])):  # fmt: skip
            out[name].append((times[0] - start) * 1e3 if times else float("nan"))
    return out


def cpu_ms(pid: int) -> float:
    """User + system CPU milliseconds a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e3 / os.sysconf("SC_CLK_TCK")


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
        expect_title(page, title, 180_000)
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
        browser = await launch_browser(playwright)  # the async API: a coroutine
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
