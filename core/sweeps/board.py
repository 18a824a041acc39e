"""The class board as plain data: every finished run of the class (or of one sweep) as a point,
test accuracy against training minutes, by person, and the Pareto front of those points.

A run's minutes are the sum of its epochs' `epoch_seconds` (what it spent training, resumes
included), not its wall time from creation: a sweep's trials wait in the queue, and minutes of
waiting say nothing about a setting. A run whose metrics carry no epoch time (imported from an
old folder) falls back to its wall time. Pure functions over RunSummary and numbers: the pages
read summaries and epoch times through the store; nothing here imports Streamlit or Plotly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.store.runs import RunSummary
from core.sweeps.study import RUN_ATTR

COMMAND_LINE = "command line"      # a run with no owner and no author: started by `python -m core`
UNNAMED = "unnamed"                # a browser that never said its name: "unnamed 1", "unnamed 2", ...


@dataclass(frozen=True)
class BoardPoint:
    """One run on the board: `accuracy` in percent, `minutes` of training."""

    run_id: str
    name: str          # what the run is called ("" when it has no name)
    person: str
    accuracy: float
    minutes: float
    on_front: bool = False

    @property
    def label(self) -> str:
        return self.name or self.run_id


@dataclass(frozen=True)
class Board:
    """The points (runs without a test accuracy left out) and the Pareto front, by minutes."""

    points: tuple[BoardPoint, ...]
    front: tuple[BoardPoint, ...]
    people: tuple[str, ...]        # in the order they first reached the board (their colours)
    left_out: int = 0              # runs of the selection without a test accuracy yet


def people_of(summaries: Iterable[RunSummary]) -> dict[str, str]:
    """{run id: person}. A person is the name a run was started under; a run without one is its
    owner's, named by the name that owner gave on another run, else "unnamed N" per browser;
    a run nobody owns (the command line, an import) is "command line". Oldest runs first, so a
    person keeps their number as the class goes on."""
    ordered = sorted(summaries, key=lambda s: s.run_id)
    named_owner = {}
    for s in ordered:
        if s.owner and s.author:
            named_owner.setdefault(s.owner, s.author)
    unnamed: dict[str, str] = {}
    people = {}
    for s in ordered:
        if s.author:
            people[s.run_id] = s.author
        elif not s.owner:
            people[s.run_id] = COMMAND_LINE
        elif s.owner in named_owner:
            people[s.run_id] = named_owner[s.owner]
        else:
            people[s.run_id] = unnamed.setdefault(s.owner, f"{UNNAMED} {len(unnamed) + 1}")
    return people


def pareto_front(points: Iterable[BoardPoint]) -> list[BoardPoint]:
    """The points no other point beats on both counts (at least as accurate in no more minutes, and
    better in one), by minutes; identical points are all on it. Sorted by minutes, then best
    accuracy first, a point is on the front exactly when it is more accurate than every point
    before it (or ties the last one kept exactly)."""
    front: list[BoardPoint] = []
    for p in sorted(points, key=lambda p: (p.minutes, -p.accuracy)):
        last = front[-1] if front else None
        if last is None or p.accuracy > last.accuracy or (p.accuracy, p.minutes) == (last.accuracy, last.minutes):
            front.append(p)
    return front


def _minutes(summary: RunSummary, epoch_seconds: Mapping[str, float]) -> float | None:
    seconds = epoch_seconds.get(summary.run_id)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        seconds = summary.duration_seconds
    return seconds / 60 if seconds is not None and math.isfinite(seconds) else None


def class_board(summaries: Iterable[RunSummary], epoch_seconds: Mapping[str, float],
                only: Iterable[str] | None = None) -> Board:
    """The board of `summaries` (every run of the class; `only`: just these run ids, a sweep's).

    Args:
        summaries: the run store's summaries (damaged runs are left out).
        epoch_seconds: {run id: seconds summed over its finished epochs}.
        only: run ids to keep, or None for all.
    """
    summaries = [s for s in summaries if not s.damaged and s.kind == "train"]
    people = people_of(summaries)            # over the whole class: a person's name is the same on every board
    wanted = set(only) if only is not None else None
    chosen = [s for s in summaries if wanted is None or s.run_id in wanted]
    points = []
    for s in sorted(chosen, key=lambda s: s.run_id):
        minutes = _minutes(s, epoch_seconds)
        if s.test_accuracy is None or not math.isfinite(s.test_accuracy) or minutes is None:
            continue
        points.append(BoardPoint(s.run_id, s.name, people[s.run_id], 100 * s.test_accuracy, minutes))
    front_ids = {p.run_id for p in pareto_front(points)}
    points = [BoardPoint(p.run_id, p.name, p.person, p.accuracy, p.minutes, p.run_id in front_ids) for p in points]
    front = tuple(sorted((p for p in points if p.on_front), key=lambda p: (p.minutes, p.accuracy)))
    return Board(tuple(points), front, tuple(dict.fromkeys(p.person for p in points)), len(chosen) - len(points))


def trial_run_ids(sweep) -> list[str]:
    """The runs of a sweep's trials (core/sweeps/study.py Sweep), oldest trial first."""
    return [t.user_attrs[RUN_ATTR] for t in sweep.trials() if t.user_attrs.get(RUN_ATTR)]
