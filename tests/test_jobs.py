"""The job manager with a real Keras EfficientNet at 32×32 on fixture images: start, queue and cancel
a second start, stop at the next batch keeping the last epoch's checkpoint, resume with optimizer
state and epoch counter, and a failure that leaves the manager usable. The training builds the
tests' small EfficientNet (tests/small_efficientnet.py): the subject is the manager, not B0."""


import pytest

from conftest import wait_for
from core.jobs.scheduler import JobError, JobManager
from core.settings.config import TrainConfig

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout=300, what="condition"):
    wait_for(predicate, timeout, what)


@pytest.mark.small_network
def test_failure_then_start_stop_resume(tmp_path, fixture_data_dir):
    # 1. A run that cannot find its data fails with a readable reason; the manager stays usable.
    empty = tmp_path / "no-data"
    empty.mkdir()
    broken = JobManager(runs_dir=tmp_path / "runs", data_dir=str(empty))
    failed_id = broken.start(TrainConfig(epochs=1, train_limit=100))
    assert broken.wait(120)
    failed = broken.store.get(failed_id).read_status()
    assert failed["state"] == "failed"
    assert "EFFLAB_DATA_DIR" in failed["error"] and failed["error_kind"] == "input"

    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    config = TrainConfig(epochs=400, batch_size=16, train_limit=200, val_fraction=0.2, seed=3)
    run_id = manager.start(config, name="Ana — lr 1e-3", author="Ana")
    assert manager.active_run_id == run_id

    # 2. A second start while one trains is not refused: it waits in line, then is cancelled.
    second = manager.start(config)
    assert manager.store.get(second).read_status()["state"] == "queued"
    assert [s.run_id for s in manager.store.queue()] == [second]
    assert manager.cancel(second)
    assert manager.store.get(second).read_status()["state"] == "cancelled"
    assert manager.store.queue() == []

    # 3. Stop mid-epoch (after epoch 1 is on disk): ends at the next batch with a mid-epoch
    #    checkpoint of its own (tests/test_stop_mid_epoch.py); last.keras keeps the finished epochs.
    run = manager.store.get(run_id)
    _wait_for(lambda: run.read_status().get("checkpoint_epoch", 0) >= 1, what="epoch 1")
    _wait_for(lambda: manager.progress(run_id).get("batch", 0) >= 2, what="a batch of the next epoch")
    assert manager.stop(run_id)
    assert manager.wait(120)
    status = run.read_status()
    assert status["state"] == "stopped", status
    done = status["checkpoint_epoch"]
    assert 1 <= done < 400
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, done + 1))
    assert not run.has_predictions()

    # 4. Resume to two more epochs: optimizer state and epoch counter carry on; no duplicate rows.
    from core.training.model import load_checkpoint
    iterations_at_stop = int(load_checkpoint(run.checkpoint("last")).optimizer.iterations)
    steps_per_epoch = -(-200 // 16)   # train_limit 200 at batch 16: 13 steps, the last one short
    assert iterations_at_stop == done * steps_per_epoch   # exactly the finished epochs' steps
    with pytest.raises(JobError, match="more than the"):
        manager.resume(run_id, epochs=done)
    manager.resume(run_id, epochs=done + 2)
    assert manager.wait(300)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, done + 3))
    assert int(load_checkpoint(run.checkpoint("last")).optimizer.iterations) == (done + 2) * steps_per_epoch
    # Every finished epoch's batches, once each: the epoch the stop cut short too, before and after it.
    batch_losses = run.read_batch_losses()
    assert sorted(batch_losses) == list(range(1, done + 3))
    assert all([b for b, _ in pairs] == list(range(1, steps_per_epoch + 1)) for pairs in batch_losses.values())
    y_true, y_prob = run.read_predictions()
    assert y_prob.shape == (100, 10) and status["test_accuracy"] is not None

    # 5. The store lists all three runs, each in its own state, and the names stay with the run.
    by_id = {s.run_id: s for s in manager.store.list()}
    assert {rid: s.state for rid, s in by_id.items()} == {failed_id: "failed", run_id: "completed",
                                                          second: "cancelled"}
    assert by_id[run_id].label == "Ana — lr 1e-3 — by Ana"


