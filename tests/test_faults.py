"""Faults: a checkpoint that cannot be written, a loss that becomes NaN, exceptions inside the
training thread, and damaged run folders on every page. In each case the run ends with a readable
reason, the manager and the pages keep working, and no finished epoch is lost or recorded twice.
The dashboard server SIGKILLed mid-epoch and restarted is part of the class's chained flow in
test_browser_queue.py. The training here checks plumbing: it builds the tests' small EfficientNet."""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from core.jobs.scheduler import JobManager
from core.settings.config import TrainConfig
from core.store.runs import RunStore
from conftest import evaluated, read_status_file

PAGES = {name: f"../pages/{name}.py" for name in ("train", "curves", "runs", "confusion", "mistakes", "history")}
SMALL = dict(batch_size=16, train_limit=200, val_fraction=0.2, seed=7)
ROW = {"loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2, "learning_rate": 1e-3,
       "epoch_seconds": 5, "images_per_second": 40}


def _epochs(run) -> list[int]:
    return [r["epoch"] for r in run.read_metrics()]


# --- what a crash leaves in the run files (no TensorFlow) ----------------------------------------
def test_a_crash_mid_append_does_not_glue_the_next_epoch_to_the_fragment(tmp_path):
    run = RunStore(tmp_path / "runs").create(TrainConfig())
    run.append_metrics({"epoch": 1, **ROW})
    with open(run.path / "metrics.csv", "a") as fh:
        fh.write("2,1.9,0.2")                       # killed mid-write: no newline
    run.append_metrics({"epoch": 2, **ROW})          # the resumed run redoes epoch 2
    assert _epochs(run) == [1, 2]
    assert (run.path / "metrics.csv").read_text().count("\n2,") == 1


def test_garbled_metrics_and_predictions_are_reasons_not_crashes(tmp_path):
    run = RunStore(tmp_path / "runs").create(TrainConfig())
    (run.path / "metrics.csv").write_bytes(b"\x00\xff\xfe" + os.urandom(500))
    assert run.read_metrics() == [] and run.summary().epochs_done == 0
    (run.path / "predictions.npz").write_bytes(b"PK\x03\x04" + os.urandom(100))
    with pytest.raises(ValueError, match="predictions.npz is damaged"):
        run.read_predictions()


# --- a checkpoint that cannot be written ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.small_network
def test_checkpoint_write_failure_fails_readably_and_keeps_the_previous_one(tmp_path, fixture_data_dir,
                                                                              monkeypatch):
    """A full disk cannot be produced safely here (and root ignores read-only folders), so the disk
    is simulated: Keras's save writes half a file and raises ENOSPC from the second epoch on."""
    import keras

    from core.training.model import load_checkpoint

    real_save = keras.Model.save
    saves = []

    def save_until_the_disk_is_full(self, filepath, *args, **kwargs):
        saves.append(str(filepath))
        if len(saves) == 1:
            return real_save(self, filepath, *args, **kwargs)
        Path(filepath).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(keras.Model, "save", save_until_the_disk_is_full)
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    run_id = manager.start(TrainConfig(epochs=3, **SMALL))
    assert manager.wait(600)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "failed", status
    assert status["error"] == (
        f"could not save checkpoint checkpoints/last.keras of run {run_id}: the disk is full. "
        "The previous checkpoint is intact; free some space (or make the runs folder writable) and resume the run.")
    assert status["checkpoint_epoch"] == 1 and _epochs(run) == [1]       # no row for the failed epoch
    assert sorted(p.name for p in run.checkpoint("last").parent.iterdir()) == ["best.keras", "last.keras"]
    steps_per_epoch = manager.progress(run_id)["batches"]
    assert int(load_checkpoint(run.checkpoint("last")).optimizer.iterations) == steps_per_epoch   # epoch 1's

    # The disk has room again: the manager is usable and resume continues from epoch 1.
    monkeypatch.undo()
    manager.resume(run_id, epochs=2)
    assert manager.wait(600)
    assert run.read_status()["state"] == "completed" and _epochs(run) == [1, 2]


