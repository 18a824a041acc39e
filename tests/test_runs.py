"""Run folders and the run database: a new run's folder and row; folders from before the database,
or copied from another lab, imported with their history; damaged folders imported and listed with
their reason (never deleted, never breaking a listing); run ids that cannot escape the runs
folder; and trainers that are gone noticed by their lease, never by a pid or a host name."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import ended
from core.settings.config import TrainConfig
from core.store import run_files, safe_io
from core.store.run_import import IMPORTED_INTERRUPTED, import_from
from core.store.runs import RunNotFoundError, RunStore, mark_active

ROW = {"epoch": 1, "loss": 1.0, "accuracy": 0.3, "val_loss": 1.1, "val_accuracy": 0.25, "learning_rate": 1e-3,
       "epoch_seconds": 10, "images_per_second": 300}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _finished(store, **config):
    run = ended(store.create(TrainConfig(**config)), "completed", checkpoint_epoch=2, epochs=2, test_accuracy=0.5)
    for epoch in (1, 2):
        run.append_metrics({**ROW, "epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.3 * epoch,
                            "val_accuracy": 0.25 * epoch})
    run.append_batches(1, [(1, 2.3, 0.1), (2, 2.1, 0.2)])
    return run


def _elsewhere(tmp_path, name="lab-b"):
    """Another lab's runs folder, with its own database."""
    return RunStore(tmp_path / name)


def test_create_writes_config_row_and_a_sortable_id(store):
    run = store.create(TrainConfig(variant="b3"))
    assert run.run_id.split("-")[2] == "b3"
    assert run.read_config() == TrainConfig(variant="b3")
    status = run.read_status()
    assert status["state"] == "queued" and status["pid"] == os.getpid()
    assert (run.path / "checkpoints").is_dir()
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.json", "status.json"]
    assert (store.root / "lab.db").is_file()


def test_metrics_append_and_read_back(store):
    run = _finished(store)
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val_accuracy"] == pytest.approx(0.5)
    run.truncate_metrics_after(1)
    assert [r["epoch"] for r in run.read_metrics()] == [1]


def test_summary_of_a_finished_run(store):
    summary = _finished(store, variant="b1").summary()
    assert (summary.state, summary.variant, summary.epochs_done, summary.epochs) == ("completed", "b1", 2, 2)
    assert summary.best_val_accuracy == pytest.approx(0.5)
    assert summary.test_accuracy == 0.5 and not summary.damaged


# --- folders into the database ---------------------------------------------------------------------------
def test_a_folder_copied_from_another_lab_is_imported_with_its_history(store, tmp_path):
    run = _finished(store, variant="b1")
    run.write_predictions(np.arange(20) % 10, np.eye(10)[np.arange(20) % 10], epoch=2, test_accuracy=1.0)
    other = _elsewhere(tmp_path)
    other.root.mkdir()
    shutil.copytree(run.path, other.root / run.run_id)
    [summary] = other.list()
    assert (summary.run_id, summary.state, summary.variant, summary.epochs_done) == (run.run_id, "completed", "b1", 2)
    assert summary.test_accuracy == 1.0 and summary.has_predictions
    copy = other.get(run.run_id)
    assert copy.read_metrics() == run.read_metrics() and copy.read_batches() == run.read_batches()
    assert copy.read_config() == run.read_config()


