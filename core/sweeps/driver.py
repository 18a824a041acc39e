"""The sweep driver: one idempotent step that moves a sweep on from whatever the database says.

A step tells Optuna how the runs of its unfinished trials ended (COMPLETE with the metric, PRUNED,
FAIL), hands back the trials whose trainer went away (interrupted, or stopped by Ctrl-C) to be
continued, and asks new trials while the budget lasts and fewer than `in_flight` are waiting or
training. Each new trial becomes an ordinary run through the caller's `queue_trial` (the
dashboard queues it; `sweep run` trains it at once in its own process). Nothing lives in memory
between steps, so a step after a restart carries on where the last one left off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import UserInputError
from core.settings.config import ConfigError, TrainConfig
from core.store.runs import RunNotFoundError, RunSummary
from core.store.states import ACTIVE_STATES, RunState
from core.sweeps.study import ERROR_ATTR, RUN_ATTR, Sweep, trial_run_name

# A trial whose trainer went away is continued, not failed, while its sweep runs: its run resumes
# from its checkpoint. The dashboard continues `interrupted` ones (a server killed mid-trial); the
# command line `stopped` ones too (its own Ctrl-C). A trial someone stopped on the Runs page stays so.
CONTINUE_STATES = (RunState.INTERRUPTED, RunState.STOPPED)
# Asking stops after this many trials in one step even when each was refused for its settings.
MAX_ASKS_PER_STEP = 50

# (config, run name, tags for the run's status) -> run id. Raises UserInputError (JobError,
# QueueFull) when the run cannot be queued now.
QueueTrial = Callable[[TrainConfig, str, dict[str, Any]], str]


@dataclass
class Step:
    """What one step did."""

    told: list[int] = field(default_factory=list)          # trial numbers told finished
    to_continue: list[str] = field(default_factory=list)   # run ids of trials to resume
    queued: list[str] = field(default_factory=list)        # run ids of new trials
    problem: str = ""                                      # why no more trials were queued now


def step(sweep: Sweep, queue_trial: QueueTrial, in_flight: int,
         continue_states: tuple[str, ...] = CONTINUE_STATES) -> Step:
    """Tells finished trials, then queues new ones while budget, time and `in_flight` allow; the
    trials whose runs ended in one of `continue_states` are handed back to be resumed."""
    result = Step()
    runs = {s.run_id: s for s in sweep.store.list(kinds=None)}
    tell_finished(sweep, runs, result, continue_states)
    if not sweep.stopped:
        ask_new(sweep, queue_trial, in_flight, result)
    return result


def tell_finished(sweep: Sweep, runs: dict[str, RunSummary], result: Step,
                  continue_states: tuple[str, ...] = CONTINUE_STATES) -> None:
    from optuna.trial import TrialState
    for trial in sweep.trials():
        if trial.state != TrialState.RUNNING:
            continue
        run_id = trial.user_attrs.get(RUN_ATTR)
        summary = runs.get(run_id) if run_id else None
        if not run_id:                 # asked, not queued yet: ask_new queues it, unless stopped
            if sweep.stopped:
                _tell(sweep, trial.number, TrialState.FAIL, result)
            continue
        if summary is None:            # its run was deleted
            _tell(sweep, trial.number, TrialState.FAIL, result)
            continue
        if summary.state in ACTIVE_STATES:
            continue
        if summary.state in continue_states and not sweep.stopped:
            result.to_continue.append(run_id)
        elif summary.state == RunState.COMPLETED:
            value = metric_value(sweep, summary)
            _tell(sweep, trial.number, TrialState.COMPLETE if value is not None else TrialState.FAIL, result, value)
        elif summary.state == RunState.PRUNED:
            _tell(sweep, trial.number, TrialState.PRUNED, result)
        else:                          # failed, cancelled, damaged; or stopped with the sweep
            _tell(sweep, trial.number, TrialState.FAIL, result)


def _tell(sweep: Sweep, number: int, state, result: Step, value: float | None = None) -> None:
    sweep.study.tell(number, value, state=state, skip_if_finished=True)
    result.told.append(number)


def metric_value(sweep: Sweep, summary: RunSummary) -> float | None:
    """The figure a finished trial is judged by: the best validation accuracy of its epochs (what
    best.keras keeps), its test accuracy, or its lowest validation loss. None when it has none."""
    if sweep.spec.metric == "val_accuracy":
        value = summary.best_val_accuracy
    elif sweep.spec.metric == "test_accuracy":
        value = summary.test_accuracy
    else:
        try:
            losses = [row["val_loss"] for row in sweep.store.get(summary.run_id).read_metrics()]
        except RunNotFoundError:
            return None
        value = min((v for v in losses if v == v), default=None)
    return float(value) if value is not None and math.isfinite(value) else None


def budget_used(sweep: Sweep) -> int:
    """Trials asked so far: each counts against the budget, whatever became of it."""
    return len(sweep.trials())


def more_to_ask(sweep: Sweep) -> bool:
    budget = sweep.spec.trial_budget()
    return not sweep.stopped and not sweep.out_of_time() and (budget is None or budget_used(sweep) < budget)


def ask_new(sweep: Sweep, queue_trial: QueueTrial, in_flight: int, result: Step) -> None:
    """Queues the trials that were asked but not queued yet (the queue was full), then new ones.
    Tells go through `sweep.study`, never the asking study: a GridSampler that sees its grid
    used up calls study.stop(), which Optuna allows only inside optimize()."""
    from optuna.trial import TrialState
    running = [t for t in sweep.trials() if t.state == TrialState.RUNNING]
    waiting = sum(1 for t in running if t.user_attrs.get(RUN_ATTR))
    pending = [t.number for t in running if not t.user_attrs.get(RUN_ATTR)]
    study = sweep.asking_study(len(sweep.trials()))
    for _ in range(MAX_ASKS_PER_STEP):
        if waiting >= in_flight or not (pending or more_to_ask(sweep)):
            return
        trial = sweep.trial(pending.pop(0)) if pending else study.ask(sweep.spec.distributions())
        try:
            config = TrainConfig.from_dict({**sweep.spec.base, **trial.params})
        except ConfigError as exc:     # a combination no single value's check could see
            trial.set_user_attr(ERROR_ATTR, str(exc))
            _tell(sweep, trial.number, TrialState.FAIL, result)
            continue
        tags = {"sweep": sweep.name, "trial": trial.number}
        try:
            run_id = queue_trial(config, trial_run_name(sweep.name, trial.number), tags)
        except (UserInputError, ValueError) as exc:    # the queue is full, memory: asked again next step
            result.problem = str(exc)
            return
        trial.set_user_attr(RUN_ATTR, run_id)
        result.queued.append(run_id)
        waiting += 1


def finished(sweep: Sweep) -> bool:
    """Nothing more to ask and no trial waiting or training."""
    from optuna.trial import TrialState
    return not more_to_ask(sweep) and not any(t.state == TrialState.RUNNING for t in sweep.trials())


def state_of(sweep: Sweep) -> str:
    """"stopped", "finished" or "running", for tables."""
    if finished(sweep):
        return "stopped" if sweep.stopped else "finished"
    return "stopping" if sweep.stopped else "running"
