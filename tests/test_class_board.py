"""The class board (issue 31): its points and Pareto front as data (core/sweeps/board.py, checked
against the front's definition), its chart, the Class board page and the two sweep slides of
presentation mode (AppTest), on runs ended as a trainer ends them (no training here)."""

from __future__ import annotations

import json
import random

import pytest
from conftest import ended, plotly_values

from core.store.runs import RunSummary
from core.sweeps.board import COMMAND_LINE, BoardPoint, class_board, pareto_front, people_of
from dashboard import board_charts, slides

BOARD, PRESENT = "../pages/board.py", "../pages/present.py"


def _dominated(p: BoardPoint, points: list[BoardPoint]) -> bool:
    """The definition: another point at least as good on both counts and better on one."""
    return any(q.accuracy >= p.accuracy and q.minutes <= p.minutes
               and (q.accuracy > p.accuracy or q.minutes < p.minutes) for q in points)


@pytest.mark.parametrize("seed", range(20))
def test_the_front_is_exactly_the_points_nobody_beats_on_both(seed):
    rng = random.Random(seed)
    # Few distinct values, so ties in accuracy, in minutes and in both come up often.
    points = [BoardPoint(f"r{i}", "", "p", rng.choice([10.0, 40.0, 55.5, 70.0, 90.0]),
                         rng.choice([1.0, 2.0, 3.5, 8.0])) for i in range(rng.randint(1, 25))]
    front = pareto_front(points)
    assert {p.run_id for p in front} == {p.run_id for p in points if not _dominated(p, points)}
    assert [p.minutes for p in front] == sorted(p.minutes for p in front)
    assert [p.accuracy for p in front] == sorted(p.accuracy for p in front)     # up and to the right


def _summary(run_id, accuracy=None, seconds=None, *, author="", owner=None, name="", state="completed", damaged=""):
    return RunSummary(run_id, state, test_accuracy=accuracy, duration_seconds=seconds, author=author, owner=owner,
                      name=name, damaged=damaged)


def test_a_person_is_the_author_else_the_owners_name_else_unnamed_per_browser_else_the_command_line():
    runs = [_summary("1", author="Ana", owner="a"), _summary("2", owner="a"), _summary("3", owner="b"),
            _summary("4", owner="c"), _summary("5", owner="b"), _summary("6"), _summary("7", author="Ben")]
    assert people_of(runs) == {"1": "Ana", "2": "Ana", "3": "unnamed 1", "4": "unnamed 2", "5": "unnamed 1",
                               "6": COMMAND_LINE, "7": "Ben"}


def test_the_board_counts_minutes_of_training_and_leaves_out_runs_without_a_test_accuracy():
    runs = [_summary("20261207-100000-b0-aaaa", 0.5, 600, author="Ana", name="slow"),
            _summary("20261207-100100-b0-bbbb", 0.7, 9999, author="Ben", name="trial 1"),   # waited in the queue
            _summary("20261207-100200-b0-cccc", 0.6, 120),             # no epoch times: its wall time
            _summary("20261207-100300-b0-dddd", None, 60, state="pruned"),
            _summary("20261207-100400-b0-eeee", 0.9, 60, damaged="its folder is gone")]
    seconds = {"20261207-100000-b0-aaaa": 300.0, "20261207-100100-b0-bbbb": 240.0, "20261207-100200-b0-cccc": 0.0}
    board = class_board(runs, seconds)
    assert [(p.label, p.person, p.accuracy, p.minutes) for p in board.points] == [
        ("slow", "Ana", 50.0, 5.0), ("trial 1", "Ben", 70.0, 4.0),
        ("20261207-100200-b0-cccc", COMMAND_LINE, 60.0, 2.0)]
    assert [p.label for p in board.front] == ["20261207-100200-b0-cccc", "trial 1"]
    assert board.people == ("Ana", "Ben", COMMAND_LINE) and board.left_out == 1
    only = class_board(runs, seconds, only=["20261207-100000-b0-aaaa", "20261207-100300-b0-dddd"])
    assert [p.label for p in only.points] == ["slow"] and only.front[0].on_front and only.left_out == 1


def test_the_chart_has_a_trace_per_person_the_front_as_steps_and_names_on_hover():
    runs = [_summary(f"20261207-10000{i}-b0-aaaa", acc, 60 * m, author=who, name=f"run {i}")
            for i, (acc, m, who) in enumerate([(0.5, 1, "Ana"), (0.8, 4, "Ana"), (0.6, 2, "Ben"), (0.55, 3, "Ben")])]
    board = class_board(runs, {})
    fig = board_charts.board_figure(board)
    people, front = fig.data[:2], fig.data[2]
    assert [t.name for t in people] == ["Ana", "Ben"] and people[0].marker.color != people[1].marker.color
    assert list(people[0].y) == [50.0, 80.0] and list(people[1].x) == [2.0, 3.0]
    assert front.name == board_charts.FRONT_NAME and front.line.shape == "hv"
    assert list(front.x) == [1.0, 2.0, 4.0] and list(front.y) == [50.0, 60.0, 80.0]
    assert [c[0] for c in people[1].customdata] == ["run 2", "run 3"] and "customdata[0]" in people[1].hovertemplate
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "training time (minutes)"
    assert fig.layout.yaxis.title.text == "test accuracy (%)"
    assert fig.layout.yaxis.range[0] <= 0 and fig.layout.yaxis.range[1] >= 100       # the whole scale
    projected = slides.projector(fig)
    assert projected.layout.font.size >= slides.FIG_FONT
    assert projected.layout.xaxis.tickfont.size >= slides.FIG_TICK_FONT


