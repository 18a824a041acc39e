"""The app's pages in one place: app.py builds the navigation from it, and pages switch to each
other through `page(name)` instead of spelling file paths."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"

# section -> (file stem, title, Material icon)
SECTIONS = {
    "Train": [("train", "Train", "model_training"), ("curves", "Live curves", "monitoring"),
              ("runs", "Runs", "table_rows")],
    "Explore results": [("confusion", "Confusion matrix", "grid_on"),
                        ("mistakes", "Misclassified images", "image_search")],
    "Learn": [("history", "CNN history", "history_edu")],
}


def page(name: str) -> st.Page:
    """The st.Page for pages/<name>.py (for st.navigation, st.switch_page and st.page_link)."""
    for entries in SECTIONS.values():
        for stem, title, icon in entries:
            if stem == name:
                return st.Page(str(PAGES_DIR / f"{stem}.py"), title=title, icon=f":material/{icon}:",
                               default=stem == "train")
    raise KeyError(f"no page {name!r}")


def navigation() -> dict[str, list[st.Page]]:
    return {section: [page(stem) for stem, _, _ in entries] for section, entries in SECTIONS.items()}
