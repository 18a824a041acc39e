"""Streamlit glue shared by every page: singletons, cached loaders keyed by file time, run picker.

Pages call these and core, never the run files themselves. `st.cache_resource` holds shared
objects (the job manager, loaded Keras models, the test images); `st.cache_data` holds data
keyed by (run id, file mtime), so a finished run is parsed once and a running one is re-read
only when its files change.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.estimates import startup
from core.jobs.scheduler import JobManager
from core.store.runs import (ACTIVE_STATES, METRIC_COLUMNS, Run, RunNotFoundError, RunStore, RunSummary,
                             batch_accuracies_of, batch_losses_of)
from core.sweeps.queueing import drive_dashboard_sweeps

RUN_QUERY_PARAM = "run"
SELECTED_RUN_KEY = "selected_run"
# The server's budget for live redraws, shared by everyone watching a run train. Each redraw
# costs the training it shows about 1% of its throughput per redraw a second on our 2-core CPU
# (bench/viewers.py; mostly the GIL the training thread waits for), so a crowd slows its refresh
# instead: a page keeps its own rate while the budget allows it (Train's 1 s up to four viewers,
# Live curves' 3 s up to twelve); twenty viewers redraw every 5 s, forty every 10 s.
LIVE_REDRAWS_PER_SECOND = 4.0
LIVE_VIEWER_TIMEOUT_SECONDS = 30.0
LIVE_INTERVAL_KEY = "live_refresh_interval"   # the interval this session's live fragments run at


class LiveAudience:
    """Who is watching a live panel now: each session's last redraw, forgotten after
    LIVE_VIEWER_TIMEOUT_SECONDS. One per server (LIVE_AUDIENCE), shared by every session."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def watching(self, viewer: str = "", now: float | None = None) -> int:
        """Counts `viewer` (a session id; "" for none) as watching at `now`; how many watch."""
        now = time.time() if now is None else now
        with self._lock:
            if viewer:
                self._seen[viewer] = now
            for other, seen in list(self._seen.items()):
                if now - seen > LIVE_VIEWER_TIMEOUT_SECONDS:
                    del self._seen[other]
            return len(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


LIVE_AUDIENCE = LiveAudience()


def _keep_keras_state_between_reruns() -> None:
    """Stops Streamlit from calling keras.backend.clear_session() after every script run.

    Streamlit does that (script_runner._clean_problem_modules) for apps that build a model per
    run. Here models live in the job manager's thread, and every viewer's fragment reruns each
    second: each clear_session is a full garbage collection over TensorFlow's heap (0.15 s holding
    the GIL on our CPU) plus a cleared kernel cache, and it swaps Keras's per-thread state (dtype
    policy, name counters) under the training thread. Three viewers measured were enough to stall
    a run. matplotlib's clean-up, the other half of that function, is kept.
    """
    from streamlit.runtime.scriptrunner import script_runner

    def clean_all_but_keras() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            try:
                pyplot.close("all")
            except Exception:  # noqa: BLE001 - as Streamlit does: never fail a rerun over this
                pass

    script_runner._clean_problem_modules = clean_all_but_keras


_keep_keras_state_between_reruns()


@st.cache_resource
def job_manager() -> JobManager:
    """The process-wide job manager: one per server, shared by every tab and session."""
    return dashboard_job_manager(runs_dir=os.environ.get("EFFLAB_RUNS_DIR"), data_dir=os.environ.get("EFFLAB_DATA_DIR"))


def dashboard_job_manager(**kwargs) -> JobManager:
    """A JobManager as the dashboard runs one: its scheduler also moves on the sweeps started from
    the Sweep page (`kwargs` as JobManager's)."""
    return JobManager(**kwargs, periodic_work=[drive_dashboard_sweeps])


def session_id() -> str:
    """This browser session's id; "" outside a script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def audience_interval(fastest: float) -> float:
    """Counts this session as watching now; the interval the live audience's size calls for."""
    return max(fastest, round(LIVE_AUDIENCE.watching(session_id()) / LIVE_REDRAWS_PER_SECOND, 1))


def live_refresh_seconds(fastest: float = 1.0) -> float:
    """How often this session's live fragment should redraw: its `run_every`, set on a full run.

    The interval grows with the audience instead of the cost (LIVE_REDRAWS_PER_SECOND). Call
    keep_live_refresh_in_budget on every redraw, so the session keeps counting and slows down
    when a crowd arrives after it; one that stops redrawing drops out after LIVE_VIEWER_TIMEOUT_SECONDS.
    """
    interval = st.session_state[LIVE_INTERVAL_KEY] = audience_interval(fastest)
    return interval


def keep_live_refresh_in_budget(fastest: float = 1.0) -> None:
    """On each live redraw: still watching; and when the audience has grown so much that this
    session's timer runs too fast for the budget, redraw the page, which sets a slower timer."""
    if audience_interval(fastest) >= 1.5 * st.session_state.get(LIVE_INTERVAL_KEY, fastest):
        st.rerun()


MY_RUNS_KEY = "my_runs"   # ids this browser session started or resumed: the Train page follows the last


def remember_my_run(run_id: str) -> None:
    st.session_state.setdefault(MY_RUNS_KEY, [])
    if run_id not in st.session_state[MY_RUNS_KEY]:
        st.session_state[MY_RUNS_KEY].append(run_id)
    st.session_state[SELECTED_RUN_KEY] = run_id


def my_runs() -> list[str]:
    """Runs this browser session started or resumed, oldest first."""
    return list(st.session_state.get(MY_RUNS_KEY) or [])


def may_act(run_id: str) -> bool:
    """Whether this browser may stop, resume, cancel, evaluate or delete the run: its own, or every
    run for the teacher (dashboard/control.py). False for a run that is gone."""
    from dashboard import control
    run = get_run(run_id)
    try:
        return run is not None and control.may_act(run.owner())
    except RunNotFoundError:
        return False


def store() -> RunStore:
    return job_manager().store


def get_run(run_id: str) -> Run | None:
    """The run, or None for an id that is malformed, escapes the runs folder, or is gone."""
    try:
        return store().get(run_id)
    except RunNotFoundError:
        return None


def version(run_id: str, artifact: str) -> float:
    """The run store's version stamp of one artifact of a run (0.0 when it or the run is absent):
    the key of every cache of something derived from it."""
    run = get_run(run_id)
    return run.version(artifact) if run is not None else 0.0


def run_summaries() -> list[RunSummary]:
    return store().list()


@st.cache_data(max_entries=256, show_spinner=False)
def _metrics(root: str, run_id: str, mtime: float) -> pd.DataFrame:
    rows = RunStore(root).get(run_id).read_metrics()
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


@st.cache_data(max_entries=64, show_spinner=False)
def _batches(root: str, run_id: str, mtime: float) -> dict[int, list[tuple[int, float, float]]]:
    return RunStore(root).get(run_id).read_batches()


# Losses and accuracies come from one read of batches.csv per version (_batches), each kept as drawn.
@st.cache_data(max_entries=64, show_spinner=False)
def _batch_losses(root: str, run_id: str, mtime: float) -> dict[int, list[tuple[int, float]]]:
    return batch_losses_of(_batches(root, run_id, mtime))


@st.cache_data(max_entries=64, show_spinner=False)
def _batch_accuracies(root: str, run_id: str, mtime: float) -> dict[int, list[tuple[int, float]]]:
    return batch_accuracies_of(_batches(root, run_id, mtime))


def batch_losses(run_id: str) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean loss), ...]} of a run's finished epochs ({} when none)."""
    run = get_run(run_id)
    return {} if run is None else _batch_losses(str(store().root), run_id, run.version("batches"))


