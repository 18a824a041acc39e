"""Concurrency: simultaneous Starts, Stop and Resume pressed quickly and often, status writes from
several threads, and viewers that look at a run just as it finishes. The job manager is never
wedged, exactly one run trains, and no epoch is lost or recorded twice. The runs build the tests'
small EfficientNet (tests/small_efficientnet.py): the subject is the manager, not B0."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ended, run_folders, training_here, wait_for
from core.jobs.scheduler import JobError, JobManager
from core.settings.config import TrainConfig
from core.store.runs import RunStore, mark_active
from dashboard import control

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TRAIN = "../pages/train.py"
SMALL = dict(batch_size=16, train_limit=200, val_fraction=0.2, seed=5)


_PHASE_ORDER = ("starting TensorFlow", "loading data", "building model", "compiling first step", "training")


def _phase_reached(manager, run_id: str, target: str) -> bool:
    """The run's live phase is `target` or a later one of a start."""
    phase = manager.progress(run_id).get("phase")
    return phase in _PHASE_ORDER and _PHASE_ORDER.index(phase) >= _PHASE_ORDER.index(target)


def _wait_for(predicate, timeout=300, what="condition"):
    wait_for(predicate, timeout, what)


# --- status.json from several threads (no TensorFlow) --------------------------------------------
def test_status_writes_from_several_threads_lose_nothing(tmp_path):
    """Trainer, Stop and viewers all read-modify-write status.json: no write may undo another."""
    run = RunStore(tmp_path / "runs").create(TrainConfig())

    def writer(key):
        for i in range(300):
            run.write_status(**{key: i})

    threads = [threading.Thread(target=writer, args=(key,)) for key in ("epoch", "checkpoint_epoch", "batch")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = run.read_status()
    assert (status["epoch"], status["checkpoint_epoch"], status["batch"]) == (299, 299, 299)


def test_a_viewer_never_marks_a_run_that_just_finished_interrupted(tmp_path):
    """Forty laptops poll the run; one of them reading "running" just before the trainer writes
    "completed" and leaves must not then overwrite it with "interrupted"."""
    run = ended(RunStore(tmp_path / "runs").create(TrainConfig()))
    done = threading.Event()

    def viewer():
        while not done.is_set():
            run.live_status()

    viewers = [threading.Thread(target=viewer) for _ in range(4)]
    for v in viewers:
        v.start()
    try:
        for _ in range(60):
            trainer = training_here(run)           # the trainer's sequence: claimed, then done
            assert trainer.write_status(state="completed") is not None
            mark_active(run.run_id, False)
            time.sleep(0.002)
            assert run.read_status()["state"] == "completed"
    finally:
        done.set()
        for v in viewers:
            v.join()
    assert run.read_status()["state"] == "completed"


def test_a_late_stop_does_not_reopen_a_finished_run(tmp_path):
    run = ended(RunStore(tmp_path / "runs").create(TrainConfig()))
    assert run.write_status(state="stopping", if_state=("queued", "running")) is None
    assert run.write_status(state="stopping") is None         # the table allows no completed -> stopping
    assert run.read_status()["state"] == "completed"


# --- many viewers, one training thread (the benchmark is bench/viewers.py) -------------------------
def test_viewer_reruns_leave_keras_and_the_garbage_collector_alone(monkeypatch, tmp_path, fixture_data_dir):
    """Streamlit clears Keras's session and runs a full garbage collection after every script run;
    with a run training in the same process and forty viewers refreshing each second, that alone
    stalled training (bench/viewers.py). Neither may happen on a rerun of ours."""
    import tomllib

    import keras

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False

    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(1))
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    monkeypatch.setenv("EFFLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFLAB_DATA_DIR", fixture_data_dir)
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("../pages/curves.py")
    at.run()
    at.run()
    assert not at.exception and cleared == []


