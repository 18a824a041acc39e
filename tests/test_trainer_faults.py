"""The trainer under bad luck (issue 13): a status write that fails as a run fails, a full disk
between the checkpoint and its metrics row, and an evaluation racing the trainer. Disk faults are
simulated by making the store's write raise ENOSPC (root ignores read-only folders here)."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest

from core.jobs.scheduler import JobManager
from core.settings.config import TrainConfig
from core.store.runs import Run, RunStore, is_active_here
from core.training.progress import Progress

TINY = dict(epochs=1, batch_size=32, train_limit=100, val_fraction=0.2, seed=4)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_final_status_write_never_leaves_the_run_running_here(tmp_path, monkeypatch):
    """#1: the run fails (no data), then writing its failure fails too (disk full): the process
    must still stop counting it as its own, so it reads as interrupted and can be resumed."""
    from core.training.train import train_run
    store = RunStore(tmp_path / "runs")
    run = store.claim(store.create(TrainConfig(**TINY)).run_id)
    empty = tmp_path / "no-data"
    empty.mkdir()
    original = Run.write_status

    def fail_final_writes(self, **changes):
        if changes.get("state") in ("failed", "completed", "stopped") or "traceback" in changes:
            _disk_full()
        return original(self, **changes)

    monkeypatch.setattr(Run, "write_status", fail_final_writes)
    outcome = train_run(run, target_epochs=1, stop_event=threading.Event(), progress=Progress(),
                        data_dir=str(empty))
    monkeypatch.setattr(Run, "write_status", original)
    assert outcome.state == "failed" and "could not be written: the disk is full" in outcome.error
    assert not is_active_here(run.run_id)
    status = run.live_status()
    assert status["state"] == "interrupted", status          # not "running" forever
    manager = JobManager(runs_dir=store.root, data_dir=str(empty), drain_queue=False)
    manager.resume(run.run_id, epochs=1, queue=False)       # nothing refuses it
    manager.stop(run.run_id)
    assert manager.wait(120)


@pytest.mark.slow
@pytest.mark.small_network
def test_a_full_disk_at_the_metrics_append_loses_no_epoch(tmp_path, fixture_data_dir, monkeypatch):
    """#2: epoch 1's checkpoint and status are written, then its CSV row hits a full disk. The run
    fails saying so in words; resume restores row 1 from status and adds row 2: every finished
    epoch exactly once."""
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    original = Run.append_metrics
    monkeypatch.setattr(Run, "append_metrics", lambda self, row: _disk_full())
    run_id = manager.start(TrainConfig(**TINY))
    assert manager.wait(600)
    monkeypatch.setattr(Run, "append_metrics", original)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "failed" and "disk is full" in status["error"], status
    assert "Errno" not in status["error"]
    assert status["checkpoint_epoch"] == 1 and run.read_metrics() == []
    manager.resume(run_id, epochs=2)
    assert manager.wait(600)
    assert run.read_status()["state"] == "completed", run.read_status()
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == pytest.approx(status["checkpoint_row"]["loss"])


def test_an_evaluation_is_labelled_with_the_checkpoint_it_loaded(trained_run, fixture_data_dir, tmp_path):
    """#6: predictions from "Evaluate now" carry the epoch of the weights they came from, and one
    that finishes after newer predictions were written does not replace them."""
    import shutil

    from core.training.train import evaluate_checkpoint
    copy = tmp_path / "runs" / trained_run.run_id
    shutil.copytree(trained_run.path, copy)
    run = RunStore(copy.parent).get(trained_run.run_id)
    epoch = run.read_status()["checkpoint_epoch"]
    evaluate_checkpoint(run, data_dir=fixture_data_dir, which="last")
    assert run.read_status()["predictions_epoch"] == epoch
    # The trainer has since written the predictions of a later epoch: a late evaluation keeps them.
    y_true, y_prob = run.read_predictions()
    newer = np.roll(y_prob, 1, axis=1)
    assert run.write_predictions(y_true, newer, epoch=epoch + 1)
    run.write_status(predictions_epoch=epoch + 1)
    evaluate_checkpoint(run, data_dir=fixture_data_dir, which="last")
    assert run.read_status()["predictions_epoch"] == epoch + 1
    assert np.array_equal(run.read_predictions()[1], newer.astype(np.float16))