def test_the_sweep_slide_shows_the_urls_sweep_else_the_runs_else_the_newest():
    names = ["newest", "older", "oldest"]
    assert slides.sweep_shown(names, "oldest", ["older"]) == "oldest"
    assert slides.sweep_shown(names, "gone", ["older", "oldest"]) == "older"
    assert slides.sweep_shown(names, None, []) == "newest"
    assert slides.sweep_shown([], "x", []) is None


# --- pages, on a sweep whose trials ended with test accuracies, beside a run of the command line ---
@pytest.fixture
def class_runs(tmp_path):
    from core.settings.config import TrainConfig
    from core.jobs.scheduler import JobManager
    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep
    from core.sweeps.sweep_file import sweep_from_dict
    manager = JobManager(runs_dir=tmp_path / "runs", slots=1, drain_queue=False)
    solo = manager.store.create(TrainConfig(epochs=1), name="by hand", author="Ana")
    spec = sweep_from_dict({"name": "lr", "method": "grid", "pruning": "median", "parameters": {
        "learning_rate": {"values": [0.0003, 0.003, 0.03]}, "epochs": {"value": 2},
        "val_fraction": {"value": 0.2}, "train_limit": {"value": 200}}})
    sweep, step = start_sweep(manager, spec, owner="ben's browser")
    ends = [(solo.run_id, "completed", (0.7,), 0.72, 50.0), (step.queued[0], "completed", (0.6, 0.9), 0.88, 30.0),
            (step.queued[1], "completed", (0.4, 0.5), 0.45, 20.0), (step.queued[2], "pruned", (0.2,), None, 10.0)]
    for run_id, state, values, test, seconds in ends:
        run = manager.store.get(run_id).claim()
        for epoch, value in enumerate(values, start=1):
            run.append_metrics({"epoch": epoch, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": value,
                                "learning_rate": 0.001, "epoch_seconds": seconds, "images_per_second": 100.0})
        ended(run, state, **({"test_accuracy": test} if test is not None else {}))
    driver.step(sweep, lambda *a: pytest.fail("no more trials"), in_flight=3)
    return tmp_path / "runs", solo.run_id, step.queued


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_board_page_shows_the_class_or_one_sweep(app_factory, class_runs):
    runs, solo, trials = class_runs
    at = app_factory(runs)(BOARD)
    (fig,) = _figures(at)
    people = {t["name"]: sorted(plotly_values(t["y"])) for t in fig["data"] if t["mode"] == "markers"}
    assert people == {"Ana": [72.0], "unnamed 1": [45.0, 88.0]}
    front = fig["data"][-1]
    # Minutes from the epochs: 2 of 20 s, 1 of 50 s, 2 of 30 s; each more accurate than the faster ones.
    assert list(plotly_values(front["x"])) == pytest.approx([40 / 60, 50 / 60, 60 / 60])
    sentence = next(m.value for m in at.markdown if "On the front" in m.value)
    assert sentence.startswith("**3 runs by 2 people.** On the front: lr · trial 2 by unnamed 1 (45.0% in 0.7 min)")
    at.selectbox(key="board_sweep").set_value("lr").run()
    assert not at.exception and at.query_params["sweep"] in ("lr", ["lr"])
    (fig,) = _figures(at)
    assert {t["name"] for t in fig["data"] if t["mode"] == "markers"} == {"unnamed 1"}
    assert any("1 run(s) of these have no test accuracy" in c.value for c in at.caption)      # the pruned trial
    # A link opens it on a sweep; an unknown one shows the whole class.
    assert app_factory(runs)(BOARD, sweep="lr").selectbox(key="board_sweep").value == "lr"
    assert app_factory(runs)(BOARD, sweep="nope").selectbox(key="board_sweep").value == ""


def test_the_board_and_sweep_slides(app_factory, class_runs):
    runs, solo, trials = class_runs
    keys = [s.key for s in slides.SLIDES]
    at = app_factory(runs)(PRESENT, present="1", run=solo, slide=str(keys.index("board") + 1))
    assert at.title[0].value == "The class board"
    (fig,) = _figures(at)
    assert fig["layout"]["font"]["size"] >= slides.FIG_FONT and len(fig["data"]) == 3        # 2 people + the front
    at = app_factory(runs)(PRESENT, present="1", run=trials[0], slide=str(keys.index("sweep") + 1))
    assert at.title[0].value == "What the sweep found" and at.selectbox(key="present_sweep").value == "lr"
    (fig,) = _figures(at)
    (trace,) = fig["data"]
    assert trace["type"] == "parcoords" and trace["labelfont"]["size"] >= slides.FIG_FONT
    assert [d["label"] for d in trace["dimensions"]] == ["Learning rate (log)", "validation accuracy"]
    assert {m.label: m.value for m in at.metric}["Trials finished"] == "3 of 3"
    assert any(m.value.startswith("Learning rate explains") for m in at.markdown)
    assert at.query_params["sweep"] in ("lr", ["lr"])


def test_the_new_slides_without_runs_or_sweeps(app_factory, tmp_path):
    keys = [s.key for s in slides.SLIDES]
    for key, words in (("board", "No run has a test accuracy yet"), ("sweep", "No sweeps yet")):
        at = app_factory(tmp_path / "none")(PRESENT, present="1", slide=str(keys.index(key) + 1))
        assert any(words in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_the_board_page_without_runs(app_factory, tmp_path):
    at = app_factory(tmp_path / "none")(BOARD)
    assert not at.get("plotly_chart") and any("No run here has a test accuracy yet" in i.value for i in at.info)
    assert [o for o in at.selectbox(key="board_sweep").options] == ["All runs of the class"]
