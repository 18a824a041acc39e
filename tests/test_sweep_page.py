"""The Sweep page (AppTest) and its chart builders, on a sweep whose runs ended as a trainer ends
them (no training here: tests/test_sweeps.py trains trials)."""

from __future__ import annotations

import pytest
from conftest import ended

from core.sweeps.results import TrialResult
from dashboard import sweep_charts

SWEEP = "../pages/sweep.py"
TRIALS = [TrialResult(0, "r0", "complete", {"learning_rate": 3e-4, "optimizer": "adam"}, 0.91),
          TrialResult(1, "r1", "complete", {"learning_rate": 1e-1, "optimizer": "sgd"}, 0.62),
          TrialResult(2, "r2", "pruned", {"learning_rate": 3e-2, "optimizer": "sgd"}, 0.30),
          TrialResult(3, "r3", "running", {"learning_rate": 1e-3, "optimizer": "adam"}, None)]


def _titled(fig) -> None:
    assert fig.layout.title.text and fig.layout.font.size >= 16


def test_parallel_coordinates_grey_out_pruned_trials_and_leave_out_unfinished_ones():
    frame = sweep_charts.trials_frame(TRIALS, ["learning_rate", "optimizer"])
    fig = sweep_charts.parallel_coordinates(frame, {"learning_rate": ("Learning rate", True),
                                                    "optimizer": ("Optimizer", False)}, "validation accuracy")
    (trace,) = fig.data
    assert [d.label for d in trace.dimensions] == ["Learning rate (log)", "Optimizer", "validation accuracy"]
    colours = list(trace.line.color)
    assert len(colours) == 3 and colours == pytest.approx([1.0, 0.1, 0.0])
    assert trace.line.colorscale[0][1] == sweep_charts.FADED
    assert list(trace.dimensions[1].ticktext) == ["adam", "sgd"] and list(trace.dimensions[1].values) == [0, 1, 1]
    assert list(trace.dimensions[0].values) == pytest.approx([-3.523, -1.0, -1.523], abs=1e-3)
    assert "1 pruned or failed in grey" in fig.layout.title.text
    _titled(fig)
    # A grid of rates (values, not a log range) spanning decades still gets a log axis.
    grid = sweep_charts.parallel_coordinates(frame, {"learning_rate": ("Learning rate", False)}, "accuracy")
    assert grid.data[0].dimensions[0].label == "Learning rate (log)"
    # A grid of a few whole numbers ticks exactly them (not 4, 4.5, 5, ...).
    batches = sweep_charts.trials_frame([TrialResult(i, f"r{i}", "complete", {"batch_size": b}, 0.5 + i / 10)
                                         for i, b in enumerate([8, 4, 8])], ["batch_size"])
    fig = sweep_charts.parallel_coordinates(batches, {"batch_size": ("Batch size", False)}, "accuracy")
    axis = fig.data[0].dimensions[0]
    assert list(axis.tickvals) == [4, 8] and list(axis.ticktext) == ["4", "8"]


def test_best_so_far_importance_and_curves_are_titled_and_labelled():
    frame = sweep_charts.trials_frame(TRIALS, ["learning_rate"])
    best = sweep_charts.best_so_far_chart(frame, "validation accuracy", "maximize")
    assert list(best.data[1].y) == [0.91, 0.91] and best.layout.xaxis.title.text == "trial (number)"
    bars = sweep_charts.importance_chart({"Learning rate": 0.83, "Optimizer": 0.17})
    assert list(bars.data[0].y) == ["Optimizer", "Learning rate"] and "0-1" in bars.layout.xaxis.title.text
    curves = sweep_charts.curves_chart({0: [(1, 0.5), (2, 0.9)], 2: [(1, 0.3)]}, {0: "complete", 2: "pruned"},
                                       "validation accuracy after each epoch")
    assert [t.name for t in curves.data] == ["trial 1", "trial 3 (pruned)"]
    assert curves.data[1].line.dash == "dash" and curves.data[1].opacity < 1
    for fig in (best, bars, curves):
        _titled(fig)
        assert fig.layout.xaxis.title.text


@pytest.fixture
def finished_sweep(tmp_path):
    """A grid sweep of three learning rates whose runs completed at 0.9, 0.5 and pruned at 0.2."""
    from core.jobs.scheduler import JobManager
    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep
    from core.sweeps.sweep_file import sweep_from_dict
    manager = JobManager(runs_dir=tmp_path / "runs", slots=1, drain_queue=False)
    spec = sweep_from_dict({"name": "lr", "method": "grid", "pruning": "median", "parameters": {
        "learning_rate": {"values": [0.0003, 0.003, 0.03]}, "epochs": {"value": 2},
        "val_fraction": {"value": 0.2}, "train_limit": {"value": 200}}})
    sweep, step = start_sweep(manager, spec, owner=None)
    for run_id, (state, values) in zip(step.queued, [("completed", (0.6, 0.9)), ("completed", (0.4, 0.5)),
                                                     ("pruned", (0.2,))]):
        run = manager.store.get(run_id).claim()
        for epoch, value in enumerate(values, start=1):
            run.append_metrics({"epoch": epoch, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": value,
                                "learning_rate": 0.001, "epoch_seconds": 1.0, "images_per_second": 100.0})
        ended(run, state)
    driver.step(sweep, lambda *a: pytest.fail("no more trials"), in_flight=3)
    return tmp_path / "runs", step.queued


def test_the_page_shows_a_sweeps_trials_charts_and_what_mattered(app_factory, finished_sweep):
    runs, run_ids = finished_sweep
    at = app_factory(runs)(SWEEP)
    assert at.selectbox(key="sweep_picker").value == "lr"
    assert any(s.value.startswith("lr: finished") for s in at.subheader)
    table = at.dataframe[0].value
    assert list(table["state"]) == ["complete", "complete", "pruned"] and list(table["run"]) == run_ids
    sentence = next(m.value for m in at.markdown if "explains" in m.value)
    assert sentence.startswith("**Learning rate explains most of the spread (importance 1.00): validation "
                               "accuracy 0.900 at 0.0003, 0.500 at 0.003.")
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(titles) == 4
    link = at.get("page_link")[0]
    assert "trial 1 (0.900)" in link.proto.label


def test_start_from_the_page_creates_the_sweep_and_says_why_a_trial_waits(app_factory, tmp_path, monkeypatch):
    """Start validates the form as a sweep file and creates the sweep, owned by this browser; a trial
    refused now (here: more memory than EFFLAB_MEMORY_GB lets the lab's runs use) is named, not lost."""
    monkeypatch.setenv("EFFLAB_MEMORY_GB", "0.25")
    at = app_factory(tmp_path / "runs")(SWEEP)
    at.text_input(key="sweep_name").set_value("class sweep").run()
    next(b for b in at.button if b.label == "Start sweep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    message = next(s.value for s in at.success)
    assert message.startswith("Sweep 'class sweep': 0 trial(s) queued.") and "memory" in message
    from core.store.runs import RunStore
    from core.sweeps.study import Sweep
    sweep = Sweep.open(RunStore(tmp_path / "runs"), "class sweep")
    assert sweep.owner and sweep.spec.method == "bayes" and sweep.spec.trial_budget() == 6
    assert [p.name for p in sweep.spec.params] == ["learning_rate", "fine_tune_from_block"]
    assert not RunStore(tmp_path / "runs").list()
