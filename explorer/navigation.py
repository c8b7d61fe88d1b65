"""The dashboard's pages, listed once: (path relative to explorer/Home.py, title, icon).

explorer/Home.py registers them with st.navigation; the tests check every one is under test.
"""

from __future__ import annotations

from pathlib import Path

PAGES = [
    ("../pages/studio.py", "Factor studio", ":material/tune:"),
    ("../pages/photo_reader.py", "Photo reader", ":material/photo_camera:"),
    ("../pages/recipe_search.py", "Recipe search", ":material/menu_book:"),
    ("../pages/atlas.py", "Factor atlas", ":material/scatter_plot:"),
    ("../pages/factor_cards.py", "Factor cards", ":material/style:"),
    ("../pages/model_report.py", "Model report", ":material/monitoring:"),
]


def page_names() -> list[str]:
    """The pages' URL names (their file stems), e.g. ``studio``."""
    return [Path(path).stem for path, _, _ in PAGES]
