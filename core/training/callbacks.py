"""A training run's Keras callbacks: each one job, in one order, written once (`run_callbacks`).

    ProgressiveResize   (when on) first, so that no other callback sees the start size
    BatchTimer          times each step (the first, which traces the graph, kept apart) and keeps
                        the epoch's per-batch curve
    StopGuard           a NaN loss, a Stop, a timed save: process 0 decides, every process obeys
    LiveProgress        the panel's figures after each batch, and the start-up's times once
    MidEpochSaver       partial.keras when a timed save is due, or when a Stop cut the epoch short
    Validation          val_loss and val_accuracy into the epoch's logs, where the rest read them
    EpochRecorder       checkpoint, status, metrics row, batch curve, in that order (crash safety)
    ... then the learning-rate schedule, early stopping, TensorBoard and a sweep's pruner
    (core/training/train.py adds them), which read the logs the validation wrote.

They share one `FitState`: what the epoch in progress has done so far and how the fit ended
(a NaN, a Stop). Keras calls callbacks in list order, so the order above is the order of work.
"""

from __future__ import annotations

import math
import threading
import time

import keras
import numpy as np

from core.estimates import startup
from core.estimates.timing import relative_cost
from core.store.runs import Run
from core.store.states import RunState
from core.training import processes
from core.training.backend import process_0_flags
from core.training.partial_epoch import PartialEpoch, images_in_batch
from core.training.progress import Progress

PROGRESS_WRITE_SECONDS = 1.0     # progress.json at most this often: viewers poll about once a second


class FitState:
    """What the callbacks of one training phase share: its shape, the epoch in progress (with the
    batches a mid-epoch checkpoint already holds), its timings, and how the fit ended."""

    def __init__(self, *, train_images: int, steps: int, target_epochs: int, phase_name: str,
                 resize=None, batch_size: int | None = None, partial: PartialEpoch | None = None,
                 save_seconds: float = math.inf):
        self.train_images, self.steps, self.target_epochs = train_images, steps, target_epochs
        self.phase_name = phase_name
        self.resize = resize                 # progressive resizing: steps at two sizes, at two speeds
        self.batch_size = batch_size or math.ceil(train_images / steps)   # the global batch
        self.partial = partial               # the epoch a mid-epoch checkpoint left unfinished, if any
        self.save_seconds = save_seconds     # a mid-epoch checkpoint at least this often
        self.saved_at = time.monotonic()
        # How the fit ended: (what became NaN, epoch, where), or a Stop honoured.
        self.nan_at: tuple[str, int, str] | None = None
        self.stopped_by_user = False
        self.save_due = False                # this batch ends with a timed mid-epoch save
        # The epoch in progress (BatchTimer keeps these).
        self.epoch = 0
        self.before: PartialEpoch | None = None
        self.epoch_start = self.timed_start = self.step_start = time.perf_counter()
        self.batches_done = self.timed_images = 0
        self.untimed_seconds = 0.0
        self.batch_reports: list[tuple[int, float, float]] = []   # (batch, running loss, running accuracy)
        self.first_step_of_fit = True
        self.traced_now = False              # this batch was the fit's first: it traced the graph
        self.step_size: int | None = None    # the image size of the last step
        self.seconds_per_image: dict[int, tuple[float, int]] = {}   # size: (seconds, images) untraced
        self.epoch_seconds_seen: list[float] = []
        self.train_seconds = self.images_per_second_at_end = float("nan")   # the epoch's, before validation

    @property
    def cut_short(self) -> bool:
        """The epoch ended before its last batch (a Stop) or went NaN: not a finished epoch."""
        return self.batches_done < self.steps or self.nan_at is not None

    def batch_images(self, batch: int) -> int:
        return images_in_batch(batch, self.batch_size, self.train_images)

    def timed(self, now: float) -> tuple[int, float]:
        """(images, seconds) of the epoch's timed steps, those before a mid-epoch checkpoint included."""
        images, seconds = self.timed_images, now - self.timed_start - self.untimed_seconds
        if self.before is not None:
            images, seconds = images + self.before.timed_images, seconds + self.before.timed_seconds
        return images, seconds

    def images_per_second(self, now: float) -> float:
        images, elapsed = self.timed(now)
        return images / elapsed if elapsed > 0 and images else float("nan")

    def epoch_seconds(self, now: float) -> float:
        return now - self.epoch_start + (self.before.seconds if self.before is not None else 0.0)

    def etas(self, now: float) -> tuple[float, float]:
        """(seconds left in this epoch, seconds left in the run) at the pace measured so far."""
        if self.resize is not None:   # steps at two sizes, at two paces
            return self.resize_eta(self.epoch + 1), self.resize_eta(self.target_epochs)
        ips = self.images_per_second(now)
        per_batch = self.batch_size / ips if ips == ips and ips > 0 else float("nan")
        epoch_eta = (self.steps - self.batches_done) * per_batch
        typical_epoch = np.median(self.epoch_seconds_seen) if self.epoch_seconds_seen else self.steps * per_batch
        return epoch_eta, epoch_eta + (self.target_epochs - self.epoch - 1) * typical_epoch

    def resize_eta(self, end_epoch: int) -> float:
        """Seconds left to `end_epoch`'s end under progressive resizing: the steps left at each
        size at that size's pace, measured, or else scaled from the other's by core.estimates.timing."""
        measured = {size: seconds / images for size, (seconds, images) in self.seconds_per_image.items() if images}
        if not measured:
            return float("nan")
        known, per_image = next(iter(measured.items()))
        left = self.resize.remaining_steps(self.epoch, self.batches_done, end_epoch)
        return sum(steps * self.batch_size * measured.get(size, per_image * relative_cost(
            self.resize.config.variant, size, known)) for size, steps in left.items())


