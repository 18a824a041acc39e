"""Take the model home, for the Runs and report pages: a download button for a run's model as a
plain-Keras .keras file (core.analysis.export) and the ten lines that use it.

The file is made when the button is clicked (Streamlit calls `data` then, in a server thread
without a script context: so the callable is core code only), not on every rerun of the page.
"""

from __future__ import annotations

import functools

import streamlit as st

from core.analysis.export import download_name, export_bytes, snippet
from dashboard import state

CHECKPOINTS = {"last": "last epoch", "best": "best validation accuracy"}


def checkpoint_path(run_id: str, which: str = "last") -> str | None:
    run = state.get_run(run_id)
    path = run.checkpoint(which) if run is not None else None
    return str(path) if path is not None else None


def model_download_button(run_id: str, *, which: str = "last", key: str, container=None,
                          label: str = "Model (.keras)", **button_args) -> bool:
    """A download button for the run's model; disabled (and saying why) when it has no such
    checkpoint. Returns whether there is one."""
    path = checkpoint_path(run_id, which)
    target = container if container is not None else st
    help_text = (f"The trained network ({CHECKPOINTS[which]}) as a .keras file that plain Keras 3 loads: "
                 "`keras.models.load_model`. Made when you click (a few seconds)." if path else
                 f"This run has no {CHECKPOINTS[which]} checkpoint yet: it is saved after each finished epoch.")
    target.download_button(label, data=functools.partial(export_bytes, path) if path else b"",
                           file_name=download_name(run_id, which), mime="application/octet-stream",
                           disabled=path is None, key=key, on_click="ignore", help=help_text,
                           icon=":material/download:", **button_args)
    return path is not None


def snippet_block(run_id: str, which: str = "last") -> None:
    """The code that classifies a photo with the downloaded file, and how to run it."""
    st.code(snippet(download_name(run_id, which)), language="python")
    st.caption("Save it as `classify.py` next to the downloaded file and run `python classify.py photo.jpg` "
               "(needs `pip install keras tensorflow pillow`). It crops the photo's centre and shrinks it to "
               "32×32 as CIFAR-10's photos were, and prints the class and its probability.")
