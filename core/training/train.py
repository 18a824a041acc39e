"""One training run, start to finish, writing everything to its run folder.

`train_run` is what the job manager's thread (and so the CLI) calls; the manager imports this
module only when a job starts, because importing Keras costs seconds. It never touches Streamlit:
it reports through the run folder and a thread-safe `Progress` object. The per-batch and per-epoch
work is done by small callbacks in one written order (core/training/callbacks.py), so the hot path costs a
few dictionary updates. A Stop
keeps the batches of the unfinished epoch, and resume goes on from the next one (core/training/partial_epoch.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import traceback
from dataclasses import dataclass

import keras
import numpy as np

from core.data import cifar10 as data_mod
from core.errors import SelfExplainedError, UserInputError
from core.estimates.memory import budget
from core.settings.config import TrainConfig
from core.store.runs import Keepalive, Run, mark_active, trainer_identity
from core.store.safe_io import disk_words
from core.store.states import RunState
from core.training import processes
from core.training.backend import gpu_devices, make_strategy, use_mixed_precision
from core.training.callbacks import (FitState, PredictProgress, current_learning_rate, outside_the_distribution,
                                     run_callbacks)
from core.training.lr_find import find_learning_rate
from core.training.model import (base_layers, build_model, compile_model, host_preprocessing, load_checkpoint,
                                 set_training_size, unfreeze, use_jit_compile)
from core.training.partial_epoch import PartialEpoch, RestOfEpoch, mid_epoch_save_seconds, place_random_streams
from core.training.progress import Progress
from core.training.pruning import sweep_pruning
from core.training.tensorboard_log import log_confusion_matrix, tensorboard_callback

PREDICT_BATCH = 256
# On a CPU, prediction slows down once a batch's activations outgrow the caches: B0 at 120 px
# predicted 100 images/s 32 at a time and 50-67 at 256, at 64 px 400-630 at 64 and 200-380 at
# 256; at 32 px 256 at a time is as fast as any (docs/RECIPES.md, table H). So a CPU predicts
# about this many pixels at once.
CPU_PREDICT_PIXELS = 32 * 120 * 120

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Raised between phases when a stop was asked for before training began."""


@dataclass
class Outcome:
    state: str            # stopped | completed | failed | pruned
    error: str = ""
    error_kind: str = ""  # "input" (data, weights, settings: the user can fix it) or "training"


def _is_unfrozen(model) -> bool:
    return any(layer.trainable and layer.weights for layer in base_layers(model))


def _callbacks(config: TrainConfig, own: list, run: Run, steps: int, start_epoch: int):
    """The run's own callbacks (core/training/callbacks.py, in their order), then the schedule, early
    stopping and TensorBoard, which read the logs the validation wrote."""
    callbacks = list(own)
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_accuracy", mode="max", factor=config.plateau_factor,
            patience=config.plateau_patience, min_lr=config.min_learning_rate, verbose=0))
    elif config.lr_schedule == "cosine":
        callbacks.append(CosineSchedule(config, steps))
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=config.early_stopping_patience,
            start_from_epoch=start_epoch, verbose=0))
    board = tensorboard_callback(run, steps)   # after EpochRecorder: it reads its metrics row
    return callbacks + ([board] if board is not None else [])


class CosineSchedule(keras.callbacks.Callback):
    """Linear warm-up, then cosine decay to min_learning_rate, set per batch from the epoch count
    (so a resumed run lands on the same curve)."""

    def __init__(self, config: TrainConfig, steps: int):
        super().__init__()
        self.config, self.steps = config, steps

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        # Under JAX, reading self.model syncs fit's state to the model first (Keras does it for
        # every callback), so the rate reaches the very next step (tests/test_backend.py).
        self.model.optimizer.learning_rate.assign(cosine_rate(self.config, self._epoch + batch / self.steps))