class BatchTimer(keras.callbacks.Callback):
    """Times the epoch's steps (images/s leaves out the traced first step and, under progressive
    resizing, the retrace at the new size) and keeps its running loss and accuracy per batch."""

    def __init__(self, state: FitState):
        super().__init__()
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        s = self.state
        # An epoch a mid-epoch checkpoint left unfinished goes on from there (its fit's callbacks
        # see its own batch numbers: partial_epoch.RestOfEpoch).
        s.before = s.partial if s.partial is not None and s.partial.epoch == epoch else None
        s.epoch = epoch
        s.epoch_start = s.timed_start = s.step_start = time.perf_counter()
        s.batches_done = s.before.batches if s.before else 0
        s.timed_images, s.untimed_seconds = 0, 0.0
        # The batches before the checkpoint come from it.
        s.batch_reports = list(s.before.reports) if s.before else []

    def on_train_batch_begin(self, batch, logs=None):
        self.state.step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        s, now = self.state, time.perf_counter()
        s.batches_done = batch + 1
        size = s.resize.size_at(s.epoch, batch) if s.resize else 0
        s.traced_now = s.first_step_of_fit
        if s.first_step_of_fit:
            # The first step of a fit() traces the graph (20 s or more on a CPU): keep it out of
            # images/s so the figure compares with plain Keras in its steady state.
            s.first_step_of_fit = False
            s.timed_start = now
        elif size != s.step_size:
            s.untimed_seconds += now - s.step_start   # progressive resizing traced anew
        else:
            s.timed_images += s.batch_images(batch)
            seconds, images = s.seconds_per_image.get(size, (0.0, 0))
            s.seconds_per_image[size] = (seconds + now - s.step_start, images + s.batch_images(batch))
        s.step_size = size
        logs = logs or {}
        s.batch_reports.append((batch + 1, float(logs.get("loss", float("nan"))),
                                float(logs.get("accuracy", float("nan")))))

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()   # before validation: its time is not training time
        self.state.train_seconds = self.state.epoch_seconds(now)
        self.state.images_per_second_at_end = self.state.images_per_second(now)


class StopGuard(keras.callbacks.Callback):
    """Ends the fit on a NaN loss or a Stop, and says when a timed mid-epoch save is due. Over
    several processes, process 0's answers count on every process: all stop, or all save, at the
    same batch (core.training.backend.process_0_flags)."""

    def __init__(self, state: FitState, stop_event: threading.Event):
        super().__init__()
        self.state, self.stop_event = state, stop_event

    def on_train_batch_end(self, batch, logs=None):
        s = self.state
        loss = float(logs.get("loss", float("nan"))) if logs else float("nan")
        if not math.isfinite(loss):
            s.nan_at = (f"loss became {nan_or_inf(loss)}", s.epoch + 1, f", batch {batch + 1}")
            self.model.stop_training = True
        # The epoch's last batch is saved by the epoch's end.
        save_due = s.batches_done < s.steps and time.monotonic() - s.saved_at >= s.save_seconds
        stop, s.save_due = process_0_flags(self.stop_event.is_set(), save_due)
        if stop:
            s.stopped_by_user = True
            self.model.stop_training = True


