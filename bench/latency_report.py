"""The table of ``python -m bench.latency`` for docs/results.md: one row per target, each
with its figures, whether it is met, the load average and the date it was measured, then the
detail tables. A pure function of the results (docs/latency.json)."""

from __future__ import annotations

import statistics
from pathlib import Path

BIG_RUN = Path("/tmp/ivae-big-run")  # where bench/big_run.py builds the (h) run by default


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def row(
    part: str, target: str, goal: str, measured: str, met: str, load: float | None, date: str
) -> str:
    return (
        f"| {part} | {target} | {goal} | {measured} | {met} | "
        + ("— |" if load is None else f"{load:.1f} |")
        + f" {date} |"
    )


def when(r: dict, part: str) -> str:
    """The date part ``part`` of the table was measured."""
    return r.get("dates", {}).get(part) or r.get("date", "—")


def search_rows(r: dict) -> list[str]:
    rows = []
    for size, goal in ((100_000, 20), (1_000_000, 150)):
        cases = [c for c in r.get("nn", []) if c["n_items"] == size]
        if cases:
            worst = max(cases, key=lambda c: c["median_ms"])
            exact = all(c["exact"] for c in cases)
            measured = (
                f"{worst['median_ms']:.1f} ms median, the slowest of k = 8, 16 with and "
                f"without weights (p95 {worst['p95_ms']:.1f} ms); exact: {yes(exact)}"
            )
            met = yes(worst["median_ms"] <= goal and exact)
            rows.append(row("a", f"nearest-neighbour query, {size:,} items", f"≤ {goal} ms",
                            measured, met, worst["load"], when(r, "nn")))  # fmt: skip
    photos = [p for p in r.get("photo", []) if p["threads"] == 1]
    for p in photos:  # one torch thread, as the dashboard runs; the rest in the detail table
        measured = f"{p['total']:.1f} ms median (p95 {p['p95_ms']:.1f} ms, one torch thread)"
        rows.append(row("b", f"photo → factors, decode included ({p['photo']}, "
                        f"{p['kb']:.0f} kB)", "≤ 300 ms", measured, yes(p["total"] <= 300),
                        p["load"], when(r, "photo")))  # fmt: skip
    return rows


def browser_rows(r: dict) -> list[str]:
    rows = []
    if "slider" in r:
        s, script = r["slider"], r.get("script_ms")
        alone = f"; the whole studio script: {statistics.median(script):.0f} ms" if script else ""
        measured = (
            f"{s['median_s'] * 1e3:.0f} ms median, p95 {s['p95_s'] * 1e3:.0f} ms "
            f"({len(s['seconds'])} moves{alone}){phases(s)}"
        )
        rows.append(row("c", "slider → nearest dishes on screen", "median ≤ 300 ms", measured,
                        yes(s["median_s"] <= 0.3), s["load"], when(r, "slider")))  # fmt: skip
    if "launch" in r:
        times = [x["usable_s"] for x in r["launch"]]
        healthy = statistics.median(x["healthy_s"] for x in r["launch"])
        median = statistics.median(times)
        measured = (
            f"{median:.1f} s median of {len(times)} (max {max(times):.1f} s; server healthy "
            f"after {healthy:.1f} s)"
        )
        rows.append(row("d", "later launch → studio results visible", "≤ 15 s", measured,
                        yes(median <= 15), r["launch"][-1]["load"], when(r, "launch")))  # fmt: skip
    if "memory" in r:
        m, after = r["memory"], r.get("memory_after_concurrent")
        measured = f"VmRSS {m['VmRSS'] / 1024:.0f} MB, peak {m['VmHWM'] / 1024:.0f} MB"
        if after:
            measured += (
                f"; after the {r['concurrent']['sessions']} sessions of (f): "
                f"{after['VmRSS'] / 1024:.0f} MB, peak {after['VmHWM'] / 1024:.0f} MB"
            )
        peak = max(m["VmHWM"], (after or m)["VmHWM"]) / 1024
        rows.append(row("e", "dashboard memory after every page", "≤ 1.5 GB", measured,
                        yes(peak <= 1536 and not m["problems"]), m["load"],
                        when(r, "memory")))  # fmt: skip
    if "concurrent" in r:
        c = r["concurrent"]
        measured = (
            f"{c['moves']} moves, {len(c['errors'])} errors; median {c['median_s'] * 1e3:.0f}"
            f" ms, p95 {c['p95_s'] * 1e3:.0f} ms per move"
        )
        rows.append(row("f", f"{c['sessions']} sessions moving sliders for {c['seconds']:.0f} s",
                        "no error", measured, yes(not c["errors"] and c["moves"] > 0),
                        c["load"], when(r, "concurrent")))  # fmt: skip
    return rows


