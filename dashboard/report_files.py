"""The shareable report of a run, built once per version of what it shows (config, status,
metrics, per-batch losses and accuracies, predictions) and shared by every session: dashboard/report.py builds
the HTML, this caches it for the Report page."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from core.store.runs import RunStore, batch_accuracies_of, batch_losses_of
from dashboard import state


@st.cache_data(max_entries=4, show_spinner=False)
def _report(root: str, run_id: str, times: tuple[float, ...], images_ok: bool) -> tuple[str, str]:
    from core.analysis.evaluate import mistakes
    from dashboard.report import build_report, per_class_csv
    run = RunStore(root).get(run_id)
    batches = run.read_batches()
    evaluation = state.evaluation(run_id)
    y_true, y_prob = state.predictions(run_id)
    images = None
    if images_ok:
        images = state.test_images()
        images = images if len(images) == evaluation.n else None
    html = build_report(run_id=run_id, config=run.read_config().to_dict(), status=state.status(run_id),
                        metrics=state.metrics_frame(run_id), evaluation=evaluation,
                        mistakes=mistakes(y_true, y_prob), images=images, batch_losses=batch_losses_of(batches),
                        batch_accuracies=batch_accuracies_of(batches), generated=datetime.now())
    return html, per_class_csv(evaluation)


def report_files(run_id: str) -> tuple[str, str, str | None]:
    """(report HTML, per-class CSV, a note when the test images could not be embedded)."""
    from core.data.cifar10 import DataError
    note = None
    try:
        state.test_images()
        images_ok = True
    except DataError as exc:
        images_ok, note = False, f"The test images could not be loaded, so the mistakes are listed without them: {exc}"
    run = state.get_run(run_id)
    times = run.versions("config", "status", "metrics", "batches", "predictions") if run else ()
    html, csv = _report(str(state.store().root), run_id, times, images_ok)
    return html, csv, note
