"""Live progress of the running job: written by the training thread, read by any number of viewers.

Kept apart from core.train so that viewers (the dashboard, the CLI's progress bar) can use it
without importing TensorFlow.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class Progress:
    """Live state of the running job, shared between the training thread and its viewers."""

    def __init__(self, **initial: Any):
        self._lock = threading.Lock()
        self._data: dict[str, Any] = dict(initial)

    def update(self, **changes: Any) -> None:
        with self._lock:
            self._data.update(changes, updated=time.time())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)
