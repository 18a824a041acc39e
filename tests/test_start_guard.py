"""dashboard/start_guard.py: one run per Start, even when the same Start arrives twice at once or
through two sessions (a whole test run saw one click make two runs 64 ms apart, past the page's
per-session record). The Train page's AppTest presses Start twice in one session
(test_pages_training.py); these tests hold the clock and the threads."""

from __future__ import annotations

import threading
import time

from dashboard.start_guard import OTHER_SESSION_SECONDS, SAME_SESSION_SECONDS, StartGuard, Started


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _starter():
    made = []

    def start() -> str:
        made.append(f"run-{len(made) + 1}")
        return made[-1]
    return made, start


def test_the_same_start_again_gets_the_run_back_within_its_window():
    clock, (made, start) = Clock(), _starter()
    guard = StartGuard(clock)
    first = guard.start_once("settings", "tab-a", start)
    assert (first.run_id, first.new) == ("run-1", True)
    clock.now += SAME_SESSION_SECONDS - 0.5                 # a double click, the same session
    assert (guard.start_once("settings", "tab-a", start).run_id, made) == ("run-1", ["run-1"])
    clock.now += 0.5                                        # its window is over: a new run
    assert guard.start_once("settings", "tab-a", start) == Started("run-2", True)
    assert guard.start_once("other settings", "tab-a", start).run_id == "run-3"


def test_a_double_click_on_a_slow_page_counts_from_when_the_page_was_drawn():
    """The second click's callback runs only after the first click's whole page: on a busy server
    that took 6 s, past the window counted from the run's creation."""
    clock, (made, start) = Clock(), _starter()
    guard = StartGuard(clock)
    guard.start_once("settings", "tab-a", start)
    clock.now += 2 * SAME_SESSION_SECONDS                   # the rest of a slow page
    guard.page_drawn("tab-b")                               # another tab's page: not this Start's
    guard.page_drawn("tab-a")
    clock.now += 0.1
    assert not guard.start_once("settings", "tab-a", start).new
    clock.now += SAME_SESSION_SECONDS - 0.6
    guard.page_drawn("tab-a")                               # later reruns do not extend the window
    clock.now += 0.5
    assert guard.start_once("settings", "tab-a", start).new
    assert made == ["run-1", "run-2"]


def test_another_session_counts_from_the_creation_even_after_the_page_was_drawn():
    clock, (made, start) = Clock(), _starter()
    guard = StartGuard(clock)
    guard.start_once("settings", "tab-a", start)
    clock.now += 2 * OTHER_SESSION_SECONDS
    guard.page_drawn("tab-a")
    assert guard.start_once("settings", "tab-b", start).new
    assert made == ["run-1", "run-2"]


def test_another_session_is_held_to_the_shorter_window():
    clock, (made, start) = Clock(), _starter()
    guard = StartGuard(clock)
    guard.start_once("settings", "tab-a", start)
    clock.now += OTHER_SESSION_SECONDS / 2                  # the same Start, split over two sessions
    assert not guard.start_once("settings", "tab-b", start).new
    clock.now += OTHER_SESSION_SECONDS                      # a second student, seconds later
    assert guard.start_once("settings", "tab-b", start).new
    assert made == ["run-1", "run-2"]


def test_a_start_that_fails_is_not_remembered():
    clock, (made, start) = Clock(), _starter()
    guard = StartGuard(clock)

    def refuse() -> str:
        raise ValueError("no room")
    try:
        guard.start_once("settings", "tab-a", refuse)
    except ValueError:
        pass
    assert guard.start_once("settings", "tab-a", start).run_id == "run-1"


def test_two_identical_starts_at_once_make_one_run():
    guard = StartGuard()
    made, lock = [], threading.Lock()

    def slow_start() -> str:                                # as long as creating a run folder
        with lock:
            made.append(f"run-{len(made) + 1}")
            name = made[-1]
        time.sleep(0.2)
        return name
    results, go = [], threading.Barrier(2)

    def press(session: str) -> None:
        go.wait()
        results.append(guard.start_once("settings", session, slow_start))
    threads = [threading.Thread(target=press, args=(s,)) for s in ("tab-a", "tab-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == ["run-1"]
    assert sorted(r.new for r in results) == [False, True] and {r.run_id for r in results} == {"run-1"}
