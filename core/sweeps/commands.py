"""`python -m core sweep ...`: run a sweep here, queue one for the dashboard, see it, stop it.

    sweep run FILE      create the sweep (or continue the one of that name) and train its trials in
                        this process, one after another, with `train`'s progress
    sweep create FILE   create it for the dashboard: its trials join the queue as ordinary runs
    sweep status NAME   its trials (number, run, state, settings, metric) and the best
    sweep stop NAME     no new trials; queued ones cancelled, the training one stopped
    sweep list          every sweep of this runs folder's database
"""

from __future__ import annotations

import argparse
import sys
import time

from core.settings.config import TrainConfig
from core.sweeps import driver
from core.sweeps.queueing import check_can_start, start_sweep, stop_sweep
from core.sweeps.study import RUN_ATTR, Sweep, SweepError, create_sweep, list_sweeps
from core.sweeps.sweep_file import read_sweep_file

EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 130
WAIT_SECONDS = 2.0     # how often `sweep run` looks again while a trial's old trainer may still live


def add_sweep_parsers(commands) -> list[argparse.ArgumentParser]:
    """The `sweep` command and its actions' parsers (the CLI adds its common options to each)."""
    sweep = commands.add_parser("sweep", help="search settings over many runs (Optuna; W&B sweep files)")
    actions = sweep.add_subparsers(dest="sweep_action", required=True)
    parsers = [sweep]
    for name, text in (("run", "create a sweep from FILE and train its trials here, one after another"),
                       ("create", "create a sweep from FILE for the dashboard's queue")):
        parsers.append(actions.add_parser(name, help=text))
        parsers[-1].add_argument("file", help="a W&B-format sweep file (YAML or JSON)")
    for name, text in (("status", "a sweep's trials and the best"), ("stop", "stop a sweep")):
        parsers.append(actions.add_parser(name, help=text))
        parsers[-1].add_argument("name")
    parsers.append(actions.add_parser("list", help="every sweep"))
    return parsers


def run_command(args, manager, *, watch, check_data) -> int:
    """Runs `sweep <action>`; `watch` and `check_data` are the CLI's own (core/__main__.py)."""
    store = manager.store
    if args.sweep_action == "run":
        return run_here(manager, read_sweep_file(args.file), watch=watch, check_data=check_data)
    if args.sweep_action == "create":
        spec = read_sweep_file(args.file)
        sweep, step = start_sweep(manager, spec, owner=None)
        print(f"sweep {sweep.name}: {len(step.queued)} trials queued for the dashboard; "
              f"follow it with: python -m core sweep status {sweep.name}")
        if step.problem:
            print(f"note: {step.problem}", file=sys.stderr)
        return EXIT_OK
    if args.sweep_action == "list":
        return print_list(list_sweeps(store))
    sweep = Sweep.open(store, args.name)
    if args.sweep_action == "stop":
        stopped = stop_sweep(manager, sweep)
        print(f"sweep {sweep.name} stopped: {len(stopped.cancelled)} queued trials cancelled, "
              f"{len(stopped.stopping)} asked to stop (at their next batch)")
        return EXIT_OK
    print_status(sweep)
    return EXIT_OK


