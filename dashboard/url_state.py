"""Query parameters as page state: read validated, written back as widgets change.

A link (?run=…&true=cat&image=123) is text anyone can write, so every parameter is validated the
way run ids are (dashboard/state.py `select_run`): a value outside the allowed set is refused with
a warning that shows it as inert text, and the page carries on with its default. Numbers must be
plain ASCII digits in range ("²" is a digit to str.isdigit() but not to int()). Widgets whose
value lives in the URL are seeded from it when a link brings a new value and write their value
back, so any view can be shared; a filter change sends a paged list back to its first page.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

import streamlit as st

from dashboard.state import shown_text

_DIGITS = re.compile(r"[0-9]{1,12}")     # ASCII only, and short enough to be an index

# The gallery's parameters: the confusion page links to the gallery with them.
TRUE_PARAM = "true"          # true class name, e.g. ?true=cat
PRED_PARAM = "pred"          # predicted class name, e.g. &pred=dog
VIEW_PARAM = "view"          # "mistakes" (default) or "correct"
IMAGE_PARAM = "image"        # test-set index of the image in the detail view (also Inside the network)
VIEWS = ("mistakes", "correct")


def refuse(param: str, value: str, allowed: str) -> None:
    """A warning for a bad ?param=: names the parameter, what it may be and what was given, as text."""
    st.warning(f"The link's `{param}` must be {allowed}; got `{shown_text(value)}`. It was ignored.")


def parse_int(value: str | None, low: int, high: int) -> int | None:
    """`value` as an int in [low, high] when it is plain ASCII digits in that range, else None."""
    if value is None or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def int_param(param: str, low: int, high: int) -> int | None:
    """?param= as an int in [low, high]; None when absent or refused (with a warning)."""
    value = st.query_params.get(param)
    if value is None:
        return None
    number = parse_int(value, low, high)
    if number is None:
        refuse(param, value, f"a whole number from {low:,} to {high:,}")
    return number


def choice_param(param: str, options: Sequence[str], default: str) -> str:
    """?param= when it is one of `options`, else `default` (with a warning when it was given)."""
    value = st.query_params.get(param)
    if value is None or value in options:
        return default if value is None else value
    refuse(param, value, "one of " + ", ".join(options))
    return default


def run_ids_param(param: str, known: Sequence[str]) -> list[str]:
    """?param=id1,id2 as the ids that are runs here, in order; unknown ones refused with a warning."""
    value = st.query_params.get(param)
    if not value:
        return []
    ids = [rid for rid in value.split(",") if rid]
    unknown = [rid for rid in ids if rid not in known]
    if unknown:
        refuse(param, ",".join(unknown), "ids of runs listed here (like 20261125-142301-b0-3f9a)")
    return [rid for rid in ids if rid in known]


def set_param(param: str, value: str | None, default: str | None = None) -> None:
    """Writes ?param=value, or removes it when the value is None or the default (short links)."""
    if value is None or value == default:
        st.query_params.pop(param, None)
    elif st.query_params.get(param) != value:
        st.query_params[param] = value


def url_backed(key: str, param: str, options: Sequence[str], default: str) -> None:
    """Seeds widget `key` from ?param= when the URL brings a new value (a link, a switch_page);
    a value outside `options` is refused and the widget keeps its value (or the default)."""
    wanted = st.query_params.get(param)
    seen_key = f"_url_{key}"
    is_new = wanted != st.session_state.get(seen_key)
    if is_new and wanted is not None and wanted not in options:
        refuse(param, wanted, "one of " + ", ".join(options))
    if key not in st.session_state or (is_new and wanted in options):
        st.session_state[key] = wanted if wanted in options else default
    st.session_state[seen_key] = wanted


def to_url(key: str, param: str, value: str | None, default: str | None) -> None:
    """Writes widget `key`'s value back to ?param= (see set_param) and remembers it as seen."""
    set_param(param, value, default)
    st.session_state[f"_url_{key}"] = st.query_params.get(param)


def page_number(page_key: str, filters: Hashable, pages: int) -> None:
    """Keeps the page-number widget `page_key` in 1..pages, back on page 1 when `filters` change."""
    filters_key = f"_filters_{page_key}"
    if st.session_state.get(filters_key) != filters:
        st.session_state[filters_key] = filters
        st.session_state[page_key] = 1
    elif st.session_state.get(page_key, 1) > pages:
        st.session_state[page_key] = pages


def gallery_query(run_id: str | None, true_name: str | None = None, predicted_name: str | None = None,
                  view: str = "mistakes", run_param: str = "run") -> dict[str, str]:
    """Query parameters that open the gallery on exactly these images (shareable as a URL)."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    query = {}
    if run_id:
        query[run_param] = run_id
    if true_name:
        query[TRUE_PARAM] = true_name
    if predicted_name and view == "mistakes":
        query[PRED_PARAM] = predicted_name
    if view != "mistakes":
        query[VIEW_PARAM] = view
    return query
