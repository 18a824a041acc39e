"""The run store: atomic files, tolerant readers, damaged folders listed with their reason,
run ids that cannot escape the runs folder, and dead trainers noticed as soon as anyone looks."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from core.config import TrainConfig
from core.runs import RunNotFoundError, RunStore, mark_active, process_start_ticks


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _finished(store, **config):
    run = store.create(TrainConfig(**config))
    run.write_status(state="completed", checkpoint_epoch=2, epochs=2, test_accuracy=0.5)
    for epoch in (1, 2):
        run.append_metrics({"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.3 * epoch,
                            "val_loss": 1.1, "val_accuracy": 0.25 * epoch, "learning_rate": 1e-3,
                            "epoch_seconds": 10, "images_per_second": 300})
    return run


def test_create_writes_config_status_and_sortable_id(store):
    run = store.create(TrainConfig(variant="b3"))
    assert run.run_id.split("-")[2] == "b3"
    assert run.read_config() == TrainConfig(variant="b3")
    status = run.read_status()
    assert status["state"] == "queued" and status["pid"] == os.getpid()
    assert (run.path / "checkpoints").is_dir()


def test_metrics_append_and_read_back(store):
    run = _finished(store)
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val_accuracy"] == pytest.approx(0.5)


def test_truncated_last_metrics_line_is_skipped(store):
    run = _finished(store)
    with open(run._file("metrics.csv"), "a") as fh:
        fh.write("3,0.2,0.9")     # a crash mid-write: no newline, missing columns
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]


def test_truncate_metrics_after_checkpoint_epoch(store):
    run = _finished(store)
    run.truncate_metrics_after(1)
    assert [r["epoch"] for r in run.read_metrics()] == [1]


def test_summary_of_a_finished_run(store):
    summary = _finished(store, variant="b1").summary()
    assert (summary.state, summary.variant, summary.epochs_done, summary.epochs) == ("completed", "b1", 2, 2)
    assert summary.best_val_accuracy == pytest.approx(0.5)
    assert summary.test_accuracy == 0.5 and not summary.damaged


@pytest.mark.parametrize("damage, reason", [
    (lambda run: run._file("status.json").write_text("{not json"), "status.json is unreadable"),
    (lambda run: run._file("status.json").unlink(), "status.json is missing"),
    (lambda run: run._file("status.json").write_text('{"state": "exploded"}'), "unknown state"),
    (lambda run: run._file("config.json").write_text("{}}"), "config.json is unreadable"),
    (lambda run: run._file("config.json").write_text('{"variant": "b9"}'), "variant: expected one of"),
    (lambda run: run._file("config.json").unlink(), "config.json is missing"),
])
def test_damaged_runs_are_listed_with_their_reason(store, damage, reason):
    good = _finished(store)
    bad = _finished(store)
    damage(bad)
    listing = {s.run_id: s for s in store.list()}
    assert listing[good.run_id].damaged == "" and listing[good.run_id].state == "completed"
    assert reason in listing[bad.run_id].damaged


def test_unknown_files_and_folders_do_not_break_a_listing(store):
    run = _finished(store)
    (store.root / "notes.txt").write_text("hello")
    (store.root / "not-a-run").mkdir()
    run._file("extra.bin").write_bytes(b"\0" * 10)
    assert [s.run_id for s in store.list()] == [run.run_id]


def test_predictions_round_trip_as_float16(store):
    run = _finished(store)
    y_prob = np.random.default_rng(0).dirichlet(np.ones(10), size=50)
    run.write_predictions(np.arange(50) % 10, y_prob)
    y_true, back = run.read_predictions()
    assert back.dtype == np.float16 and back.shape == (50, 10)
    np.testing.assert_allclose(back, y_prob, atol=1e-3)


@pytest.mark.parametrize("bad_id", ["../etc", "/etc/passwd", "..", "20261125-142301-b0-3f9a/../../x",
                                    "20261125-142301-b9-3f9a", "", "20261125-142301-b0-ZZZZ"])
def test_malformed_or_escaping_run_ids_are_refused(store, bad_id):
    with pytest.raises(RunNotFoundError):
        store.get(bad_id)


def test_symlinked_run_out_of_the_folder_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store.root.mkdir(parents=True, exist_ok=True)
    link = store.root / "20261125-142301-b0-3f9a"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunNotFoundError, match="outside the runs folder"):
        store.get(link.name)
    assert store.list() == []


def test_unknown_run_id_is_refused(store):
    with pytest.raises(RunNotFoundError, match="no run"):
        store.get("20261125-142301-b0-3f9a")


def test_run_of_a_killed_process_is_interrupted_when_looked_at(store):
    run = store.create(TrainConfig())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run.write_status(state="running", pid=child.pid, pid_start=process_start_ticks(child.pid),
                     host=socket.gethostname())
    assert run.live_status()["state"] == "running"
    child.kill()
    child.wait()
    assert run.summary().state == "interrupted"
    assert json.loads(run._file("status.json").read_text())["state"] == "interrupted"   # saved


def test_run_of_another_machine_is_interrupted_when_heartbeat_is_stale(store):
    run = store.create(TrainConfig())
    run.write_status(state="running", pid=1, host="another-machine")
    assert run.live_status()["state"] == "running"
    status = json.loads(run._file("status.json").read_text())
    status["heartbeat"] = time.time() - 3600
    run._file("status.json").write_text(json.dumps(status))
    assert run.live_status()["state"] == "interrupted"


def test_run_of_this_process_without_a_thread_is_interrupted(store):
    run = store.create(TrainConfig())
    run.write_status(state="running", pid=os.getpid(), host=socket.gethostname())
    mark_active(run.run_id, True)
    assert run.live_status()["state"] == "running"
    mark_active(run.run_id, False)
    assert run.live_status()["state"] == "interrupted"


def test_delete_refuses_a_training_run_and_removes_a_finished_one(store):
    busy = store.create(TrainConfig())
    mark_active(busy.run_id, True)
    busy.write_status(state="running", pid=os.getpid(), host=socket.gethostname())
    with pytest.raises(ValueError, match="still training"):
        store.delete(busy.run_id)
    mark_active(busy.run_id, False)
    done = _finished(store)
    store.delete(done.run_id)
    assert not done.path.exists()


def test_status_writes_are_atomic_and_leave_no_temporary_files(store):
    run = store.create(TrainConfig())
    for i in range(50):
        run.write_status(epoch=i)
    assert run.read_status()["epoch"] == 49
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.json", "status.json"]