def run_here(manager, spec, *, watch, check_data) -> int:
    """Creates (or continues) the sweep and trains each trial in this process as `train` does."""
    check_data(manager.data_dir, TrainConfig.from_dict(spec.base))
    sweep, created = create_sweep(manager.store, spec, owner=None, driver="cli")
    if not created:
        if sweep.driver != "cli":
            raise SweepError(f"name: the sweep {spec.name!r} is the dashboard's (created with `sweep create`); "
                             "give this one another name")
        print(f"continuing sweep {sweep.name}: {driver.budget_used(sweep)} trials so far", file=sys.stderr)

    def train_now(config, name, tags) -> str:
        check_can_start(manager, config)
        return manager.train_claimed(manager.store.create(config, name=name, claimed=True, tags=tags))

    waiting_said = False
    while True:
        step = driver.step(sweep, train_now, in_flight=1)
        run_id = step.queued[0] if step.queued else None
        if run_id is None and step.to_continue:
            run_id = manager.resume(step.to_continue[0], queue=False)
        if run_id is not None:
            print(f"{describe_trial(sweep, run_id)}", file=sys.stderr, flush=True)
            if watch(manager, run_id) == EXIT_STOPPED:
                print(f"sweep {sweep.name} paused; continue it with: python -m core sweep run FILE", file=sys.stderr)
                return EXIT_STOPPED
            continue
        if driver.finished(sweep):
            break
        if step.problem:
            raise SweepError(step.problem)
        if not waiting_said:   # a trial's trainer (a killed `sweep run`) holds its lease a while yet
            print("waiting for a trial whose trainer stopped answering: it is resumed once its lease "
                  "lapses", file=sys.stderr, flush=True)
            waiting_said = True
        time.sleep(WAIT_SECONDS)
    print_status(sweep)
    return EXIT_OK if sweep_best(sweep) is not None else EXIT_FAILED


def describe_trial(sweep: Sweep, run_id: str) -> str:
    trial = next(t for t in sweep.trials() if t.user_attrs.get(RUN_ATTR) == run_id)
    budget = sweep.spec.trial_budget()
    settings = " ".join(f"{k}={_value(v)}" for k, v in trial.params.items())
    return f"sweep {sweep.name}, trial {trial.number + 1}" + (f"/{budget}" if budget else "") + f": {settings}"


def sweep_best(sweep: Sweep):
    """The best COMPLETE trial; None when no trial has completed."""
    try:
        return sweep.study.best_trial
    except ValueError:
        return None


def print_status(sweep: Sweep) -> None:
    spec = sweep.spec
    budget = spec.trial_budget()
    print(f"sweep {sweep.name}: {spec.method}, {spec.metric} ({spec.goal}), pruning {spec.pruning}, "
          f"{driver.budget_used(sweep)}" + (f"/{budget}" if budget else "") + f" trials, {driver.state_of(sweep)}")
    print(f"optuna.load_study(study_name={sweep.name!r}, storage={sweep.store.db.safe_url!r})")
    names = [p.name for p in spec.params]
    print(f"{'trial':>5}  {'run':<26} {'state':<10} {spec.metric:>12}  " + "  ".join(names))
    runs = {s.run_id: s.state for s in sweep.store.list(kinds=None)}
    for trial in sweep.trials():
        run_id = trial.user_attrs.get(RUN_ATTR, "")
        state = runs.get(run_id, "") if trial.state.name == "RUNNING" else trial.state.name.lower()
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        print(f"{trial.number + 1:>5}  {run_id or '-':<26} {state or 'asked':<10} {value:>12}  "
              + "  ".join(_value(trial.params.get(n, "")) for n in names))
    best = sweep_best(sweep)
    if best is not None:
        settings = ", ".join(f"{k}={_value(v)}" for k, v in best.params.items())
        print(f"best: trial {best.number + 1} (run {best.user_attrs.get(RUN_ATTR)}): {spec.metric} "
              f"{best.value:.4f} with {settings}")


def print_list(sweeps: list[Sweep]) -> int:
    if not sweeps:
        print("no sweeps yet; start one with: python -m core sweep run FILE")
        return EXIT_OK
    print(f"{'sweep':<40} {'method':<7} {'state':<9} {'trials':>7} {'best':>8}  driven by")
    for sweep in sweeps:
        best = sweep_best(sweep)
        budget = sweep.spec.trial_budget()
        trials = f"{driver.budget_used(sweep)}" + (f"/{budget}" if budget else "")
        print(f"{sweep.name:<40} {sweep.spec.method:<7} {driver.state_of(sweep):<9} {trials:>7} "
              f"{(f'{best.value:.4f}' if best else '-'):>8}  {sweep.driver}")
    return EXIT_OK


def _value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