class ProgressiveResize(keras.callbacks.Callback):
    """fastai's progressive resizing: the first `progressive_start_fraction` of the run's training
    steps at `progressive_start_size`, the rest at `image_size` (docs/RECIPES.md, table H).

    The size is baked into the traced train step, so changing it traces a new one: one slow step
    (about 20 s on a CPU) once per run. Only training steps see the start size: the layer is set
    to it as each step begins and back to `image_size` as it ends, so whatever runs between steps
    (validation, a checkpoint, Keras' own validation, the test set) sees `image_size`.
    """

    def __init__(self, config: TrainConfig, steps: int):
        super().__init__()
        self.config, self.steps = config, steps
        self.switch_step = round(config.progressive_start_fraction * config.epochs * steps)
        self._traced_for: int | None = None   # the size the current train step was made for

    def size_at(self, epoch: int, batch: int) -> int:
        early = epoch * self.steps + batch < self.switch_step
        return self.config.progressive_start_size if early else self.config.image_size

    def remaining_steps(self, epoch: int, batches_done: int, end_epoch: int) -> dict[int, int]:
        """{size: training steps left at it} after `batches_done` steps of `epoch`, to `end_epoch`'s end."""
        done, end = epoch * self.steps + batches_done, end_epoch * self.steps
        early = max(0, min(self.switch_step, end) - done)
        return {self.config.progressive_start_size: early, self.config.image_size: max(0, end - done - early)}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        size = self.size_at(self._epoch, batch)
        set_training_size(self.model, size)   # also what a retrace for a smaller last batch reads
        if size != self._traced_for:
            self.model.make_train_function(force=True)
            self._traced_for = size

    def on_train_batch_end(self, batch, logs=None):
        set_training_size(self.model, self.config.image_size)


def cosine_rate(config: TrainConfig, epoch_float: float) -> float:
    base, low = config.learning_rate, config.min_learning_rate
    if epoch_float < config.warmup_epochs:
        return base * (epoch_float + 1e-3) / config.warmup_epochs
    span = max(config.epochs - config.warmup_epochs, 1e-9)
    t = min(1.0, (epoch_float - config.warmup_epochs) / span)
    return low + 0.5 * (base - low) * (1 + math.cos(math.pi * t))


