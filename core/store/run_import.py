"""Run folders into the run database: those written before the database existed, and those copied
in from another lab (a finished run's folder carries its config, status, metrics and curves).

Nothing is lost on the way: whatever a folder holds is imported as it is; a folder that cannot be
read whole is imported as damaged, with the reason, and listed (never deleted); a run that a file
says is training cannot be alive under this database (its trainer wrote files, not rows) and is
imported as interrupted, resumable from its last checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa

from core.settings.config import TrainConfig
from core.store import run_files, safe_io
from core.store.database import batches as batches_table, metrics as metrics_table, runs as runs_table
from core.store.run_files import CONFIG_FILE, METRIC_COLUMNS, STATUS_FILE, is_run_id
from core.store.states import STATES, TRAINING_STATES, RunState

IMPORTED_INTERRUPTED = ("its training process was not running under this lab's run database when it was "
                        "imported; resume continues from the last checkpoint")


def import_new_folders(store) -> list[str]:
    """Imports every run folder in `store.root` that the database does not know; returns their ids."""
    if not store.root.is_dir():
        return []
    on_disk = {p.name for p in store.root.iterdir() if is_run_id(p.name) and p.is_dir() and not p.is_symlink()}
    if not on_disk:
        return []
    with store.db.read() as conn:
        known = set(conn.execute(sa.select(runs_table.c.run_id)).scalars())
    new = sorted(on_disk - known)
    for run_id in new:
        import_folder(store, store.root / run_id)
    return new


def import_folder(store, folder: Path) -> str:
    """One run folder into the database (nothing happens when it is there already); its id."""
    run_id = folder.name
    damaged, unreadable = "", False
    try:
        config = TrainConfig.from_json(safe_io.read_text(folder / CONFIG_FILE)).to_dict()
    except FileNotFoundError:
        config, damaged = None, f"{CONFIG_FILE} is missing"
    except (OSError, ValueError, RecursionError) as exc:
        config, damaged = None, f"{CONFIG_FILE} is unreadable: {exc}"[:300]
    try:
        status = run_files.read_json(folder / STATUS_FILE)
        if status.get("state") not in STATES:
            raise ValueError(f"unknown state {str(status.get('state'))[:40]!r}")
    except FileNotFoundError:
        status, damaged, unreadable = {}, f"{STATUS_FILE} is missing", True
    except (OSError, ValueError) as exc:
        status, damaged, unreadable = {}, f"{STATUS_FILE} is unreadable: {exc}"[:300], True
    state = status.get("state", RunState.FAILED)
    if state in TRAINING_STATES:
        state, status["error"] = RunState.INTERRUPTED, IMPORTED_INTERRUPTED
    if unreadable:
        status.update(unreadable=True, error=damaged)
    kind = status.get("kind") if status.get("kind") in run_files.KINDS else "train"
    for column in ("state", "kind", "heartbeat", "lease_owner"):
        status.pop(column, None)
    queued_at = status.pop("queued_at", None)
    row = {"run_id": run_id, "kind": kind, "state": state, "config": config, "status": run_files.finite(status),
           "queued_at": queued_at if isinstance(queued_at, (int, float)) else None, "damaged": damaged,
           "progress": run_files.finite(run_files.read_progress(folder)) or None,
           "heartbeat": _number_or_none(status.get("ended_at"))}
    metrics = [{"run_id": run_id, **{k: (m["epoch"] if k == "epoch" else run_files.finite(m[k])) for k in METRIC_COLUMNS}}
               for m in run_files.read_metrics(folder)]
    batches = [{"run_id": run_id, "epoch": epoch, "batch": batch, "loss": run_files.finite(loss),
                "accuracy": run_files.finite(accuracy)}
               for epoch, reports in run_files.read_batches(folder).items() for batch, loss, accuracy in reports]
    try:
        with store.db.write() as conn:
            if conn.execute(sa.select(runs_table.c.run_id).where(runs_table.c.run_id == run_id)).scalar_one_or_none():
                return run_id                               # another process imported it first
            conn.execute(sa.insert(runs_table).values(**row))
            if metrics:
                conn.execute(sa.insert(metrics_table), metrics)
            if batches:
                conn.execute(sa.insert(batches_table), batches)
    except sa.exc.IntegrityError:
        pass                                                # another process imported (or created) it first
    return run_id


def import_from(store, source: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """`python -m core import DIR`: copies each run folder of `source` that `store` does not hold
    into its runs folder and imports it. Returns (imported ids, [(id, why it was skipped)])."""
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    imported, skipped = [], []
    store.root.mkdir(parents=True, exist_ok=True)
    same = source.resolve() == store.root.resolve()
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.is_symlink()):
        if not is_run_id(folder.name):
            continue
        target = store.root / folder.name
        if not same:
            if target.exists():
                skipped.append((folder.name, f"{target} exists already"))
                continue
            shutil.copytree(folder, target, symlinks=True)
        with store.db.read() as conn:
            known = conn.execute(sa.select(runs_table.c.run_id).where(runs_table.c.run_id == folder.name)) \
                .scalar_one_or_none()
        if known:
            skipped.append((folder.name, "the database holds it already"))
            continue
        import_folder(store, target)
        imported.append(folder.name)
    return imported, skipped


def _number_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