def test_a_folder_from_before_the_database_is_imported(tmp_path):
    """A folder the file-based store wrote: status.json, metrics.csv cut mid-line by a crash,
    batches.csv from before accuracy was recorded, progress.json. A run it says is training was
    trained by a process that does not hold a lease here: imported as interrupted."""
    folder = tmp_path / "runs" / "20261120-101010-b0-abcd"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(TrainConfig(epochs=5).to_json())
    (folder / "status.json").write_text(json.dumps({"state": "running", "epochs": 5, "checkpoint_epoch": 2,
                                                    "pid": 4242, "host": "old-lab", "name": "Ana",
                                                    "heartbeat": 1.0, "queued_at": 5.0}))
    (folder / "metrics.csv").write_text(",".join(run_files.METRIC_COLUMNS) + "\n"
                                        "1,2.0,0.2,2.1,0.2,0.001,5,40\n2,1.5,0.3,1.6,0.3,0.001,5,40\n3,1.2")
    (folder / "batches.csv").write_text("epoch,batch,loss\n1,1,2.3\n1,2,2.1\n2,1,1.9\n")
    (folder / "progress.json").write_text(json.dumps({"epoch": 3, "batch": 7, "phase": "training"}))
    store = RunStore(tmp_path / "runs")
    [summary] = store.list()
    assert (summary.state, summary.epochs_done, summary.name, summary.damaged) == ("interrupted", 2, "Ana", "")
    run = store.get(folder.name)
    assert run.read_status()["error"] == IMPORTED_INTERRUPTED and run.read_status()["checkpoint_epoch"] == 2
    assert run.read_batch_losses() == {1: [(1, 2.3), (2, 2.1)], 2: [(1, 1.9)]} and run.read_batch_accuracies() == {}
    assert run.read_progress()["batch"] == 7
    assert store.enqueue(run, 6)                          # resumable as any interrupted run


def test_python_m_core_import_copies_and_imports_and_reports_what_it_skipped(store, tmp_path):
    first, second = _finished(store), _finished(store)
    other = _elsewhere(tmp_path)
    imported, skipped = import_from(other, store.root)
    assert sorted(imported) == sorted([first.run_id, second.run_id]) and skipped == []
    again, skipped = import_from(other, store.root)
    assert again == [] and {why for _, why in skipped} == {f"{other.root / first.run_id} exists already",
                                                           f"{other.root / second.run_id} exists already"}
    assert {s.run_id for s in other.list()} == {first.run_id, second.run_id}


@pytest.mark.parametrize("damage, reason", [
    (lambda folder: (folder / "status.json").write_text("{not json"), "status.json is unreadable"),
    (lambda folder: (folder / "status.json").unlink(), "status.json is missing"),
    (lambda folder: (folder / "status.json").write_text('{"state": "exploded"}'), "unknown state"),
    (lambda folder: (folder / "config.json").write_text("{}}"), "config.json is unreadable"),
    (lambda folder: (folder / "config.json").write_text('{"variant": "b9"}'), "variant: expected one of"),
    (lambda folder: (folder / "config.json").unlink(), "config.json is missing"),
    (lambda folder: (folder / "status.json").write_text("[" * 100_000 + "]" * 100_000), "status.json is unreadable"),
    (lambda folder: ((folder / "status.json").unlink(), os.mkfifo(folder / "status.json")), "not a regular file"),
    (lambda folder: ((folder / "status.json").unlink(), (folder / "status.json").symlink_to("/etc/hostname")),
     "symbolic link"),
])
def test_damaged_folders_are_imported_and_listed_with_their_reason(store, tmp_path, damage, reason):
    good, bad = _finished(store), _finished(store)
    other = _elsewhere(tmp_path)
    other.root.mkdir()
    for run in (good, bad):
        shutil.copytree(run.path, other.root / run.run_id, symlinks=True)
    damage(other.root / bad.run_id)
    listing = {s.run_id: s for s in other.list()}
    assert listing[good.run_id].damaged == "" and listing[good.run_id].state == "completed"
    assert reason in listing[bad.run_id].damaged
    assert (other.root / bad.run_id).is_dir()                 # listed, never deleted
    with pytest.raises(Exception):                            # and never queued again as if whole
        assert other.enqueue(other.get(bad.run_id), 5)


