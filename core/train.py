"""One training run, start to finish, writing everything to its run folder.

`train_run` is what the job manager's thread (and so the CLI) calls; the manager imports this
module only when a job starts, because importing Keras costs seconds. It never touches Streamlit:
it reports through the run folder and a thread-safe `Progress` object. Everything per-batch
lives in one callback, `RunRecorder`, so the hot path costs a few dictionary updates. A Stop
keeps the batches of the unfinished epoch, and resume goes on from the next one (core/partial_epoch.py).
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

from core import data as data_mod
from core import processes
from core.backend import gpu_devices, make_strategy, process_0_flags, use_mixed_precision
from core.config import TrainConfig
from core.errors import SelfExplainedError, UserInputError
from core.partial_epoch import (PartialEpoch, RestOfEpoch, images_in_batch, mid_epoch_save_seconds,
                                place_random_streams)
from core.progress import Progress
from core.runs import Keepalive, Run, mark_active, trainer_identity
from core.safe_io import disk_words

PROGRESS_WRITE_SECONDS = 1.0     # progress.json at most this often: viewers poll about once a second
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
    state: str            # stopped | completed | failed
    error: str = ""
    error_kind: str = ""  # "input" (data, weights, settings: the user can fix it) or "training"


def _is_unfrozen(model) -> bool:
    from core.model import base_layers
    return any(layer.trainable and layer.weights for layer in base_layers(model))


class RunRecorder(keras.callbacks.Callback):
    """The one callback: progress, stop, NaN guard, validation, metrics, checkpoints, heartbeat."""

    def __init__(self, run: Run, progress: Progress, stop_event: threading.Event, *, val_ds,
                 train_images: int, steps: int, target_epochs: int, phase_name: str,
                 resize: "ProgressiveResize | None" = None, batch_size: int | None = None,
                 partial: PartialEpoch | None = None, save_seconds: float = math.inf):
        super().__init__()
        self.resize = resize   # progressive resizing: steps at two sizes, at two speeds
        self.run, self.progress, self.stop_event = run, progress, stop_event
        self.val_ds, self.train_images, self.steps = val_ds, train_images, steps
        self.target_epochs, self.phase_name = target_epochs, phase_name
        self.batch_size = batch_size or math.ceil(train_images / steps)   # the global batch
        self.partial = partial              # the epoch a mid-epoch checkpoint left unfinished, if any
        self.save_seconds = save_seconds    # a mid-epoch checkpoint at least this often
        self.nan_at: tuple[str, int, str] | None = None   # (what became NaN, epoch, where)
        self.stopped_by_user = False
        self._first_step_of_fit = True
        self._step_size: int | None = None                      # the image size of the last step
        self._seconds_per_image: dict[int, tuple[float, int]] = {}   # size: (seconds, images) untraced
        self._last_progress_write = 0.0
        self._epoch_seconds_seen: list[float] = []
        self._saved_at = time.monotonic()

    def on_train_begin(self, logs=None):
        self._saved_at = time.monotonic()

    # --- per epoch ---------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        # An epoch a mid-epoch checkpoint left unfinished goes on from there (its fit's callbacks
        # see its own batch numbers: partial_epoch.RestOfEpoch).
        before = self.partial if self.partial is not None and self.partial.epoch == epoch else None
        self._before = before
        self._epoch = epoch
        self._epoch_start = time.perf_counter()
        self._batches_done = before.batches if before else 0
        self._timed_start, self._timed_images, self._untimed_seconds = self._epoch_start, 0, 0.0
        self._step_start = self._epoch_start
        # (batch, loss, accuracy): running means; the batches before the checkpoint come from it.
        self._batch_reports: list[tuple[int, float, float]] = list(before.reports) if before else []
        self.progress.update(state="running", phase=self.phase_name if not self._first_step_of_fit
                             else "compiling first step", epoch=epoch + 1, epochs=self.target_epochs,
                             batch=self._batches_done, batches=self.steps)

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self._batches_done = batch + 1
        loss = float(logs.get("loss", float("nan"))) if logs else float("nan")
        size = self.resize.size_at(self._epoch, batch) if self.resize else 0
        if self._first_step_of_fit:
            # The first step of a fit() traces the graph (20 s or more on a CPU): keep it out of
            # images/s so the figure compares with plain Keras in its steady state.
            self._first_step_of_fit = False
            self._timed_start = now
            self.progress.update(compile_seconds=now - self._epoch_start)
        elif size != self._step_size:
            self._untimed_seconds += now - self._step_start   # progressive resizing traced anew
        else:
            self._timed_images += self._batch_images(batch)
            seconds, images = self._seconds_per_image.get(size, (0.0, 0))
            self._seconds_per_image[size] = (seconds + now - self._step_start, images + self._batch_images(batch))
        self._step_size = size
        if not math.isfinite(loss):
            self.nan_at = (f"loss became {_nan_or_inf(loss)}", self._epoch + 1, f", batch {batch + 1}")
            self.model.stop_training = True
        # Process 0's answers on every process: all stop, or all save, at the same batch.
        stop, save = process_0_flags(self.stop_event.is_set(), self._mid_epoch_save_due())
        if stop:
            self.stopped_by_user = True
            self.model.stop_training = True
        accuracy = float(logs.get("accuracy", float("nan"))) if logs else float("nan")
        self._batch_reports.append((batch + 1, loss, accuracy))
        self._report(now, loss, accuracy)
        if save and not self.model.stop_training:   # a stop saves at the epoch's end; NaN never
            self._save_mid_epoch(logs)

    def _batch_images(self, batch: int) -> int:
        return images_in_batch(batch, self.batch_size, self.train_images)

    def _timed(self, now: float) -> tuple[int, float]:
        """(images, seconds) of the epoch's timed steps, those before a mid-epoch checkpoint included."""
        images, seconds = self._timed_images, now - self._timed_start - self._untimed_seconds
        if self._before is not None:
            images, seconds = images + self._before.timed_images, seconds + self._before.timed_seconds
        return images, seconds

    def _images_per_second(self, now: float) -> float:
        images, elapsed = self._timed(now)
        return images / elapsed if elapsed > 0 and images else float("nan")

    def _epoch_seconds(self, now: float) -> float:
        return now - self._epoch_start + (self._before.seconds if self._before is not None else 0.0)

    # --- mid-epoch checkpoints ------------------------------------------------------------------
    def _mid_epoch_save_due(self) -> bool:
        # The epoch's last batch is saved by the epoch's end.
        return self._batches_done < self.steps and time.monotonic() - self._saved_at >= self.save_seconds

    def _save_mid_epoch(self, logs: dict | None) -> None:
        """The model as checkpoints/partial.keras, and in the status the place in the epoch's seeded
        order it stands at (checkpoint_batch) with the means and curve of the batches so far.

        Crash safety: partial.keras counts only while the status's checkpoint_batch names it. The
        status first stops naming the old file, then the file is replaced (atomically), then the
        status names the new one: a crash in between resumes from last.keras at the epoch's start
        (as if this save had not begun), never from weights whose batches the status does not count.
        """
        logs = logs or {}
        now = time.perf_counter()
        timed_images, timed_seconds = self._timed(now)
        partial = PartialEpoch(
            epoch=self._epoch, batches=self._batches_done, steps=self.steps, batch_size=self.batch_size,
            images=sum(self._batch_images(b) for b in range(self._batches_done)),
            loss=float(logs.get("loss", float("nan"))), accuracy=float(logs.get("accuracy", float("nan"))),
            seconds=self._epoch_seconds(now), timed_images=timed_images, timed_seconds=timed_seconds,
            reports=tuple(self._batch_reports))
        self.progress.update(phase="saving checkpoint")
        with self.run.checkpoint_lock():
            # None: the run is no longer this trainer's (its lease was lost), or this is a follower
            # process of a run over several, which writes nothing: either way, no file either.
            if self.run.write_status(checkpoint_batch=0, checkpoint_partial=None) is not None:
                save_checkpoint(self.model, self.run, which="partial")
                self.run.write_status(checkpoint_batch=partial.batches, checkpoint_partial=partial.record())
        self._saved_at = time.monotonic()
        self.progress.update(phase=self.phase_name)

    def _report(self, now: float, loss: float, accuracy: float) -> None:
        ips = self._images_per_second(now)
        if self.resize is not None:   # steps at two sizes, at two paces
            epoch_eta, eta = self._resize_eta(self._epoch + 1), self._resize_eta(self.target_epochs)
        else:
            per_batch = self.batch_size / ips if ips == ips and ips > 0 else float("nan")
            epoch_eta = (self.steps - self._batches_done) * per_batch
            typical_epoch = (np.median(self._epoch_seconds_seen) if self._epoch_seconds_seen
                             else self.steps * per_batch)
            eta = epoch_eta + (self.target_epochs - self._epoch - 1) * typical_epoch
        # The running epoch's per-batch loss and accuracy (fresh tuples: viewers read them unlocked).
        self.progress.update(phase=self.phase_name, batch=self._batches_done, loss=loss, accuracy=accuracy,
                             images_per_second=ips, epoch_eta_seconds=epoch_eta, eta_seconds=eta,
                             batch_losses=tuple((b, m) for b, m, _ in self._batch_reports),
                             batch_accuracies=tuple((b, a) for b, _, a in self._batch_reports))
        wall = time.time()
        if wall - self._last_progress_write >= PROGRESS_WRITE_SECONDS:
            self._last_progress_write = wall
            self.run.write_progress(self.progress.snapshot())

    def _resize_eta(self, end_epoch: int) -> float:
        """Seconds left to `end_epoch`'s end under progressive resizing: the steps left at each
        size at that size's pace, measured, or else scaled from the other's by core.estimate."""
        from core.estimate import relative_cost
        measured = {size: seconds / images for size, (seconds, images) in self._seconds_per_image.items()
                    if images}
        if not measured:
            return float("nan")
        known, per_image = next(iter(measured.items()))
        left = self.resize.remaining_steps(self._epoch, self._batches_done, end_epoch)
        return sum(steps * self.batch_size * measured.get(size, per_image * relative_cost(
            self.resize.config.variant, size, known)) for size, steps in left.items())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        train_seconds = self._epoch_seconds(time.perf_counter())
        ips = self._images_per_second(time.perf_counter())
        if self._batches_done < self.steps or self.nan_at:
            # A stop or a NaN cut this epoch short: it is not a finished epoch. A stop keeps its
            # batches in a mid-epoch checkpoint; after a NaN the weights are worth nothing.
            if self.stopped_by_user and not self.nan_at:
                self._save_mid_epoch(logs)
            return
        if self.val_ds is not None:
            self.progress.update(phase="validating")
            val = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
            logs["val_loss"], logs["val_accuracy"] = float(val["loss"]), float(val["accuracy"])
            if not math.isfinite(logs["val_loss"]):
                # The training loss can stay finite while the weights or BatchNorm statistics have
                # overflowed: such a model is no checkpoint to keep.
                self.nan_at = (f"validation loss became {_nan_or_inf(logs['val_loss'])}", epoch + 1, "")
                self.model.stop_training = True
                return
        epoch_seconds = self._epoch_seconds(time.perf_counter())
        self._epoch_seconds_seen.append(epoch_seconds)
        row = {
            "epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": logs.get("val_loss", ""), "val_accuracy": logs.get("val_accuracy", ""),
            "learning_rate": current_learning_rate(self.model),
            "epoch_seconds": round(epoch_seconds, 3),
            "images_per_second": round(ips if ips == ips else self.train_images / train_seconds, 2),
        }
        self.progress.update(phase="saving checkpoint")
        previous_best = max((m["val_accuracy"] for m in self.run.read_metrics()
                             if m["val_accuracy"] == m["val_accuracy"]), default=-1.0)
        best = row["val_accuracy"] != "" and row["val_accuracy"] > previous_best
        # Order matters for crash safety: the checkpoint, then its epoch in status (with a copy of
        # the row), then the CSV row. A crash between them redoes at most one epoch, never records
        # one twice, and a row whose append failed (a full disk) is restored on resume. The same
        # status write retires a mid-epoch checkpoint of this epoch: until it, a crash resumes from
        # that one (partial.keras), which last.keras does not replace.
        with self.run.checkpoint_lock():
            save_checkpoint(self.model, self.run, best=best)
            self.run.write_status(checkpoint_epoch=epoch + 1, epoch=epoch + 1, checkpoint_row=row,
                                  checkpoint_batch=0, checkpoint_partial=None,
                                  **({"best_epoch": epoch + 1} if best else {}))
        self.run.discard_checkpoint("partial")
        self._saved_at = time.monotonic()
        self.run.append_metrics(row)
        # After the row: the curve inside the epoch, for the charts once progress.json has moved on.
        self.run.append_batches(epoch + 1, self._batch_reports)
        self.progress.update(phase=self.phase_name, last_epoch=row)


