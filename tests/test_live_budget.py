"""The live-redraw budget (dashboard/state.py): a crowd watching a run slows every viewer's refresh
instead of slowing the training, and a viewer who opened the page before the crowd arrived slows
down too. What a redraw costs is measured by bench/viewers.py; these tests check the arithmetic
and the hand-over to Streamlit, in a real AppTest session."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state


def live_page():
    """A page's live part, as the real pages call it: a fragment tick (here: when asked) checks
    the budget, then a full run sets the fragment's interval."""
    import streamlit as st

    from dashboard import state

    st.session_state["executions"] = st.session_state.get("executions", 0) + 1
    if st.session_state.get("fragment_tick"):
        st.session_state["fragment_tick"] = False   # the rerun it may ask for is a full run
        state.keep_live_refresh_in_budget(1.0)
    st.session_state["full_runs"] = st.session_state.get("full_runs", 0) + 1
    st.session_state["interval"] = state.live_refresh_seconds(1.0)


@pytest.fixture(autouse=True)
def no_audience():
    state.LIVE_AUDIENCE.clear()
    yield
    state.LIVE_AUDIENCE.clear()


def _others_watching(n: int, seconds_ago: float = 0.0) -> None:
    for i in range(n):
        state.LIVE_AUDIENCE.watching(f"other-{seconds_ago}-{i}", now=time.time() - seconds_ago)


def _run_page() -> AppTest:
    at = AppTest.from_function(live_page, default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("others, expected", [(0, 1.0), (3, 1.0), (7, 2.0), (19, 5.0), (39, 10.0)])
def test_interval_grows_with_the_audience_beyond_the_budget(others, expected):
    _others_watching(others)
    at = _run_page()
    assert at.session_state["interval"] == expected
    assert state.LIVE_AUDIENCE.watching() == others + 1   # this session counts too


def test_the_page_default_is_kept_for_a_small_audience():
    _others_watching(5)   # 6 watching: 1.5 s by the budget, but the page asks for 3 s at the fastest
    assert state.audience_interval(3.0) == 3.0


def test_viewers_who_left_stop_counting():
    _others_watching(30, seconds_ago=state.LIVE_VIEWER_TIMEOUT_SECONDS + 1)
    at = _run_page()
    assert at.session_state["interval"] == 1.0
    assert state.LIVE_AUDIENCE.watching() == 1


def test_an_early_viewer_slows_down_when_a_crowd_arrives():
    at = _run_page()
    assert (at.session_state["interval"], at.session_state["full_runs"]) == (1.0, 1)
    _others_watching(19)
    at.session_state["fragment_tick"] = True
    at.run()
    # The tick asked for a full run, which set the slower interval the crowd calls for.
    assert at.session_state["executions"] == 3
    assert (at.session_state["interval"], at.session_state["full_runs"]) == (5.0, 2)


def test_a_few_more_viewers_do_not_redraw_the_page():
    at = _run_page()
    _others_watching(4)   # 5 watching: 1.25 s wanted, less than 1.5 times this session's 1 s
    at.session_state["fragment_tick"] = True
    at.run()
    assert at.session_state["executions"] == 2   # only the run the test asked for
    assert at.session_state["interval"] == 1.2