@pytest.mark.parametrize("damage", [
    {"epochs": "many"}, {"epochs": 1e309}, {"started_at": "yesterday"}, {"started_at": 1.0, "ended_at": [1]},
    {"test_accuracy": "high"}, {"name": {"nested": 1}}, {"heartbeat": None, "state": "running", "host": "elsewhere"},
])
def test_damaged_status_fields_never_break_a_listing(store, tmp_path, damage):
    run = _finished(store)
    other = _elsewhere(tmp_path)
    other.root.mkdir()
    shutil.copytree(run.path, other.root / run.run_id)
    status = json.loads((other.root / run.run_id / "status.json").read_text())
    status.update(damage)
    (other.root / run.run_id / "status.json").write_text(json.dumps(status).replace("Infinity", "1e999"))
    [summary] = other.list()
    assert summary.run_id == run.run_id


def test_a_huge_progress_file_is_refused_at_import_not_read(tmp_path, store):
    run = _finished(store)
    other = _elsewhere(tmp_path)
    other.root.mkdir()
    shutil.copytree(run.path, other.root / run.run_id)
    with open(other.root / run.run_id / "progress.json", "wb") as fh:
        fh.truncate(safe_io.MAX_JSON_BYTES + 10)
    assert other.get(run.run_id).read_progress() == {}


def test_unknown_files_and_folders_do_not_break_a_listing(store):
    run = _finished(store)
    (store.root / "notes.txt").write_text("hello")
    (store.root / "not-a-run").mkdir()
    (run.path / "extra.bin").write_bytes(b"\0" * 10)
    assert [s.run_id for s in store.list()] == [run.run_id]


def test_a_run_whose_folder_is_gone_is_listed_as_such(store):
    run = _finished(store)
    shutil.rmtree(run.path)
    [summary] = store.list()
    assert summary.damaged == "its folder is gone"


def test_exports_never_follow_a_planted_link(store, tmp_path):
    run = store.create(TrainConfig())
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    (run.path / "metrics.csv").symlink_to(outside)
    with pytest.raises(OSError):
        run.append_metrics(ROW)
    assert outside.read_text() == "precious\n"
    victim = tmp_path / "victim.json"
    victim.write_text("keep")
    (run.path / "status.json").unlink()
    (run.path / "status.json").symlink_to(victim)
    run.write_status(epoch=3)                          # the export replaces the link, not its target
    assert victim.read_text() == "keep" and not (run.path / "status.json").is_symlink()


def test_predictions_round_trip_as_float16(store):
    run = _finished(store)
    y_prob = np.random.default_rng(0).dirichlet(np.ones(10), size=50)
    run.write_predictions(np.arange(50) % 10, y_prob)
    y_true, back = run.read_predictions()
    assert back.dtype == np.float16 and back.shape == (50, 10)
    np.testing.assert_allclose(back, y_prob, atol=1e-3)


# --- run ids -------------------------------------------------------------------------------------------
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


# --- liveness: the lease, never a pid or a host name ---------------------------------------------------
def test_a_run_of_this_process_without_a_thread_is_interrupted_at_once(store):
    run = store.claim(store.create(TrainConfig()).run_id)
    assert run.live_status()["state"] == "running"
    mark_active(run.run_id, False)
    assert store.get(run.run_id).live_status()["state"] == "interrupted"
    assert json.loads((run.path / "status.json").read_text())["state"] == "interrupted"   # exported


def test_a_pid_or_host_that_looks_dead_does_not_interrupt_a_run_whose_lease_is_fresh(store):
    run = store.claim(store.create(TrainConfig()).run_id)
    run.write_status(pid=999_999_999, pid_start=1, host="a-machine-that-does-not-exist")
    assert store.get(run.run_id).live_status()["state"] == "running"


def test_delete_refuses_a_training_run_and_removes_a_finished_one(store):
    busy = store.claim(store.create(TrainConfig()).run_id)
    with pytest.raises(ValueError, match="still training"):
        store.delete(busy.run_id)
    done = _finished(store)
    store.delete(done.run_id)
    assert not done.path.exists() and [s.run_id for s in store.list()] == [busy.run_id]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".deleted")]
    with pytest.raises(RunNotFoundError):
        store.get(done.run_id)