class LiveProgress(keras.callbacks.Callback):
    """What viewers see: the phase, the batch, loss, accuracy, images/s and ETAs after each batch
    (in memory, and in the run store at most every PROGRESS_WRITE_SECONDS), and once per run's
    session the start-up phases' times (core/estimates/startup.py)."""

    def __init__(self, state: FitState, run: Run, progress: Progress):
        super().__init__()
        self.state, self.run, self.progress = state, run, progress
        self._last_write = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        s = self.state
        self.progress.update(state=RunState.RUNNING, phase=s.phase_name if not s.first_step_of_fit
                             else "compiling first step", epoch=epoch + 1, epochs=s.target_epochs,
                             batch=s.batches_done, batches=s.steps)

    def on_train_batch_end(self, batch, logs=None):
        s, now = self.state, time.perf_counter()
        if s.traced_now:
            self.progress.update(compile_seconds=now - s.epoch_start)
        epoch_eta, eta = s.etas(now)
        _, loss, accuracy = s.batch_reports[-1]
        # The running epoch's per-batch loss and accuracy (fresh tuples: viewers read them unlocked).
        self.progress.update(phase=s.phase_name, batch=s.batches_done, loss=loss, accuracy=accuracy,
                             images_per_second=s.images_per_second(now), epoch_eta_seconds=epoch_eta,
                             eta_seconds=eta, batch_losses=tuple((b, m) for b, m, _ in s.batch_reports),
                             batch_accuracies=tuple((b, a) for b, _, a in s.batch_reports))
        wall = time.time()
        if wall - self._last_write >= PROGRESS_WRITE_SECONDS:
            self._last_write = wall
            self.run.write_progress(self.progress.snapshot())
        if s.traced_now:
            self._record_startup_once()

    def _record_startup_once(self) -> None:
        """The first batch of a run's session ends its start-up: the phases' times go into the
        run's status, for the next run's "usually ≈ 25 s here" (core/estimates/startup.py)."""
        snapshot = self.progress.snapshot()
        if snapshot.get("startup_recorded"):   # a later fit (fine-tuning) compiles again: not start-up
            return
        self.progress.update(startup_recorded=True)
        self.run.write_status(**{startup.STATUS_FIELD: startup.startup_record(snapshot.get("phase_seconds", {}))})


class MidEpochSaver(keras.callbacks.Callback):
    """partial.keras, with the place in the epoch's seeded order it stands at: when a timed save is
    due (EFFLAB_MID_EPOCH_SAVE_SECONDS), and when a Stop cut the epoch short (never after a NaN:
    those weights are worth nothing)."""

    def __init__(self, state: FitState, run: Run, progress: Progress):
        super().__init__()
        self.state, self.run, self.progress = state, run, progress

    def on_train_begin(self, logs=None):
        self.state.saved_at = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.state.save_due and not self.model.stop_training:   # a stop saves at the epoch's end
            self._save(logs)

    def on_epoch_end(self, epoch, logs=None):
        s = self.state
        if s.cut_short and s.stopped_by_user and not s.nan_at:
            self._save(logs)

    def _save(self, logs: dict | None) -> None:
        """Crash safety: partial.keras counts only while the status's checkpoint_batch names it. The
        status first stops naming the old file, then the file is replaced (atomically), then the
        status names the new one: a crash in between resumes from last.keras at the epoch's start
        (as if this save had not begun), never from weights whose batches the status does not count.
        """
        s, logs = self.state, logs or {}
        now = time.perf_counter()
        timed_images, timed_seconds = s.timed(now)
        partial = PartialEpoch(
            epoch=s.epoch, batches=s.batches_done, steps=s.steps, batch_size=s.batch_size,
            images=sum(s.batch_images(b) for b in range(s.batches_done)),
            loss=float(logs.get("loss", float("nan"))), accuracy=float(logs.get("accuracy", float("nan"))),
            seconds=s.epoch_seconds(now), timed_images=timed_images, timed_seconds=timed_seconds,
            reports=tuple(s.batch_reports))
        self.progress.update(phase="saving checkpoint")
        with self.run.checkpoint_lock():
            # None: the run is no longer this trainer's (its lease was lost), or this is a follower
            # process of a run over several, which writes nothing: either way, no file either.
            if self.run.write_status(checkpoint_batch=0, checkpoint_partial=None) is not None:
                save_checkpoint(self.model, self.run, which="partial")
                self.run.write_status(checkpoint_batch=partial.batches, checkpoint_partial=partial.record())
        s.saved_at = time.monotonic()
        self.progress.update(phase=s.phase_name)


