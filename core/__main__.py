"""Command line: the same engine as the dashboard, without a browser.

    python -m core train [--preset NAME] [--config FILE] [--variant b0] [--epochs 4] ... (a flag per TrainConfig field)
                         [--ray-address HOST:PORT]   (train as a Ray task on that cluster; README "Ray")
    python -m core presets              (the presets, with the figures measured for them)
    python -m core resume RUN_ID [--epochs N] [--ray-address HOST:PORT]
    python -m core runs [--json]        (--json: one JSON object per run, for scripts)
    python -m core metrics RUN_ID       (its per-epoch metrics as CSV, as the Runs page downloads them)
    python -m core stop RUN_ID          (a run training anywhere on the same runs folder)
    python -m core cancel RUN_ID        (a run waiting in the dashboard's queue)
    python -m core evaluate RUN_ID [--checkpoint last|best]
    python -m core db upgrade           (bring the run database to this version's schema)
    python -m core import DIR           (run folders from another lab, or from before the database)
    python -m core sweep run|create FILE | status|stop NAME | list   (W&B-format sweep files, core/sweeps)
    python -m core work RUN_ID --epochs N --claimed-at T   (EFFLAB_EXECUTOR=process's worker: not for people)

`train` and `resume` train at once, in this process or (--ray-address, or $EFFLAB_RAY_ADDRESS) as a
Ray task on a worker the cluster picks, watched from here; the dashboard's queue is for its own Starts.
Exit codes: 0 done; 2 invalid settings or missing data, a run that cannot be stopped or
cancelled, or a Ray cluster that cannot be reached (one line naming the problem; the run stays
queued); 1 the run failed or was interrupted (its trainer died: resume it); 130 stopped (Ctrl-C, or
Stop from the dashboard or `python -m core stop`): a checkpoint of the batches trained so far is kept,
and resume goes on from the next batch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from core.analysis.evaluate import evaluate
from core.data.cifar10 import DataError, check_train_limit, load_cifar10
from core.errors import UserInputError
from core.jobs.executors.process import work
from core.jobs.scheduler import JobError, JobManager
from core.settings.config import ConfigError, TrainConfig, declaration, declared_fields
from core.settings.presets import PRESET_NAMES, PRESETS, get_preset
from core.store.run_import import import_from
from core.store.runs import METRIC_COLUMNS, RunNotFoundError
from core.store.states import RunState
from core.sweeps.commands import add_sweep_parsers, run_command
from core.training import processes
from core.training.follower import FollowerRun
from core.training.progress import Progress, format_clock

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_STOPPED = 0, 1, 2, 130
POLL_SECONDS = 0.5
BAR_WIDTH = 28


class InputError(Exception):
    """Bad settings or missing data: exit 2 with one line."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="EfficientNet Lab engine")
    parser.add_argument("--runs-dir", help="where runs are kept (default: $EFFLAB_RUNS_DIR or ./runs)")
    parser.add_argument("--data-dir", help="CIFAR-10 location (default: $EFFLAB_DATA_DIR, else Keras's download)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="start a new run")
    train.add_argument("--preset", help=f"start from a preset ({', '.join(PRESET_NAMES)}; see `python -m core "
                       "presets`); --config and flags override it")
    train.add_argument("--config", help="a JSON file of settings; flags override it")
    train.add_argument("--name", default="", help="a name for the run, shown wherever it is listed")
    train.add_argument("--author", default="", help="who started it")
    defaults = TrainConfig()
    for f in declared_fields():
        s = declaration(f.name)
        # argparse %-formats help texts: a "%" of ours must be doubled.
        help_text = f"{s.plain_help} Allowed: {s.allowed_text()}; default {getattr(defaults, f.name)}.".replace("%", "%%")
        if f.type == "bool":
            train.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        else:
            # Parsed as text and typed by us (no argparse `choices`), so a bad value gets the same
            # one-line message as everywhere.
            names = s.choices + (("PATH",) if s.path_allowed else ())
            metavar = "{" + ",".join(names) + "}" if names else f.type.upper()
            train.add_argument(_flag(f.name), dest=f.name, default=None, metavar=metavar, help=help_text)

    resume = commands.add_parser("resume", help="continue a stopped, interrupted or finished run")
    resume.add_argument("run_id")
    resume.add_argument("--epochs", default=None, help="total epochs to reach (default: the run's target)")

    runs = commands.add_parser("runs", help="list runs (queued ones with their place in line)")
    runs.add_argument("--json", action="store_true", help="one JSON object per line and run, for scripts")
    metrics = commands.add_parser("metrics", help="a run's per-epoch metrics as CSV")
    metrics.add_argument("run_id")
    db = commands.add_parser("db", help="the run database (SQLite in the runs folder, or $EFFLAB_DB_URL)")
    db.add_argument("action", choices=("upgrade",), help="upgrade: bring its schema to this version's")
    import_ = commands.add_parser("import", help="import the run folders of another runs folder (copied in)")
    import_.add_argument("folder", help="a runs folder, from another lab or from before the database")
    commands.add_parser("presets", help="list the presets with the figures measured for them")
    stop = commands.add_parser("stop", help="stop a run training anywhere on this runs folder")
    stop.add_argument("run_id")
    cancel = commands.add_parser("cancel", help="take a queued run out of the dashboard's queue")
    cancel.add_argument("run_id")
    # The process executor's worker (core/jobs/executors/process.py): trains a run its server has claimed.
    worker = commands.add_parser("work", help=argparse.SUPPRESS)
    worker.add_argument("run_id")
    worker.add_argument("--epochs", type=int, required=True)
    worker.add_argument("--claimed-at", type=float, required=True)
    worker.add_argument("--parent-pid", type=int, default=None)

    evaluate_cmd = commands.add_parser("evaluate", help="test-set report of a run")
    evaluate_cmd.add_argument("run_id")
    evaluate_cmd.add_argument("--checkpoint", choices=("last", "best"), default=None,
                              help="predict again from this checkpoint (default: use predictions.npz, "
                                   "or the last checkpoint when there are none)")
    for p in (train, resume):
        p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                       help="train as a task on this Ray cluster (its head's address; default "
                            "$EFFLAB_RAY_ADDRESS, else in this process); every node must see the same "
                            "runs folder and data, see README \"Ray\"")
    sweep = add_sweep_parsers(commands)   # `sweep` and its actions: each takes --runs-dir too
    for p in (train, resume, evaluate_cmd, stop, cancel, runs, metrics, db, import_, worker, commands.choices["presets"],
              *sweep):
        p.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _typed(name: str, text: str):
    kind = next(f.type for f in fields(TrainConfig) if f.name == name)
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            # A whole number stays exact: one too large for a float is then refused showing its
            # digits (TrainConfig names the field), not as "inf".
            digits = text.strip().lstrip("+-")
            return int(text) if digits.isascii() and digits.isdigit() else float(text)
    except ValueError:
        raise ConfigError(name, "a whole number" if kind == "int" else "a number", text) from None
    return text


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset's settings (if any), then the --config file's, then the flags'."""
    values: dict = dict(get_preset(args.preset).settings) if getattr(args, "preset", None) else {}
    if args.config:
        try:
            text = Path(args.config).read_text(encoding="utf-8")
            from_file = TrainConfig.from_json(text).to_dict()
            # Only the settings the file names override a preset (it validated above, so it parses).
            values.update({name: from_file[name] for name in json.loads(text)})
        except OSError as exc:
            raise InputError(f"--config: cannot read {args.config}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"--config: expected a UTF-8 JSON text file; got binary data in {args.config}") from None
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given if f.type == "bool" else _typed(f.name, given)
    return TrainConfig.from_dict(values)


def progress_line(p: dict) -> str:
    """One line: phase, epoch, a batch bar, ETA, images/s, loss and accuracy."""
    batches, batch = int(p.get("batches") or 0), int(p.get("batch") or 0)
    filled = int(BAR_WIDTH * batch / batches) if batches else 0
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [f"epoch {p.get('epoch', 0)}/{p.get('epochs', '?')}", f"[{bar}] {batch}/{batches}"]
    if p.get("eta_seconds") is not None:
        parts.append(f"ETA {format_clock(p.get('eta_seconds'))}")
    if p.get("images_per_second") == p.get("images_per_second") and p.get("images_per_second"):
        parts.append(f"{p['images_per_second']:.0f} img/s")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4f} acc {p.get('accuracy', float('nan')):.3f}")
    parts.append(f"({p.get('phase', p.get('state', ''))})")
    return "  ".join(parts)


