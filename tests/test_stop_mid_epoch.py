"""Stop keeps the work done (issue 29): a Stop checkpoints in the middle of an epoch with its place
in the epoch's seeded order, and resume trains only the batches after it, landing where a run that
never stopped lands (optimizer steps, learning rate, augmentation stream, one metrics row and one
curve per epoch). A long epoch also saves its place on a timer, so a killed run loses at most that
long. Real Keras models on the fixture's real pixels; the network is the tests' small
EfficientNet (the subject is the plumbing)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import read_status_file, run_folders, training_here, wait_for
from core.data import cifar10 as data
from core.data.batches import ArrayBatches
from core.jobs.scheduler import JobManager
from core.settings.config import TrainConfig
from core.store.runs import RunStore
from core.training.partial_epoch import MID_EPOCH_SAVE_ENV, PartialEpoch, mid_epoch_save_seconds
from core.training.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
# 160 training images at batch 8: an epoch of 20 batches. Cosine: the rate changes at
# every batch, so a resumed epoch that numbered its batches from 0 would show in the rate.
CONFIG = TrainConfig(epochs=1, batch_size=8, train_limit=160, val_fraction=0.2, seed=5,
                     lr_schedule="cosine", warmup_epochs=0)
STEPS = 20
STOP_DURING = 12      # Stop pressed while this batch trains: the run stops after it


class StopDuring(Progress):
    """The run's live progress, which presses Stop once batch `batch` - 1 has been reported: the
    trainer looks for a stop after each batch, so it ends after batch `batch`."""

    def __init__(self, stop_event: threading.Event, batch: int):
        super().__init__()
        self.stop_event, self.batch = stop_event, batch

    def update(self, **changes):
        super().update(**changes)
        if "loss" in changes and changes.get("batch") == self.batch - 1:   # the report of batch - 1
            self.stop_event.set()


class BatchesSeen(Progress):
    """The run's live progress, keeping every batch number it reports (batches trained in this process)."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def update(self, **changes):
        super().update(**changes)
        if "loss" in changes:          # the per-batch report (the epoch's start reports its batch too)
            self.batches.append(changes["batch"])


def _train(run, stop_event, progress, data_dir):
    """train_run to one epoch, in this process (the job manager's thread calls the same)."""
    from core.training.train import train_run
    return train_run(run, target_epochs=1, stop_event=stop_event, progress=progress, data_dir=data_dir)


def _optimizer_state(path) -> tuple[int, float]:
    """(optimizer steps, learning rate) of a checkpoint."""
    from core.training.model import load_checkpoint
    model = load_checkpoint(path)
    return (int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))


@pytest.fixture(scope="module")
def stopped_then_resumed(tmp_path_factory, fixture_data_dir):
    """One run stopped during batch 12 of its only epoch, then resumed to the end: what each step
    left behind. Module-scoped: two tests read it (a fit costs ~15 s of tracing)."""
    import small_efficientnet
    with pytest.MonkeyPatch.context() as patch:   # the small_network marker, for this module fixture
        patch.setenv(small_efficientnet.ENV, "small")
        store = RunStore(tmp_path_factory.mktemp("runs"))
        run = store.claim(store.create(CONFIG).run_id)
        stop = threading.Event()
        stopped = _train(run, stop, StopDuring(stop, STOP_DURING), fixture_data_dir)
        at_stop = {"status": run.read_status(), "metrics": run.read_metrics(), "batches": run.read_batches(),
                   "partial": run.checkpoint("partial") is not None, "last": run.checkpoint("last") is not None,
                   "summary": run.summary()}
        # The job manager queues the resume (a target of checkpoint_epoch + 1: the unfinished epoch
        # counts as not done); this process claims and trains it, counting the batches it trains.
        JobManager(runs_dir=store.root, drain_queue=False).resume(run.run_id, epochs=1)
        seen = BatchesSeen()
        resumed = _train(training_here(run), threading.Event(), seen, fixture_data_dir)
        yield {"run": run, "stopped": stopped, "at_stop": at_stop, "resumed": resumed, "seen": seen.batches}


