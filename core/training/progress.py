"""Live progress of the running job: written by the training thread, read by any number of viewers.

Kept apart from core.training.train so that viewers (the dashboard, the CLI's progress bar) can use it
without importing TensorFlow.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any


class Progress:
    """Live state of the running job, shared between the training thread and its viewers."""

    def __init__(self, **initial: Any):
        self._lock = threading.Lock()
        self._data: dict[str, Any] = dict(initial)
        now = time.time()
        self._data.update(phase_started=now, phase_seconds={}, updated=now)

    def update(self, **changes: Any) -> None:
        """Applies `changes`; a new `phase` also closes the last one's timing: `phase_started` (when
        the current phase began) and `phase_seconds` ({phase: seconds spent in it so far}), so the
        panel can say how long a phase has taken and core/estimates/startup.py what start-up costs here."""
        with self._lock:
            now = time.time()
            phase = changes.get("phase")
            if phase is not None and phase != self._data.get("phase"):
                finished = self._data.get("phase")
                if finished is not None:
                    spent = dict(self._data["phase_seconds"])
                    spent[finished] = spent.get(finished, 0.0) + now - self._data["phase_started"]
                    self._data["phase_seconds"] = spent
                self._data["phase_started"] = now
            self._data.update(changes, updated=now)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)


def format_clock(seconds: Any, unknown: str = "--:--") -> str:
    """A duration as a clock: "4:05", "1:02:03" (rounded to the second, negative as 0:00).

    Args:
        seconds: The duration; None, NaN, infinite or not a number is unknown.
        unknown: What to show then ("--:--" on a terminal, "—" in the dashboard).
    """
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return unknown
    if not math.isfinite(value):
        return unknown
    value = max(0, int(round(value)))
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