def test_trained_run_has_every_file_of_the_contract(trained_run):
    names = {p.name for p in trained_run.path.iterdir()}
    assert {"config.json", "status.json", "metrics.csv", "progress.json", "predictions.npz",
            "checkpoints"} <= names
    assert trained_run.checkpoint("last") is not None and trained_run.checkpoint("best") is not None
    row = trained_run.read_metrics()[0]
    assert row["epoch"] == 1 and row["images_per_second"] > 0 and 0 <= row["val_accuracy"] <= 1
    progress = trained_run.read_progress()
    assert progress["state"] == "completed" and progress["batches"] == progress["batch"] > 0
    (epoch_1,) = trained_run.read_batch_losses().values()
    assert len(epoch_1) == progress["batches"] and all(loss > 0 for _, loss in epoch_1)
    # Its start-up, timed phase by phase, for the next run's "usually ≈ 25 s here" (core/estimates/startup.py).
    startup = trained_run.read_status()["startup_seconds"]
    assert set(startup) == {"starting", "loading data", "building model", "compiling first step"}, startup
    assert startup["compiling first step"] > 0.5 and all(seconds >= 0 for seconds in startup.values())


def test_unknown_or_active_runs_cannot_be_resumed(tmp_path, trained_run):
    manager = JobManager(runs_dir=trained_run.path.parent)
    with pytest.raises(Exception, match="no run"):
        manager.resume("20200101-000000-b0-0000", epochs=2)
    assert manager.stop("20200101-000000-b0-0000") is False


@pytest.mark.small_network
def test_a_run_queued_by_another_process_starts_without_anyone_asking(tmp_path, fixture_data_dir):
    """The scheduler looks at the queue every few seconds (core/jobs/scheduler.py SCHEDULE_SECONDS), so a run
    that another dashboard or the command line queued on the same database trains here with no
    Start, page view or job ending in this process to set it off."""
    from core.jobs.scheduler import SCHEDULE_SECONDS
    from core.store.runs import RunStore
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    assert manager.schedule() == []
    elsewhere = RunStore(tmp_path / "runs").create(TrainConfig(epochs=1, train_limit=100, val_fraction=0.2))
    _wait_for(lambda: manager.active_run_ids == [elsewhere.run_id] or
              elsewhere.read_status()["state"] != "queued", SCHEDULE_SECONDS * 3, "the scheduler to take the run")
    assert manager.wait(300)
    assert elsewhere.read_status()["state"] == "completed"


def test_the_first_phase_names_the_framework_that_loads():
    """Issue 32: under JAX the first phase said "starting TensorFlow"."""
    from core.jobs.scheduler import starting_phase
    assert starting_phase({}) == "starting TensorFlow"
    assert starting_phase({"KERAS_BACKEND": "jax"}) == "starting JAX"
    assert starting_phase({"KERAS_BACKEND": "torch"}) == "starting PyTorch"


@pytest.mark.full
@pytest.mark.small_network
def test_evaluate_now_is_a_job_that_waits_for_the_slot_of_the_run_it_evaluates(tmp_path, fixture_data_dir):
    """Issue 30: "Evaluate now" goes through the scheduler, not a page's thread. With one slot, the
    evaluation of a training run waits in line behind it; asked twice, it is one job; it then writes
    the run's predictions, labelled with the epoch of the checkpoint it used, and is never listed as
    a run."""
    from core.jobs.queue import EVALUATE_LABEL, queue_entries
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    run_id = manager.start(TrainConfig(epochs=400, batch_size=16, train_limit=200, val_fraction=0.2, seed=3),
                           name="Ana's long run")
    with pytest.raises(JobError, match="no last checkpoint yet"):
        manager.evaluate(run_id)
    run = manager.store.get(run_id)
    _wait_for(lambda: run.read_status().get("checkpoint_epoch", 0) >= 1, what="epoch 1")

    job_id = manager.evaluate(run_id, owner="ana")
    assert manager.evaluate(run_id, owner="ben") == job_id == manager.evaluation_of(run_id)
    job = manager.store.get(job_id)
    assert job.read_status()["state"] == "queued" and job.read_status()["evaluates"] == run_id
    waiting = [e for e in queue_entries(manager.store, manager.slots, manager.progress) if e.run_id == job_id]
    assert waiting[0].place == 1 and waiting[0].label == f"{EVALUATE_LABEL} — Ana's long run"

    assert manager.stop(run_id)
    _wait_for(lambda: job.read_status()["state"] not in ("queued", "running"), 300, "the evaluation job")
    status, evaluated_run = job.read_status(), run.read_status()
    assert status["state"] == "completed", status
    assert run.has_predictions() and evaluated_run["predictions_epoch"] == evaluated_run["checkpoint_epoch"] >= 1
    assert 0 <= status["test_accuracy"] <= 1 and status["predictions_epoch"] == evaluated_run["predictions_epoch"]
    assert manager.evaluation_of(run_id) is None
    assert [s.run_id for s in manager.store.list()] == [run_id]
