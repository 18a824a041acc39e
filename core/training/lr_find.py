"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
WACV 2017, arXiv:1506.01186; fastai's `lr_find`): before training, find a rate worth using.

A fresh model is trained for about a hundred batches while the rate rises exponentially from
1e-7 to 10. The loss is smoothed (an exponential moving average with bias correction, as fastai
does); the test stops early once the smoothed loss exceeds four times its minimum (it has
exploded: larger rates are of no interest). The suggestion is the rate where the smoothed loss
falls fastest (steepest descent against log rate). Where it falls at no rate tried there is no
suggestion worth using (`worth_using`): the Train page says so and what to try (NEVER_FELL), and
the record still holds a tenth of the minimum's rate, never below the lowest rate tried. Like
fastai, the first batches count for neither: their "smoothed" loss is one or two raw losses, and a
lucky first batch once made the minimum of a whole curve and a suggestion of 1e-8. The model's
weights and optimizer state are put back afterwards, so the test leaves the model it was given as
it found it.

Batches are numpy arrays drawn from the training split the run would use (same seed, same
training-image limit), fed through `model.train_on_batch`: the same on TensorFlow and JAX.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from core.data import cifar10 as data_mod
from core.data.cifar10 import NUM_CLASSES
from core.settings.config import TrainConfig

START_RATE, END_RATE = 1e-7, 10.0
STEPS = 100
SMOOTHING = 0.98            # fastai's beta: the moving average's memory
DIVERGED_FACTOR = 4.0       # stop when the smoothed loss exceeds this times its minimum
SKIP_START = 10             # the first batches' smoothed loss is still settling: not a descent
PHASE = "finding a learning rate"
NO_DESCENT = "no descent: the loss fell at no rate tried"
NEVER_FELL = (f"The loss did not fall at any rate from {START_RATE:g} to {END_RATE:g}, so there is no rate to "
              "suggest: keep your learning rate, or try again with more training images, another optimizer, "
              "or more of the base unfrozen.")


@dataclass(frozen=True, eq=False)
class LrFinding:
    """What the range test saw and what it suggests."""

    rates: np.ndarray           # float64 (n,): the rate of each batch, rising exponentially
    losses: np.ndarray          # float64 (n,): each batch's training loss
    smoothed: np.ndarray        # float64 (n,): the bias-corrected moving average of the losses
    suggestion: float           # the rate to use
    steepest: float | None      # where the smoothed loss fell fastest (None: no descent found)
    minimum_rate: float         # where the smoothed loss was lowest
    ended: str                  # "diverged", "finished" or "stopped"

    @property
    def method(self) -> str:
        """How the suggestion was chosen, in words for the page."""
        if self.steepest is not None and self.suggestion == self.steepest:
            return "steepest descent of the smoothed loss"
        return NO_DESCENT   # no descent after the first batches: suggest() fell back to a low rate


def worth_using(finding: dict) -> bool:
    """Whether a saved finding (Run.read_lr_finding) suggests a rate at all: not when the smoothed loss
    fell at no rate tried (no steepest descent), where the "suggestion" is only a tenth of one of the
    lowest rates, some 1e-7, a rate nobody should train with."""
    return finding.get("steepest") is not None


def rate_schedule(steps: int = STEPS, start: float = START_RATE, end: float = END_RATE) -> np.ndarray:
    """`steps` rates from `start` to `end`, each the previous times the same factor."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be a whole number, 2 or more; got {steps!r}")
    if not 0 < start < end:
        raise ValueError(f"rates must satisfy 0 < start < end; got start={start!r}, end={end!r}")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


def smooth(losses, beta: float = SMOOTHING) -> np.ndarray:
    """fastai's smoothing: avg = beta·avg + (1 − beta)·loss, divided by 1 − beta^(i+1) (no bias to 0)."""
    out, average = [], 0.0
    for i, loss in enumerate(np.asarray(losses, dtype=np.float64)):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return np.asarray(out)