def cpu_predict_batch(image_size: int) -> int:
    """Images a CPU predicts at once at `image_size`: 32 at 120 px, 112 at 64, 256 at 32."""
    return max(16, min(PREDICT_BATCH, CPU_PREDICT_PIXELS // (image_size * image_size)))


MIRROR_PASS = "mirroring the unsure test images"   # the test-time flip's pass, after the plain one


def predict_test_set(model, config: TrainConfig, cifar: data_mod.Cifar10, progress: Progress,
                     replicas: int = 1, batch_size: int = PREDICT_BATCH,
                     callbacks: list | None = None) -> np.ndarray:
    """Class probabilities for every test image, in order, `batch_size` images at a time.

    With `config.test_time_flip`, an image whose top class is below `config.test_time_flip_below`
    gets the mean of its and its mirror image's probabilities; the others keep their own (below 1,
    the mirror pass covers only the images the model is unsure of: `progress` says how many).
    `callbacks` see the first pass's batches (an evaluation job's progress bar).
    """
    progress.update(phase="evaluating test set", mirror_pass_images=0)
    y_prob = _predict_images(model, config, cifar.x_test, cifar.y_test, replicas, batch_size, callbacks)
    if not config.test_time_flip or len(y_prob) < len(cifar.y_test):   # no mirror pass, or a stopped pass
        return y_prob
    below = config.test_time_flip_below
    unsure = np.arange(len(y_prob)) if below >= 1 else np.flatnonzero(y_prob.max(axis=1) < below)
    if not len(unsure):
        return y_prob
    mirrored = np.ascontiguousarray(cifar.x_test[unsure, :, ::-1])
    progress.update(phase=MIRROR_PASS, mirror_pass_images=len(unsure))
    averaged = y_prob.copy()    # not written into what predict returned (a backend may share it)
    averaged[unsure] = (y_prob[unsure] + _predict_images(model, config, mirrored, cifar.y_test[unsure],
                                                         replicas, batch_size)) / 2
    return averaged


def _predict_images(model, config: TrainConfig, x_test: np.ndarray, y_test: np.ndarray, replicas: int,
                    batch_size: int, callbacks: list | None = None) -> np.ndarray:
    # Replicas must split every batch evenly: pad with copies of the last image, then trim.
    n = len(x_test)
    padded = -n % replicas
    x = np.concatenate([x_test, np.repeat(x_test[-1:], padded, axis=0)]) if padded else x_test
    y = np.concatenate([y_test, np.repeat(y_test[-1:], padded)]) if padded else y_test
    test_ds = data_mod.make_dataset(x, y, image_size=host_preprocessing(model, config).get("image_size"),
                                    batch_size=_multiple_of(batch_size, replicas), training=False)
    return model.predict(test_ds, verbose=0, callbacks=callbacks)[:n]


def _multiple_of(value: int, replicas: int) -> int:
    return max(replicas, value // replicas * replicas)


def train_run(run: Run, *, target_epochs: int, stop_event: threading.Event, progress: Progress,
              data_dir: str | None = None) -> Outcome:
    """Trains (or resumes) `run` up to `target_epochs` finished epochs. Never raises.

    Resume is implicit: when the run has a last checkpoint, training continues from it with its
    optimizer state, learning rate and epoch counter; metrics.csv is appended to. When a Stop (or
    a periodic save) left a mid-epoch checkpoint, it continues inside that epoch, at the batch
    after the last one trained.
    """
    return _as_job(run, progress, stop_event, {"epochs": target_epochs},
                   lambda: _train(run, target_epochs, stop_event, progress, data_dir))


def lr_find_run(run: Run, *, target_epochs: int, stop_event: threading.Event, progress: Progress,
                data_dir: str | None = None) -> Outcome:
    """A learning-rate finder job from the queue: the range test on the job's config, its curve
    and suggestion saved in the job's folder (`target_epochs` is unused). Never raises."""

    def find() -> Outcome:
        progress.update(state=RunState.RUNNING, phase="loading data", run_id=run.run_id, error="")
        finding = find_learning_rate(run.read_config(), data_dir, progress, stop_event)
        run.write_lr_finding({"rates": finding.rates.tolist(), "losses": finding.losses.tolist(),
                              "smoothed": finding.smoothed.tolist(), "suggestion": finding.suggestion,
                              "steepest": finding.steepest, "minimum_rate": finding.minimum_rate,
                              "ended": finding.ended, "method": finding.method})
        return Outcome(RunState.STOPPED if finding.ended == "stopped" else RunState.COMPLETED)   # the finder's own word

    return _as_job(run, progress, stop_event, {}, find)


def _as_job(run: Run, progress: Progress, stop_event: threading.Event, status: dict, work) -> Outcome:
    """Runs `work` (-> Outcome) as this process's job on `run`: marked ours, kept alive (heartbeat,
    stop requests from other processes), and whatever fails, recorded and released."""
    mark_active(run.run_id, True)
    trace = ""
    try:
        # A run handed over without a claim (a script calling train_run on a new run) is claimed
        # here, so that it trains under a lease like any other.
        if getattr(run, "lease", "") is None and run.read_status().get("state") == RunState.QUEUED and run.claim() is None:
            raise RuntimeError(f"run {run.run_id} was claimed by another process just now")
        run.write_status(error="", ended_at=None, **status, **trainer_identity())
        with Keepalive(run, stop_event, on_stop_request=lambda: progress.update(state=RunState.STOPPING)):
            outcome = work()
    except Exception as exc:  # noqa: BLE001 - any failure becomes the run's readable reason
        outcome = Outcome(RunState.FAILED, _readable(exc), _error_kind(exc))
        trace = traceback.format_exc(limit=20)
    try:
        _record_outcome(run, outcome, trace)
    finally:
        # Whatever failed above (a full disk, a runs folder gone), this process must stop counting
        # the run as its own: else it stays "running" here, and Start, Resume and Delete refuse it.
        mark_active(run.run_id, False)
        progress.update(state=outcome.state, phase=outcome.state, error=outcome.error)
        with contextlib.suppress(OSError):
            run.write_progress(progress.snapshot())
        with contextlib.suppress(OSError):
            run.clear_stop_request()   # answered: a later resume must not stop at once
    return outcome


def _record_outcome(run: Run, outcome: Outcome, trace: str) -> None:
    """The final state in the run's status. When even that write fails, the run reads as interrupted
    (its trainer is gone and its lease with it) and can be resumed: nothing else is lost."""
    try:
        run.write_status(state=outcome.state, error=outcome.error, error_kind=outcome.error_kind,
                         ended_at=time.time(), **({"traceback": trace} if trace else {}))
    except OSError as exc:
        outcome.error = (f"{outcome.error} (and the final status could not be written: "
                         f"{disk_words(exc)})").strip()


def _error_kind(exc: Exception) -> str:
    return "input" if isinstance(exc, UserInputError) else "training"


def _readable(exc: Exception) -> str:
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (UserInputError, SelfExplainedError)):
        return message
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"could not write to the run folder{where}: {disk_words(exc)}; free some space and resume the run"
    if processes.several() and type(exc).__name__ == "JaxRuntimeError":
        # A collective failed: most often another process of the run died (JAX then ends this one).
        return (f"a process of this {processes.process_count()}-process run stopped answering "
                f"({message.splitlines()[0][:200]}); start every process again with `python -m core "
                "resume RUN_ID` to continue from the last checkpoint")
    return f"{type(exc).__name__}: {message.splitlines()[0][:400]}"


def _check_stop(stop_event: threading.Event) -> None:
    if stop_event.is_set():
        raise TrainingStopped()


@dataclass
class Setup:
    """What a run trains with, built once before its phases: data, strategy, model, datasets."""

    config: TrainConfig
    cifar: data_mod.Cifar10
    split: data_mod.Split
    strategy: object
    model: object
    host: dict              # what the host pipeline does for this model (core.training.model.host_preprocessing)
    global_batch: int
    whole_batches: bool
    val_ds: object
    steps: int
    jit_compile: bool
    predict_batch: int
    partial: PartialEpoch | None    # the epoch a mid-epoch checkpoint left unfinished, to go on with

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def train_images(self) -> int:
        return len(self.split.x_train)

    def training_batches(self, first_epoch: int, end_epoch: int, skip_batches: int = 0):
        """One fit's input: epochs first_epoch..end_epoch - 1, each in its own seeded order, less the
        first `skip_batches` batches (those a mid-epoch checkpoint holds)."""
        return data_mod.make_dataset(
            self.split.x_train, self.split.y_train, batch_size=self.global_batch, training=True,
            seed=self.config.seed, drop_remainder=self.whole_batches, first_epoch=first_epoch,
            epochs=end_epoch - first_epoch, skip_batches=skip_batches, **self.host)


def _train(run: Run, target_epochs: int, stop_event: threading.Event, progress: Progress,
           data_dir: str | None) -> Outcome:
    """The run, in the named steps of the Keras fine-tuning guide it follows: set up, then each
    phase (the head on a frozen base, then fine-tuning with BatchNorm frozen), then the test set."""
    save_seconds = mid_epoch_save_seconds()   # a bad EFFLAB_MID_EPOCH_SAVE_SECONDS fails before any work
    config = run.read_config()
    done = run.checkpoint_epoch()
    run.reconcile_metrics(done)
    progress.update(state=RunState.RUNNING, phase="loading data", epoch=done, epochs=target_epochs,
                    batch=0, batches=0, run_id=run.run_id, error="")
    try:
        setup = _set_up(run, config, done, data_dir, stop_event, progress)
    except TrainingStopped:
        return Outcome(RunState.STOPPED)
    for phase_name, phase_end in _phases(config, target_epochs):
        if done >= phase_end:
            continue
        outcome, done = _fit_phase(run, setup, phase_name, phase_end, done, target_epochs, stop_event, progress,
                                   save_seconds)
        if outcome is not None:
            return outcome
        if setup.model.stop_training:   # early stopping ended the run before target_epochs
            run.write_status(early_stopped_at=done)
            break
    _test_and_record(run, setup, done, progress)
    return Outcome(RunState.COMPLETED)


def _set_up(run: Run, config: TrainConfig, done: int, data_dir: str | None, stop_event: threading.Event,
            progress: Progress) -> Setup:
    """Data, precision, strategy, the model (fresh, or from the last or the mid-epoch checkpoint)
    and the validation set; the training batches come per fit (Setup.training_batches).

    Raises:
        TrainingStopped: a stop was asked for before training began.
    """
    cifar = data_mod.load_cifar10(data_dir)
    split = data_mod.split_train_val(cifar.x_train, cifar.y_train, val_fraction=config.val_fraction,
                                     seed=config.seed, train_limit=config.train_limit)
    _check_stop(stop_event)
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if use_mixed_precision(config.mixed_precision) else "float32")
    strategy = make_strategy(config.distribution)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    on_gpu = bool(gpu_devices())
    # Whole batches only where a ragged last batch costs: XLA (on a GPU, and always under JAX)
    # compiles the step again for the new shape, and replicas cannot split it evenly. On one CPU
    # under TensorFlow every image counts for small runs.
    whole_batches = on_gpu or replicas > 1 or keras.backend.backend() == "jax"
    jit_compile = use_jit_compile(config.jit_compile)
    # Validation and test prediction run max(batch, 256) images at once where memory allows it,
    # fewer where it does not (B7 at 600 px): core/estimates/memory.py says how many fit. A CPU runs fewer.
    predict_batch = max(1, budget(config).predict_batch)
    if not on_gpu:
        predict_batch = min(predict_batch, cpu_predict_batch(config.image_size))

    if processes.several():
        # Every process builds the same initial weights, or their replicas would differ.
        keras.utils.set_random_seed(config.seed)
        run.write_status(processes=processes.process_count(), devices=replicas)
    steps = (max(1, len(split.x_train) // global_batch) if whole_batches
             else data_mod.dataset_len(len(split.x_train), global_batch))
    partial = _partial_epoch(run, done, steps, global_batch)
    progress.update(phase="building model")
    with strategy.scope():
        if done or partial:
            model = load_checkpoint(run.checkpoint("partial" if partial else "last"))
            model.jit_compile = jit_compile   # this machine's choice, not the saving one's
        else:
            model = build_model(config)
            compile_model(model, config, config.learning_rate, jit_compile=jit_compile)
    # The host ships uint8 batches at 32 px and the model augments and resizes them on the
    # device; only a checkpoint from before that change needs the host to do it.
    host = host_preprocessing(model, config)
    if processes.several():
        host["shard"] = strategy.shard   # this process's part of every batch
    # Validation batches must split evenly over replicas: drop the last few (< replicas) images.
    n_val = len(split.x_val) // replicas * replicas
    val_ds = None if n_val == 0 else data_mod.make_dataset(
        split.x_val[:n_val], split.y_val[:n_val], image_size=host.get("image_size"),
        batch_size=_multiple_of(predict_batch, replicas), training=False, shard=host.get("shard", (0, 1)))
    _check_stop(stop_event)
    return Setup(config, cifar, split, strategy, model, host, global_batch, whole_batches, val_ds, steps,
                 jit_compile, predict_batch, partial)


def _partial_epoch(run: Run, done: int, steps: int, global_batch: int) -> PartialEpoch | None:
    """The unfinished epoch done + 1 that the run's mid-epoch checkpoint holds, when resume can go on
    inside it; None to start that epoch from its beginning (last.keras, or a new model)."""
    batches = run.checkpoint_batch()
    if not batches:
        return None
    partial = PartialEpoch.from_record(run.read_status().get("checkpoint_partial"))
    if partial is None or partial.epoch != done or partial.batches != batches or batches >= steps:
        log.warning("run %s: its mid-epoch checkpoint's record is damaged; epoch %d starts again",
                    run.run_id, done + 1)
        return None
    if partial.batch_size != global_batch:
        # Cut into other batches (another number of devices), the epoch's order no longer says
        # which images the batches trained hold.
        log.warning("run %s: epoch %d was stopped at batch %d of %d images each; here a batch holds %d, "
                    "so the epoch starts again", run.run_id, done + 1, batches, partial.batch_size, global_batch)
        return None
    return partial


def _phases(config: TrainConfig, target_epochs: int) -> list[tuple[str, int]]:
    """(name, last epoch) of each phase: the head on a frozen base, then fine-tuning; or one."""
    if config.freeze_base and config.fine_tune_from_start:
        return [("fine-tuning (BatchNorm frozen)", target_epochs)]   # build_model has unfrozen it
    if config.has_fine_tune_phase_within(target_epochs):
        return [("training head (base frozen)", config.fine_tune_at_epoch),
                ("fine-tuning (BatchNorm frozen)", target_epochs)]
    return [("training", target_epochs)]


def _fit_phase(run: Run, setup: Setup, phase_name: str, phase_end: int, done: int, target_epochs: int,
               stop_event: threading.Event, progress: Progress,
               save_seconds: float = math.inf) -> tuple[Outcome | None, int]:
    """One phase's epochs; (the run's outcome if the phase ended it, epochs now done)."""
    config, model = setup.config, setup.model
    if phase_name.startswith("fine-tuning") and not _is_unfrozen(model):
        with setup.strategy.scope():
            unfreeze(model, config.fine_tune_from_block, depthwise=config.fine_tune_depthwise)
            compile_model(model, config, config.fine_tune_learning_rate, jit_compile=setup.jit_compile)
    partial = setup.partial if setup.partial is not None and setup.partial.epoch == done else None
    resize = ProgressiveResize(config, setup.steps) if config.progressive_start_size else None
    fit = FitState(train_images=setup.train_images, steps=setup.steps, target_epochs=target_epochs,
                   phase_name=phase_name, resize=resize, batch_size=setup.global_batch, partial=partial,
                   save_seconds=save_seconds)
    callbacks = _callbacks(config, run_callbacks(fit, run, progress, stop_event, setup.val_ds), run, setup.steps, done)
    pruning = sweep_pruning(run, target_epochs)   # a sweep's trial only: reports each epoch, may end it early
    if pruning is not None:
        callbacks.append(pruning)    # after Validation, whose figures it reports
    # Keras starts a fit at a batch 0: the rest of an epoch left unfinished is a fit of its own.
    fits = [(done, done + 1, partial.batches)] if partial else []
    if done + len(fits) < phase_end:
        fits.append((done + len(fits), phase_end, 0))
    for first, end, skip in fits:
        place_random_streams(model, first * setup.steps + skip)
        model.fit(setup.training_batches(first, end, skip), initial_epoch=first, epochs=end,
                  steps_per_epoch=setup.steps - skip, shuffle=False, verbose=0,
                  callbacks=[RestOfEpoch(callbacks, partial, setup.train_images)] if skip else callbacks)
        if model.stop_training:   # a stop, a NaN, early stopping or the sweep's pruner
            break
    done = int(run.read_status().get("checkpoint_epoch", done))
    if fit.nan_at:
        what, epoch, where = fit.nan_at
        return Outcome(RunState.FAILED, error_kind="training", error=f"{what} at epoch {epoch}{where}: "
                       f"training stopped. Start again with a lower learning_rate (now "
                       f"{current_learning_rate(model):g}); {_kept(done, run.checkpoint_batch())}."), done
    if fit.stopped_by_user:
        # MidEpochSaver kept the unfinished epoch's batches in a mid-epoch checkpoint, with their
        # place in its order: resume goes on from the next batch.
        return Outcome(RunState.STOPPED), done
    if pruning is not None and pruning.pruned:
        # Its curve and checkpoint stay; no test set: a pruned trial is not worth the minutes.
        return Outcome(RunState.PRUNED), done
    return None, done


def _kept(done: int, batches: int) -> str:
    """What resume starts from, in words."""
    if batches:
        return f"the checkpoint at batch {batches} of epoch {done + 1} is kept"
    return f"the checkpoint of epoch {done} is kept" if done else "no epoch had finished, so there is no checkpoint"


def _test_and_record(run: Run, setup: Setup, done: int, progress: Progress) -> None:
    """Test-set predictions from the final weights: predictions.npz, accuracy, TensorBoard's matrix."""
    cifar = setup.cifar
    if processes.several():
        if processes.process_index() > 0:
            return   # process 0 predicts and writes
        y_prob = _predict_on_this_process(run, setup, progress)
    else:
        y_prob = predict_test_set(setup.model, setup.config, cifar, progress, setup.replicas, setup.predict_batch)
    accuracy = float(np.mean(np.argmax(y_prob, axis=1) == cifar.y_test))
    top5 = float(np.mean(np.any(np.argsort(y_prob, axis=1)[:, -5:] == cifar.y_test[:, None], axis=1)))
    run.write_predictions(cifar.y_test, y_prob, epoch=done, test_accuracy=accuracy, test_top5_accuracy=top5,
                          test_images=len(cifar.y_test))
    log_confusion_matrix(run, cifar.y_test, y_prob, step=done)


def _predict_on_this_process(run: Run, setup: Setup, progress: Progress) -> np.ndarray:
    """Test-set probabilities on process 0 alone, from the checkpoint of the final epoch: over
    several processes the model's outputs span every process's devices, which no single process
    can read. The checkpoint holds the same weights, and outside the run's distribution they
    predict on this process."""
    return outside_the_distribution(lambda: predict_test_set(
        load_checkpoint(run.checkpoint("last")), setup.config, setup.cifar, progress, batch_size=setup.predict_batch))




def evaluate_run(run: Run, *, target_epochs: int, stop_event: threading.Event, progress: Progress,
                 data_dir: str | None = None) -> Outcome:
    """An evaluation job from the queue ("Evaluate now"): the checkpoint of the run its status
    names (`evaluates`, `checkpoint`) over the test set, the predictions written to that run; the
    job keeps the accuracy (`target_epochs` is unused). Never raises."""

    def evaluate() -> Outcome:
        status = run.read_status()
        target = run.store.get(str(status.get("evaluates")))
        accuracy = evaluate_checkpoint(target, data_dir=data_dir, which=status.get("checkpoint") or "last",
                                       progress=progress, stop_event=stop_event)
        if accuracy is None:
            return Outcome(RunState.STOPPED)
        run.write_status(test_accuracy=accuracy,
                         predictions_epoch=target.read_status().get("predictions_epoch"))
        return Outcome(RunState.COMPLETED)

    return _as_job(run, progress, stop_event, {}, evaluate)


def evaluate_checkpoint(run: Run, *, data_dir: str | None = None, which: str = "last",
                        progress: Progress | None = None, stop_event: threading.Event | None = None) -> float | None:
    """Writes predictions.npz from the run's latest (or best) checkpoint; returns test accuracy,
    or None when `stop_event` ended it first (nothing is written then).

    For "Evaluate now" on a running or stopped run (an evaluation job, evaluate_run) and the CLI's
    `evaluate`. Loads the checkpoint fresh, so it never touches the model a trainer is using.
    `progress` gets the phases and each test batch.
    """
    progress = progress or Progress()
    config = run.read_config()
    progress.update(state=RunState.RUNNING, phase="loading the checkpoint", batch=0, batches=0)
    # The checkpoint and the epoch it holds are read together, under the lock the trainer holds
    # while it replaces them: the predictions are labelled with the weights they came from.
    with run.checkpoint_lock():
        path = run.checkpoint(which)
        if path is None:
            raise FileNotFoundError(f"run {run.run_id} has no {which} checkpoint")
        model = load_checkpoint(path)
        status = run.read_status()
        epoch = int(status.get("checkpoint_epoch" if which == "last" else "best_epoch") or 0)
    progress.update(phase="loading CIFAR-10")
    cifar = data_mod.load_cifar10(data_dir)
    batches = -(-len(cifar.y_test) // PREDICT_BATCH)
    y_prob = predict_test_set(model, config, cifar, progress,
                              callbacks=[PredictProgress(progress, batches, stop_event)])
    if stop_event is not None and stop_event.is_set():
        return None
    accuracy = float(np.mean(np.argmax(y_prob, axis=1) == cifar.y_test))
    # Never over newer predictions: the run may have finished (and predicted) meanwhile.
    run.write_predictions(cifar.y_test, y_prob, epoch=epoch, test_accuracy=accuracy, test_images=len(cifar.y_test))
    return accuracy