def watch(manager: JobManager, run_id: str) -> int:
    """Shows progress until the job ends; Ctrl-C stops it with a checkpoint."""
    interactive = sys.stderr.isatty()

    def on_interrupt(signum, frame):
        if manager.stop(run_id):
            print("\nstopping at the next batch, saving a checkpoint ... (Ctrl-C again to abort)",
                  file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    print(f"run {run_id} in {manager.store.root}", file=sys.stderr)
    last_epoch_reported, last_line_at = None, 0.0

    def report_a_new_epoch(p: dict) -> None:
        nonlocal last_epoch_reported
        row = p.get("last_epoch")
        if row and row.get("epoch") != last_epoch_reported:
            last_epoch_reported = row["epoch"]
            print(("\r" if interactive else "") + f"epoch {row['epoch']}: loss {row['loss']:.4f} "
                  f"acc {row['accuracy']:.3f} val_loss {row['val_loss'] or float('nan'):.4f} "
                  f"val_acc {row['val_accuracy'] or float('nan'):.3f} lr {row['learning_rate']:.2e} "
                  f"{row['images_per_second']:.0f} img/s {row['epoch_seconds']:.0f}s" + " " * 10,
                  file=sys.stderr)

    while not manager.wait(POLL_SECONDS):
        p = manager.progress(run_id)
        report_a_new_epoch(p)
        if interactive:
            print("\r" + progress_line(p)[:200].ljust(120), end="", file=sys.stderr, flush=True)
        elif time.time() - last_line_at > 10:   # logs (CI, nohup) get a line every 10 s
            last_line_at = time.time()
            print(progress_line(p), file=sys.stderr, flush=True)
    # An epoch that ended within the last poll (just before a stop, or the run's last) is reported too.
    report_a_new_epoch(manager.progress(run_id))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = manager.store.get(run_id).live_status()
    print(file=sys.stderr)
    if status["state"] == RunState.COMPLETED:
        print(f"completed: test accuracy {status.get('test_accuracy', float('nan')):.4f} "
              f"(run {run_id})")
        return EXIT_OK
    if status["state"] == RunState.STOPPED:
        run = manager.store.get(run_id)
        kept, batch = run.checkpoint_epoch(), run.checkpoint_batch()
        where = (f"at epoch {kept + 1}, batch {batch} (a checkpoint keeps the batches trained)" if batch else
                 f"after epoch {kept} (its checkpoint is kept)" if kept else
                 "with no checkpoint yet (resume starts the run again)")
        print(f"stopped {where}; continue with: python -m core resume {run_id} --epochs N")
        return EXIT_STOPPED
    if status["state"] == RunState.PRUNED:   # a sweep's trial its pruner ended: a result, not a failure
        print(f"pruned after epoch {status.get('epoch', '?')}: behind the sweep's other trials "
              f"(its curve is kept; run {run_id})")
        return EXIT_OK
    if status["state"] == RunState.INTERRUPTED:
        print(f"interrupted: {status.get('error')}; continue with: python -m core resume {run_id}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"error: run {run_id} failed: {status.get('error')}", file=sys.stderr)
    return EXIT_INPUT if status.get("error_kind") == "input" else EXIT_FAILED


def _check_data(data_dir, config: TrainConfig | None = None) -> None:
    """The data loads, and (given a config) holds the training images it asks for: exit 2 now,
    not a failed run after TensorFlow has started."""
    try:
        cifar = load_cifar10(data_dir)   # cached in memory: the training thread reuses the arrays
    except DataError as exc:
        raise InputError(f"data: {exc}") from None
    if config is not None and config.train_limit:
        check_train_limit(config.train_limit, config.val_fraction, cifar.y_train)


def _data_is_here(manager: JobManager) -> bool:
    """Whether the data should be checked on this machine: it trains here, or a data folder is named
    (a Ray node without that path uses its own EFFLAB_DATA_DIR, and reports a problem in the run)."""
    return manager.trains_here or bool(manager.data_dir)


def cmd_train(args, manager: JobManager) -> int:
    config = config_from_args(args)
    for note in config.warnings():
        print(f"warning: {note}", file=sys.stderr)
    if _data_is_here(manager):
        _check_data(manager.data_dir, config)
    if processes.several():
        processes.check(os.environ.get("KERAS_BACKEND", "tensorflow"), config.distribution)
        _join_processes()
        if processes.process_index() > 0:
            return follow(config, None, config.epochs, manager.data_dir)
    return watch(manager, manager.start(config, name=args.name, author=args.author, queue=False))


def _join_processes() -> None:
    """Connects to the run's other processes now: JAX must do it before anything else touches a
    device (the trainer asks which GPUs there are before it builds the model)."""
    from core.training.backend import join_processes
    print(f"process {processes.process_index()} of {processes.process_count()}: waiting for the others",
          file=sys.stderr, flush=True)
    join_processes()


def follow(config: TrainConfig, source, target_epochs: int, data_dir: str | None) -> int:
    """Process 1, 2, ... of a run over several processes (core/training/processes.py): trains its part of
    every batch beside process 0, which writes the run folder; this process writes nothing."""
    from core.training.train import train_run
    index, count = processes.process_index(), processes.process_count()
    print(f"process {index} of {count}: training beside process 0, which writes the run folder",
          file=sys.stderr, flush=True)
    outcome = train_run(FollowerRun(config, source), target_epochs=target_epochs,
                        stop_event=threading.Event(), progress=Progress(), data_dir=data_dir)
    print(f"process {index} of {count}: {outcome.state}" + (f": {outcome.error}" if outcome.error else ""),
          file=sys.stderr if outcome.error else sys.stdout)
    codes = {RunState.COMPLETED: EXIT_OK, RunState.STOPPED: EXIT_STOPPED}
    return codes.get(outcome.state, EXIT_INPUT if outcome.error_kind == "input" else EXIT_FAILED)


def cmd_resume(args, manager: JobManager) -> int:
    epochs = None
    if args.epochs is not None:
        try:
            epochs = int(args.epochs)
        except ValueError:
            raise ConfigError("epochs", "a whole number", args.epochs) from None
    run = manager.store.get(args.run_id)   # an unknown or malformed id is the problem to report first
    if _data_is_here(manager):
        _check_data(manager.data_dir)
    if processes.several():
        config = run.read_config()
        processes.check(os.environ.get("KERAS_BACKEND", "tensorflow"), config.distribution)
        _join_processes()
        if processes.process_index() > 0:
            target = epochs if epochs is not None else int(run.read_status().get("epochs") or config.epochs)
            return follow(config, run, target, manager.data_dir)
    where = where_it_resumes(run)     # read before the trainer starts: it moves the checkpoint on
    run_id = manager.resume(args.run_id, epochs, queue=False)
    if where:
        print(where, file=sys.stderr, flush=True)
    return watch(manager, run_id)


def where_it_resumes(run) -> str:
    """'resuming at epoch E, batch B of N' when a Stop (or a kill after a periodic save) left an
    epoch unfinished (B is the first batch it trains); "" at an epoch's start."""
    batch = run.checkpoint_batch()
    if not batch:
        return ""
    batches = (run.read_status().get("checkpoint_partial") or {}).get("steps", "?")
    return (f"resuming at epoch {run.checkpoint_epoch() + 1}, batch {batch + 1} of {batches} "
            f"(batches 1-{batch} were trained already)")


def run_record(summary, status: dict) -> dict:
    """One run as `runs --json` prints it: what a script needs, named as the dashboard names it."""
    return {"run_id": summary.run_id, "state": summary.state, "epoch": summary.epochs_done, "epochs": summary.epochs,
            "best_val_accuracy": summary.best_val_accuracy, "test_accuracy": summary.test_accuracy,
            "name": summary.name, "owner": summary.author, "kind": summary.kind, "executor": status.get("executor"),
            "host": status.get("host"), "pid": status.get("pid"), "damaged": summary.damaged or None}


def cmd_runs(args, manager: JobManager) -> int:
    runs = manager.store.list()
    if getattr(args, "json", False):
        for summary in runs:
            try:
                status = manager.store.get(summary.run_id).read_status()
            except RunNotFoundError:
                status = {}
            print(json.dumps(run_record(summary, status)))
        return EXIT_OK
    if not runs:
        print(f"no runs in {manager.store.root}")
        return EXIT_OK
    place = {s.run_id: i for i, s in enumerate(manager.store.queue(), start=1)}
    print(f"{'run':<26} {'state':<14} {'var':<4} {'epochs':>7} {'best val':>9} {'test':>7} {'time':>8}  "
          f"{'name':<30} note")
    for r in runs:
        pct = lambda v: f"{100 * v:.1f}%" if v is not None else "-"   # noqa: E731
        state = f"queued #{place[r.run_id]}" if r.run_id in place else r.state
        note = r.damaged or r.error
        print(f"{r.run_id:<26} {state:<14} {r.variant:<4} {f'{r.epochs_done}/{r.epochs}':>7} "
              f"{pct(r.best_val_accuracy):>9} {pct(r.test_accuracy):>7} {format_clock(r.duration_seconds):>8}  "
              f"{r.label[:30]:<30} {note[:70]}")
    return EXIT_OK


def cmd_stop(args, manager: JobManager) -> int:
    run = manager.store.get(args.run_id)
    if not manager.stop(args.run_id):
        state = run.live_status()["state"]
        hint = "; cancel a queued run with: python -m core cancel RUN_ID" if state == RunState.QUEUED else ""
        raise InputError(f"run {args.run_id} is {state}, not training: nothing to stop{hint}")
    print(f"stop requested: run {args.run_id} stops at its next batch (within a few seconds)")
    return EXIT_OK


def cmd_cancel(args, manager: JobManager) -> int:
    run = manager.store.get(args.run_id)
    if not manager.cancel(args.run_id):
        raise InputError(f"run {args.run_id} is {run.live_status()['state']}, not queued: nothing to cancel")
    print(f"cancelled: run {args.run_id} left the queue (resume it later to queue it again)")
    return EXIT_OK


def _as_flag(name: str, value) -> str:
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + name.replace("_", "-")
    return f"{_flag(name)} {value:g}" if isinstance(value, float) else f"{_flag(name)} {value}"


def cmd_presets(args, manager: JobManager) -> int:
    """Each preset: its name, what it does, the figure measured for it and the settings it sets."""
    for preset in PRESETS:
        print(f"{preset.name}\n  {preset.description}\n  measured: {preset.figure_text()}")
        for older in preset.measured[1:]:
            print(f"  also measured: {older.text()}")
        print("  settings: " + " ".join(_as_flag(k, v) for k, v in preset.settings.items()) + "\n")
    print("train one with: python -m core train --preset NAME [flags that override it]; "
          "every figure we have: docs/RECIPES.md")
    return EXIT_OK


def cmd_evaluate(args, manager: JobManager) -> int:
    run = manager.store.get(args.run_id)
    if args.checkpoint or not run.has_predictions():
        which = args.checkpoint or "last"
        if run.checkpoint(which) is None:
            raise InputError(f"run {args.run_id} has no {which} checkpoint and no predictions yet")
        _check_data(manager.data_dir)
        from core.training.train import evaluate_checkpoint
        print(f"predicting the test set from the {which} checkpoint ...", file=sys.stderr)
        evaluate_checkpoint(run, data_dir=manager.data_dir, which=which)
    y_true, y_prob = run.read_predictions()
    report = evaluate(y_true, y_prob)
    print(f"run {args.run_id}: {report.n} test images, top-1 {100 * report.top1_accuracy:.2f}%, "
          f"top-5 {100 * report.top5_accuracy:.2f}%\n")
    print(report.per_class.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nmost confused (true -> predicted):")
    for row in report.confused_pairs.head(10).itertuples():
        print(f"  {row.true:>10} -> {row.predicted:<10} {row.count:>5}  "
              f"({100 * row.share_of_true:.1f}% of {row.true})")
    return EXIT_OK


def cmd_metrics(args, manager: JobManager) -> int:
    rows = manager.store.get(args.run_id).read_metrics()
    writer = csv.DictWriter(sys.stdout, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v != v else v for k, v in row.items()} for row in rows)   # NaN: empty
    return EXIT_OK


def cmd_db(args, manager: JobManager) -> int:
    database = manager.store.db
    before = database.revision()
    database.upgrade(force=True)
    after = database.revision()
    print(f"{database.safe_url}: schema {after}" + (f" (was {before or 'empty'})" if before != after else
                                                     " (already up to date)"))
    return EXIT_OK


def cmd_work(args, manager: JobManager) -> int:
    """A worker process of EFFLAB_EXECUTOR=process: trains the run claimed at --claimed-at, its
    outcome recorded in the run store; exits as `train` would."""
    state = work(manager.store.root, args.run_id, args.epochs, args.claimed_at, manager.data_dir, args.parent_pid)
    print(f"worker {os.getpid()}: run {args.run_id} {state}", flush=True)
    code = {RunState.COMPLETED: EXIT_OK, RunState.STOPPED: EXIT_STOPPED}.get(state, EXIT_FAILED)
    # Its outcome is in the store: leave without the interpreter's teardown (TensorFlow's took
    # about 4 s, bench/README.md), which would hold the slot. A worker only, never in-process.
    sys.stderr.flush()
    os._exit(code)


def cmd_import(args, manager: JobManager) -> int:
    try:
        imported, skipped = import_from(manager.store, Path(args.folder))
    except FileNotFoundError as exc:
        raise InputError(f"import: {exc}") from None
    damaged = {s.run_id: s.damaged for s in manager.store.list(kinds=None) if s.damaged}
    for run_id in imported:
        print(f"imported {run_id}" + (f" (damaged: {damaged[run_id]})" if run_id in damaged else ""))
    for run_id, why in skipped:
        print(f"skipped {run_id}: {why}")
    print(f"{len(imported)} imported, {len(skipped)} skipped into {manager.store.root}")
    return EXIT_OK


def cmd_sweep(args, manager: JobManager) -> int:
    return run_command(args, manager, watch=watch, check_data=_check_data)


COMMANDS = {"sweep": cmd_sweep, "train": cmd_train, "resume": cmd_resume, "runs": cmd_runs, "evaluate": cmd_evaluate,
            "stop": cmd_stop, "cancel": cmd_cancel, "presets": cmd_presets, "metrics": cmd_metrics,
            "db": cmd_db, "import": cmd_import, "work": cmd_work}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.data_dir:
        os.environ["EFFLAB_DATA_DIR"] = args.data_dir
    try:
        # The CLI trains what it is asked for, now; the dashboard's queue is drained by the dashboard.
        # Made inside the try: a bad EFFLAB_EXECUTOR or runs folder is one line too, not a traceback.
        manager = JobManager(runs_dir=args.runs_dir, data_dir=args.data_dir, slots=1, drain_queue=False,
                             ray_address=getattr(args, "ray_address", None))
        return COMMANDS[args.command](args, manager)
    except (ConfigError, InputError, RunNotFoundError, UserInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
