"""Streamlit glue for the classroom pages (presentation, try your own image, report, compare):
run pickers' filters and cached model work. Keyed like dashboard/state.py: by checkpoint or
file and its modification time, so a finished run's work is done once per server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import streamlit as st

from core.runs import ACTIVE_STATES, RunStore, RunSummary
from dashboard import state


def checkpoint_key(run_id: str) -> tuple[str, float] | None:
    """(path, version) of a run's last checkpoint, or None when it has none."""
    run = state.get_run(run_id)
    path = run.checkpoint("last") if run is not None else None
    return (str(path), run.version("last")) if path is not None else None


def finished_with_model(summaries: list[RunSummary]) -> list[RunSummary]:
    """Runs that have a checkpoint and are not training: the ones whose model can be asked."""
    return [s for s in summaries
            if not s.damaged and s.state not in ACTIVE_STATES and state.has_checkpoint(s.run_id)]


def with_predictions(summaries: list[RunSummary]) -> list[RunSummary]:
    return [s for s in summaries if s.has_predictions and not s.damaged]


# --- asking a model about one image ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Answer:
    probabilities: np.ndarray   # (10,) float64
    heatmap: np.ndarray         # (H, W) in [0, 1] at the model's input size
    method: str                 # "grad-cam" or "smoothgrad"
    description: str
    input_side: int             # the model's input size, px


@st.cache_data(max_entries=128, show_spinner=False)
def _answer(checkpoint: str, checkpoint_time: float, pixels: bytes, shape: tuple[int, ...],
            class_index: int | None, method: str, _model) -> Answer:
    from core.predict_image import predict
    from core.saliency import explain, input_size
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    probabilities = predict(_model, image)
    target = int(np.argmax(probabilities)) if class_index is None else int(class_index)
    saliency = explain(_model, image, target, method)
    return Answer(probabilities, saliency.heatmap, saliency.method, saliency.description,
                  input_size(_model)[0])


def ask_model(run_id: str, image: np.ndarray, class_index: int | None = None,
              method: str = "auto") -> Answer | None:
    """The run's latest checkpoint on one uint8 32×32 image: probabilities, and a saliency map
    (core.saliency.explain's `method`) for `class_index` (default: the predicted class). None when
    the run has no checkpoint."""
    key = checkpoint_key(run_id)
    model = state.load_model(run_id) if key else None
    if model is None:
        return None
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    return _answer(key[0], key[1], pixels.tobytes(), pixels.shape, class_index, method, model)


# --- the shareable report ---------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner=False)
def _report(root: str, run_id: str, times: tuple[float, ...], images_ok: bool) -> tuple[str, str]:
    from core.evaluate import mistakes
    from dashboard.report import build_report, per_class_csv
    run = RunStore(root).get(run_id)
    evaluation = state.evaluation(run_id)
    y_true, y_prob = state.predictions(run_id)
    images = None
    if images_ok:
        images = state.test_images()
        images = images if len(images) == evaluation.n else None
    html = build_report(run_id=run_id, config=run.read_config().to_dict(), status=state.status(run_id),
                        metrics=state.metrics_frame(run_id), evaluation=evaluation,
                        mistakes=mistakes(y_true, y_prob), images=images, generated=datetime.now())
    return html, per_class_csv(evaluation)


def report_files(run_id: str) -> tuple[str, str, str | None]:
    """(report HTML, per-class CSV, a note when the test images could not be embedded)."""
    from core.data import DataError
    note = None
    try:
        state.test_images()
        images_ok = True
    except DataError as exc:
        images_ok, note = False, f"The test images could not be loaded, so the mistakes are listed without them: {exc}"
    run = state.get_run(run_id)
    times = run.versions("config", "status", "metrics", "predictions") if run else ()
    html, csv = _report(str(state.store().root), run_id, times, images_ok)
    return html, csv, note
