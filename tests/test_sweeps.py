"""Sweeps (issue 31): W&B-format sweep files, Optuna's study in the lab's database, trials as
ordinary runs, pruning, and a sweep that carries on after its driver is killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ended, run_folders, wait_for

from core.__main__ import main
from core.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweep.yaml"
TINY = {"batch_size": {"value": 16}, "train_limit": {"value": 200}, "val_fraction": {"value": 0.2},
        "test_time_flip": {"value": False}}


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def write(tmp_path, text: str, name: str = "sweep.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def sweep_file(tmp_path, **data) -> str:
    return write(tmp_path, json.dumps(data), "sweep.json")


# --- sweep files ------------------------------------------------------------------------------
BAD_FILES = [
    ("min above max", "method: random\nrun_cap: 3\nparameters:\n  learning_rate: {min: 0.1, max: 0.001}\n",
     "parameters.learning_rate: expected min < max; got 'min 0.1, max 0.001'"),
    ("unknown setting", "method: random\nrun_cap: 3\nparameters:\n  learning_rat: {values: [0.1, 0.2]}\n",
     "parameters.learning_rat: expected a lab setting ("),
    ("empty choice", "method: grid\nparameters:\n  optimizer: {values: []}\n",
     "parameters.optimizer.values: expected a non-empty list of values; got []"),
    ("grid over a range", "method: grid\nparameters:\n  learning_rate: {min: 0.0001, max: 0.01}\n",
     "parameters.learning_rate: expected a list of values for a grid sweep"),
    ("run_cap past the limit", "method: random\nrun_cap: 11\nparameters:\n  learning_rate: {min: 0.0001, max: 0.01}\n",
     "run_cap: expected at most 10 trials, the most one person may have waiting (EFFLAB_QUEUE_PER_PERSON=10); "
     "got '11 trials'"),
    ("grid past the limit", "method: grid\nparameters:\n  batch_size: {values: [16, 32, 64, 128]}\n"
     "  optimizer: {values: [sgd, adam, adamw]}\n", "parameters: expected at most 10 trials"),
    ("value out of bounds", "method: grid\nparameters:\n  image_size: {values: [32, 5000]}\n",
     "parameters.image_size: expected a number in [32, "),
    ("range end out of bounds", "method: random\nrun_cap: 2\nparameters:\n  label_smoothing: {min: 0.0, max: 1.5}\n",
     "parameters.label_smoothing: expected a number in"),
    ("word for a number", "method: grid\nparameters:\n  batch_size: {values: [32, big]}\n",
     "parameters.batch_size: expected"),
    ("unknown method", "method: hyper\nparameters:\n  optimizer: {values: [sgd]}\n",
     "method: expected one of grid, random, bayes; got 'hyper'"),
    ("unknown key", "method: grid\nruncap: 3\nparameters:\n  optimizer: {values: [sgd, adam]}\n",
     "runcap: expected one of the sweep keys"),
    ("no budget", "method: bayes\nparameters:\n  learning_rate: {min: 0.0001, max: 0.01}\n",
     "run_cap: expected a number of trials for a bayes sweep (or minutes: a time budget); got None"),
    ("log range from 0", "method: random\nrun_cap: 2\nparameters:\n"
     "  learning_rate: {distribution: log_uniform_values, min: 0, max: 0.01}\n",
     "parameters.learning_rate.min: expected a number above 0 for log_uniform_values; got 0"),
    ("range of words", "method: random\nrun_cap: 2\nparameters:\n  optimizer: {min: 1, max: 3}\n",
     "parameters.optimizer: expected values: [...] (optimizer is not a number"),
    ("unknown preset", "method: grid\npreset: fastest\nparameters:\n  optimizer: {values: [sgd, adam]}\n",
     "preset: expected one of quick-demo"),
    ("only fixed values", "method: grid\nparameters:\n  optimizer: {value: sgd}\n",
     "parameters: expected at least one setting that varies"),
    ("a bad name", "name: '<b>x</b>'\nmethod: grid\nparameters:\n  optimizer: {values: [sgd, adam]}\n",
     "name: expected 1-40 letters, digits"),
    ("not YAML", "method: [grid\n", 'sweep file: expected YAML or JSON; got "line 2: expected'),
    ("pruning without validation", "method: grid\npruning: median\nparameters:\n  val_fraction: {value: 0}\n"
     "  optimizer: {values: [sgd, adam]}\n", "pruning: expected a validation set to prune on"),
]


@pytest.mark.parametrize("text, line", [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_a_bad_sweep_file_exits_2_with_one_line_naming_the_key(tmp_path, capsys, monkeypatch, text, line):
    monkeypatch.delenv("EFFLAB_QUEUE_PER_PERSON", raising=False)
    runs = tmp_path / "runs"
    assert main(["--runs-dir", str(runs), "sweep", "run", write(tmp_path, text)]) == 2
    err = [row for row in capsys.readouterr().err.splitlines() if row.strip()]
    assert len(err) == 1 and err[0].startswith(f"error: {line}"), err
    assert not run_folders(runs)


def test_a_bad_sweep_file_from_the_command_line(tmp_path):
    """The same refusal as a user meets it: the real command, exit 2, one line, nothing created."""
    result = cli("--runs-dir", str(tmp_path / "runs"), "sweep", "create",
                 write(tmp_path, "method: random\nrun_cap: 2\nparameters:\n  learning_rate: {min: 3, max: 1}\n"))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: parameters.learning_rate: expected min < max; got 'min 3, max 1'"], result.stderr
    assert cli("--runs-dir", str(tmp_path / "runs"), "sweep", "status", "nothing").returncode == 2


def test_the_example_file_reads_into_optuna_pieces_and_json_reads_the_same():
    import optuna
    import yaml

    from core.sweeps.sweep_file import read_sweep_file, sweep_from_dict
    spec = read_sweep_file(EXAMPLE)
    lr = next(p for p in spec.params if p.name == "learning_rate")
    # PyYAML reads `1e-4` as text (YAML 1.1); the file's min must still be the number.
    assert (lr.low, lr.high) == (1e-4, 3e-3) and lr.optuna_distribution().log
    assert spec.base["weights"] == "imagenet" and spec.base["train_limit"] == 5000   # preset + fixed values
    assert spec.trial_budget() == 6 and spec.method == "bayes"
    assert isinstance(spec.sampler(0), optuna.samplers.TPESampler)
    pruner = spec.pruner()
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    as_json = json.loads(json.dumps(yaml.safe_load(EXAMPLE.read_text()), default=str))
    as_json["parameters"]["learning_rate"].update(min=1e-4, max=3e-3)
    assert sweep_from_dict(as_json, default_name="x") == spec


# --- the driver, on the run store (no training) -------------------------------------------------
def manager_on(runs):
    from core.jobs.scheduler import JobManager
    return JobManager(runs_dir=runs, slots=1, drain_queue=False)


def grid_spec(name="g", values=(0.001, 0.003, 0.01), **extra):
    from core.sweeps.sweep_file import sweep_from_dict
    return sweep_from_dict({"name": name, "method": "grid", "parameters": {
        "learning_rate": {"values": list(values)}, **TINY}, **extra})


def test_trials_are_owned_runs_and_each_ending_is_told_to_the_study(tmp_path, database, monkeypatch):
    """Start queues every grid trial as an ordinary run of its owner; completed, pruned and failed
    runs reach Optuna as COMPLETE (with the best validation accuracy), PRUNED and FAIL; and the
    study is the lab database's, for Optuna's own load_study."""
    import optuna

    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep
    manager = manager_on(tmp_path / "runs")
    sweep, step = start_sweep(manager, grid_spec(), owner="ana")
    summaries = {s.run_id: s for s in manager.store.list()}
    assert sorted(summaries[r].name for r in step.queued) == [f"g · trial {n}" for n in (1, 2, 3)]
    assert {summaries[r].owner for r in step.queued} == {"ana"}
    runs = [manager.store.get(r) for r in step.queued]
    assert [r.read_status()["trial"] for r in runs] == [0, 1, 2] and runs[0].read_status()["sweep"] == "g"
    for run, (state, val) in zip(runs, [("completed", 0.5), ("pruned", 0.2), ("failed", None)]):
        claimed = run.claim()
        if val is not None:
            claimed.append_metrics({"epoch": 1, "loss": 1.0, "accuracy": 0.4, "val_loss": 1.2, "val_accuracy": val,
                                    "learning_rate": 0.001, "epoch_seconds": 1.0, "images_per_second": 100.0})
        ended(claimed, state)
    assert not driver.finished(sweep)
    step = driver.step(sweep, lambda *a: pytest.fail("the budget is spent"), in_flight=3)
    assert sorted(step.told) == [0, 1, 2] and driver.finished(sweep) and driver.state_of(sweep) == "finished"
    study = optuna.load_study(study_name="g", storage=manager.store.db.url)
    states = {t.user_attrs["run_id"]: (t.state.name, t.value) for t in study.trials}
    assert states == {runs[0].run_id: ("COMPLETE", 0.5), runs[1].run_id: ("PRUNED", None),
                      runs[2].run_id: ("FAIL", None)}
    assert study.best_trial.params == {"learning_rate": runs[0].read_config().learning_rate}


def test_a_grid_asked_one_trial_per_step_visits_every_point_once(tmp_path):
    """Each step builds its sampler anew (samplers are not stored with a study): a grid asked one
    trial at a time, as `sweep run` and TPE do, must still cover every combination exactly once."""
    from core.sweeps import driver
    from core.sweeps.study import create_sweep
    from core.sweeps.sweep_file import sweep_from_dict
    store = RunStore(tmp_path / "runs")
    spec = sweep_from_dict({"name": "g6", "method": "grid", "parameters": {
        "learning_rate": {"values": [0.0003, 0.003, 0.03]}, "label_smoothing": {"values": [0.0, 0.2]}, **TINY}})
    sweep, _ = create_sweep(store, spec, owner=None, driver="cli")
    queue = lambda config, name, tags: store.create(config, name=name, tags=tags).run_id   # noqa: E731
    for _ in range(7):
        for run_id in driver.step(sweep, queue, in_flight=1).queued:
            ended(store.get(run_id), "completed")
    assert driver.finished(sweep)
    points = sorted((t.params["learning_rate"], t.params["label_smoothing"]) for t in sweep.trials())
    assert points == [(lr, ls) for lr in (0.0003, 0.003, 0.03) for ls in (0.0, 0.2)]


def test_the_schedulers_tick_moves_dashboard_sweeps_on_and_leaves_command_line_ones(tmp_path):
    """drive_dashboard_sweeps (the dashboard's periodic work on each of the scheduler's looks) tells a
    dashboard sweep's finished trial to Optuna; a sweep that `sweep run` drives is that process's."""
    from core.sweeps.queueing import drive_dashboard_sweeps, start_sweep
    from core.sweeps.study import Sweep, create_sweep
    manager = manager_on(tmp_path / "runs")
    _, step = start_sweep(manager, grid_spec(values=(0.001,)), owner="ana")
    cli_sweep, _ = create_sweep(manager.store, grid_spec(name="by hand", values=(0.001, 0.01)), owner=None,
                                driver="cli")
    ended(manager.store.get(step.queued[0]), "failed")
    drive_dashboard_sweeps(manager)
    assert [t.state.name for t in Sweep.open(manager.store, "g").trials()] == ["FAIL"]
    assert Sweep.open(manager.store, "by hand").trials() == []


def test_a_full_queue_holds_a_trial_until_there_is_room(tmp_path, monkeypatch):
    """Trials count against their owner's queue limit; one asked while the queue is full is queued,
    with the same settings, once there is room, and a new sweep of that name continues this one."""
    from core.settings.config import TrainConfig
    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep
    monkeypatch.setenv("EFFLAB_QUEUE_PER_PERSON", "2")
    manager = manager_on(tmp_path / "runs")
    own = manager.store.create(TrainConfig(epochs=1), owner="ana")
    sweep, step = start_sweep(manager, grid_spec(values=(0.001, 0.01)), owner="ana")
    assert len(step.queued) == 1 and "you have 2 runs waiting" in step.problem
    pending = [t for t in sweep.trials() if "run_id" not in t.user_attrs]
    assert len(pending) == 1 and len(sweep.trials()) == 2
    assert manager.store.cancel(own.run_id)
    again, step = start_sweep(manager, grid_spec(values=(0.001, 0.01)), owner="ana")
    assert len(step.queued) == 1 and len(again.trials()) == 2
    queued = manager.store.get(step.queued[0]).read_config().learning_rate
    assert queued == pending[0].params["learning_rate"]
    assert driver.budget_used(again) == 2 and not driver.more_to_ask(again)


def test_stop_cancels_the_queued_trials_and_asks_for_no_more(tmp_path):
    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep, stop_sweep
    from core.sweeps.study import Sweep
    manager = manager_on(tmp_path / "runs")
    sweep, step = start_sweep(manager, grid_spec(values=(0.001, 0.01)), owner=None)
    stopped = stop_sweep(manager, Sweep.open(manager.store, "g"))
    assert sorted(stopped.cancelled) == sorted(step.queued) and not stopped.stopping
    assert {manager.store.get(r).read_status()["state"] for r in step.queued} == {"cancelled"}
    sweep = Sweep.open(manager.store, "g")
    assert {t.state.name for t in sweep.trials()} == {"FAIL"} and driver.state_of(sweep) == "stopped"
    assert driver.step(sweep, lambda *a: pytest.fail("a stopped sweep queues nothing"), in_flight=5).queued == []


def test_a_database_from_before_sweeps_gives_its_version_table_to_optuna(tmp_path):
    """Optuna keeps its schema's revision in `alembic_version`; the lab's moves to a table of its own
    (core/store/database.py) on the next upgrade, its runs untouched, and both schemas then live side by side."""
    import optuna
    import sqlalchemy as sa

    from core.settings.config import TrainConfig
    from core.store.database import HEAD_REVISION, VERSION_TABLE, forget_databases
    store = RunStore(tmp_path / "runs")
    run = store.create(TrainConfig(epochs=1))
    with store.db.engine.begin() as conn:        # as a database written before this change
        conn.execute(sa.text(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version"))
    forget_databases()
    store = RunStore(tmp_path / "runs")
    assert [s.run_id for s in store.list()] == [run.run_id] and store.db.revision() == HEAD_REVISION
    optuna.create_study(study_name="side by side", storage=store.db.url)
    forget_databases()
    store = RunStore(tmp_path / "runs")
    assert [s.run_id for s in store.list()] == [run.run_id] and store.db.revision() == HEAD_REVISION
    assert optuna.load_study(study_name="side by side", storage=store.db.url).trials == []


def test_the_pruning_callback_reports_each_epoch_and_never_prunes_the_last():
    """Behind the median after epoch 1 of 3: pruned, the model told to stop. The same figure after
    the last epoch: reported, not pruned (nothing is left to save, and the trial completes). An
    epoch a stop cut short has no validation figure: nothing reported."""
    import keras
    import optuna

    from core.training.pruning import PruneCheck
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                                                                          n_warmup_steps=1))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.9, 2: 0.9, 3: 0.9}))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    checks = []
    for last_epoch, epoch in ((3, 0), (3, 2)):
        check = PruneCheck(study.ask(), "val_accuracy", last_epoch)
        check.set_model(model)
        model.stop_training = False
        check.on_epoch_end(epoch, {"loss": 1.0})                        # cut short: no figure
        check.on_epoch_end(epoch, {"val_accuracy": float("nan")})
        check.on_epoch_end(epoch, {"val_accuracy": 0.2})
        checks.append((check.pruned, model.stop_training))
    assert checks == [(True, True), (False, False)]
    assert [t.intermediate_values for t in study.trials[2:]] == [{1: 0.2}, {3: 0.2}]


# --- trials that train (the tests' small EfficientNet, a few hundred fixture images) ------------
@pytest.mark.slow
@pytest.mark.small_network
def test_a_trial_behind_the_others_is_pruned_with_its_curve_kept(tmp_path, fixture_data_dir):
    """Two earlier trials reached 100% validation accuracy at every epoch; `sweep run` continues the
    sweep with a real trial, whose first epoch is behind their median: the pruner ends it `pruned`
    after that epoch, its metrics and checkpoint kept, PRUNED in the study that load_study reads."""
    import optuna

    from core.sweeps.study import create_sweep
    from core.sweeps.sweep_file import read_sweep_file
    runs = tmp_path / "runs"
    path = sweep_file(tmp_path, name="prune me", method="random", pruning="median", run_cap=3, parameters={
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "epochs": {"value": 3}, **TINY})
    spec = read_sweep_file(path)
    sweep, _ = create_sweep(RunStore(runs), spec, owner=None, driver="cli")
    lr = {"learning_rate": spec.params[0].optuna_distribution()}
    for _ in range(2):
        sweep.study.add_trial(optuna.trial.create_trial(params={"learning_rate": 1e-3}, distributions=lr, value=1.0,
                                                         intermediate_values={1: 1.0, 2: 1.0, 3: 1.0}))
    result = cli("--runs-dir", str(runs), "--data-dir", fixture_data_dir, "sweep", "run", path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continuing sweep prune me: 2 trials so far" in result.stderr
    (folder,) = run_folders(runs)
    run = RunStore(runs).get(folder.name)
    assert run.read_status()["state"] == "pruned" and run.checkpoint("last") is not None
    assert [m["epoch"] for m in run.read_metrics()] == [1]
    trial = optuna.load_study(study_name="prune me", storage=f"sqlite:///{runs / 'lab.db'}").trials[2]
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    assert trial.user_attrs["run_id"] == folder.name
    listed = [json.loads(line) for line in cli("--runs-dir", str(runs), "runs", "--json").stdout.splitlines()]
    assert [(r["name"], r["state"]) for r in listed] == [("prune me · trial 3", "pruned")]


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.small_network
def test_a_grid_sweep_from_the_cli_carries_on_after_its_driver_is_killed(tmp_path, fixture_data_dir):
    """`sweep run` on a W&B-style grid file is SIGKILLed during its first trial; run again, it waits for
    that trial's lease to lapse, resumes it (same run, every epoch once), trains the second, and
    both are ordinary completed runs that `runs` lists and Optuna's load_study reads."""
    import optuna
    runs = tmp_path / "runs"
    path = write(tmp_path, "name: lr grid\nmethod: grid\nprogram: train.py\nmetric: {name: val_accuracy, goal: "
                 "maximize}\nparameters:\n  learning_rate: {values: [0.001, 0.01]}\n  epochs: {value: 2}\n"
                 + "".join(f"  {k}: {{value: {json.dumps(v['value'])}}}\n" for k, v in TINY.items()))
    where = ["--runs-dir", str(runs), "--data-dir", fixture_data_dir]
    first = subprocess.Popen([sys.executable, "-m", "core", *where, "sweep", "run", path], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: run_folders(runs) and RunStore(runs).get(run_folders(runs)[0].name).read_metrics(),
                 300, "the first trial's first epoch")
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(30)
    killed = run_folders(runs)[0].name
    result = cli(*where, "sweep", "run", path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continuing sweep lr grid: 1 trials so far" in result.stderr
    store = RunStore(runs)
    summaries = store.list()
    assert len(summaries) == 2 and {s.state for s in summaries} == {"completed"}
    assert [m["epoch"] for m in store.get(killed).read_metrics()] == [1, 2]
    study = optuna.load_study(study_name="lr grid", storage=store.db.url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(t.params["learning_rate"] for t in study.trials) == [0.001, 0.01]
    assert {t.user_attrs["run_id"] for t in study.trials} == {s.run_id for s in summaries}
    listed = cli("--runs-dir", str(runs), "runs").stdout
    assert "lr grid · trial 1" in listed and "lr grid · trial 2" in listed


def test_dashboards_on_one_database_take_turns_at_a_sweeps_step(tmp_path, database):
    """Two dashboards on one database (or a page and the scheduler's tick) stepping one sweep at
    once both saw room for the last trial and asked it twice. Now one step at a time: while another
    server holds the sweep's step, this one's is skipped; a holder that died is taken over once its
    lease expires; and eight servers stepping together ask each trial once."""
    import threading

    from core.sweeps.queueing import step_in_dashboard
    from core.sweeps.study import Sweep, create_sweep
    ana, ben = manager_on(tmp_path / "runs"), manager_on(tmp_path / "runs")
    sweep, _ = create_sweep(ana.store, grid_spec(values=(0.001, 0.01, 0.1)), owner="ana", driver="dashboard")
    assert ana.store.take_lease("sweep step: g", "a server that died mid-step", seconds=1.5)
    assert step_in_dashboard(ben, sweep).queued == [] and sweep.trials() == []
    assert not ben.store.take_lease("sweep step: g", "another", seconds=60)
    time.sleep(1.6)
    assert len(step_in_dashboard(ben, sweep).queued) == 3
    assert step_in_dashboard(ana, Sweep.open(ana.store, "g")).queued == []      # its budget is spent

    servers = [manager_on(tmp_path / "runs") for _ in range(8)]
    crowd, _ = create_sweep(ana.store, grid_spec(name="crowd", values=(0.001, 0.002, 0.003, 0.004, 0.005)),
                            owner="ana", driver="dashboard")
    go = threading.Barrier(len(servers))

    def step(server):
        go.wait()
        step_in_dashboard(server, Sweep.open(server.store, "crowd"))

    threads = [threading.Thread(target=step, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(crowd.trials()) == 5
    assert len([s for s in ana.store.list() if s.name.startswith("crowd")]) == 5


def test_a_dashboard_sweep_resumes_a_trial_its_killed_server_left_interrupted(tmp_path):
    """The server died mid-trial: its run reads interrupted once the lease lapses, and the next
    scheduler step puts that same run back in the queue (it resumes from its checkpoint) instead of
    failing the trial; a trial stopped by hand stays stopped."""
    from core.sweeps.queueing import start_sweep, step_in_dashboard
    manager = manager_on(tmp_path / "runs")
    sweep, step = start_sweep(manager, grid_spec(values=(0.001, 0.01)), owner="ana")
    interrupted, stopped = (manager.store.get(r) for r in step.queued)
    ended(interrupted, "interrupted")
    ended(stopped, "stopped")
    result = step_in_dashboard(manager, sweep)
    assert result.to_continue == [interrupted.run_id] and not result.queued
    assert interrupted.read_status()["state"] == "queued" and stopped.read_status()["state"] == "stopped"
    assert {t.state.name for t in sweep.trials()} == {"RUNNING", "FAIL"}


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.small_network
def test_a_dashboard_sweep_trains_through_the_queue_and_finishes_by_itself(tmp_path, fixture_data_dir):
    """As the Sweep page starts one: the trials are queued as the person's runs, a server's job
    manager trains them one slot at a time, and its periodic tick tells each result to Optuna and
    queues the next (TPE: one at a time), until the sweep reads finished."""
    from core.sweeps import driver
    from core.sweeps.queueing import start_sweep
    from core.sweeps.study import Sweep
    from core.sweeps.sweep_file import sweep_from_dict
    from dashboard.state import dashboard_job_manager
    manager = dashboard_job_manager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    spec = sweep_from_dict({"name": "tpe", "method": "bayes", "run_cap": 2, "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "epochs": {"value": 1}, **TINY}})
    _, step = start_sweep(manager, spec, owner="ana")
    assert len(step.queued) == 1                      # TPE asks the next knowing this one's result
    wait_for(lambda: driver.finished(Sweep.open(manager.store, "tpe")), 300, "the sweep to finish")
    summaries = manager.store.list()
    assert sorted(s.name for s in summaries) == ["tpe · trial 1", "tpe · trial 2"]
    assert {s.owner for s in summaries} == {"ana"} and {s.state for s in summaries} == {"completed"}
    assert [t.state.name for t in Sweep.open(manager.store, "tpe").trials()] == ["COMPLETE", "COMPLETE"]
