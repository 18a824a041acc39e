"""EfficientNet Lab: the Streamlit entry point. `make run` (or `streamlit run dashboard/app.py`).

Only Streamlit and the light parts of core are imported here: TensorFlow loads when a job
starts or a model is opened, so the first page is served within seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="EfficientNet Lab", page_icon=":material/science:", layout="wide")

from dashboard.nav import navigation  # noqa: E402

st.navigation(navigation()).run()
