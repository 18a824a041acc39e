"""A run's states and the one table of the changes allowed between them.

Every state change in the store is a compare-and-set against this table (core/store/runs.py): a change
that the table does not allow from the state the database holds is refused, not written. So a
late Stop never reopens a finished run, two Resumes pressed at once queue the run once, and a
viewer that finds a trainer's lease expired cannot undo the trainer's last word.
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    """Where a run stands. A str, so it compares and serialises as the word it is."""

    QUEUED = "queued"              # waiting for a slot
    RUNNING = "running"            # a trainer holds its lease
    STOPPING = "stopping"          # asked to stop; the trainer ends at its next batch
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"    # its trainer went away without a word (killed, crashed, lease expired)
    CANCELLED = "cancelled"        # left the queue before it trained
    PRUNED = "pruned"              # a sweep's trial that its pruner ended early (core/sweeps); curve kept

    def __str__(self) -> str:
        return self.value


STATES = tuple(state.value for state in RunState)
ACTIVE_STATES = ("queued", "running", "stopping")        # not to be deleted or resumed
TRAINING_STATES = ("running", "stopping")                # a trainer somewhere holds the lease
RESUMABLE_STATES = ("stopped", "completed", "interrupted", "failed", "cancelled", "pruned")
FINAL_STATES = ("stopped", "completed", "failed", "pruned")   # what a trainer ends a run with
ENDED_WITH_A_REASON = ("failed", "stopped", "interrupted", "cancelled")   # their status may say why

# (from, event) -> to. Written once, used everywhere.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("queued", "claim"): "running",               # a trainer takes it (and its lease)
    ("queued", "cancel"): "cancelled",
    ("running", "stop"): "stopping",
    ("stopping", "stop"): "stopping",             # pressed again: nothing changes
    ("running", "complete"): "completed",
    ("stopping", "complete"): "completed",        # the stop came after the last batch
    ("running", "stopped"): "stopped",            # the trainer honoured a stop (Ctrl-C, early stopping)
    ("stopping", "stopped"): "stopped",
    ("running", "fail"): "failed",
    ("stopping", "fail"): "failed",
    ("running", "interrupt"): "interrupted",      # its lease expired, or Ray lost its task
    ("stopping", "interrupt"): "interrupted",
    # A sweep's pruner found the trial's curve behind the others' (core/training/pruning.py). From
    # stopping too: a Stop pressed during the epoch whose end pruned it changes nothing.
    ("running", "prune"): "pruned",
    ("stopping", "prune"): "pruned",
    **{(state, "resume"): "queued" for state in RESUMABLE_STATES},
}
EVENTS = tuple(sorted({event for _, event in TRANSITIONS}))


def next_state(current: str, event: str) -> str | None:
    """The state `event` leads to from `current`; None when the table does not allow it."""
    return TRANSITIONS.get((current, event))


def allowed(current: str, target: str) -> bool:
    """Whether some event takes a run from `current` to `target` (staying put is always allowed)."""
    return current == target or any(to == target for (source, _), to in TRANSITIONS.items() if source == current)


def sources(event: str) -> tuple[str, ...]:
    """The states from which `event` may happen."""
    return tuple(source for (source, name) in TRANSITIONS if name == event)


def event_for(current: str, target: str) -> str | None:
    """The event that takes `current` to `target`, for messages; None when there is none."""
    return next((name for (source, name), to in TRANSITIONS.items() if source == current and to == target), None)