class Validation(keras.callbacks.Callback):
    """val_loss and val_accuracy of each finished epoch, into its logs (the metrics row, the
    schedule, early stopping and a sweep's pruner read them there). A NaN ends the fit: the
    training loss can stay finite while the weights or BatchNorm statistics have overflowed."""

    def __init__(self, state: FitState, val_ds, progress: Progress):
        super().__init__()
        self.state, self.val_ds, self.progress = state, val_ds, progress

    def on_epoch_end(self, epoch, logs=None):
        if self.val_ds is None or self.state.cut_short or logs is None:
            return
        self.progress.update(phase="validating")
        val = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
        logs["val_loss"], logs["val_accuracy"] = float(val["loss"]), float(val["accuracy"])
        if not math.isfinite(logs["val_loss"]):
            self.state.nan_at = (f"validation loss became {nan_or_inf(logs['val_loss'])}", epoch + 1, "")
            self.model.stop_training = True


class EpochRecorder(keras.callbacks.Callback):
    """A finished epoch, kept: its checkpoint (and best.keras), its number in the status, its metrics
    row and its per-batch curve."""

    def __init__(self, state: FitState, run: Run, progress: Progress):
        super().__init__()
        self.state, self.run, self.progress = state, run, progress

    def on_epoch_end(self, epoch, logs=None):
        s = self.state
        if s.cut_short:
            return
        logs = logs if logs is not None else {}
        epoch_seconds = s.epoch_seconds(time.perf_counter())
        s.epoch_seconds_seen.append(epoch_seconds)
        ips = s.images_per_second_at_end
        row = {
            "epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": logs.get("val_loss", ""), "val_accuracy": logs.get("val_accuracy", ""),
            "learning_rate": current_learning_rate(self.model),
            "epoch_seconds": round(epoch_seconds, 3),
            "images_per_second": round(ips if ips == ips else s.train_images / s.train_seconds, 2),
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
        s.saved_at = time.monotonic()
        self.run.append_metrics(row)
        # After the row: the curve inside the epoch, for the charts once progress.json has moved on.
        self.run.append_batches(epoch + 1, s.batch_reports)
        self.progress.update(phase=s.phase_name, last_epoch=row)


def run_callbacks(state: FitState, run: Run, progress: Progress, stop_event: threading.Event,
                  val_ds) -> list[keras.callbacks.Callback]:
    """The run's own callbacks, in the order they must run (the module's docstring says why)."""
    return ([state.resize] if state.resize is not None else []) + [
        BatchTimer(state), StopGuard(state, stop_event), LiveProgress(state, run, progress),
        MidEpochSaver(state, run, progress), Validation(state, val_ds, progress), EpochRecorder(state, run, progress)]


def nan_or_inf(value: float) -> str:
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


class PredictProgress(keras.callbacks.Callback):
    """An evaluation job's test batches as they are predicted, on its progress (the Confusion page's
    bar); a Stop ends the pass. Not one of the fit's callbacks: `predict` calls it."""

    def __init__(self, progress: Progress, batches: int, stop_event: threading.Event | None):
        super().__init__()
        self.progress, self.batches, self.stop_event = progress, batches, stop_event

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update(batch=batch + 1, batches=self.batches)
        if self.stop_event is not None and self.stop_event.is_set():
            self.model.stop_predicting = True
