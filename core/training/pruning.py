"""The trainer's side of a sweep: after each finished epoch, report the trial's figure to Optuna
and, when the sweep's pruner says so, end the run as `pruned` (core/training/train.py adds this
callback only to a run whose status names a sweep and a trial). It opens the sweep's study
(core/sweeps/study.py, a floor above) lazily, beside Optuna itself."""

from __future__ import annotations

import logging
import math

import keras

from core.store.runs import Run

log = logging.getLogger(__name__)


class PruneCheck(keras.callbacks.Callback):
    """Reports `metric` (which the run's recorder adds to the epoch's logs, so this callback comes
    after it) as the trial's intermediate value at step = epoch, then asks the pruner."""

    def __init__(self, trial, metric: str, last_epoch: int):
        super().__init__()
        self.trial, self.metric, self.last_epoch = trial, metric, last_epoch
        self.pruned = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        # A stop or a NaN cut the epoch short: the recorder measured nothing, nothing to report.
        if not isinstance(value, float) or not math.isfinite(value):
            return
        try:
            self.trial.report(value, epoch + 1)
            # After the last epoch there is nothing left to save: the trial completes, with its test set.
            prune = epoch + 1 < self.last_epoch and self.trial.should_prune()
        except Exception as exc:  # noqa: BLE001 - a sweep's bookkeeping must never fail its run
            log.warning("sweep trial %s: could not report epoch %d (%s)", self.trial.number, epoch + 1, exc)
            return
        if prune:
            self.pruned = True
            self.model.stop_training = True


def sweep_pruning(run: Run, target_epochs: int) -> PruneCheck | None:
    """The pruning callback for `run` (trained up to `target_epochs`) when it is a trial of a sweep
    that prunes; None otherwise."""
    status = run.read_status()
    name, number = status.get("sweep"), status.get("trial")
    if not name or not isinstance(number, int):
        return None
    try:
        import optuna

        from core.sweeps.study import Sweep, storage
        sweep = Sweep.open(run.store, name)
        if sweep.spec.pruning == "none":
            return None
        study = optuna.load_study(study_name=name, storage=storage(run.store), pruner=sweep.spec.pruner())
        trial = sweep.trial(number, study)
    except Exception as exc:  # noqa: BLE001 - the sweep gone or unreadable: the run trains unpruned
        log.warning("run %s: its sweep %r cannot be read (%s); it trains without pruning", run.run_id, name, exc)
        return None
    return PruneCheck(trial, sweep.spec.epoch_metric, target_epochs)
