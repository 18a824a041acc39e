"""One run per Start: the Train page's guard against the same Start arriving twice.

A double click on a slow server, or one click that a busy server dispatched twice, must queue one
run, not two. In two whole test runs a single Playwright click made two identical runs 48 and
64 ms apart; the second time the page's per-session record did not stop it, so the two Starts did
not pass through one session one after the other (we did not find which part of Streamlit split
them). This guard is therefore shared by every session of the server and holds a lock from the
check to the run's creation: a Start with the same settings, name and author as one that created a
run moments ago gets that run back instead of a new one. The same session is held to
SAME_SESSION_SECONDS (a double click); another session to the shorter OTHER_SESSION_SECONDS, so that
two students who press Start on identical settings and names a few seconds apart each get a run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

SAME_SESSION_SECONDS = 5.0
OTHER_SESSION_SECONDS = 2.0


@dataclass(frozen=True)
class Started:
    run_id: str
    new: bool        # False: an identical Start had just created `run_id`


class StartGuard:
    """Remembers recent Starts (what, session, when, run id) for this server process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[Hashable, tuple[float, str, str]] = {}    # what -> (when, session, run id)

    def start_once(self, what: Hashable, session: str, start: Callable[[], str]) -> Started:
        """`start()` (which returns a run id), unless the same `what` started within the window.

        Args:
            what: What identifies a Start: the runs folder, the settings, the name and author.
            session: The Streamlit session asking.
            start: Creates the run; runs under the lock, so a second identical Start waits for it.
        """
        with self._lock:
            now = self._clock()
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < SAME_SESSION_SECONDS}
            if what in self._recent:
                when, by, run_id = self._recent[what]
                window = SAME_SESSION_SECONDS if by == session else OTHER_SESSION_SECONDS
                if now - when < window:
                    return Started(run_id, new=False)
            run_id = start()
            self._recent[what] = (self._clock(), session, run_id)
            return Started(run_id, new=True)


GUARD = StartGuard()     # one per server process: every session's Start passes through it