# --- the job manager -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.small_network
def test_simultaneous_starts_queue_every_run_and_train_one_at_a_time(tmp_path, fixture_data_dir):
    """Eight Starts in the same instant: eight runs, none refused or lost; with one slot exactly one
    trains and seven wait in line; cancelling them and stopping the first leaves the manager idle."""
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    presses = 8
    barrier = threading.Barrier(presses)
    started: list[str] = []

    def press():
        barrier.wait()
        started.append(manager.start(TrainConfig(epochs=50, **SMALL)))

    threads = [threading.Thread(target=press) for _ in range(presses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(started)) == presses
    assert [p.name for p in run_folders(tmp_path / "runs")] == sorted(started)
    assert len(manager.active_run_ids) == 1
    training = manager.active_run_id
    queued = [s.run_id for s in manager.store.queue()]
    assert sorted(queued + [training]) == sorted(started) and len(queued) == presses - 1
    for run_id in queued:
        assert manager.cancel(run_id)
    assert manager.stop(training)
    assert manager.wait(180)
    states = {s.run_id: s.state for s in manager.store.list()}
    assert states.pop(training) == "stopped" and set(states.values()) == {"cancelled"}


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
def test_two_dashboard_sessions_press_start_both_runs_train_in_order(monkeypatch, fixture_data_dir, tmp_path):
    """Two browser sessions on one server share the job manager: both press Start; the second run
    is queued and says its place; with one slot both complete, one after the other."""
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    monkeypatch.setenv("EFFLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFLAB_DATA_DIR", fixture_data_dir)
    monkeypatch.setenv("EFFLAB_SLOTS", "1")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        sessions = []
        for name in ("Ana", "Ben"):
            at = AppTest.from_file(APP, default_timeout=120)
            at.switch_page(TRAIN)
            for key, value in {"cfg_train_limit": 100, "cfg_epochs": 1, "cfg_batch_size": 16,
                               "cfg_val_fraction": 0.2, "run_name": f"{name}'s run", "run_author": name}.items():
                at.session_state[key] = value
            at.run()
            sessions.append(at)
        starts = [next(b for b in at.button if "Start training" in b.label) for at in sessions]
        assert not any(b.disabled for b in starts)
        for button in starts:                       # both press before either sees the other's run
            button.click()
        sessions[0].run()
        sessions[1].run()
        from dashboard.state import job_manager
        manager = job_manager()
        assert not sessions[0].exception and not sessions[1].exception
        first, second = (at.session_state["my_runs"][-1] for at in sessions)
        assert manager.active_run_ids == [first]
        assert manager.store.get(second).read_status()["state"] == "queued"
        headings = [m.value for m in sessions[1].markdown]
        assert any("1st in line" in h and second in h for h in headings), headings
        assert manager.wait(600)
        a, b = (manager.store.get(rid).read_status() for rid in (first, second))
        assert a["state"] == b["state"] == "completed", (a, b)
        assert a["ended_at"] <= b["claimed_at"]      # one slot: the second began when the first ended
        names = {s.run_id: s.label for s in manager.store.list()}
        assert names == {first: "Ana's run — by Ana", second: "Ben's run — by Ben"}
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
def test_rapid_stop_and_resume_never_wedge_the_manager_or_corrupt_the_run(tmp_path, fixture_data_dir):
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    run_id = manager.start(TrainConfig(epochs=1, **SMALL))
    assert manager.wait(600)
    run = manager.store.get(run_id)
    assert run.read_status()["state"] == "completed"

    # Stop at every moment of a start: before TensorFlow is up, while the data loads, while the model
    # is built, while the first step is traced, and mid-epoch. Each Stop is pressed as soon as the
    # run reports that phase (a fast phase may be over before the poll sees it: then it lands in the
    # next one, which the set of phases hit below records).
    targets = ("starting TensorFlow", "loading data", "building model", "compiling first step", "training")
    phases_hit, refusals = [], []
    for target in targets + ("starting TensorFlow", "training"):
        manager.resume(run_id, epochs=50)
        _wait_for(lambda: _phase_reached(manager, run_id, target), timeout=300, what=target)
        phases_hit.append(manager.progress(run_id).get("phase"))
        for _ in range(3):                          # Stop pressed three times in a row
            manager.stop(run_id)
        try:                                        # and Resume while it is still stopping
            manager.resume(run_id, epochs=50)
            refusals.append("accepted")             # only when the thread had already ended
            manager.stop(run_id)
        except JobError as exc:
            refusals.append(str(exc))
        assert manager.wait(300), "the manager is wedged"
        status = run.read_status()
        assert status["state"] == "stopped", status
        epochs = [r["epoch"] for r in run.read_metrics()]
        assert epochs == list(range(1, len(epochs) + 1))
        assert status["checkpoint_epoch"] == epochs[-1]
        leftovers = [p.name for p in (run.path / "checkpoints").iterdir() if ".tmp" in p.name]
        assert not leftovers, leftovers
    # The slow phases are always caught: before TensorFlow, tracing, and mid-epoch.
    assert {"starting TensorFlow", "compiling first step", "training"} <= set(phases_hit), phases_hit
    assert any("is stopping" in r or "is running" in r for r in refusals), refusals

    done = run.read_status()["checkpoint_epoch"]
    manager.resume(run_id, epochs=done + 1)
    assert manager.wait(600)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, done + 2))
    assert manager.active_run_id is None