@pytest.mark.slow
@pytest.mark.small_network
def test_a_stop_mid_epoch_keeps_its_batches_and_resume_trains_only_the_rest(stopped_then_resumed):
    result = stopped_then_resumed
    run, at_stop = result["run"], result["at_stop"]
    assert result["stopped"].state == "stopped", result["stopped"]
    status = at_stop["status"]
    # The place: no epoch finished, 12 batches of epoch 1 in checkpoints/partial.keras.
    assert status["state"] == "stopped" and status.get("checkpoint_epoch", 0) == 0
    assert status["checkpoint_batch"] == STOP_DURING and at_stop["partial"] and not at_stop["last"]
    partial = PartialEpoch.from_record(status["checkpoint_partial"])
    assert (partial.epoch, partial.batches, partial.steps, partial.images) == (0, STOP_DURING, STEPS, STOP_DURING * 8)
    assert [b for b, _, _ in partial.reports] == list(range(1, STOP_DURING + 1))
    # An unfinished epoch has no metrics row and no curve yet.
    assert at_stop["metrics"] == [] and at_stop["batches"] == {}
    # The Resume picker says the stopped epoch's batches are kept.
    from dashboard.state import resume_label
    assert at_stop["summary"].batches_kept == STOP_DURING
    assert resume_label(at_stop["summary"]).endswith(f" · stopped · 0/1 epochs and {STOP_DURING} batches of epoch 1")

    # Resume trained batches 13..20 only, and finished the run.
    assert result["resumed"].state == "completed", result["resumed"]
    assert result["seen"] == list(range(STOP_DURING + 1, STEPS + 1))
    final = run.read_status()
    assert final["state"] == "completed" and final["checkpoint_epoch"] == 1 and final["checkpoint_batch"] == 0
    assert final["checkpoint_partial"] is None and run.checkpoint("partial") is None
    assert run.summary().batches_kept == 0 and resume_label(run.summary()).endswith("% · 1/1 epochs")
    # One row for epoch 1, one curve of 20 batches: the first 12 as the stopped process saw them.
    (row,) = run.read_metrics()
    curve = run.read_batches()[1]
    assert row["epoch"] == 1 and [b for b, _, _ in curve] == list(range(1, STEPS + 1))
    assert curve[:STOP_DURING] == list(partial.reports)
    # The row's loss and accuracy are the whole epoch's means, as its curve ends (the running means
    # over batches before and after the stop: test_the_rest_of_an_epoch_reports_what_the_whole_epoch_would).
    assert row["loss"] == pytest.approx(curve[-1][1]) and row["accuracy"] == pytest.approx(curve[-1][2])
    assert curve[STOP_DURING - 1][1] == pytest.approx(partial.loss)
    assert row["images_per_second"] > 0 and row["epoch_seconds"] > partial.seconds


@pytest.mark.slow
@pytest.mark.small_network
def test_a_resumed_run_ends_where_an_unstopped_run_ends(stopped_then_resumed, tmp_path, fixture_data_dir):
    """The optimizer's step counter and the cosine rate after stop + resume equal those of the same
    run trained without a stop (the augmentation's random stream, which no checkpoint holds:
    test_the_rest_of_an_epoch_reports_what_the_whole_epoch_would)."""
    store = RunStore(tmp_path / "runs")
    twin = store.claim(store.create(CONFIG).run_id)
    assert _train(twin, threading.Event(), Progress(), fixture_data_dir).state == "completed"
    steps, rate = _optimizer_state(stopped_then_resumed["run"].checkpoint("last"))
    assert (steps, rate) == (STEPS, pytest.approx(_optimizer_state(twin.checkpoint("last"))[1], rel=1e-6))
    assert _optimizer_state(twin.checkpoint("last"))[0] == STEPS
    from core.training.train import cosine_rate
    assert rate == pytest.approx(cosine_rate(CONFIG, (STEPS - 1) / STEPS), rel=1e-6)   # set before the last batch


class _Seen(keras.callbacks.Callback):
    """Every batch's (number, loss, accuracy) and the epoch's means, as a callback receives them."""

    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, float, float]] = []
        self.epoch: dict = {}

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, logs["loss"], logs["accuracy"]))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = dict(logs)


