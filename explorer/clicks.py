"""Click a retrieved dish to start the studio there, from any page.

A grid of dishes drawn inside ``pickable(name, rows)`` is an ordinary ``st.image`` grid (one
element); one small component per page (``listen``) catches clicks on the images of such
grids in the browser and reports the grid and the image's position, which this module
turns back into the dish's index row. ``start_studio`` hands a dish, or a point of factor
space (a photo's code), to the studio page.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import streamlit as st
import streamlit.components.v2 as components

PREFIX = "pick-"  # grids' container keys: the browser sees them as class st-key-pick-<name>
ROWS_KEY = "pick_rows"  # session state: {grid name: the rows it shows, in order}
HANDOFF_KEY = "studio_handoff"  # session state: what the studio starts from on its next run
GO_KEY = "studio_go"  # session state: a callback asked to switch to the studio
STUDIO = "../pages/studio.py"  # relative to explorer/Home.py, as registered

# Event delegation on the document: one listener, whatever the grids redraw.
_CELL = '[data-testid="stImageContainer"]'  # one image of an st.image grid, with its caption
_JS = """
export default function(component) {
  const { setTriggerValue } = component;
  const cell = 'CELL';
  const style = document.createElement('style');
  style.textContent = '[class*="st-key-pick-"] ' + cell + ' img {cursor: pointer}';
  document.head.appendChild(style);
  const onClick = (event) => {
    const image = event.target.closest(cell);
    const grid = image && image.closest('[class*="st-key-pick-"]');
    if (!grid) return;
    const name = Array.from(grid.classList).find((c) => c.startsWith('st-key-pick-'));
    const images = Array.from(grid.querySelectorAll(cell));
    setTriggerValue('picked', {grid: name.slice(12), position: images.indexOf(image)});
  };
  document.addEventListener('click', onClick);
  return () => { document.removeEventListener('click', onClick); style.remove(); };
}
""".replace("CELL", _CELL)
_mount = components.component("dish_clicks", js=_JS)  # registered again on each runtime


@contextmanager
def pickable(name: str, rows):
    """A container whose ``st.image`` grid of ``rows`` (index rows, in the order shown) can be
    clicked; draw the grid inside it."""
    shown = st.session_state.setdefault(ROWS_KEY, {})
    shown[name] = [int(r) for r in np.asarray(rows).ravel()]
    with st.container(key=PREFIX + name):
        yield


def picked_row(key: str) -> int | None:
    """The index row of the image just clicked (read in ``listen``'s callback), or None."""
    event = getattr(st.session_state.get(key), "picked", None) or {}
    rows = st.session_state.get(ROWS_KEY, {}).get(event.get("grid"), [])
    position = event.get("position", -1)
    return rows[position] if 0 <= position < len(rows) else None


def listen(key: str, on_pick: Callable[[int], None]) -> None:
    """Mount the click catcher once on the page; ``on_pick(row)`` runs (as a widget callback,
    before the rerun) when a dish of a ``pickable`` grid is clicked."""

    def callback() -> None:
        row = picked_row(key)
        if row is not None:
            on_pick(row)

    _mount(key=key, on_picked_change=callback)


def start_studio(dish: str | None = None, point=None, source: str = "") -> None:
    """Ask the studio to start from a dish id or a factor-space point (k,): a widget callback
    calls it, and the page's ``go_to_studio_if_asked`` then switches to the studio."""
    values = None if point is None else [float(v) for v in np.asarray(point).ravel()]
    st.session_state[HANDOFF_KEY] = {"dish": dish, "z": values, "source": source}
    st.session_state[GO_KEY] = True


def go_to_studio_if_asked() -> None:
    """Switch to the studio when a callback of this run asked to (st.switch_page cannot be
    called from a callback); call it early in a page that uses ``start_studio``."""
    if st.session_state.pop(GO_KEY, False):
        st.switch_page(STUDIO)
