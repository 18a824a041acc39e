"""The line of runs waiting to train, as people see it: place, who, and about how long to wait.

The order is the run store's (oldest `queued_at` first); the wait is a rough sum: what the runs
training now still need (their live ETA) plus the estimated length of each run ahead, spread over
the slots. Estimates come from core/estimates/timing.py (figures we measured, scaled by FLOPs), so they
are labelled "about" wherever they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.data.cifar10 import training_images
from core.estimates.timing import FIRST_STEP_SECONDS, epoch_seconds, evaluation_seconds, training_speedup
from core.store.runs import TRAINING_STATES, RunStore, RunSummary
from core.store.states import RunState
from core.training.lr_find import STEPS


@dataclass(frozen=True)
class QueueEntry:
    """One run in line or in training."""

    run_id: str
    state: str                 # "running" / "stopping", or "queued"
    place: int                 # 0 while training; 1 = next to start
    label: str                 # name and author, "" when none was given
    wait_seconds: float        # until it starts (0 while training)
    run_seconds: float         # how long it trains (remaining, while training)
    memory_wait: str = ""      # "waiting for memory: ..." when it would start but does not fit yet
    owner: str | None = None   # who may act on it (core/store/ownership.py)


LR_FIND_LABEL = "learning-rate finder"
EVALUATE_LABEL = "test-set evaluation"


def estimated_run_seconds(summary: RunSummary) -> float:
    """About how long a queued run trains: its epochs at the estimated speed, plus compiling (a
    learning-rate finder job: its hundred-odd batches; an evaluation job: the test set)."""
    config = summary.config or {}
    if summary.kind == "evaluate":
        try:
            return evaluation_seconds(config)
        except (KeyError, ValueError, TypeError):
            return FIRST_STEP_SECONDS
    if summary.kind == "lr_find":
        try:
            rate = epoch_seconds(config.get("variant", "b0"), int(config.get("image_size", 32)), 1)
        except (KeyError, ValueError, TypeError):
            rate = 0.0
        return FIRST_STEP_SECONDS + STEPS * int(config.get("batch_size", 128)) * rate
    try:
        images = training_images(int(config.get("train_limit", 0)), float(config.get("val_fraction", 0.1)))
        per_epoch = epoch_seconds(config.get("variant", "b0"), int(config.get("image_size", 32)), images,
                                  speedup=training_speedup(config))
    except (KeyError, ValueError, TypeError):
        per_epoch = 0.0
    remaining_epochs = max(1, int(summary.epochs or config.get("epochs", 1)) - summary.epochs_done)
    return FIRST_STEP_SECONDS + remaining_epochs * per_epoch


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_entries(store: RunStore, slots: int, progress_of, memory_waits: dict[str, str] | None = None
                  ) -> list[QueueEntry]:
    """Runs training now, then the queue in order, each with its estimated wait.

    Args:
        store: the run store.
        slots: how many runs train at once.
        progress_of: run_id -> live progress dict (for the ETA of runs in training).
        memory_waits: run_id -> why it waits for memory (the scheduler's, core/jobs/admission.py).
    """
    summaries = store.list(kinds=None)
    training = [s for s in summaries if s.state in TRAINING_STATES and not s.damaged]
    queued = sorted((s for s in summaries if s.state == RunState.QUEUED and not s.damaged),
                    key=lambda s: (s.queued_at or 0.0, s.run_id))
    entries, free_at = [], []
    for s in sorted(training, key=lambda s: s.run_id):
        eta = progress_of(s.run_id).get("eta_seconds")
        remaining = float(eta) if isinstance(eta, (int, float)) and eta == eta else estimated_run_seconds(s)
        entries.append(QueueEntry(s.run_id, s.state, 0, _label(s), 0.0, remaining, owner=s.owner))
        free_at.append(remaining)
    # Each queued run takes the slot that frees first (a small simulation of the scheduler).
    free_at = sorted(free_at + [0.0] * max(0, slots - len(free_at)))[:max(1, slots)] or [0.0]
    for place, s in enumerate(queued, start=1):
        start = min(free_at)
        length = estimated_run_seconds(s)
        free_at[free_at.index(start)] = start + length
        entries.append(QueueEntry(s.run_id, RunState.QUEUED, place, _label(s), start, length,
                                  (memory_waits or {}).get(s.run_id, ""), s.owner))
    return entries


def _label(summary: RunSummary) -> str:
    job = {"lr_find": LR_FIND_LABEL, "evaluate": EVALUATE_LABEL}.get(summary.kind)
    return " — ".join(part for part in (job, summary.label) if part) if job else summary.label