def test_the_rest_of_an_epoch_reports_what_the_whole_epoch_would(tmp_path):
    """An epoch of 45 images at batch 10 (the last batch holds 5) trained whole, and the same epoch
    stopped after 3 batches, saved, reloaded and finished by a fit of its own: the callbacks of the
    second fit see the same batch numbers and the same running means (per image, as Keras weighs
    them: the short last batch counts half), and the augmentation layer's random stream, which
    Keras does not save, is put back where the whole epoch had it. The rate is 0, so each batch's
    loss depends on its images and their augmentation only."""
    from core.data.augment import Augment
    from core.training.partial_epoch import RestOfEpoch, place_random_streams
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (45, 8, 8, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, 45), 10)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Flatten()(Augment(flip=True, pad=2, seed=7, name="prep_augment")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden / 255.0))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    start = tmp_path / "start.keras"
    model.save(start)
    fit = dict(batch_size=10, epochs=1, shuffle=False, verbose=0)
    whole = _Seen()
    model.fit(x, y, callbacks=[whole], **fit)

    first = _Seen()
    stopped = keras.models.load_model(start)
    stopped.fit(x[:30], y[:30], callbacks=[first], **fit)
    stopped.save(tmp_path / "partial.keras")
    partial = PartialEpoch(epoch=0, batches=3, steps=5, batch_size=10, images=30, loss=first.epoch["loss"],
                           accuracy=first.epoch["accuracy"], seconds=1.0, timed_images=30, timed_seconds=1.0,
                           reports=tuple((b + 1, loss, accuracy) for b, loss, accuracy in first.batches))
    resumed = keras.models.load_model(tmp_path / "partial.keras")
    assert keras.ops.convert_to_numpy(resumed.get_layer("prep_augment").seed_generator.state).tolist() == [7, 0]
    place_random_streams(resumed, 3)
    rest = _Seen()
    resumed.fit(x[30:], y[30:], callbacks=[RestOfEpoch([rest], partial, train_images=45)], **fit)

    assert [b for b, _, _ in rest.batches] == [3, 4]
    np.testing.assert_allclose(np.array(rest.batches), np.array(whole.batches[3:]), rtol=1e-5)
    assert rest.epoch["loss"] == pytest.approx(whole.epoch["loss"], rel=1e-5)
    assert rest.epoch["accuracy"] == pytest.approx(whole.epoch["accuracy"], rel=1e-5)
    state = [keras.ops.convert_to_numpy(m.get_layer("prep_augment").seed_generator.state).tolist()
             for m in (model, resumed)]
    assert state == [[7, 5], [7, 5]]


# --- the order: a function of (seed, epoch) ------------------------------------------------------

def _labels_and_sums(batches) -> list[tuple[tuple[int, ...], int]]:
    """Each batch as (its labels, the sum of its pixels)."""
    if hasattr(batches, "element_spec"):
        pairs = [(x.numpy(), y.numpy()) for x, y in batches]
    else:
        pairs = [batches[i] for i in range(len(batches))]
    return [(tuple(int(v) for v in y), int(np.asarray(x, dtype=np.int64).sum())) for x, y in pairs]


@pytest.mark.parametrize("pipeline", ["make_dataset", "numpy"])
@pytest.mark.parametrize("host_augment", [False, True])
def test_epoch_e_after_k_batches_is_the_rest_of_epoch_e(fixture_data_dir, pipeline, host_augment):
    """What a resumed process feeds (epoch e, less its first k batches) is what the stopped process
    would have fed next, for the engine's pipeline (tf.data here, numpy under JAX) and the numpy one;
    each epoch has its own order, and a new dataset object repeats it."""
    cifar = data.load_cifar10(fixture_data_dir)
    x, y = cifar.x_train[:150], cifar.y_train[:150]
    make = data.make_dataset if pipeline == "make_dataset" else ArrayBatches
    options = dict(batch_size=16, training=True, seed=11, one_hot=False,
                   augment_flip=host_augment, crop_padding=3 if host_augment else 0)
    unbroken = _labels_and_sums(make(x, y, epochs=3, **options))            # 10 batches an epoch
    assert len(unbroken) == 30
    resumed = _labels_and_sums(make(x, y, first_epoch=1, epochs=2, skip_batches=4, **options))
    assert resumed == unbroken[14:]
    again = _labels_and_sums(make(x, y, first_epoch=2, **options))
    assert again == unbroken[20:]
    labels = [[label for batch, _ in unbroken[i * 10:(i + 1) * 10] for label in batch] for i in range(3)]
    assert labels[0] != labels[1] != labels[2] and sorted(labels[0]) == sorted(labels[1]) == sorted(y.tolist())
    other_seed = _labels_and_sums(make(x, y, epochs=1, **{**options, "seed": 12}))
    assert other_seed != unbroken[:10]


