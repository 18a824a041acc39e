"""The run store as an interface, on each database (SQLite; PostgreSQL in `make test-all`): callers
ask for versions, checkpoints, the queue, leases and stop requests, never for tables or files;
every state change is a compare-and-set against the one table of transitions; the schema the
migrations build is the one the code declares; and no module outside the store names a run file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ended, training_here
from core.settings.config import TrainConfig
from core.store import run_files, runs as runs_mod, states
from core.store.runs import Keepalive, RunNotFoundError, RunStore, check_label, is_run_id

ROOT = Path(__file__).resolve().parents[1]
ROW = {"epoch": 1, "loss": 1.0, "accuracy": 0.3, "val_loss": 1.1, "val_accuracy": 0.3,
       "learning_rate": 0.001, "epoch_seconds": 3.0, "images_per_second": 100.0}


@pytest.fixture
def store(tmp_path, database):
    return RunStore(tmp_path / "runs")


# --- structure: nobody outside the store names a run file -----------------------------------------
RUN_FILE_NAMES = [run_files.CONFIG_FILE, run_files.STATUS_FILE, run_files.METRICS_FILE, run_files.PROGRESS_FILE,
                  run_files.BATCHES_FILE, runs_mod.PREDICTIONS_FILE, runs_mod.LAST_CHECKPOINT,
                  runs_mod.BEST_CHECKPOINT, runs_mod.LR_FINDING_FILE, "lab.db"]
RUN_FILE_CONSTANTS = ["CONFIG_FILE", "STATUS_FILE", "METRICS_FILE", "BATCHES_FILE", "PROGRESS_FILE", "PREDICTIONS_FILE",
                      "LAST_CHECKPOINT", "BEST_CHECKPOINT", "CHECKPOINT_DIR", "SQLITE_FILE"]


def _code_without_docstrings_and_comments(path: Path) -> str:
    import ast
    import io
    import tokenize
    source = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(first.lineno)
    kept = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start[0] in docstrings):
            continue
        kept.append(tok.string)
    return " ".join(kept)


def test_no_module_outside_the_store_names_a_run_file():
    offenders = []
    for folder in ("core", "dashboard", "pages", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / "core" / "store"):
                continue
            code = _code_without_docstrings_and_comments(path)
            for name in RUN_FILE_NAMES:
                if re.search(rf"[\"']{re.escape(name)}[\"']", code):
                    offenders.append(f"{path.relative_to(ROOT)} names {name!r}")
            for constant in RUN_FILE_CONSTANTS:
                if re.search(rf"\b{constant}\b", code) and re.search(r"core\.store\.(runs|run_files)\b", code):
                    offenders.append(f"{path.relative_to(ROOT)} uses the store's {constant}")
            if re.search(r"\.file\(|\.last_checkpoint\b|\.best_checkpoint\b|\b_file\(|\._row\(|\bruns_table\.c\b", code):
                offenders.append(f"{path.relative_to(ROOT)} reaches into a run's files or rows")
    assert not offenders, offenders


def test_the_leak_check_would_catch_a_leak(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text('"""mentions status.json in prose only"""\nfrom core.store.runs import Run\n'
                     'x = run.path / "status.json"\n')
    assert '"status.json"' in _code_without_docstrings_and_comments(leaky)
    assert "prose" not in _code_without_docstrings_and_comments(leaky)


# --- the schema ---------------------------------------------------------------------------------------
def test_the_migrations_build_the_schema_the_code_declares(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.store.database import HEAD_REVISION, VERSION_TABLE, metadata
    store.create(TrainConfig())                         # the first use upgrades the database
    assert store.db.revision() == HEAD_REVISION
    with store.db.engine.connect() as conn:
        # The lab's own version table (Optuna's studies own `alembic_version`: core/store/database.py).
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path, database):
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from core.store.runs import RunStore; "
              "from core.settings.config import TrainConfig; RunStore(sys.argv[2]).create(TrainConfig()); print('ok')")
    children = [subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(tmp_path / "runs")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [c.communicate(timeout=120) for c in children]
    assert all(c.returncode == 0 for c in children), [err[-1500:] for _, err in results]
    assert len(RunStore(tmp_path / "runs").list()) == 4


# --- versions and checkpoints -----------------------------------------------------------------------
def test_versions_change_exactly_when_an_artifact_changes(store):
    run = store.create(TrainConfig())
    assert run.version("metrics") == 0.0 and run.version("predictions") == 0.0 and run.version("batches") == 0.0
    assert run.checkpoint("last") is None and run.checkpoint("best") is None
    run.append_metrics({"epoch": 1, "loss": 1.0})
    first = run.version("metrics")
    assert first > 0 and run.version("metrics") == first
    run.append_metrics({"epoch": 2, "loss": 0.5})
    assert run.version("metrics") > first
    status = run.version("status")
    run.write_status(epoch=2)
    assert run.version("status") > status and run.versions("metrics", "status") == (run.version("metrics"),
                                                                                      run.version("status"))
    run.write_checkpoint(lambda tmp: tmp.write_bytes(b"weights"), "last")
    assert run.checkpoint("last").read_bytes() == b"weights" and run.version("last") > 0
    run.copy_checkpoint("last", "best")
    assert run.checkpoint("best").read_bytes() == b"weights"
    with pytest.raises(ValueError, match="artifact: expected one of"):
        run.version("status.json")
    with pytest.raises(ValueError, match="checkpoint: expected one of last, best"):
        run.checkpoint("newest")


def test_a_failed_checkpoint_write_keeps_the_old_one_and_says_why(store):
    run = store.create(TrainConfig())
    run.write_checkpoint(lambda tmp: tmp.write_bytes(b"epoch 1"), "last")

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(runs_mod.CheckpointError, match="the disk is full.*previous checkpoint is intact"):
        run.write_checkpoint(full_disk, "last")
    assert run.checkpoint("last").read_bytes() == b"epoch 1"
    assert [p.name for p in (run.path / "checkpoints").iterdir()] == ["last.keras"]


def test_predictions_are_never_replaced_by_older_ones_and_carry_their_accuracy(store):
    run = store.create(TrainConfig())
    y_true = np.arange(20) % 10
    newer = np.eye(10)[y_true]
    assert run.write_predictions(y_true, newer, epoch=3, test_accuracy=1.0)
    older = np.full((20, 10), 0.1)
    assert not run.write_predictions(y_true, older, epoch=2, test_accuracy=0.1)
    assert np.array_equal(run.read_predictions()[1].astype(float), newer)
    status = run.read_status()
    assert (status["predictions_epoch"], status["test_accuracy"]) == (3, 1.0)
    assert run.write_predictions(y_true, older, epoch=4, test_accuracy=0.1)
    assert (run.read_status()["predictions_epoch"], run.read_status()["test_accuracy"]) == (4, 0.1)


def test_predictions_and_their_accuracy_are_written_together_whatever_the_order(store):
    """Evaluations of several epochs finishing in any order: the predictions on disk, their epoch
    and their accuracy in the status always belong together, and the newest epoch wins."""
    run = store.create(TrainConfig())
    y_true = np.arange(40) % 10
    epochs = list(range(1, 13))
    np.random.default_rng(0).shuffle(epochs)

    def evaluate(epoch):
        y_prob = np.full((40, 10), 0.01)
        y_prob[:, epoch % 10] = 0.9
        run.write_predictions(y_true, y_prob, epoch=epoch, test_accuracy=epoch / 100)

    threads = [threading.Thread(target=evaluate, args=(e,)) for e in epochs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = run.read_status()
    assert status["predictions_epoch"] == 12 and status["test_accuracy"] == 0.12
    assert int(np.argmax(run.read_predictions()[1][0])) == 12 % 10


# --- every state change from one table -----------------------------------------------------------
def _run_in(store, state: str):
    run = store.create(TrainConfig())
    if state == "queued":
        return run
    if state == "cancelled":
        assert store.cancel(run.run_id)
        return run
    claimed = run.claim()
    if state == "stopping":
        assert claimed.write_status(state="stopping")
    elif state != "running":
        assert claimed.write_status(state=state)
    return store.get(run.run_id)        # a viewer's Run: no lease


def test_state_changes_are_exactly_those_the_table_allows(tmp_path, monkeypatch):
    from core.store.database import DB_URL_ENV
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    store = RunStore(tmp_path / "runs")
    for source in states.STATES:
        for target in states.STATES:
            run = _run_in(store, source)
            written = run.write_status(state=target) is not None
            assert written == states.allowed(source, target), (source, target)
            assert run.read_status()["state"] == (target if written else source)
    assert states.next_state("completed", "resume") == "queued" and states.next_state("completed", "stop") is None
    assert set(states.EVENTS) == {"cancel", "claim", "complete", "fail", "interrupt", "prune", "resume", "stop",
                                  "stopped"}


# --- the queue ---------------------------------------------------------------------------------------
def test_queue_order_claims_and_cancel(store):
    first, second, third = (store.create(TrainConfig(epochs=n)) for n in (1, 2, 3))
    assert [s.run_id for s in store.queue()] == [first.run_id, second.run_id, third.run_id]
    assert store.claim(first.run_id) is not None
    assert store.claim(first.run_id) is None              # claimed once only
    status = first.read_status()
    assert status["state"] == "running" and status["pid"] == os.getpid() and status["executor"] == "thread"
    assert store.cancel(second.run_id)
    assert not store.cancel(second.run_id)               # no longer queued
    assert second.read_status()["state"] == "cancelled" and second.path.is_dir()
    assert [s.run_id for s in store.queue()] == [third.run_id]
    assert store.enqueue(second, 4)                       # resumed: back in line, at the end
    assert not store.enqueue(second, 4)                   # a second Resume finds it queued
    assert [s.run_id for s in store.queue()] == [third.run_id, second.run_id]
    assert second.read_status()["epochs"] == 4
    with pytest.raises(ValueError, match="queued; cancel it"):
        store.delete(third.run_id)


def test_claims_are_exclusive_across_processes(store):
    runs = [store.create(TrainConfig()) for _ in range(6)]
    script = ("import sys, json; sys.path.insert(0, sys.argv[1]); from core.store.runs import RunStore; "
              "s = RunStore(sys.argv[2]); print(json.dumps([r for r in sys.argv[3:] if s.claim(r)]))")
    args = [sys.executable, "-c", script, str(ROOT), str(store.root), *[r.run_id for r in runs]]
    children = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    claimed = [json.loads(c.communicate(timeout=60)[0]) for c in children]
    everything = [rid for part in claimed for rid in part]
    assert sorted(everything) == sorted(r.run_id for r in runs)   # each once, by exactly one process


def test_queued_runs_stay_queued_whoever_queued_them(store):
    run = store.create(TrainConfig())
    run.write_status(pid=1, host="a-machine-long-gone")
    assert run.live_status()["state"] == "queued"


# --- stop requests, leases and liveness --------------------------------------------------------------
def test_a_stop_request_reaches_the_trainers_event_within_a_few_seconds(store):
    run = store.claim(store.create(TrainConfig()).run_id)
    stop = threading.Event()
    with Keepalive(run, stop):
        RunStore(store.root).get(run.run_id).request_stop()   # as another process would
        assert stop.wait(5)
    run.clear_stop_request()
    assert not run.stop_requested()


def test_the_heartbeat_comes_from_a_timer_not_from_batches(store, monkeypatch):
    monkeypatch.setattr(runs_mod, "heartbeat_seconds", lambda: 0.1)
    run = store.claim(store.create(TrainConfig()).run_id)
    before = run.read_status()["heartbeat"]
    with Keepalive(run, threading.Event()):
        time.sleep(0.6)                   # no batch at all: a long compile or test prediction
    assert run.read_status()["heartbeat"] > before + 0.2


def test_a_trainer_that_lost_its_lease_stops_and_writes_nothing(store, monkeypatch):
    """Fencing: a viewer found the lease expired and marked the run interrupted; the trainer's
    next heartbeat learns it, sets its stop event, and none of its writes count any more."""
    monkeypatch.setattr(runs_mod, "heartbeat_seconds", lambda: 0.1)
    trainer = store.claim(store.create(TrainConfig()).run_id)
    viewer = store.get(trainer.run_id)
    runs_mod.mark_active(trainer.run_id, False)          # as if its thread had gone: interrupted at once
    assert viewer.live_status()["state"] == "interrupted"
    stop = threading.Event()
    with Keepalive(trainer, stop):
        assert stop.wait(5)
    assert trainer.lease_lost
    assert trainer.write_status(checkpoint_epoch=7, state="completed") is None
    with pytest.raises(RuntimeError, match="no longer this trainer's"):
        trainer.append_metrics(ROW)
    assert viewer.read_status()["state"] == "interrupted" and viewer.read_metrics() == []
    assert "checkpoint_epoch" not in viewer.read_status()


def test_a_lease_that_expires_on_the_database_clock_interrupts_the_run(store, monkeypatch):
    monkeypatch.setenv(runs_mod.LEASE_ENV, "3")
    run = store.create(TrainConfig())
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); from core.store.runs import RunStore; "
              "r = RunStore(sys.argv[2]).claim(sys.argv[3]); print('claimed', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(store.root), run.run_id],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "claimed"
        assert run.live_status()["state"] == "running"        # its lease is fresh
        time.sleep(4)                                          # a claim nobody renews
        assert run.live_status()["state"] == "interrupted"
        assert "resume continues from the last checkpoint" in run.read_status()["error"]
    finally:
        child.kill()
        child.wait()


# --- names -------------------------------------------------------------------------------------------
def test_names_and_authors_are_validated_and_kept_as_text(store):
    run = store.create(TrainConfig(), name="Ana — lr 3e-3", author="Ana Pérez")
    summary = run.summary()
    assert (summary.name, summary.author, summary.label) == ("Ana — lr 3e-3", "Ana Pérez", "Ana — lr 3e-3 — by Ana Pérez")
    for bad, why in [("<b>x</b>", "not allowed"), ("[link](http://x)", "not allowed"), ("a" * 61, "at most 60"),
                     ("tab\there", "not allowed"), ("**bold**", "not allowed"), (12, "expected text")]:
        with pytest.raises(ValueError, match=f"name: expected .*{why}|name: {why}|{why}"):
            check_label("name", bad)
    with pytest.raises(ValueError, match="author"):
        store.create(TrainConfig(), author="`rm -rf`")


def test_run_ids_are_matched_whole(store):
    assert is_run_id("20261125-142301-b0-3f9a")
    assert not is_run_id("20261125-142301-b0-3f9a\n")
    with pytest.raises(RunNotFoundError):
        store.get("20261125-142301-b0-3f9a\n")


# --- metrics and curves ------------------------------------------------------------------------------
def test_a_row_whose_append_failed_is_restored_on_resume(store):
    run = store.create(TrainConfig())
    run.append_metrics(ROW)
    row2 = {**ROW, "epoch": 2, "loss": 0.5}
    # Epoch 2's checkpoint and status were written, then the disk filled up before its row.
    run.write_checkpoint(lambda tmp: tmp.write_bytes(b"w"), "last")
    run.write_status(checkpoint_epoch=2, checkpoint_row=row2)
    run.reconcile_metrics(run.checkpoint_epoch())
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert run.read_metrics()[1]["loss"] == 0.5
    run.reconcile_metrics(2)                              # idempotent: never twice
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert [int(line.split(",")[0]) for line in (run.path / "metrics.csv").read_text().splitlines()[1:]] == [1, 2]


def test_batch_reports_are_kept_per_epoch_and_follow_the_checkpoint_on_resume(store):
    run = store.create(TrainConfig())
    assert run.read_batch_losses() == {} and run.version("batches") == 0.0
    run.append_batches(1, [(1, 2.3, 0.1), (2, 2.1, 0.15), (3, 1.9, 0.2)])
    run.append_batches(2, [(1, 1.5, 0.4), (2, float("nan"), 0.45)])
    assert run.version("batches") > 0
    losses = run.read_batch_losses()
    assert losses[1] == [(1, 2.3), (2, 2.1), (3, 1.9)] and losses[2][0] == (1, 1.5)
    assert np.isnan(losses[2][1][1])                       # a NaN loss is recorded, not dropped
    assert run.read_batch_accuracies() == {1: [(1, 0.1), (2, 0.15), (3, 0.2)], 2: [(1, 0.4), (2, 0.45)]}
    run.append_batches(3, [(1, 1.3, 0.5)])
    # Resuming from epoch 2's checkpoint: epoch 3 is redone, so its batches go.
    run.reconcile_metrics(2)
    assert sorted(run.read_batch_losses()) == [1, 2]
    assert run.read_batch_losses()[1] == [(1, 2.3), (2, 2.1), (3, 1.9)]
    assert run.read_batch_accuracies()[2] == [(1, 0.4), (2, 0.45)]
    assert {line.split(",")[0] for line in (run.path / "batches.csv").read_text().splitlines()[1:]} == {"1", "2"}


@pytest.mark.full
def test_a_million_batch_reports_are_kept_and_read_back(tmp_path, monkeypatch):
    """batches.csv used to be cut at 64 MB (batch 1 for ~32 epochs) and progress.json at 1 MB; the
    database keeps any number (here 1,000 epochs of 1,000 batches) and reads them back whole."""
    from core.store.database import DB_URL_ENV
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    run = RunStore(tmp_path / "runs").create(TrainConfig())
    for epoch in range(1, 1001):
        run.append_batches(epoch, [(b, 2.0 - b / 1000, b / 1000) for b in range(1, 1001)])
    batches = run.read_batches()
    assert len(batches) == 1000 and sum(len(r) for r in batches.values()) == 1_000_000
    assert batches[1000][-1] == (1000, 1.0, 1.0)


def test_every_atomic_write_is_fsynced_with_its_folder(store, monkeypatch):
    """A rename is durable only once its directory is: the status export, predictions and
    checkpoints fsync the file and then the folder (a power cut must not lose what a crash would not)."""
    import stat as stat_mod
    run = store.create(TrainConfig())
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat_mod.S_ISDIR(mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    for write in (lambda: run.write_status(epoch=1),
                  lambda: run.write_predictions(np.arange(10), np.eye(10)),
                  lambda: run.write_checkpoint(lambda tmp: tmp.write_bytes(b"w"), "last")):
        synced.clear()
        write()
        assert "file" in synced and synced[-1] == "dir", synced


def test_a_finished_run_s_folder_holds_its_config_status_and_metrics(store):
    run = ended(store.create(TrainConfig(epochs=1), name="Ana"), "completed", checkpoint_epoch=1, test_accuracy=0.5)
    run.append_metrics(ROW)
    run.append_batches(1, [(1, 2.3, 0.1)])
    status = json.loads((run.path / "status.json").read_text())
    assert (status["state"], status["name"], status["test_accuracy"]) == ("completed", "Ana", 0.5)
    assert TrainConfig.from_json((run.path / "config.json").read_text()) == TrainConfig(epochs=1)
    assert run_files.read_metrics(run.path)[0]["loss"] == 1.0 and run_files.read_batches(run.path)[1][0][1] == 2.3


def test_resume_of_a_run_this_process_trained(store):
    run = ended(store.create(TrainConfig()))
    trainer = training_here(run, epochs=3)
    assert trainer.read_status()["state"] == "running" and trainer.read_status()["epochs"] == 3
