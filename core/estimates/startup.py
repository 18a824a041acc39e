"""The minute before the first batch, made honest: each run times its start-up phases (starting
TensorFlow or JAX, loading CIFAR-10, building the model, compiling its first step) and keeps them
in its status; the next run's panel reads them back and says "≈ 25 s here" from this machine's
own runs, falling back to the estimate (core/estimates/timing.py) only until one has run here.

Pure bookkeeping over the store: no TensorFlow, so the dashboard's viewers can use it.
"""

from __future__ import annotations

import socket
import statistics
from collections.abc import Mapping

from core.estimates.timing import FIRST_STEP_SECONDS

STATUS_FIELD = "startup_seconds"       # {phase key: seconds} in a run's status
STARTING = "starting"                  # "starting TensorFlow" and "starting JAX" share one key
LOADING, BUILDING, COMPILING = "loading data", "building model", "compiling first step"
STARTUP_PHASES = (STARTING, LOADING, BUILDING, COMPILING)
# Words a student reads for each phase (the phase names stay what the engine and its tests use).
PHASE_WORDS = {LOADING: "loading CIFAR-10", BUILDING: "building the model", COMPILING: "compiling the model",
               "evaluating test set": "testing on photos it has never seen", "saving checkpoint": "saving a checkpoint"}
RECENT_RUNS = 20                       # the runs a typical time is the median of
# Until a run has compiled here, the one phase with a figure of its own is the compile
# (the others take seconds).
ESTIMATES = {COMPILING: FIRST_STEP_SECONDS}


def phase_key(phase: str) -> str:
    """The key a start-up phase is timed under: "starting TensorFlow" -> "starting"."""
    return STARTING if phase.startswith(STARTING + " ") else phase


def phase_words(phase: str) -> str:
    """The phase as the panel says it: "compiling first step" -> "compiling the model"."""
    return PHASE_WORDS.get(phase, phase)


def startup_record(phase_seconds: Mapping[str, float]) -> dict[str, float]:
    """The start-up part of a run's phase timings (core.training.progress.Progress keeps them all), rounded,
    keyed by `phase_key`: what a run writes into its status once its first batch is done."""
    record: dict[str, float] = {}
    for phase, seconds in phase_seconds.items():
        key = phase_key(phase)
        if key in STARTUP_PHASES:
            record[key] = round(record.get(key, 0.0) + float(seconds), 1)
    return record


def typical_startup(store, variant: str, image_size: int, host: str | None = None) -> dict[str, float]:
    """{phase key: median seconds} over the last RECENT_RUNS runs that started on `host` (this
    machine by default). Building and compiling depend on the model, so they count only runs of the
    same variant and image size; starting and loading count every run. A phase no run has timed
    here is missing."""
    host = host or socket.gethostname()
    timed: dict[str, list[float]] = {key: [] for key in STARTUP_PHASES}
    seen = 0
    for summary in sorted(store.list(), key=lambda s: s.queued_at or 0.0, reverse=True):
        if seen >= RECENT_RUNS or not summary.ran_on.startswith(host):
            continue
        record = store.get(summary.run_id).read_status().get(STATUS_FIELD)
        if not isinstance(record, dict):
            continue
        seen += 1
        same_model = summary.variant == variant and summary.config.get("image_size") == image_size
        for key in STARTUP_PHASES:
            value = record.get(key)
            if isinstance(value, (int, float)) and value >= 0 and (same_model or key in (STARTING, LOADING)):
                timed[key].append(float(value))
    return {key: statistics.median(values) for key, values in timed.items() if values}


def phase_time_text(phase: str, elapsed: float | None, typical: Mapping[str, float]) -> str:
    """"0:12 so far · usually ≈ 25 s here", or "… ≈ 25 s (estimate)" before any run timed it here,
    or "0:12 so far" for a phase without a figure; "" when `phase` is not a start-up phase."""
    key = phase_key(phase)
    if key not in STARTUP_PHASES:
        return ""
    parts = [] if elapsed is None else [f"{_seconds_text(elapsed)} so far"]
    if key in typical:
        parts.append(f"usually ≈ {_seconds_text(typical[key])} here")
    elif key in ESTIMATES:
        parts.append(f"≈ {_seconds_text(ESTIMATES[key])} (estimate)")
    return " · ".join(parts)


def _seconds_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