# --- saving the place on a timer, as a kill would need it ------------------------------------------

def test_the_save_interval_is_checked_by_name(monkeypatch):
    monkeypatch.delenv(MID_EPOCH_SAVE_ENV, raising=False)
    assert mid_epoch_save_seconds() == 300
    monkeypatch.setenv(MID_EPOCH_SAVE_ENV, "2.5")
    assert mid_epoch_save_seconds() == 2.5
    from core.errors import UserInputError
    for bad in ("0", "-3", "abc", "nan", "inf", "100000"):
        monkeypatch.setenv(MID_EPOCH_SAVE_ENV, bad)
        with pytest.raises(UserInputError, match=rf"^{MID_EPOCH_SAVE_ENV}: expected a number of seconds from 1 "
                                                 rf"to 86400; got '{bad}'$"):
            mid_epoch_save_seconds()


def test_a_bad_save_interval_fails_the_run_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(MID_EPOCH_SAVE_ENV, "soon")
    store = RunStore(tmp_path / "runs")
    run = store.claim(store.create(CONFIG).run_id)
    outcome = _train(run, threading.Event(), Progress(), str(tmp_path / "no-data-needed"))
    assert outcome.state == "failed" and outcome.error_kind == "input"
    assert outcome.error == f"{MID_EPOCH_SAVE_ENV}: expected a number of seconds from 1 to 86400; got 'soon'"
    assert run.read_status()["error"] == outcome.error


def _cli(*args, env=None):
    import os
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.small_network
def test_a_run_killed_mid_epoch_resumes_from_its_last_timed_save(tmp_path, fixture_data_dir):
    """EFFLAB_MID_EPOCH_SAVE_SECONDS=1: the CLI's run saves its place every second. SIGKILL it at a
    moment its status names such a save (frozen with SIGSTOP to look): `resume` says where it goes
    on, trains the rest, and the epoch has one row and one curve."""
    runs = tmp_path / "runs"
    where = ["--runs-dir", str(runs), "--data-dir", fixture_data_dir]
    # 240 images at batch 4: 60 batches, a few seconds of them after the first step's tracing.
    proc = _cli("train", "--epochs", "1", "--train-limit", "240", "--val-fraction", "0.2", "--batch-size", "4",
                *where, env={MID_EPOCH_SAVE_ENV: "1"})
    deadline = time.time() + 240
    status = {}
    while not status.get("checkpoint_batch"):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
        folders = run_folders(runs)
        if not folders:
            continue
        status = read_status_file(folders[0])
        if status.get("checkpoint_batch"):
            proc.send_signal(signal.SIGSTOP)     # between two saves or inside one: look, frozen
            status = read_status_file(folders[0])
            if not status.get("checkpoint_batch"):
                proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    run_dir = folders[0]
    kept = status["checkpoint_batch"]
    assert 0 < kept < 60 and status.get("checkpoint_epoch", 0) == 0, status
    run = RunStore(runs).get(run_dir.name)
    # Its lease lapses EFFLAB_LEASE_SECONDS (10 s in the tests) after its last heartbeat.
    wait_for(lambda: run.live_status()["state"] == "interrupted", timeout=60, what="the killed run to read interrupted")

    resume = _cli("resume", run_dir.name, *where)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-2000:]
    assert f"resuming at epoch 1, batch {kept + 1} of 60" in err
    assert "completed: test accuracy" in out
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    assert [b for b, _, _ in run.read_batches()[1]] == list(range(1, 61))
    assert run.read_status()["checkpoint_batch"] == 0 and run.checkpoint("partial") is None
