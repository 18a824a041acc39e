"""core.training.progress.format_clock: the one clock-style duration, shared by the CLI's progress line and
the dashboard's ETA (dashboard.charts.eta_text), which differ only in how they say "unknown"."""

import math

import pytest

from core.training.progress import format_clock
from dashboard.charts import eta_text


@pytest.mark.parametrize("seconds, text", [
    (0, "0:00"), (83, "1:23"), (59.4, "0:59"), (59.6, "1:00"), (3599.5, "1:00:00"), (3723, "1:02:03"),
    (90000, "25:00:00"), (-5, "0:00"), ("42", "0:42"),
])
def test_known_durations(seconds, text):
    assert format_clock(seconds) == text
    assert eta_text(seconds) == text          # the dashboard shows the same clock


@pytest.mark.parametrize("seconds", [None, math.nan, math.inf, -math.inf, "soon", 10**400, [1]])
def test_unknown_durations(seconds):
    assert format_clock(seconds) == "--:--"               # a terminal gets ASCII
    assert format_clock(seconds, unknown="?") == "?"
    assert eta_text(seconds) == "—"
