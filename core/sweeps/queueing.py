"""How a sweep's trials reach the job manager: queued for the dashboard's slots, or trained at once
in the command line's process; and how a sweep is started and stopped.

The dashboard's scheduler calls `drive_dashboard_sweeps` on each of its periodic looks at the
queue (core/jobs/scheduler.py), so a sweep queued from the Sweep page or `python -m core sweep create` goes on
by itself, also after the server restarts. Several dashboards on one database take turns: one step
of a sweep at a time (RunStore.exclusive). A sweep that `python -m core sweep run` drives is left
to that process (driver "cli").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.estimates.memory import check_fits
from core.settings.config import TrainConfig, check_startable
from core.store.states import TRAINING_STATES, RunState
from core.sweeps import driver
from core.sweeps.spec import SweepSpec
from core.sweeps.study import RUN_ATTR, Sweep, create_sweep, list_sweeps

log = logging.getLogger(__name__)
STEP_WAIT_SECONDS = 10.0    # how long Start waits for a step another thread or server is taking


def check_can_start(manager, config: TrainConfig) -> None:
    """What JobManager.start checks before a run exists: its weights file is here and (when it
    trains on this machine) its estimated peak memory could fit. Raises a UserInputError."""
    check_startable(config)
    if manager.trains_here:
        capacity, where = manager.memory.capacity()
        check_fits(config, capacity, where=where)


def queue_for_dashboard(manager, sweep: Sweep, *, teacher: bool = False) -> driver.QueueTrial:
    """Queues a trial as an ordinary run of the sweep's owner, within their limits."""
    def queue(config: TrainConfig, name: str, tags: dict) -> str:
        check_can_start(manager, config)
        run = manager.store.create(config, name=name, owner=sweep.owner, tags=tags,
                                   limit_exempt=teacher or sweep.owner is None)
        return run.run_id
    return queue


def in_flight(manager, spec: SweepSpec) -> int:
    """How many trials wait or train at once: all of a grid's or random search's (they do not
    depend on each other); for TPE as many as there are slots, so each new trial is asked
    knowing the results before it."""
    return max(1, manager.slots) if spec.method == "bayes" else spec.trial_budget() or max(1, manager.slots)


def step_in_dashboard(manager, sweep: Sweep, *, teacher: bool = False, wait: float = 0.0) -> driver.Step:
    """One driver step, its new trials queued, interrupted ones (a server killed mid-trial) resumed.
    One step of a sweep at a time, across threads and servers on the same database: two at once
    would both see room for the last trial and ask it twice. A step someone else is still taking
    after `wait` seconds is skipped (an empty Step): theirs does the work."""
    with manager.store.exclusive(f"sweep step: {sweep.name}", wait=wait) as mine:
        if not mine:
            return driver.Step()
        result = driver.step(sweep, queue_for_dashboard(manager, sweep, teacher=teacher),
                             in_flight(manager, sweep.spec), continue_states=(RunState.INTERRUPTED,))
        for run_id in result.to_continue:
            try:
                manager.resume(run_id, teacher=teacher or sweep.owner is None)
            # JobError: a full queue, a checkpoint gone. Said on the page, and tried again next step.
            except Exception as exc:  # noqa: BLE001
                result.problem = str(exc)
    if result.queued or result.to_continue:
        manager.schedule()
    return result


def drive_dashboard_sweeps(manager) -> None:
    """One step of every unfinished sweep the dashboard drives."""
    for sweep in list_sweeps(manager.store):
        if sweep.driver != "dashboard" or driver.finished(sweep):
            continue
        try:
            step_in_dashboard(manager, sweep)
        except Exception as exc:  # noqa: BLE001 - one damaged sweep must not hold up the others
            log.warning("sweep %s: %s", sweep.name, exc)


def start_sweep(manager, spec: SweepSpec, *, owner: str | None, teacher: bool = False) -> tuple[Sweep, driver.Step]:
    """Creates the sweep for the dashboard's queue (or continues one of that name and spec) and
    queues its first trials now. Raises SweepError for a name taken with other settings."""
    sweep, _ = create_sweep(manager.store, spec, owner=owner, driver="dashboard")
    # The scheduler's tick may be stepping it: wait for it, so Start says what it queued.
    return sweep, step_in_dashboard(manager, sweep, teacher=teacher, wait=STEP_WAIT_SECONDS)


@dataclass
class Stopped:
    cancelled: list[str]
    stopping: list[str]


def stop_sweep(manager, sweep: Sweep) -> Stopped:
    """Stops the sweep: no new trials; queued ones cancelled, training ones asked to stop (wherever
    they train); each told to Optuna as it ends."""
    sweep.stop()
    result = Stopped([], [])
    from optuna.trial import TrialState
    for trial in sweep.trials():
        run_id = trial.user_attrs.get(RUN_ATTR)
        if trial.state != TrialState.RUNNING or not run_id:
            continue
        state = manager.store.get(run_id).live_status()["state"]
        if state == RunState.QUEUED and manager.cancel(run_id):
            result.cancelled.append(run_id)
        elif state in TRAINING_STATES and manager.stop(run_id):
            result.stopping.append(run_id)
    driver.step(sweep, _queue_nothing, 0, continue_states=())
    return result


def _queue_nothing(config: TrainConfig, name: str, tags: dict) -> str:
    raise RuntimeError("a stopped sweep queues no trials")
