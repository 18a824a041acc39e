"""The app's pages in one place: app.py builds the navigation from it, and pages switch to each
other through `page(name)` instead of spelling file paths.

Presentation mode is a URL parameter (?present=1, with &run=… and &slide=N), so a link opens the
projector view directly; its page is registered but hidden from the menu.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"
DEFAULT_PAGE = "train"

# section -> (file stem, title, Material icon)
SECTIONS = {
    "Train": [("train", "Train", "model_training"), ("curves", "Live curves", "monitoring"),
              ("runs", "Runs", "table_rows"), ("sweep", "Sweep", "tune")],
    "Explore results": [("confusion", "Confusion matrix", "grid_on"),
                        ("mistakes", "Misclassified images", "image_search"),
                        ("compare", "Compare runs", "compare_arrows"),
                        ("board", "Class board", "leaderboard")],
    "Classroom": [("try_image", "Try your own image", "add_a_photo"),
                  ("report", "Shareable report", "share")],
    "Learn": [("history", "CNN history", "history_edu"), ("inside", "Inside the network", "layers")],
}
# Reachable by URL and st.switch_page, never listed in the menu.
HIDDEN = [("present", "Presentation", "slideshow")]

PRESENT_PAGE = "present"
PRESENT_PARAM = "present"        # ?present=1 opens presentation mode
SLIDE_PARAM = "slide"            # &slide=3 (1-based)
RETURN_KEY = "presentation_return"   # session key: url_path of the page to go back to
_TRUE = ("1", "true", "yes", "on")
COMPARE_PARAM = "runs"           # ?runs=id1,id2 opens Compare runs (and Live curves) on those runs
COMPARE_KEY = "compare_runs"     # session key: the Runs page's "Compare" selection, for the page it opens
SWEEP_PARAM = "sweep"            # ?sweep=NAME: the class board (and the sweep slide) on that sweep


def page(name: str) -> st.Page:
    """The st.Page for pages/<name>.py (for st.navigation, st.switch_page and st.page_link)."""
    for entries in SECTIONS.values():
        for stem, title, icon in entries:
            if stem == name:
                return st.Page(str(PAGES_DIR / f"{stem}.py"), title=title, icon=f":material/{icon}:",
                               default=stem == DEFAULT_PAGE)
    for stem, title, icon in HIDDEN:
        if stem == name:
            return st.Page(str(PAGES_DIR / f"{stem}.py"), title=title, icon=f":material/{icon}:",
                           visibility="hidden")
    raise KeyError(f"no page {name!r}")


def navigation() -> dict[str, list[st.Page]]:
    sections = {section: [page(stem) for stem, _, _ in entries] for section, entries in SECTIONS.items()}
    sections["Learn"] = sections["Learn"] + [page(stem) for stem, _, _ in HIDDEN]
    return sections


def presentation_requested(query: Mapping[str, str]) -> bool:
    """Whether the URL asks for presentation mode (?present=1, true, yes or on)."""
    return str(query.get(PRESENT_PARAM, "")).strip().lower() in _TRUE


def page_by_url_path(url_path: str | None) -> st.Page:
    """The listed page whose URL path is `url_path` ("" is the default page); the default page
    when none matches."""
    for entries in SECTIONS.values():
        for stem, _, _ in entries:
            candidate = page(stem)
            if candidate.url_path == (url_path or ""):
                return candidate
    return page(DEFAULT_PAGE)
