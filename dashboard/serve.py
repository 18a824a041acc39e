"""`make run` starts the dashboard through this file: the Streamlit app of dashboard/app.py, and the
training queue's scheduler started with the server rather than with the first page someone opens.

A restarted class server has runs waiting in its queue (and runs queued by another dashboard or
the command line on the same database): they start as soon as the server is up, with nobody
watching. `streamlit run` finds the `st.App` below and serves it (Streamlit's ASGI entry point);
its lifespan creates the server's one job manager, the one every page then shares
(dashboard/state.py `job_manager`, an st.cache_resource). `streamlit run dashboard/app.py` still
works; there the scheduler starts with the first page view.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `streamlit run dashboard/serve.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402


@asynccontextmanager
async def start_the_scheduler(_app):
    from dashboard.state import job_manager   # imported here: the server is up before TensorFlow is asked for
    job_manager()
    yield


app = st.App(str(Path(__file__).with_name("app.py")), lifespan=start_the_scheduler)