def cards_rows(r: dict) -> list[str]:
    """(i): the factor cards' first visit on a fresh server, later loads and switches."""
    if "cards" not in r:
        return []
    c = r["cards"]
    first, later = c["load_s"][0], c["load_s"][1:] or c["load_s"]
    k = c["factors"]
    new, seen = c["switch_s"][: k - 1], c["switch_s"][k - 1 :] or c["switch_s"][: k - 1]
    rows = [
        row("i", "factor cards: page load (after Home)", "≤ 2 s",
            f"first visit {first:.2f} s (its caches computed), later loads "
            f"{statistics.median(later):.2f} s median of {len(later)}",
            yes(first <= 2 and statistics.median(later) <= 2), c["load"], when(r, "cards")),
        row("i", "factor cards: switch factor", "≤ 1 s",
            f"{statistics.median(new):.2f} s median to a factor not shown before (max "
            f"{max(new):.2f} s), {statistics.median(seen):.2f} s to one shown before",
            yes(statistics.median(new) <= 1 and statistics.median(seen) <= 1), c["load"],
            when(r, "cards")),
    ]  # fmt: skip
    return rows


def atlas_rows(r: dict) -> list[str]:
    """(j): the atlas's first visit on a fresh server, later loads (and from a new browser
    context), and a recolour to every colour of the chart's menus."""
    if "atlas" not in r:
        return []
    a = r["atlas"]
    first, later = a["load_s"][0], a["load_s"][1:] or a["load_s"]
    fresh = f"; from a new browser context {statistics.median(a['fresh_s']):.2f} s median of " \
        f"{len(a['fresh_s'])}" if a.get("fresh_s") else ""  # fmt: skip
    recolour = a["recolour_s"]
    return [
        row("j", f"atlas ({a['points']:,} dishes): page load (after Home)", "≤ 3 s",
            f"first visit {first:.2f} s (its caches computed), later loads "
            f"{statistics.median(later):.2f} s median of {len(later)}{fresh}",
            yes(first <= 3 and statistics.median(later) <= 3), a["load"], when(r, "atlas")),
        row("j", "atlas: recolour the map", "≤ 1 s",
            f"{statistics.median(recolour):.2f} s median over its {a['colours']} colours (max "
            f"{max(recolour):.2f} s; in the browser, no rerun)",
            yes(statistics.median(recolour) <= 1), a["load"], when(r, "atlas")),
    ]  # fmt: skip


def phases(s: dict) -> str:
    """Where a move's time goes, median milliseconds after the key press (bench/dashboard.py,
    slider_latency), when measured."""
    p = s.get("phases")
    if not p:
        return ""
    m = {name: statistics.median(v for v in values if v == v) for name, values in p.items()}
    seen = sum(v == v for v in p["first_reply"])  # NaN: no reply frame caught for that move
    caught = "" if seen == len(p["first_reply"]) else f" (replies caught in {seen} moves)"
    return (
        f"; from the key press: value sent {m['sent']:.0f} ms, server's first reply "
        f"{m['first_reply']:.0f} ms, its last {m['last_reply']:.0f} ms{caught}, new dish shown "
        f"{m['seconds'] * 1e3:.0f} ms; server CPU {m['server_cpu']:.0f} ms per move"
    )


def big_search_rows(r: dict) -> list[str]:
    rows, cases = [], r.get("nn10m") or []
    for label, weighted in (("unweighted", False), ("the studio's weightings", True)):
        chosen = [c for c in cases if (c["weighting"] != "unweighted") == weighted]
        if not chosen:
            continue
        slow = max(chosen, key=lambda c: c["median_ms"])
        low = min(chosen, key=lambda c: c["recall"])
        asked = ", ".join(sorted({"k = {} {}".format(c["k"], c["weighting"]) for c in chosen}))
        measured = (
            f"{slow['median_ms']:.1f} ms median, the slowest of {asked} "
            f"(p95 {slow['p95_ms']:.1f} ms); recall@8 ≥ {low['recall']:.3f} "
            f"(k = {low['k']}, {low['weighting']}); {slow['engine']}"
        )
        met = yes(slow["median_ms"] <= 20 and low["recall"] >= 0.99)
        rows.append(row("a", f"approximate query, {slow['items']:,} items, {label}",
                        "≤ 20 ms, recall@8 ≥ 0.99", measured, met, slow["load"],
                        when(r, "nn10m")))  # fmt: skip
    return rows


def big_run_rows(r: dict) -> list[str]:
    b = r.get("big")
    if not b:
        return []
    date, pages = (
        when(r, "big"),
        "every page opened"
        + (
            f", {len(b['problems'])} errors: {b['problems'][0][:80]}"
            if b["problems"]
            else ", no error"
        ),
    )
    m = b["memory"]
    measured = (
        f"{pages} ({b['pages_s']:.0f} s in all); VmRSS {m['VmRSS'] / 1024:.0f} MB, peak "
        f"{m['VmHWM'] / 1024:.0f} MB"
    )
    ok = not b["problems"] and m["VmHWM"] <= 2048 * 1024
    rows = [row("h", f"{b['items']:,}-dish run: every page, memory", "≤ 2 GB", measured,
                yes(ok), b["load"], date)]  # fmt: skip
    s = b["slider"]
    measured = (
        f"{s['median_s'] * 1e3:.0f} ms median, p95 {s['p95_s'] * 1e3:.0f} ms "
        f"({len(s['seconds'])} moves){phases(s)}"
    )
    target = f"{b['items']:,}-dish run: slider → nearest dishes on screen"
    met = yes(s["median_s"] <= 0.3)
    rows.append(row("h", target, "median ≤ 300 ms", measured, met, b["load"], date))
    return rows


