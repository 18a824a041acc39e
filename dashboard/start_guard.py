"""One run per Start: the Train page's guard against the same Start arriving twice.

A double click on a slow server, or one click that a busy server dispatched twice, must queue one
run, not two. In two whole test runs a single Playwright click made two identical runs 48 and
64 ms apart; the second time the page's per-session record did not stop it, so the two Starts did
not pass through one session one after the other (we did not find which part of Streamlit split
them). This guard is therefore shared by every session of the server and holds a lock from the
check to the run's creation: a Start with the same settings, name and author as one that created a
run moments ago gets that run back instead of a new one. The same session is held to
SAME_SESSION_SECONDS (a double click) after its page has drawn the run it started; another session to
the shorter OTHER_SESSION_SECONDS after the run was made, so that two students who press Start on
identical settings and names a few seconds apart each get a run.
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


@dataclass
class _Recent:
    created: float          # when the run was made
    session: str            # by which session
    run_id: str
    shown: float | None = None   # when that session's page had drawn itself after it (None: not yet)

    def reference(self) -> float:
        return self.created if self.shown is None else self.shown


class StartGuard:
    """Remembers recent Starts (what, session, when, run id) for this server process.

    A double click's second Start reaches the page's callback only after the first click's whole
    page has run, which a busy server can take longer than the window to do (a whole test run saw
    6 s). So the same session's window runs from when its page had drawn itself after the run was
    made (`page_drawn`), not from the run's creation; another session's, from the creation.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[Hashable, _Recent] = {}

    def start_once(self, what: Hashable, session: str, start: Callable[[], str]) -> Started:
        """`start()` (which returns a run id), unless the same `what` started within the window.

        Args:
            what: What identifies a Start: the runs folder, the settings, the name and author.
            session: The Streamlit session asking.
            start: Creates the run; runs under the lock, so a second identical Start waits for it.
        """
        with self._lock:
            now = self._clock()
            self._recent = {k: v for k, v in self._recent.items() if now - v.reference() < SAME_SESSION_SECONDS}
            recent = self._recent.get(what)
            if recent is not None:
                if recent.session == session and now - recent.reference() < SAME_SESSION_SECONDS:
                    return Started(recent.run_id, new=False)
                if recent.session != session and now - recent.created < OTHER_SESSION_SECONDS:
                    return Started(recent.run_id, new=False)
            run_id = start()
            self._recent[what] = _Recent(self._clock(), session, run_id)
            return Started(run_id, new=True)

    def page_drawn(self, session: str) -> None:
        """The Train page of `session` has run to its end: a Start it made has been shown, and a
        double click's window starts now (once: later reruns do not extend it)."""
        with self._lock:
            now = self._clock()
            for recent in self._recent.values():
                if recent.session == session and recent.shown is None:
                    recent.shown = now


GUARD = StartGuard()     # one per server process: every session's Start passes through it
