"""EfficientNet Lab: the Streamlit entry point. `make run` (or `streamlit run dashboard/app.py`).

Only Streamlit and the light parts of core are imported here: TensorFlow loads when a job
starts or a model is opened, so the first page is served within seconds.

Presentation mode: ?present=1 in any URL opens the slides (pages/present.py) with the menu
hidden; the sidebar toggle on every other page switches into it with the run being looked at.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="EfficientNet Lab", page_icon=":material/science:", layout="wide")

from dashboard import identity, nav  # noqa: E402
from dashboard.state import RUN_QUERY_PARAM, SELECTED_RUN_KEY  # noqa: E402

PRESENT_TOGGLE_KEY = "presentation_toggle"
_REQUEST_KEY = "_presentation_requested"

presenting = nav.presentation_requested(st.query_params)
current = st.navigation(nav.navigation(), position="hidden" if presenting else "sidebar")
present_page = nav.page(nav.PRESENT_PAGE)
if presenting and current.url_path != present_page.url_path:
    # A link such as /confusion?present=1&run=…: the projector view of the same run.
    st.switch_page(present_page, query_params=st.query_params.to_dict())


def _request_presentation() -> None:
    # A callback, so the toggle can be turned back off before it is drawn: coming back from the
    # slides it must read "off", not send the user straight back to them.
    st.session_state[PRESENT_TOGGLE_KEY] = False
    st.session_state[_REQUEST_KEY] = True


if not presenting and current.url_path != present_page.url_path:
    st.sidebar.toggle("Presentation mode", key=PRESENT_TOGGLE_KEY, on_change=_request_presentation,
                      help="Full-screen slides for a projector, built from this run's live data. "
                           "Next and previous with the buttons or the arrow keys; a link with "
                           "?present=1 opens it directly.")
    if st.session_state.pop(_REQUEST_KEY, False):
        st.session_state[nav.RETURN_KEY] = current.url_path
        query = {nav.PRESENT_PARAM: "1"}
        run_id = st.query_params.get(RUN_QUERY_PARAM) or st.session_state.get(SELECTED_RUN_KEY)
        if run_id:
            query[RUN_QUERY_PARAM] = run_id
        st.switch_page(present_page, query_params=query)
if not presenting:   # the slides draw no sidebar, and nobody starts a run from them
    identity.keep_in_browser()   # the runs this browser starts stay its own across reloads and restarts
current.run()