def suggest(rates, smoothed, skip_start: int = SKIP_START) -> tuple[float, float | None, float]:
    """(suggestion, steepest-descent rate or None, rate at the minimum) from a finished curve.

    Both the minimum and the steepest descent are looked for after the first `skip_start` batches
    (when the curve is longer than that), the descent only up to the minimum: after it the loss
    only rises. Without a descent the suggestion is a tenth of the minimum's rate, but not below
    the first rate: the test says nothing about rates it never tried.
    """
    rates, smoothed = np.asarray(rates, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    settled = skip_start if len(smoothed) > skip_start else 0
    finite = np.isfinite(smoothed)
    lowest = settled + int(np.argmin(np.where(finite, smoothed, np.inf)[settled:]))
    minimum_rate = float(rates[lowest])
    steepest = None
    if lowest - settled >= 2:
        slope = np.gradient(smoothed[:lowest + 1], np.log10(rates[:lowest + 1]))
        best = settled + int(np.argmin(slope[settled:lowest]))
        if slope[best] < 0:
            steepest = float(rates[best])
    suggestion = steepest if steepest is not None else max(minimum_rate / 10, float(rates[0]))
    return suggestion, steepest, minimum_rate


def range_test(model, batches, *, steps: int = STEPS, start: float = START_RATE, end: float = END_RATE,
               progress=None, stop_event: threading.Event | None = None) -> LrFinding:
    """Runs the range test on a compiled model and puts its weights and optimizer state back.

    Args:
        model: A compiled Keras model whose optimizer's learning_rate is a variable.
        batches: An iterator of (images, one-hot labels) numpy batches, at least `steps` long.
        steps: Batches at most; the test ends sooner when the loss explodes.
        start, end: The first and last rate.
        progress: A core.training.progress.Progress to report batch, loss and rate to, or None.
        stop_event: Set it to end the test at the next batch (the result covers what was done).

    Returns:
        An LrFinding.
    """
    rates = rate_schedule(steps, start, end)
    optimizer = model.optimizer
    if not optimizer.built:        # its slots exist from here on, so they can be saved and put back
        optimizer.build(model.trainable_variables)
    weights = [np.array(w) for w in model.get_weights()]
    optimizer_state = [np.array(v) for v in optimizer.variables]
    losses: list[float] = []
    ended = "finished"
    try:
        for i, (x, y) in zip(range(steps), batches):
            if stop_event is not None and stop_event.is_set():
                ended = "stopped"
                break
            optimizer.learning_rate.assign(float(rates[i]))
            result = model.train_on_batch(x, y, return_dict=True)
            loss = float(result["loss"])
            losses.append(loss)
            smoothed = smooth(losses)
            if progress is not None:
                progress.update(phase=PHASE, batch=i + 1, batches=steps, loss=loss, learning_rate=float(rates[i]))
            if not math.isfinite(loss) or smoothed[-1] > DIVERGED_FACTOR * np.nanmin(smoothed):
                ended = "diverged"
                break
    finally:
        model.set_weights(weights)
        for variable, value in zip(optimizer.variables, optimizer_state):
            variable.assign(value)
    if not losses:
        raise RuntimeError("the learning-rate test was stopped before its first batch: nothing to suggest")
    n = len(losses)
    smoothed = smooth(losses)
    suggestion, steepest, minimum_rate = suggest(rates[:n], smoothed)
    return LrFinding(rates[:n].copy(), np.asarray(losses), smoothed, suggestion, steepest, minimum_rate, ended)


def _batches(x, y, batch_size: int, seed: int):
    """Endless full batches (numpy, one-hot labels), reshuffled on every pass over the images."""
    rng = np.random.default_rng(seed)
    size = min(batch_size, len(x))
    while True:
        order = rng.permutation(len(x))
        for begin in range(0, len(order) - size + 1, size):
            index = np.sort(order[begin:begin + size])
            yield x[index], np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(y)[index].reshape(-1)]


def find_learning_rate(config: TrainConfig, data_dir: str | None = None, progress=None,
                       stop_event: threading.Event | None = None, *, steps: int = STEPS) -> LrFinding:
    """The range test on the settings of a run about to start: its data, model and optimizer.

    The model is built as the run would build it (variant, weights, head, frozen base) and
    discarded afterwards; the rate found is for the first phase (the head's, when the base is
    frozen).

    Args:
        config: The run's settings (validated TrainConfig).
        data_dir: Where CIFAR-10 is (as for training); None: the default places.
        progress: A core.training.progress.Progress, or None.
        stop_event: Set it to stop at the next batch.
        steps: Batches at most.

    Raises:
        core.data.cifar10.DataError, core.training.weights.WeightsUnavailableError: As training would.
    """
    from core.training.model import build_model, compile_model, host_preprocessing
    if progress is not None:
        progress.update(phase="loading data", batch=0, batches=steps)
    cifar = data_mod.load_cifar10(data_dir)
    split = data_mod.split_train_val(cifar.x_train, cifar.y_train, val_fraction=config.val_fraction,
                                     seed=config.seed, train_limit=config.train_limit)
    if progress is not None:
        progress.update(phase="building model")
    model = build_model(config)
    if host_preprocessing(model, config):
        raise RuntimeError("this model expects the host to resize its images; the learning-rate test "
                           "feeds 32 px images as built by core.training.model")
    compile_model(model, config, START_RATE)
    return range_test(model, _batches(split.x_train, split.y_train, config.batch_size, config.seed),
                      steps=steps, progress=progress, stop_event=stop_event)
