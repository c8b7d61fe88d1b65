"""Helpers shared by the benchmarks: timing-honest training runs and results.md sections."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results.md"


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def load_average() -> float:
    """The 1-minute load average (2 cores: above 2 means work is queueing)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def write_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->``; other
    benchmarks own the other sections, so nothing outside the markers changes."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