def clone_row(r: dict) -> str:
    g, date = r.get("fresh_clone"), when(r, "fresh_clone")
    target, goal = "fresh clone → `make run` → studio results", "≤ 5 min"
    if not g:
        return row("g", target, goal, "not run (`--fresh-clone`)", "—", None, "—")
    if "total_s" not in g:
        phases = ", ".join(f"{name} {sec:.0f} s" for name, sec in g["phases"].items())
        measured = f"{phases}; then not measurable: {g['note']}"
        return row("g", target, goal, measured, "—", None, date)
    phases = ", ".join(f"{name} {sec:.0f} s" for name, sec in g["phases"].items())
    measured = f"{g['total_s'] / 60:.1f} min ({phases})"
    return row("g", target, goal, measured, yes(g["total_s"] <= 300), g["load"], date)


def detail_tables(r: dict) -> list[str]:
    lines = []
    if r.get("nn"):
        lines += [
            "",
            "Nearest-neighbour search (exact; one query of 8 neighbours, as the studio asks; "
            "synthetic Gaussian codes; weights = the studio's per-factor standardisation):",
            "",
            "| items | k | weights | median ms | p95 ms | exact |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['n_items']:,} | {c['dim']} | {'yes' if c['weighted'] else 'no'} | "
            f"{c['median_ms']:.2f} | {c['p95_ms']:.2f} | {yes(c['exact'])} |"
            for c in r["nn"]
        ]
    if r.get("photo"):
        lines += [
            "",
            "Photo → factors, median ms per step (read_upload, image_to_array, run.encode_x):",
            "",
            "| photo | torch threads | decode | resize | encode | total | p95 |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['photo']} | {p['threads']} | {p['decode']:.1f} | {p['resize']:.1f} | "
            f"{p['encode']:.1f} | {p['total']:.1f} | {p['p95_ms']:.1f} |"
            for p in r["photo"]
        ]
    return lines


def render(r: dict) -> str:
    commands = ", ".join(f"`{c}`" for c in dict.fromkeys(r.get("commands", {}).values()))
    lines = [
        f"Measured by {commands or '`' + r['command'] + '`'} on {r['machine']}; run "
        f"`{r['run']}` ({r['run_info']}); the (h) rows on `{r.get('big_run', BIG_RUN)}`, built "
        "by `.venv/bin/python -m bench.big_run`. Each row gives the date it was measured "
        "(`--parts` measures some rows again and keeps the others) and the machine's 1-minute "
        "load average then: the machine is shared (2 cores: above 2, work queues for the "
        "CPU, and every latency here grows with it).",
        "",
        "| | target | goal | measured | met | load | date |",
        "|---|---|---|---|---|---|---|",
        *search_rows(r),
        *big_search_rows(r),
        *browser_rows(r),
        *cards_rows(r),
        *atlas_rows(r),
        *big_run_rows(r),
        clone_row(r),
        *detail_tables(r),
    ]
    lines += [
        "",
        "(c), (f) and (h) run from the key press to the new nearest dish's image loaded in "
        "headless Chromium, which shares the 2 cores with the server; the times from the key "
        "press to the websocket frames (value sent, the server's first and last reply before "
        "the dish showed) and the server's CPU per move say where a move's time goes. A move "
        'reruns only the studio\'s results fragment; "the whole studio script" is a full '
        "rerun under Streamlit's AppTest (no browser), an upper bound of the server's share. "
        "(e) and (h) are /proc VmRSS / VmHWM of the streamlit process. (b) is given with "
        "torch's default intra-op threads and with one (the dashboard uses one).",
    ]
    if "atlas" in r:
        lines += [
            "",
            "(j) A page load runs to the first moment the map's colour bar is drawn, the app "
            "idle and every image and chart drawn (bench/atlas_latency.py). The map is one "
            "WebGL trace whose colour arrays all travel with the figure, so a recolour is a "
            "restyle in the browser: a new figure from the server is a new chart, drawn from "
            "scratch with a new WebGL context (a recolour that way took 1.2-1.7 s median at "
            "load 3-15, and the page drew a second 20,000-point chart on every load).",
        ]
    if r.get("failure"):
        lines += ["", f"**The browser measurements stopped with an error:** {r['failure']}"]
    return "\n".join(lines) + "\n"