# --- loss becomes NaN ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.small_network
def test_nan_loss_stops_the_run_with_a_clear_reason(tmp_path, fixture_data_dir):
    # SGD at rate 10 from scratch: the loss grows to ~1e13 by epoch 2 and is NaN early in epoch 3
    # (measured on these fixture images); 40 epochs leave room either way.
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    run_id = manager.start(TrainConfig(optimizer="sgd", learning_rate=10.0, epochs=40, **SMALL))
    assert manager.wait(900)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "failed", status
    # The training loss may overflow first, or the weights while it is still finite (then the
    # validation loss shows it): either way the run stops there.
    found = re.match(r"(loss became (?:NaN|infinite) at epoch (\d+), batch \d+|validation loss became (?:NaN|infinite) at epoch "
                     r"(\d+)): training stopped\. Start again with a lower learning_rate \(now 10\); ", status["error"])
    assert found, status["error"]
    nan_epoch = int(found.group(2) or found.group(3))
    assert nan_epoch < 40                                          # not a silent run of NaNs
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == list(range(1, nan_epoch))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert status.get("checkpoint_epoch", 0) == nan_epoch - 1
    assert manager.progress(run_id)["state"] == "failed"


# --- exceptions inside the training thread -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.small_network
def test_exceptions_in_the_training_thread_fail_the_run_and_the_next_start_works(tmp_path, fixture_data_dir,
                                                                                   trained_run):
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)

    # 1. A weights file that is not one: fails while building the model, naming the file.
    broken_weights = tmp_path / "efficientnetb0_notop.h5"
    broken_weights.write_bytes(os.urandom(4096))
    failed_id = manager.start(TrainConfig(weights=str(broken_weights), epochs=1, **SMALL))
    assert manager.wait(300)
    status = manager.store.get(failed_id).read_status()
    assert status["state"] == "failed" and status["error_kind"] == "input"
    assert status["error"].startswith(f"weights: {broken_weights} could not be loaded into EfficientNetB0"), status
    assert "Traceback" in status["traceback"]                     # kept for whoever debugs it

    # 2. A damaged last.keras on resume: fails naming the checkpoint; nothing else is touched.
    copy = tmp_path / "runs" / trained_run.run_id
    shutil.copytree(trained_run.path, copy)
    (copy / "checkpoints" / "last.keras").write_bytes(b"PK\x03\x04 not really a zip")
    metrics_before = (copy / "metrics.csv").read_text()
    manager.resume(trained_run.run_id, epochs=2)
    assert manager.wait(300)
    status = read_status_file(copy)
    assert status["state"] == "failed"
    assert status["error"].startswith("checkpoint checkpoints/last.keras cannot be loaded ("), status
    assert (copy / "metrics.csv").read_text() == metrics_before and (copy / "predictions.npz").exists()

    # 3. The next start works.
    run_id = manager.start(TrainConfig(epochs=1, **SMALL))
    assert manager.wait(600)
    assert manager.store.get(run_id).read_status()["state"] == "completed"
    states = {s.run_id: s.state for s in manager.store.list()}
    assert states == {failed_id: "failed", trained_run.run_id: "failed", run_id: "completed"}


# --- damaged run folders on every page -----------------------------------------------------------
DAMAGE = {
    # run id: (what is done to a copy of the trained run, the reason a page or listing gives)
    "20200101-000001-b0-0001": ("config.json is not JSON", lambda d: (d / "config.json").write_text("{oops")),
    "20200101-000002-b0-0002": ("status.json is not JSON", lambda d: (d / "status.json").write_text('{"state": ')),
    "20200101-000003-b0-0003": ("metrics.csv cut mid-line",
                                lambda d: (d / "metrics.csv").write_text((d / "metrics.csv").read_text()[:-20])),
    "20200101-000004-b0-0004": ("metrics.csv is binary", lambda d: (d / "metrics.csv").write_bytes(os.urandom(300))),
    "20200101-000005-b0-0005": ("last.keras is corrupt, no predictions", lambda d: (
        (d / "checkpoints" / "last.keras").write_bytes(b"PK\x03\x04garbage"), (d / "predictions.npz").unlink())),
    "20200101-000006-b0-0006": ("last.keras is corrupt", lambda d: (
        (d / "checkpoints" / "last.keras").write_bytes(os.urandom(1000)))),
    "20200101-000007-b0-0007": ("predictions.npz is missing", lambda d: (d / "predictions.npz").unlink()),
    "20200101-000008-b0-0008": ("predictions.npz is garbage", lambda d: (d / "predictions.npz").write_bytes(
        b"PK\x03\x04" + os.urandom(200))),
    "20200101-000009-b0-0009": ("unknown extra files", lambda d: ((d / "notes.txt").write_text("hi"),
                                                                  (d / "extra").mkdir(), (d / "x.bin").write_bytes(b"\0")))
}


