"""The run store as an interface: callers ask for versions, checkpoints, the queue and stop
requests, never for files; what a crash, a planted link or a damaged field leaves never breaks a
listing; and no module outside core/runs.py names a run file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core import runs as runs_mod
from core.config import TrainConfig
from core.runs import Keepalive, RunNotFoundError, RunStore, check_label, is_run_id, process_start_ticks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


# --- structure: nobody outside the store names a run file -----------------------------------------
RUN_FILE_NAMES = [runs_mod.CONFIG_FILE, runs_mod.STATUS_FILE, runs_mod.METRICS_FILE, runs_mod.PROGRESS_FILE,
                  runs_mod.PREDICTIONS_FILE, runs_mod.LAST_CHECKPOINT, runs_mod.BEST_CHECKPOINT,
                  runs_mod.STOP_REQUEST_FILE, runs_mod.BATCHES_FILE]
RUN_FILE_CONSTANTS = ["CONFIG_FILE", "STATUS_FILE", "METRICS_FILE", "BATCHES_FILE", "PROGRESS_FILE", "PREDICTIONS_FILE",
                      "LAST_CHECKPOINT", "BEST_CHECKPOINT", "CHECKPOINT_DIR", "STOP_REQUEST_FILE"]


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
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name == "runs.py" and folder == "core":
                continue
            code = _code_without_docstrings_and_comments(path)
            for name in RUN_FILE_NAMES:
                if re.search(rf"[\"']{re.escape(name)}[\"']", code):
                    offenders.append(f"{folder}/{path.name} names {name!r}")
            for constant in RUN_FILE_CONSTANTS:
                if re.search(rf"\b{constant}\b", code) and "core.runs" in code:
                    offenders.append(f"{folder}/{path.name} uses runs.{constant}")
            if re.search(r"\.file\(|\.last_checkpoint\b|\.best_checkpoint\b|\b_file\(", code):
                offenders.append(f"{folder}/{path.name} reaches into a run's paths")
    assert not offenders, offenders


def test_the_leak_check_would_catch_a_leak(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text('"""mentions status.json in prose only"""\nfrom core.runs import Run\n'
                     'x = run.path / "status.json"\n')
    assert '"status.json"' in _code_without_docstrings_and_comments(leaky)
    assert "prose" not in _code_without_docstrings_and_comments(leaky)


# --- versions and checkpoints -----------------------------------------------------------------------
def test_versions_change_exactly_when_an_artifact_changes(store):
    run = store.create(TrainConfig())
    assert run.version("metrics") == 0.0 and run.version("predictions") == 0.0
    assert run.checkpoint("last") is None and run.checkpoint("best") is None
    run.append_metrics({"epoch": 1, "loss": 1.0})
    first = run.version("metrics")
    assert first > 0 and run.version("metrics") == first
    time.sleep(0.01)
    run.append_metrics({"epoch": 2, "loss": 0.5})
    assert run.version("metrics") > first
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


def test_predictions_are_never_replaced_by_older_ones(store):
    run = store.create(TrainConfig())
    y_true = np.arange(20) % 10
    newer = np.eye(10)[y_true]
    assert run.write_predictions(y_true, newer, epoch=3)
    run.write_status(predictions_epoch=3)
    older = np.full((20, 10), 0.1)
    assert not run.write_predictions(y_true, older, epoch=2)
    assert np.array_equal(run.read_predictions()[1].astype(float), newer)
    assert run.write_predictions(y_true, older, epoch=4)


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
    store.enqueue(second, 4)                              # resumed: back in line, at the end
    assert [s.run_id for s in store.queue()] == [third.run_id, second.run_id]
    assert second.read_status()["epochs"] == 4
    with pytest.raises(ValueError, match="queued; cancel it"):
        store.delete(third.run_id)


def test_claims_are_exclusive_across_processes(store):
    runs = [store.create(TrainConfig()) for _ in range(6)]
    script = ("import sys, json; sys.path.insert(0, sys.argv[1]); from core.runs import RunStore; "
              "s = RunStore(sys.argv[2]); print(json.dumps([r for r in sys.argv[3:] if s.claim(r)]))")
    args = [sys.executable, "-c", script, str(ROOT), str(store.root), *[r.run_id for r in runs]]
    children = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    claimed = [json.loads(c.communicate(timeout=60)[0]) for c in children]
    everything = [rid for part in claimed for rid in part]
    assert sorted(everything) == sorted(r.run_id for r in runs)   # each once, by exactly one process


def test_queued_runs_of_a_dead_server_stay_queued(store):
    run = store.create(TrainConfig())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.write_status(pid=child.pid)     # the server that queued it is gone
    assert run.live_status()["state"] == "queued"


# --- stop requests and liveness -------------------------------------------------------------------
def test_a_stop_request_reaches_the_trainers_event_within_a_few_seconds(store):
    run = store.claim(store.create(TrainConfig()).run_id)
    stop = threading.Event()
    with Keepalive(run, stop):
        RunStore(store.root).get(run.run_id).request_stop()   # as another process would
        assert stop.wait(5)
    run.clear_stop_request()
    assert not run.stop_requested()


def test_the_heartbeat_comes_from_a_timer_not_from_batches(store, monkeypatch):
    monkeypatch.setattr(runs_mod, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(runs_mod, "STOP_POLL_SECONDS", 0.05)
    run = store.claim(store.create(TrainConfig()).run_id)
    before = run.read_status()["heartbeat"]
    with Keepalive(run, threading.Event()):
        time.sleep(0.5)                   # no batch at all: a long compile or test prediction
    assert run.read_status()["heartbeat"] > before + 0.2


def test_a_reused_pid_is_not_taken_for_the_trainer(store):
    run = store.create(TrainConfig())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The pid is alive, but it started at another time than the trainer recorded: a new process.
        run.write_status(state="running", pid=child.pid, pid_start=process_start_ticks(child.pid) - 1000,
                         host=socket.gethostname())
        assert run.live_status()["state"] == "interrupted"
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


# --- damaged and hostile folders ---------------------------------------------------------------------
def test_run_ids_are_matched_whole(store):
    assert is_run_id("20261125-142301-b0-3f9a")
    assert not is_run_id("20261125-142301-b0-3f9a\n")
    with pytest.raises(RunNotFoundError):
        store.get("20261125-142301-b0-3f9a\n")


@pytest.mark.parametrize("damage", [
    {"epochs": "many"}, {"epochs": 1e309}, {"started_at": "yesterday"}, {"started_at": 1.0, "ended_at": [1]},
    {"test_accuracy": "high"}, {"name": {"nested": 1}}, {"heartbeat": None, "state": "running", "host": "elsewhere"},
])
def test_damaged_status_fields_never_break_a_listing(store, damage):
    run = store.create(TrainConfig())
    status = json.loads((run.path / "status.json").read_text())
    status.update(damage)
    (run.path / "status.json").write_text(json.dumps(status).replace("Infinity", "1e999"))
    [summary] = store.list()
    assert summary.run_id == run.run_id


def test_deeply_nested_json_is_damage_not_a_crash(store):
    run = store.create(TrainConfig())
    (run.path / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    (run.path / "config.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    [summary] = store.list()
    assert summary.state == "damaged" and summary.damaged


def test_a_fifo_named_status_json_does_not_hang_a_listing(store):
    run = store.create(TrainConfig())
    (run.path / "status.json").unlink()
    os.mkfifo(run.path / "status.json")
    [summary] = store.list()
    assert summary.state == "damaged" and "not a regular file" in summary.damaged


def test_writes_never_follow_a_planted_link(store, tmp_path):
    run = store.create(TrainConfig())
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    (run.path / "metrics.csv").symlink_to(outside)
    with pytest.raises(OSError):
        run.append_metrics({"epoch": 1, "loss": 1.0})
    assert outside.read_text() == "precious\n"
    victim = tmp_path / "victim.json"
    victim.write_text("keep")
    (run.path / "progress.json").symlink_to(victim)
    run.write_progress({"batch": 1})                     # replaces the link, not its target
    assert victim.read_text() == "keep" and not (run.path / "progress.json").is_symlink()
    with pytest.raises(OSError, match="symbolic link"):   # nor read: the listing says why
        run.read_metrics()
    assert "symbolic link" in run.summary().damaged


def test_a_huge_file_is_refused_not_read(store):
    run = store.create(TrainConfig())
    with open(run.path / "progress.json", "wb") as fh:
        fh.truncate(runs_mod.safe_io.MAX_JSON_BYTES + 10)
    assert run.read_progress() == {}


def test_a_row_whose_append_failed_is_restored_on_resume(store):
    run = store.create(TrainConfig())
    row1 = {"epoch": 1, "loss": 1.0, "accuracy": 0.3, "val_loss": 1.1, "val_accuracy": 0.3,
            "learning_rate": 0.001, "epoch_seconds": 3.0, "images_per_second": 100.0}
    run.append_metrics(row1)
    row2 = {**row1, "epoch": 2, "loss": 0.5}
    # Epoch 2's checkpoint and status were written, then the disk filled up before its CSV row.
    run.write_checkpoint(lambda tmp: tmp.write_bytes(b"w"), "last")
    run.write_status(checkpoint_epoch=2, checkpoint_row=row2)
    run.reconcile_metrics(run.checkpoint_epoch())
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert run.read_metrics()[1]["loss"] == 0.5
    run.reconcile_metrics(2)                              # idempotent: never twice
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]


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
    with open(run.path / runs_mod.BATCHES_FILE, "a") as fh:
        fh.write("3,1,1.4")                                # killed mid-append: no newline
    assert sorted(run.read_batch_losses()) == [1, 2]
    run.append_batches(3, [(1, 1.3, 0.5)])                 # the resumed epoch is not glued to it
    assert run.read_batch_losses()[3] == [(1, 1.3)]
    # Resuming from epoch 2's checkpoint: epoch 3 is redone, so its batches go.
    run.reconcile_metrics(2)
    assert sorted(run.read_batch_losses()) == [1, 2]
    assert run.read_batch_losses()[1] == [(1, 2.3), (2, 2.1), (3, 1.9)]
    assert run.read_batch_accuracies()[2] == [(1, 0.4), (2, 0.45)]


def test_batches_written_before_accuracy_was_recorded_still_read(store):
    """A run from before batches.csv had an accuracy column, resumed by today's trainer: its old
    epochs keep their losses (without accuracy), the new one has both, and a resume keeps them."""
    run = store.create(TrainConfig())
    (run.path / runs_mod.BATCHES_FILE).write_text("epoch,batch,loss\n1,1,2.3\n1,2,2.1\n")
    run.append_batches(2, [(1, 1.5, 0.4)])
    assert run.read_batch_losses() == {1: [(1, 2.3), (2, 2.1)], 2: [(1, 1.5)]}
    assert run.read_batch_accuracies() == {2: [(1, 0.4)]}
    run.reconcile_metrics(1)
    assert run.read_batch_losses() == {1: [(1, 2.3), (2, 2.1)]} and run.read_batch_accuracies() == {}
    assert (run.path / runs_mod.BATCHES_FILE).read_text().splitlines() == [
        "epoch,batch,loss,accuracy", "1,1,2.3,", "1,2,2.1,"]


def test_every_atomic_write_is_fsynced_with_its_folder(store, monkeypatch):
    """A rename is durable only once its directory is: status, predictions and checkpoints fsync
    the file and then the folder (a power cut must not lose what a crash would not)."""
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


def test_the_queue_lock_nests_in_one_thread_and_excludes_others(store):
    """Create-then-claim (the CLI's start) takes the lock twice in one thread: it must not block
    itself; another thread still waits for it."""
    entered = threading.Event()
    with store.queue_lock():
        with store.queue_lock():           # would deadlock with a plain flock per open
            other = threading.Thread(target=lambda: (store.queue_lock().__enter__(), entered.set()), daemon=True)
            other.start()
            assert not entered.wait(0.3)
    assert entered.wait(5)
