"""TensorBoard event files for every run, so `tensorboard --logdir runs` shows the whole class.

`TensorBoardLog` is a Keras callback of the TensorFlow trainer (core.training.train `_callbacks`). It writes
into the run store's folder for it (`Run.tensorboard_dir()`):
- per epoch, the row the run recorder has just added to the run's metrics (loss, accuracy,
  val_loss, val_accuracy, learning_rate, images_per_second, epoch_seconds), under "epoch/…", with
  the epoch number as the step, so the curves are exactly the dashboard's;
- per batch, the training loss under "batch/loss", every BATCH_EVERY batches at most (one scalar
  to a buffered file: cheap next to a training step), with the global batch number as the step;
- at the end of a run, `log_confusion_matrix` draws the test-set confusion matrix as an image
  ("test/confusion_matrix") with Pillow, so neither matplotlib nor TensorBoard's plugins are needed.

TensorFlow is imported when a callback or the image is written, never when this module is:
it is used by the TensorFlow trainer only. TensorBoard's own package is needed only to *view*
the files (`pip install tensorboard`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.analysis.evaluate import evaluate
from core.data.cifar10 import CLASS_NAMES

BATCH_EVERY = 10                     # per-batch loss: one point every this many batches
EPOCH_SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "images_per_second", "epoch_seconds")
CONFUSION_TAG = "test/confusion_matrix"
CELL = 46                            # px per confusion-matrix cell
LABEL_MARGIN = 112                   # px for the class names left of and above the matrix
TITLE_HEIGHT = 34
FONT_SIZE = 14
# White to dark blue (the dashboard's confusion matrix reads the same way: darker = more).
LOW_COLOUR, HIGH_COLOUR = np.array([255, 255, 255]), np.array([8, 48, 107])
log = logging.getLogger(__name__)


def supported() -> bool:
    """Whether event files can be written here: Keras runs on TensorFlow (tf.summary)."""
    return keras.backend.backend() == "tensorflow"


class TensorBoardLog(keras.callbacks.Callback):
    """Epoch scalars (from the run's metrics) and a throttled per-batch loss, into `run.tensorboard_dir()`.

    Put it after the run recorder in the callback list: the recorder adds validation results and
    the metrics row in its `on_epoch_end`, which this callback then reads.
    """

    def __init__(self, run, *, steps_per_epoch: int, batch_every: int = BATCH_EVERY):
        super().__init__()
        if not isinstance(batch_every, int) or batch_every < 1:
            raise ValueError(f"batch_every must be a whole number of batches, 1 or more; got {batch_every!r}")
        self.run, self.steps_per_epoch, self.batch_every = run, max(1, int(steps_per_epoch)), batch_every
        self._writer = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        self._writer = tf.summary.create_file_writer(str(self.run.tensorboard_dir()))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._writer is None or (batch + 1) % self.batch_every or not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if math.isfinite(loss):
            self._scalar("batch/loss", loss, self._epoch * self.steps_per_epoch + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            return
        row = next((r for r in reversed(self.run.read_metrics()) if int(r["epoch"]) == epoch + 1), None)
        if row is None:      # a stop or NaN cut the epoch short: the recorder kept no row, nor do we
            return
        for name in EPOCH_SCALARS:
            value = row.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._scalar(f"epoch/{name}", float(value), epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _scalar(self, tag: str, value: float, step: int) -> None:
        import tensorflow as tf
        with self._writer.as_default():
            tf.summary.scalar(tag, value, step=step)


def tensorboard_callback(run, steps_per_epoch: int) -> TensorBoardLog | None:
    """The callback for a run, or None where TensorFlow is not Keras's backend (e.g. JAX).

    The per-batch loss is kept every BATCH_EVERY batches, or more often in a short epoch, so
    that every epoch draws at least about five points.
    """
    if not supported():
        return None
    return TensorBoardLog(run, steps_per_epoch=steps_per_epoch,
                          batch_every=max(1, min(BATCH_EVERY, int(steps_per_epoch) // 5)))


# --- the confusion matrix as a picture --------------------------------------------------------------
def _font(size: int = FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:          # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def confusion_image(confusion, class_names=CLASS_NAMES, title: str = "") -> np.ndarray:
    """A confusion matrix drawn as an RGB picture: rows = true, columns = predicted, each cell's
    colour its share of the true class (white 0% to dark blue 100%), its count written in it.

    Args:
        confusion: Square (k, k) count matrix, rows = true class.
        class_names: k names, for the row and column labels.
        title: One line above the matrix.

    Returns:
        uint8 (height, width, 3).

    Raises:
        ValueError: The matrix is not square, or the names do not match it.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be a square matrix; got shape {counts.shape}")
    k = counts.shape[0]
    if len(class_names) != k:
        raise ValueError(f"class_names must name the {k} classes; got {len(class_names)} names")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    top = TITLE_HEIGHT + LABEL_MARGIN
    image = Image.new("RGB", (LABEL_MARGIN + k * CELL + 10, top + k * CELL + 10), "white")
    draw, font = ImageDraw.Draw(image), _font()
    draw.text((6, 8), title or "Confusion matrix (rows: true class, columns: predicted)", fill="black", font=font)
    for i in range(k):
        y0 = top + i * CELL
        draw.text((LABEL_MARGIN - 6, y0 + CELL / 2), class_names[i], fill="black", font=font, anchor="rm")
        _vertical_label(image, class_names[i], LABEL_MARGIN + i * CELL + CELL // 2, top - 6, font)
        for j in range(k):
            x0 = LABEL_MARGIN + j * CELL
            colour = tuple(int(c) for c in np.round(LOW_COLOUR + share[i, j] * (HIGH_COLOUR - LOW_COLOUR)))
            draw.rectangle((x0, y0, x0 + CELL - 1, y0 + CELL - 1), fill=colour, outline=(200, 200, 200))
            draw.text((x0 + CELL / 2, y0 + CELL / 2), str(int(counts[i, j])), font=font, anchor="mm",
                      fill="white" if share[i, j] > 0.5 else "black")
    return np.asarray(image, dtype=np.uint8)


def _vertical_label(image: Image.Image, text: str, centre_x: int, bottom: int, font) -> None:
    """Pastes `text` turned 90° (reading upwards) with its end at `bottom`, centred on centre_x."""
    left, upper, right, lower = font.getbbox(text)
    strip = Image.new("RGB", (right - left + 4, lower - upper + 4), "white")
    ImageDraw.Draw(strip).text((2 - left, 2 - upper), text, fill="black", font=font)
    strip = strip.rotate(90, expand=True)
    image.paste(strip, (centre_x - strip.width // 2, bottom - strip.height))


def log_confusion_matrix(run, y_true, y_prob, *, step: int) -> Path | None:
    """Writes the test-set confusion matrix as an image event into the run's TensorBoard folder.

    Never raises: the run has finished and its predictions are saved, so a failure here (no
    TensorFlow backend, a full disk) is logged and the folder returned is None.

    Args:
        run: The core.store.runs.Run.
        y_true: (N,) true class indices.
        y_prob: (N, 10) probabilities.
        step: The step to file it under (the number of finished epochs).
    """
    if not supported():
        return None
    try:
        import tensorflow as tf

        evaluation = evaluate(y_true, y_prob)
        picture = confusion_image(evaluation.confusion, title=f"Test set, {evaluation.n:,} images: "
                                  f"{100 * evaluation.top1_accuracy:.1f}% right (rows: true, columns: predicted)")
        folder = run.tensorboard_dir()
        writer = tf.summary.create_file_writer(str(folder))
        with writer.as_default():
            tf.summary.image(CONFUSION_TAG, picture[None], step=int(step),
                             description="Counts per (true, predicted) class; colour: share of the true class.")
        writer.close()
        return folder
    except Exception:  # noqa: BLE001 - a picture for TensorBoard must never fail a finished run
        log.warning("could not write the confusion matrix for TensorBoard", exc_info=True)
        return None