def _nan_or_inf(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite"


def current_learning_rate(model) -> float:
    # Under a distribution strategy the rate is a MirroredVariable, which float() refuses.
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def save_checkpoint(model, run: Run, *, best: bool = False, which: str = "last") -> None:
    """last.keras (and best.keras), or partial.keras in the middle of an epoch, via a temporary
    name and a rename: a failed write leaves the previous checkpoint intact.

    Raises:
        CheckpointError: The file could not be written (a full disk, a read-only folder); the
            message names the file and the reason, and says the previous checkpoint is kept.
    """
    save = (lambda tmp: outside_the_distribution(lambda: model.save(tmp))) if processes.several() \
        else (lambda tmp: model.save(tmp))
    run.write_checkpoint(save, which)
    if best:
        run.copy_checkpoint("last", "best")


def _callbacks(config: TrainConfig, recorder: RunRecorder, steps: int, start_epoch: int):
    # ProgressiveResize first, so that the other callbacks never see the start size.
    callbacks = [recorder.resize, recorder] if recorder.resize else [recorder]
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
    from core.tensorboard_log import tensorboard_callback   # after the recorder: it reads its metrics row
    board = tensorboard_callback(recorder.run, steps)
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
        from core.model import set_training_size
        size = self.size_at(self._epoch, batch)
        set_training_size(self.model, size)   # also what a retrace for a smaller last batch reads
        if size != self._traced_for:
            self.model.make_train_function(force=True)
            self._traced_for = size

    def on_train_batch_end(self, batch, logs=None):
        from core.model import set_training_size
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


def predict_test_set(model, config: TrainConfig, cifar: data_mod.Cifar10, progress: Progress,
                     replicas: int = 1, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Class probabilities for every test image, in order, `batch_size` images at a time.

    With `config.test_time_flip`, an image whose top class is below `config.test_time_flip_below`
    gets the mean of its and its mirror image's probabilities; the others keep their own (below 1,
    the mirror pass covers only the images the model is unsure of).
    """
    progress.update(phase="evaluating test set")
    y_prob = _predict_images(model, config, cifar.x_test, cifar.y_test, replicas, batch_size)
    if not config.test_time_flip:
        return y_prob
    below = config.test_time_flip_below
    unsure = np.arange(len(y_prob)) if below >= 1 else np.flatnonzero(y_prob.max(axis=1) < below)
    if not len(unsure):
        return y_prob
    mirrored = np.ascontiguousarray(cifar.x_test[unsure, :, ::-1])
    averaged = y_prob.copy()    # not written into what predict returned (a backend may share it)
    averaged[unsure] = (y_prob[unsure] + _predict_images(model, config, mirrored, cifar.y_test[unsure],
                                                         replicas, batch_size)) / 2
    return averaged


def _predict_images(model, config: TrainConfig, x_test: np.ndarray, y_test: np.ndarray, replicas: int,
                    batch_size: int) -> np.ndarray:
    # Replicas must split every batch evenly: pad with copies of the last image, then trim.
    n = len(x_test)
    padded = -n % replicas
    x = np.concatenate([x_test, np.repeat(x_test[-1:], padded, axis=0)]) if padded else x_test
    y = np.concatenate([y_test, np.repeat(y_test[-1:], padded)]) if padded else y_test
    from core.model import host_preprocessing
    test_ds = data_mod.make_dataset(x, y, image_size=host_preprocessing(model, config).get("image_size"),
                                    batch_size=_multiple_of(batch_size, replicas), training=False)
    return model.predict(test_ds, verbose=0)[:n]


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
    from core.lr_find import find_learning_rate

    def find() -> Outcome:
        progress.update(state="running", phase="loading data", run_id=run.run_id, error="")
        finding = find_learning_rate(run.read_config(), data_dir, progress, stop_event)
        run.write_lr_finding({"rates": finding.rates.tolist(), "losses": finding.losses.tolist(),
                              "smoothed": finding.smoothed.tolist(), "suggestion": finding.suggestion,
                              "steepest": finding.steepest, "minimum_rate": finding.minimum_rate,
                              "ended": finding.ended, "method": finding.method})
        return Outcome("stopped" if finding.ended == "stopped" else "completed")

    return _as_job(run, progress, stop_event, {}, find)


def _as_job(run: Run, progress: Progress, stop_event: threading.Event, status: dict, work) -> Outcome:
    """Runs `work` (-> Outcome) as this process's job on `run`: marked ours, kept alive (heartbeat,
    stop requests from other processes), and whatever fails, recorded and released."""
    mark_active(run.run_id, True)
    trace = ""
    try:
        # A run handed over without a claim (a script calling train_run on a new run) is claimed
        # here, so that it trains under a lease like any other.
        if getattr(run, "lease", "") is None and run.read_status().get("state") == "queued" and run.claim() is None:
            raise RuntimeError(f"run {run.run_id} was claimed by another process just now")
        run.write_status(error="", ended_at=None, **status, **trainer_identity())
        with Keepalive(run, stop_event, on_stop_request=lambda: progress.update(state="stopping")):
            outcome = work()
    except Exception as exc:  # noqa: BLE001 - any failure becomes the run's readable reason
        outcome = Outcome("failed", _readable(exc), _error_kind(exc))
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
    host: dict              # what the host pipeline does for this model (core.model.host_preprocessing)
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
    progress.update(state="running", phase="loading data", epoch=done, epochs=target_epochs,
                    batch=0, batches=0, run_id=run.run_id, error="")
    try:
        setup = _set_up(run, config, done, data_dir, stop_event, progress)
    except TrainingStopped:
        return Outcome("stopped")
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
    return Outcome("completed")


def _set_up(run: Run, config: TrainConfig, done: int, data_dir: str | None, stop_event: threading.Event,
            progress: Progress) -> Setup:
    """Data, precision, strategy, the model (fresh, or from the last or the mid-epoch checkpoint)
    and the validation set; the training batches come per fit (Setup.training_batches).

    Raises:
        TrainingStopped: a stop was asked for before training began.
    """
    from core.memory import budget
    from core.model import build_model, compile_model, host_preprocessing, load_checkpoint, use_jit_compile
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
    # fewer where it does not (B7 at 600 px): core/memory.py says how many fit. A CPU runs fewer.
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
    from core.model import compile_model, unfreeze
    config, model = setup.config, setup.model
    if phase_name.startswith("fine-tuning") and not _is_unfrozen(model):
        with setup.strategy.scope():
            unfreeze(model, config.fine_tune_from_block, depthwise=config.fine_tune_depthwise)
            compile_model(model, config, config.fine_tune_learning_rate, jit_compile=setup.jit_compile)
    partial = setup.partial if setup.partial is not None and setup.partial.epoch == done else None
    resize = ProgressiveResize(config, setup.steps) if config.progressive_start_size else None
    recorder = RunRecorder(run, progress, stop_event, val_ds=setup.val_ds, train_images=setup.train_images,
                           steps=setup.steps, target_epochs=target_epochs, phase_name=phase_name, resize=resize,
                           batch_size=setup.global_batch, partial=partial, save_seconds=save_seconds)
    callbacks = _callbacks(config, recorder, setup.steps, done)
    # Keras starts a fit at a batch 0: the rest of an epoch left unfinished is a fit of its own.
    fits = [(done, done + 1, partial.batches)] if partial else []
    if done + len(fits) < phase_end:
        fits.append((done + len(fits), phase_end, 0))
    for first, end, skip in fits:
        place_random_streams(model, first * setup.steps + skip)
        model.fit(setup.training_batches(first, end, skip), initial_epoch=first, epochs=end,
                  steps_per_epoch=setup.steps - skip, shuffle=False, verbose=0,
                  callbacks=[RestOfEpoch(callbacks, partial, setup.train_images)] if skip else callbacks)
        if model.stop_training:   # a stop, a NaN or early stopping
            break
    done = int(run.read_status().get("checkpoint_epoch", done))
    if recorder.nan_at:
        what, epoch, where = recorder.nan_at
        return Outcome("failed", error_kind="training", error=f"{what} at epoch {epoch}{where}: "
                       f"training stopped. Start again with a lower learning_rate (now "
                       f"{current_learning_rate(model):g}); {_kept(done, run.checkpoint_batch())}."), done
    if recorder.stopped_by_user:
        # The recorder kept the unfinished epoch's batches in a mid-epoch checkpoint, with their
        # place in its order: resume goes on from the next batch.
        return Outcome("stopped"), done
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
    from core.tensorboard_log import log_confusion_matrix
    log_confusion_matrix(run, cifar.y_test, y_prob, step=done)


def _predict_on_this_process(run: Run, setup: Setup, progress: Progress) -> np.ndarray:
    """Test-set probabilities on process 0 alone, from the checkpoint of the final epoch: over
    several processes the model's outputs span every process's devices, which no single process
    can read. The checkpoint holds the same weights, and outside the run's distribution they
    predict on this process."""
    from core.model import load_checkpoint
    return outside_the_distribution(lambda: predict_test_set(
        load_checkpoint(run.checkpoint("last")), setup.config, setup.cifar, progress, batch_size=setup.predict_batch))


def outside_the_distribution(work):
    """work() in a thread of its own, where the run's Keras distribution (a per-thread setting)
    does not apply; its result, or its exception raised here.

    Over several processes every variable created under the distribution is checked equal across
    processes (a collective, which the others must join). Saving a model creates variables of its
    own (Keras builds a scratch optimizer), and only process 0 saves: inside the distribution it
    would wait forever for the others.
    """
    result: dict = {}

    def call():
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=call, name="outside-the-distribution")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def evaluate_checkpoint(run: Run, *, data_dir: str | None = None, which: str = "last") -> float:
    """Writes predictions.npz from the run's latest (or best) checkpoint; returns test accuracy.

    For "Evaluate now" on a running or stopped run. Loads the checkpoint fresh, so it never
    touches the model a training thread is using.
    """
    from core.model import load_checkpoint
    config = run.read_config()
    # The checkpoint and the epoch it holds are read together, under the lock the trainer holds
    # while it replaces them: the predictions are labelled with the weights they came from.
    with run.checkpoint_lock():
        path = run.checkpoint(which)
        if path is None:
            raise FileNotFoundError(f"run {run.run_id} has no {which} checkpoint")
        model = load_checkpoint(path)
        status = run.read_status()
        epoch = int(status.get("checkpoint_epoch" if which == "last" else "best_epoch") or 0)
    cifar = data_mod.load_cifar10(data_dir)
    y_prob = predict_test_set(model, config, cifar, Progress())
    accuracy = float(np.mean(np.argmax(y_prob, axis=1) == cifar.y_test))
    # Never over newer predictions: the run may have finished (and predicted) meanwhile.
    run.write_predictions(cifar.y_test, y_prob, epoch=epoch, test_accuracy=accuracy, test_images=len(cifar.y_test))
    return accuracy
