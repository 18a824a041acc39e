"""Stop keeps the work done: an epoch saved in the middle, and a fit that finishes it.

A Stop (and, during long epochs, a timer) saves the model as checkpoints/partial.keras, and the
run's status records where in the epoch it stands (`checkpoint_batch`) with what the epoch's
metrics row and curve need of the batches before (`checkpoint_partial`, a `PartialEpoch`). Resume
trains the rest of that epoch as a fit of its own over the same seeded order less the batches
done (core.data.cifar10.make_dataset), with its callbacks wrapped in `RestOfEpoch` so that they see the
epoch as if it had never stopped; then the run goes on epoch by epoch as before.

Keras's fit cannot start inside an epoch: it numbers a fit's batches from 0 and starts its running
means empty. Hence the wrapper, and not one change per callback: the schedule, progressive
resizing, the recorder and TensorBoard all read batch numbers or means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import keras
import numpy as np

from core.data.augment import Augment
from core.settings.env_settings import number_from_env

# A long epoch saves its place this often, so a killed run loses at most this much of it; a Stop
# saves at once. Each save costs one checkpoint write.
MID_EPOCH_SAVE_SECONDS = 300.0
MID_EPOCH_SAVE_ENV = "EFFLAB_MID_EPOCH_SAVE_SECONDS"
MID_EPOCH_SAVE_RANGE = (1, 86400)
MEANS = ("loss", "accuracy")     # the running means Keras reports per batch (compile_model's metrics)


def mid_epoch_save_seconds() -> float:
    """How often a long epoch saves its place: EFFLAB_MID_EPOCH_SAVE_SECONDS, else 300 s.

    Raises:
        EnvSettingError: a value that is not a number of seconds in MID_EPOCH_SAVE_RANGE; the message
            names the variable, the range and what was given.
    """
    return number_from_env(MID_EPOCH_SAVE_ENV, MID_EPOCH_SAVE_SECONDS, *MID_EPOCH_SAVE_RANGE, "a number of seconds")


def _number(value) -> float:
    return math.nan if value is None else float(value)   # the status keeps NaN as null


def images_in_batch(batch: int, batch_size: int, images: int) -> int:
    """Images in batch `batch` (0-based) of an epoch of `images` cut into `batch_size`: only a last,
    ragged batch has fewer."""
    return max(0, min(batch_size, images - batch * batch_size))


@dataclass(frozen=True)
class PartialEpoch:
    """What a mid-epoch checkpoint holds of its unfinished epoch, as the status records it."""

    epoch: int             # 0-based, as Keras counts: the status's checkpoint_epoch
    batches: int           # of it trained: the status's checkpoint_batch
    steps: int             # batches in the whole epoch
    batch_size: int        # the global batch: going on inside the epoch needs the same cut into batches
    images: int            # in those batches
    loss: float            # Keras's running means over them (per image, as Keras weighs them)
    accuracy: float
    seconds: float         # their training time ...
    timed_images: int      # ... and the part of it images/s counts (without tracing)
    timed_seconds: float
    reports: tuple = ()    # (batch, running-mean loss, running-mean accuracy) of each: the epoch's curve

    def record(self) -> dict:
        """For the status (JSON)."""
        return {**asdict(self), "reports": [list(report) for report in self.reports]}

    @classmethod
    def from_record(cls, record) -> PartialEpoch | None:
        """The record read back; None when it is missing or damaged (resume then starts the epoch again)."""
        if not isinstance(record, dict) or set(record) != {f.name for f in fields(cls)}:
            return None
        try:
            numbers = {f.name: (int if f.type == "int" else _number)(record[f.name])
                       for f in fields(cls) if f.name != "reports"}
            reports = tuple((int(b), _number(loss), _number(accuracy)) for b, loss, accuracy in record["reports"])
        except (TypeError, ValueError):
            return None
        partial = cls(**numbers, reports=reports)
        if not 0 < partial.batches < partial.steps or len(reports) != partial.batches:
            return None
        return partial

    def combined(self, logs: dict | None, images_after: int) -> dict:
        """`logs` of the batches after the checkpoint (`images_after` images), with each running
        mean taken over the whole epoch so far: what an epoch that never stopped would report."""
        logs = dict(logs or {})
        total = self.images + images_after
        for name, before in zip(MEANS, (self.loss, self.accuracy)):
            if name in logs and total:
                logs[name] = (before * self.images + float(logs[name]) * images_after) / total
        return logs


class RestOfEpoch(keras.callbacks.Callback):
    """`callbacks` for a fit of an epoch's remaining batches (after `partial`): each sees the
    epoch's own batch numbers and running means over the whole epoch, as in a fit that never
    stopped. One wrapper around the list, so every callback gets the same logs dict: the recorder
    adds validation results to it that the later callbacks (early stopping, the plateau) read."""

    def __init__(self, callbacks: list, partial: PartialEpoch, train_images: int):
        super().__init__()
        self.callbacks, self.partial, self.train_images = callbacks, partial, train_images
        self._images_after = 0

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params({**params, "steps": self.partial.steps})

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._images_after = 0
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = self.partial.combined(logs, self._images_after)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch + self.partial.batches, logs)

    def on_train_batch_end(self, batch, logs=None):
        batch += self.partial.batches
        self._images_after += images_in_batch(batch, self.partial.batch_size, self.train_images)
        logs = self.partial.combined(logs, self._images_after)
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


def place_random_streams(model, steps_taken: int) -> None:
    """Sets the in-model augmentation's random stream where a run that never stopped has it after
    `steps_taken` training steps, so a resumed run augments its batches as that run would.

    Keras saves no SeedGenerator state with a model: one loaded from a checkpoint starts its stream
    again at [seed, 0]. Each training step draws from it once, adding [0, 1]
    (keras.random.SeedGenerator.next). A fresh model (no steps taken) is already in place.
    """
    if steps_taken <= 0:
        return
    for layer in model.layers:
        if isinstance(layer, Augment) and layer.seed is not None:
            state = layer.seed_generator.state
            state.assign(np.array([layer.seed, steps_taken], dtype=state.dtype))
