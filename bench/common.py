"""Helpers shared by the benchmarks: where they write, the command that regenerates a
figure, and the one writer of a marked section of docs/results.md or docs/experiments.md."""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
EXPERIMENTS = ROOT / "docs" / "experiments.md"


def command(module: str, argv: list[str] | None = None) -> str:
    """The shell command that reruns benchmark ``module`` (``"bench.kitchen"``) with
    ``argv`` (default: this process's arguments), as written next to its figures."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python -m", module, *args])


def shown(path: str | Path) -> str:
    """``path`` as the docs write it: relative to the repository root when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (from /proc/<pid>/stat's parent field)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def read_section(name: str, path: Path = RESULTS) -> str:
    """The text between the ``name`` markers of ``path`` ("" when there is none)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    found = re.search(re.escape(begin) + r"\n?(.*?)" + re.escape(end), text, re.S)
    return found.group(1) if found else ""


def write_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``
    (appended at the end when the markers are not there yet); other benchmarks own the other
    sections, so nothing outside the markers changes."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (f"{text.rstrip()}\n\n" if text.strip() else "") + f"{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