def batch_accuracies(run_id: str) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean accuracy), ...]} of a run's finished epochs that recorded it
    ({} for none, and for runs from before it was recorded)."""
    run = get_run(run_id)
    return {} if run is None else _batch_accuracies(str(store().root), run_id, run.version("batches"))


def batches_version(run_id: str) -> float:
    """The version stamp of a run's per-batch losses: it changes when an epoch's batches are added."""
    return version(run_id, "batches")


def metrics_version(run_id: str) -> float:
    """The version stamp of a run's metrics (0 when it has none): it changes exactly when an epoch is added."""
    return version(run_id, "metrics")


def training_labels():
    """The CIFAR-10 training labels (loaded once per process and shared with the training thread),
    or None when the data cannot be loaded: Start reports that with its reason."""
    from core.data.cifar10 import DataError, load_cifar10
    try:
        return load_cifar10(os.environ.get("EFFLAB_DATA_DIR"), allow_download=False).y_train
    except (DataError, OSError):
        return None


def metrics_frame(run_id: str) -> pd.DataFrame:
    """metrics.csv of a run as a DataFrame (empty, with the columns, when there is none)."""
    run = get_run(run_id)
    if run is None:
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    return _metrics(str(store().root), run_id, run.version("metrics"))


@st.cache_data(max_entries=32, show_spinner=False)
def _predictions(root: str, run_id: str, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    return RunStore(root).get(run_id).read_predictions()


def predictions(run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(y_true, y_prob) of a run's test-set predictions, or None when it has none or they are
    damaged (predictions_damage tells which)."""
    run = get_run(run_id)
    if run is None or not run.has_predictions():
        return None
    try:
        return _predictions(str(store().root), run_id, run.version("predictions"))
    except (OSError, ValueError, KeyError):
        return None


def predictions_damage(run_id: str) -> str:
    """Why a run's predictions file cannot be read; "" when it reads (or there is none)."""
    run = get_run(run_id)
    if run is None or not run.has_predictions():
        return ""
    try:
        _predictions(str(store().root), run_id, run.version("predictions"))
    except FileNotFoundError:
        return ""
    except (OSError, ValueError, KeyError) as exc:
        return str(exc) or type(exc).__name__
    return ""


@st.cache_data(max_entries=32, show_spinner=False)
def _evaluation(root: str, run_id: str, mtime: float):
    from core.analysis.evaluate import evaluate
    y_true, y_prob = RunStore(root).get(run_id).read_predictions()
    return evaluate(y_true, y_prob)


def evaluation(run_id: str):
    """core.analysis.evaluate.Evaluation of a run's predictions, computed once per predictions file; None
    when it has none (or they are damaged)."""
    if predictions(run_id) is None:
        return None
    return _evaluation(str(store().root), run_id, version(run_id, "predictions"))


def status(run_id: str) -> dict[str, Any]:
    """status.json (with a dead trainer marked interrupted); {} when unreadable."""
    run = get_run(run_id)
    try:
        return run.live_status() if run else {}
    except (OSError, ValueError):
        return {}


@st.cache_data(ttl=60, show_spinner=False)
def typical_startup(run_id: str) -> dict[str, float]:
    """This machine's usual start-up times for a run like `run_id` (core/estimates/startup.py), read at most
    once a minute rather than at each of the status panel's redraws."""
    run = get_run(run_id)
    try:
        config = run.read_config() if run else None
    except (OSError, ValueError):
        config = None
    if config is None:
        return {}
    return startup.typical_startup(job_manager().store, config.variant, config.image_size)


@st.cache_resource(show_spinner="Loading the CIFAR-10 test images ...")
def test_images() -> np.ndarray:
    """The CIFAR-10 test images (uint8, 10000×32×32×3), shared read-only by every session."""
    from core.data.cifar10 import load_cifar10
    images = load_cifar10(os.environ.get("EFFLAB_DATA_DIR"), allow_download=False).x_test
    images.setflags(write=False)
    return images


@st.cache_resource(max_entries=2, show_spinner="Loading the model ...")
def _model(path: str, mtime: float):
    from core.training.model import load_checkpoint
    return load_checkpoint(path)


def has_checkpoint(run_id: str, which: str = "last") -> bool:
    run = get_run(run_id)
    return run is not None and run.checkpoint(which) is not None


def load_model(run_id: str, which: str = "last"):
    """A run's Keras model from its last (or best) checkpoint; reloaded when the file changes."""
    run = get_run(run_id)
    path = run.checkpoint(which) if run is not None else None
    if path is None:
        return None
    return _model(str(path), run.version(which))


def select_run(run_ids: list[str], *, label: str = "Run", key: str = "run_picker",
               labels: dict[str, str] | None = None, sidebar: bool = True) -> str | None:
    """One run chosen on any page: remembered across pages and put in the URL (?run=...),
    so a link opens the same run and every page starts on the run the user last looked at."""
    if not run_ids:
        return None
    from_url = st.query_params.get(RUN_QUERY_PARAM)
    if from_url and from_url not in run_ids:
        # Refused, not followed: only ids listed from the runs folder are ever opened.
        st.warning(f"There is no run `{shown_text(from_url)}` here (run ids look like "
                   "20261125-142301-b0-3f9a); showing another run instead.")
    wanted = from_url if from_url in run_ids else st.session_state.get(SELECTED_RUN_KEY)
    index = run_ids.index(wanted) if wanted in run_ids else 0
    container = st.sidebar if sidebar else st
    chosen = container.selectbox(label, run_ids, index=index, key=key,
                                 format_func=lambda rid: (labels or {}).get(rid, rid))
    st.session_state[SELECTED_RUN_KEY] = chosen
    st.query_params[RUN_QUERY_PARAM] = chosen
    return chosen


def shown_text(text: str, limit: int = 80) -> str:
    """Text from a URL, safe to put in Markdown: no link, image or formatting can be smuggled in."""
    return re.sub(r"[^\w./:@+-]", "?", str(text))[:limit]


def run_label(summary: RunSummary) -> str:
    """"Ana — lr 3e-3 — by Ana · 20261125-142301-b0-3f9a · B0 32px · completed · 53.1%" for pickers
    and legends. Plain text: where it goes into Markdown, pass it through markdown_text()."""
    config = summary.config or {}
    parts = [summary.label] if summary.label else []
    parts.append(summary.run_id)
    if summary.variant:
        parts.append(f"{summary.variant.upper()} {config.get('image_size', '?')}px")
    parts.append(summary.damaged and "damaged" or summary.state)
    if summary.test_accuracy is not None:
        parts.append(f"test {100 * summary.test_accuracy:.1f}%")
    return " · ".join(parts)


def resume_label(summary: RunSummary) -> str:
    """A run in the Resume picker: its label and how far it got, a stopped epoch's batches too
    ("… · 3/10 epochs and 120 batches of epoch 4"), so that nobody thinks a Stop lost them."""
    done = f"{summary.epochs_done}/{summary.epochs} epochs"
    if summary.batches_kept:
        done += f" and {summary.batches_kept} batches of epoch {summary.epochs_done + 1}"
    return f"{run_label(summary)} · {done}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:])")


def markdown_text(text: str) -> str:
    """User text (a run's name) made inert inside Markdown: every special character escaped, so
    it shows as typed and can never become a link, an image, emphasis or HTML."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def finished_with_model(summaries: list[RunSummary]) -> list[RunSummary]:
    """Runs that have a checkpoint and are not training: the ones whose model can be asked."""
    return [s for s in summaries
            if not s.damaged and s.state not in ACTIVE_STATES and has_checkpoint(s.run_id)]


def with_predictions(summaries: list[RunSummary]) -> list[RunSummary]:
    """Runs with test-set predictions to show (the report, the confusion page)."""
    return [s for s in summaries if s.has_predictions and not s.damaged]


def config_json(run_id: str) -> str | None:
    """config.json of a run as the engine reads it (re-serialised: validated), for download."""
    run = get_run(run_id)
    try:
        return run.read_config().to_json() if run else None
    except (OSError, ValueError):
        return None


def metrics_csv(run_id: str) -> str:
    return metrics_frame(run_id).to_csv(index=False)


def epoch_seconds(summaries: list[RunSummary]) -> dict[str, float]:
    """{run id: seconds over its finished epochs} of the runs with a test accuracy (the class
    board's minutes), each from its cached metrics."""
    seconds = {}
    for s in summaries:
        if s.test_accuracy is not None and not s.damaged:
            seconds[s.run_id] = float(pd.to_numeric(metrics_frame(s.run_id)["epoch_seconds"], errors="coerce").sum())
    return seconds