@pytest.fixture
def damaged_runs(tmp_path, trained_run) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    for run_id, (_, damage) in DAMAGE.items():
        shutil.copytree(trained_run.path, runs / run_id)
        damage(runs / run_id)
    (runs / "README.txt").write_text("not a run")
    return runs


@pytest.fixture
def app(app_factory):
    """make(page name, runs_dir=..., **query) -> an AppTest that has run that page."""
    make = app_factory(default_runs_dir=None)
    return lambda page, *, runs_dir, **query: make(PAGES[page], runs_dir=runs_dir, **query)


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_works_beside_damaged_runs(app, damaged_runs, trained_run, page):
    at = app(page, runs_dir=damaged_runs)
    if page == "runs":
        table = at.dataframe[0].value.set_index("run")
        assert len(table) == len(DAMAGE) + 1
        assert table.loc[trained_run.run_id, "state"] == "completed"
        assert "config.json is unreadable" in table.loc["20200101-000001-b0-0001", "note"]
        assert "status.json is unreadable" in table.loc["20200101-000002-b0-0002", "note"]
        assert table.loc["20200101-000003-b0-0003", "state"] == "completed"        # the cut line is skipped
        assert table.loc["20200101-000004-b0-0004", "epochs"].startswith("0/")     # nothing readable, no crash
    if page in ("confusion", "mistakes"):
        for run_id in DAMAGE:                                   # each damaged run, opened by link
            app(page, runs_dir=damaged_runs, run=run_id)


@pytest.mark.slow
def test_corrupt_checkpoint_on_the_result_pages_is_a_message(app, damaged_runs):
    # Confusion page, "Evaluate now" on a run whose checkpoint is corrupt.
    at = app("confusion", runs_dir=damaged_runs, run="20200101-000005-b0-0005")
    assert any("has no test-set predictions yet" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Evaluate now").click().run()
    evaluated(at)
    assert not at.exception
    assert any(e.value.startswith("Evaluation failed: checkpoint checkpoints/last.keras cannot be loaded")
               for e in at.error), [e.value for e in at.error]
    assert next(b for b in at.button if b.label == "Evaluate now")     # offered again
    # Gallery detail view: the saliency map needs the model; the rest of the view still works.
    at = app("mistakes", runs_dir=damaged_runs, run="20200101-000006-b0-0006", image="0")
    assert any(e.value.startswith("The saliency map could not be computed: CheckpointError: checkpoint "
                                  "checkpoints/last.keras cannot be loaded") for e in at.error), [e.value for e in at.error]
    assert any("Test image #0" in s.value for s in at.subheader)


@pytest.mark.slow
def test_damaged_predictions_are_rewritten_by_evaluate_now(app, damaged_runs):
    at = app("confusion", runs_dir=damaged_runs, run="20200101-000008-b0-0008")
    # Damaged is told apart from missing (it used to read as "no predictions yet").
    assert any("predictions are damaged" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("has no test-set predictions yet" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Evaluate now").click().run()
    evaluated(at)
    assert not at.exception
    assert any(s.value.startswith("Evaluated: test accuracy") for s in at.success), [e.value for e in at.error]
    assert at.metric[0].label == "Top-1 accuracy"
