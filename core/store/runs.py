"""The run store: every run's state in the lab's database, its artifacts in its folder.

Like MLflow's tracking store or TensorBoard's DataProvider, callers ask a `Run` for what they need
(its status, metrics, predictions, a checkpoint, a version stamp for their caches, a stop request)
and never name a table or a file. The database (core/store/database.py: SQLite in the runs folder, or
PostgreSQL) holds what several processes change at once: the state, the queue, each trainer's
lease, stop requests, live progress, metrics and per-batch curves. The run folder holds the
checkpoints, the test-set predictions, TensorBoard events and a readable export of the rest
(core/store/run_files.py), so a folder copied to another lab is imported with its history.

Every state change is one transaction and a compare-and-set against the table of allowed changes
(core/store/states.py): two Resumes pressed in two processes at once queue a run once, a late Stop
never reopens a finished run, a Stop never undoes the trainer's checkpoint. A trainer holds a
lease on its run, renewed by its heartbeat on the database's clock; whoever finds the lease expired
marks the run interrupted, and a trainer that lost its lease stops itself and writes nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from core.errors import CheckpointError
from core.settings.config import TrainConfig
from core.settings.env_settings import number_from_env
from core.store import ownership, run_files, safe_io, states
from core.store.database import Database, database_for
from core.store.database import batches as batches_table, leases as leases_table, metrics as metrics_table
from core.store.database import runs as runs_table
from core.store.run_files import (BATCH_COLUMNS, BATCHES_FILE, CONFIG_FILE, METRIC_COLUMNS,  # noqa: F401
                                  METRICS_FILE, STATUS_FILE)
from core.store.run_files import KINDS, RUN_ID_PATTERN, is_run_id  # noqa: F401 - the store's callers import them here
from core.store.run_import import import_folder, import_new_folders
from core.store.states import ACTIVE_STATES, RESUMABLE_STATES, STATES, TRAINING_STATES  # noqa: F401

PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.keras"
BEST_CHECKPOINT = "best.keras"
PARTIAL_CHECKPOINT = "partial.keras"    # mid-epoch weights; they count only while the status says so
TENSORBOARD_DIR = "tensorboard"
LR_FINDING_FILE = "lr_find.json"        # a learning-rate finder job's curve and suggestion
# Artifacts a caller may ask a version stamp of (for its caches): those in the database count
# their changes; those in the folder are stamped by their mtime.
DATABASE_ARTIFACTS = {"status": "status_version", "metrics": "metrics_version", "batches": "batches_version",
                      "progress": "progress_version"}
FILE_ARTIFACTS = {"config": CONFIG_FILE, "predictions": PREDICTIONS_FILE,
                  "last": f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}", "best": f"{CHECKPOINT_DIR}/{BEST_CHECKPOINT}",
                  "lr_find": LR_FINDING_FILE}
ARTIFACTS = (*DATABASE_ARTIFACTS, *FILE_ARTIFACTS)
CHECKPOINTS = ("last", "best", "partial")
_CHECKPOINT_FILES = {"last": LAST_CHECKPOINT, "best": BEST_CHECKPOINT, "partial": PARTIAL_CHECKPOINT}

# A trainer's lease on its run: renewed every HEARTBEAT_SECONDS, gone LEASE_SECONDS after the last
# renewal. Long enough that a loaded machine's late heartbeat does not end a live run; short enough
# that a killed one reads as interrupted within a minute. EFFLAB_LEASE_SECONDS changes it (tests).
LEASE_ENV = "EFFLAB_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0
STOP_POLL_SECONDS = 1.0          # how often a trainer looks for a stop request from elsewhere
# A named lease on shared work (RunStore.exclusive): far longer than the work (a sweep's step takes
# well under a second), so only a holder that died loses it.
EXCLUSIVE_SECONDS = 60.0
# fullmatch, not `$`: `$` also matches before a trailing newline.
RUN_ID_EXAMPLE = "20261125-142301-b0-3f9a"
LABEL_MAX_CHARS = 60
# Letters and digits of any script, spaces and everyday punctuation: no markup, no control characters.
# "·" names a sweep's trials ("lr sweep · trial 3", core/sweeps).
_LABEL_PUNCTUATION = set(" -–—_.,:;'’()+/=@#&!?%·")
INTERRUPTED_ERROR = ("the training process ended without finishing (killed, crashed or restarted); resume "
                     "continues from the last checkpoint")
# Leases this process hands out begin with this token: a run whose lease is ours while no thread
# of ours trains it was left by a thread that no longer exists (no need to wait for the lease).
_PROCESS_TOKEN = secrets.token_hex(6)
_ACTIVE_HERE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def lease_seconds() -> float:
    """How long a trainer's lease lasts without a heartbeat (EFFLAB_LEASE_SECONDS, 3 to 3600)."""
    return number_from_env(LEASE_ENV, DEFAULT_LEASE_SECONDS, 3, 3600, "a number of seconds")


def heartbeat_seconds() -> float:
    """How often a trainer renews its lease: four times per lease, at least every 5 s."""
    return min(5.0, lease_seconds() / 4)


HEARTBEAT_SECONDS = 5.0     # the default's; core.jobs.scheduler polls Ray tasks this often


class RunNotFoundError(LookupError):
    """A run id that is malformed, escapes the runs folder, or names no run."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("EFFLAB_RUNS_DIR", "runs"))


def check_label(field_name: str, text: Any) -> str:
    """A run's name or author: optional, at most LABEL_MAX_CHARS, letters, digits, spaces and
    everyday punctuation. Shown as plain text everywhere, and refused here if it carries markup.

    Raises:
        ValueError: naming the field, what is allowed and what was given.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"{field_name}: expected text; got {text!r}")
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) > LABEL_MAX_CHARS:
        raise ValueError(f"{field_name}: expected at most {LABEL_MAX_CHARS} characters; got {len(text)}")
    bad = sorted({ch for ch in text if not (ch.isalnum() or ch in _LABEL_PUNCTUATION)})
    if bad:
        raise ValueError(f"{field_name}: expected letters, digits, spaces and {''.join(sorted(_LABEL_PUNCTUATION - {' '}))}; "
                         f"got {text!r} (not allowed: {' '.join(repr(ch) for ch in bad)})")
    return text


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22); None where
    unknown. Recorded with the pid, to say which process trains a run (liveness is the lease's)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def trainer_identity() -> dict[str, Any]:
    """What the status records of the process that trains: pid, its start time, host (for people;
    whether it lives is the lease's business)."""
    return {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid()), "host": socket.gethostname()}


def mark_active(run_id: str, active: bool) -> None:
    """This process is (or no longer is) training `run_id` in one of its threads."""
    with _ACTIVE_LOCK:
        (_ACTIVE_HERE.add if active else _ACTIVE_HERE.discard)(run_id)


def is_active_here(run_id: str) -> bool:
    with _ACTIVE_LOCK:
        return run_id in _ACTIVE_HERE


@dataclass
class RunSummary:
    """One row of the run table; `damaged` holds the reason when the run cannot be read whole."""

    run_id: str
    state: str
    variant: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    batches_kept: int = 0     # batches of epoch epochs_done + 1 a mid-epoch save holds: resume goes on from there
    epochs: int = 0
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    started: str = ""
    duration_seconds: float | None = None
    error: str = ""
    damaged: str = ""
    has_predictions: bool = False
    name: str = ""
    author: str = ""
    queued_at: float | None = None
    kind: str = "train"
    ran_on: str = ""          # the trainer's host, "(Ray)" after it for a Ray task; "" until it trains
    owner: str | None = None  # who may act on it (core/store/ownership.py); None: nobody in particular

    @property
    def label(self) -> str:
        """"Ana — lr 3e-3" (name and author) or "" when neither was given."""
        return " — ".join(part for part in (self.name, self.author and f"by {self.author}") if part)


# Status fields that live in columns of their own (the rest are in the status JSON).
_COLUMN_FIELDS = ("state", "kind", "queued_at", "heartbeat")


def _status_of(row) -> dict[str, Any]:
    status = dict(row.status or {})
    status.update(state=row.state, kind=row.kind, queued_at=row.queued_at, heartbeat=row.heartbeat)
    return status


class Run:
    """One run: its row in the database and its folder. A Run got from a claim holds the run's lease:
    its writes count only while the lease is still its own (fencing)."""

    def __init__(self, path: Path, store: RunStore | None = None, lease: str | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        self.store = store if store is not None else RunStore(self.path.parent)
        self.lease = lease
        self.lease_lost = False

    @property
    def _db(self) -> Database:
        return self.store.db

    def _where(self):
        return runs_table.c.run_id == self.run_id

    # --- paths (private: nobody outside the store names a run file) ---------------------------
    def _file(self, name: str) -> Path:
        return self.path / name

    def _checkpoint_path(self, which: str) -> Path:
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint: expected one of {', '.join(CHECKPOINTS)}; got {which!r}")
        return self.path / CHECKPOINT_DIR / _CHECKPOINT_FILES[which]

    def checkpoint(self, which: str = "last") -> Path | None:
        """The path of the run's last (or best) checkpoint, to load; None when it has none."""
        path = self._checkpoint_path(which)
        return path if safe_io.is_regular_file(path) else None

    def version(self, artifact: str) -> float:
        """A stamp that changes whenever `artifact` changes (0.0 when absent): the key for caches
        of anything derived from it. Artifacts: see ARTIFACTS."""
        return self.versions(artifact)[0]

    def versions(self, *artifacts: str) -> tuple[float, ...]:
        for artifact in artifacts:
            if artifact not in ARTIFACTS:
                raise ValueError(f"artifact: expected one of {', '.join(ARTIFACTS)}; got {artifact!r}")
        counters = {}
        wanted = [a for a in artifacts if a in DATABASE_ARTIFACTS]
        if wanted:
            with self._db.read() as conn:
                row = conn.execute(sa.select(*(runs_table.c[DATABASE_ARTIFACTS[a]] for a in wanted))
                                   .where(self._where())).one_or_none()
            counters = dict(zip(wanted, row or (0,) * len(wanted)))
        return tuple(float(counters[a]) if a in counters else safe_io.modified_time(self.path / FILE_ARTIFACTS[a])
                     for a in artifacts)

    def tensorboard_dir(self) -> Path:
        """The folder TensorBoard event files go in (created on demand)."""
        folder = self.path / TENSORBOARD_DIR
        folder.mkdir(exist_ok=True)
        return folder

    # --- config ------------------------------------------------------------------------------
    def read_config(self) -> TrainConfig:
        """Raises ValueError (ConfigError) when the recorded config is damaged."""
        with self._db.read() as conn:
            config = conn.execute(sa.select(runs_table.c.config).where(self._where())).scalar_one_or_none()
        if not isinstance(config, dict):
            raise ValueError("config.json was unreadable when the run was imported")
        return TrainConfig.from_dict(config)

    # --- status ------------------------------------------------------------------------------
    def _row(self, conn, lock: bool = False):
        query = sa.select(runs_table, self._db.now().label("now")).where(self._where())
        row = conn.execute(query.with_for_update() if lock else query).one_or_none()
        if row is None:
            raise RunNotFoundError(f"no run {self.run_id!r} in {self.store.root}")
        return row

    def read_status(self) -> dict[str, Any]:
        """The run's status: state, epochs, errors, the trainer's identity, results. Raises
        RunNotFoundError when the run is gone."""
        with self._db.read() as conn:
            return _status_of(self._row(conn))

    def write_status(self, *, if_state: Sequence[str] | None = None, **changes: Any) -> dict[str, Any] | None:
        """Merges `changes` into the status in one transaction; returns the new status.

        Returns None and writes nothing when the run is not in one of `if_state`, when a `state`
        change is not allowed from the state it is in (core/store/states.py), or when this Run holds a
        lease that is no longer the run's (its trainer was declared gone meanwhile).
        """
        with self._db.write() as conn:
            row = self._row(conn, lock=True)
            if if_state is not None and row.state not in if_state:
                return None
            if self.lease is not None and row.lease_owner != self.lease:
                self.lease_lost = True
                return None
            target = str(changes.get("state", row.state))    # a RunState member as the word it is
            if target not in STATES or not states.allowed(row.state, target):
                return None
            status = {**(row.status or {}), **{k: v for k, v in changes.items() if k not in _COLUMN_FIELDS}}
            values: dict[str, Any] = {"state": target, "status": run_files.finite(status), "heartbeat": row.now,
                                      "status_version": row.status_version + 1}
            if "queued_at" in changes:
                values["queued_at"] = changes["queued_at"]
            if target not in TRAINING_STATES:                # whoever held the lease is done with it
                values.update(lease_owner=None, lease_expires_at=None)
            conn.execute(sa.update(runs_table).where(self._where()).values(**values))
            merged = {**status, "state": target, "kind": row.kind, "heartbeat": row.now,
                      "queued_at": values.get("queued_at", row.queued_at)}
            self._export_status(merged)
        if target not in TRAINING_STATES and self.lease is not None:
            self.lease = None                                    # released with that write
        return merged

    def _export_status(self, status: dict[str, Any]) -> None:
        # Inside the write transaction: two writers' exports land in the order of their commits.
        with contextlib.suppress(OSError):
            run_files.write_status(self.path, status)

    def transition(self, event: str, **changes: Any) -> dict[str, Any] | None:
        """The state change `event` (core/store/states.py) with `changes`, if the table allows it from the
        run's state; None otherwise."""
        return self.write_status(if_state=states.sources(event), **changes,
                                 state=next(to for (src, name), to in states.TRANSITIONS.items() if name == event))

    def live_status(self) -> dict[str, Any]:
        """The status, with a run whose trainer is gone (its lease expired, or it was this process's
        and its thread has ended) marked, and saved, as interrupted."""
        with self._db.read() as conn:
            row = self._row(conn)
        if row.state in TRAINING_STATES and _trainer_gone(row):
            self._interrupt(row)
            return self.read_status()
        return _status_of(row)

    def _interrupt(self, row) -> None:
        """Marks the run interrupted if its lease is still the one found gone (compare-and-set on the
        lease: a trainer that renewed it meanwhile keeps its run)."""
        with self._db.write() as conn:
            current = self._row(conn, lock=True)
            if current.state not in TRAINING_STATES or current.lease_owner != row.lease_owner \
                    or current.lease_expires_at != row.lease_expires_at or not _trainer_gone(current):
                return
            status = {**(current.status or {}), "error": INTERRUPTED_ERROR}
            conn.execute(sa.update(runs_table).where(self._where()).values(
                state="interrupted", status=status, lease_owner=None, lease_expires_at=None,
                status_version=current.status_version + 1))
            self._export_status({**_status_of(current), **status, "state": "interrupted"})

    def rename(self, name: str) -> None:
        """Gives the run another name (check_label's rules; ValueError naming the field otherwise)."""
        if self.write_status(name=check_label("name", name)) is None:
            raise ValueError(f"run {self.run_id} could not be renamed just now; try again")

    def owner(self) -> str | None:
        """Who may act on the run (core/store/ownership.py); None: nobody in particular."""
        with self._db.read() as conn:
            return self._row(conn).owner

    def checkpoint_epoch(self) -> int:
        """Finished epochs the last checkpoint holds (0 when there is no checkpoint)."""
        if self.checkpoint("last") is None:
            return 0
        try:
            return int(_number(self.read_status().get("checkpoint_epoch")))
        except (RunNotFoundError, ValueError):
            return 0

    def checkpoint_batch(self) -> int:
        """Batches of epoch checkpoint_epoch() + 1 that the partial checkpoint holds (a Stop or a
        periodic save in the middle of that epoch); 0 when the run resumes at an epoch boundary."""
        if self.checkpoint("partial") is None:      # before the status: most runs have none
            return 0
        try:
            return _batches_kept(self.path, self.read_status())
        except RunNotFoundError:
            return 0

    # --- claims and leases -------------------------------------------------------------------
    def claim(self, **changes: Any) -> Run | None:
        """Takes this queued run for this process to train: it becomes `running`, and this Run holds
        its lease. None when someone else claimed (or cancelled) it first."""
        token = f"{_PROCESS_TOKEN}:{secrets.token_hex(6)}"
        mark_active(self.run_id, True)        # before the lease is ours: no viewer here may think it dead
        with self._db.write() as conn:
            row = self._row(conn, lock=True)
            if row.state != "queued":
                mark_active(self.run_id, False)
                return None
            status = {**(row.status or {}), "error": "", "executor": "thread", "claimed_at": time.time(),
                      **trainer_identity(), **changes}
            conn.execute(sa.update(runs_table).where(self._where()).values(
                state="running", status=run_files.finite(status), lease_owner=token,
                lease_expires_at=row.now + lease_seconds(), heartbeat=row.now, stop_requested_at=None,
                status_version=row.status_version + 1))
            self._export_status({**_status_of(row), **status, "state": "running"})
        self.lease, self.lease_lost = token, False
        return self

    def adopt_lease(self, claimed_at: float) -> bool:
        """A trainer in another process (a Ray worker) takes over the lease of the claim made at
        `claimed_at`; False when the run is no longer that claim's (resumed or ended meanwhile)."""
        status = self.read_status()
        if status.get("state") not in TRAINING_STATES or status.get("claimed_at") != claimed_at:
            return False
        with self._db.read() as conn:
            self.lease = conn.execute(sa.select(runs_table.c.lease_owner).where(self._where())).scalar_one()
        return self.lease is not None

    def renew_lease(self) -> bool:
        """The heartbeat: extends this Run's lease. False when the lease is no longer its own (the
        run was declared gone, or it ended): its trainer must stop and write nothing more."""
        if self.lease is None:
            return not self.lease_lost
        with self._db.write() as conn:
            renewed = conn.execute(sa.update(runs_table).where(
                self._where(), runs_table.c.lease_owner == self.lease, runs_table.c.state.in_(TRAINING_STATES))
                .values(lease_expires_at=self._db.now() + lease_seconds(), heartbeat=self._db.now())).rowcount
        if not renewed:
            self.lease_lost = True
        return bool(renewed)

    # --- stop requests: Stop from any process, polled by the trainer wherever it runs ----------
    def request_stop(self) -> None:
        with self._db.write() as conn:
            conn.execute(sa.update(runs_table).where(self._where()).values(stop_requested_at=self._db.now()))

    def stop_requested(self) -> bool:
        """Cheap (one indexed read): trainers call it about once a second, not per batch."""
        with self._db.read() as conn:
            return conn.execute(sa.select(runs_table.c.stop_requested_at).where(self._where())) \
                .scalar_one_or_none() is not None

    def clear_stop_request(self) -> None:
        with self._db.write() as conn:
            conn.execute(sa.update(runs_table).where(self._where()).values(stop_requested_at=None))

    # --- metrics -----------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        """Records a finished epoch (a repeated epoch replaces its row) and appends it to metrics.csv."""
        values = {k: run_files.finite(float(row[k])) if row.get(k) not in (None, "") else None
                  for k in METRIC_COLUMNS if k != "epoch"}
        epoch = int(row["epoch"])
        with self._db.write() as conn:
            if self.lease is not None and not self._holds_lease(conn):
                raise RuntimeError(f"run {self.run_id} is no longer this trainer's (its lease was lost)")
            conn.execute(sa.delete(metrics_table).where(metrics_table.c.run_id == self.run_id,
                                                        metrics_table.c.epoch == epoch))
            conn.execute(sa.insert(metrics_table).values(run_id=self.run_id, epoch=epoch, **values))
            conn.execute(sa.update(runs_table).where(self._where())
                         .values(metrics_version=runs_table.c.metrics_version + 1))
        run_files.append_metrics(self.path, row)

    def _holds_lease(self, conn) -> bool:
        return conn.execute(sa.select(runs_table.c.lease_owner).where(self._where())).scalar_one_or_none() \
            == self.lease

    def read_metrics(self) -> list[dict[str, float]]:
        """Finished epochs, in order (a missing value is NaN)."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(metrics_table).where(metrics_table.c.run_id == self.run_id)
                                .order_by(metrics_table.c.epoch)).all()
        return [{k: (int(r.epoch) if k == "epoch" else float("nan") if getattr(r, k) is None else float(getattr(r, k)))
                 for k in METRIC_COLUMNS} for r in rows]

    def reconcile_metrics(self, checkpoint_epoch: int) -> None:
        """Makes the metrics hold exactly the epochs 1..checkpoint_epoch, before a resume: rows past
        the checkpoint go (their weights were never saved), and the checkpoint's own row comes back
        when its append failed (a full disk): the status keeps a copy of it."""
        self.truncate_batches_after(checkpoint_epoch)
        self.truncate_metrics_after(checkpoint_epoch)
        have = {r["epoch"] for r in self.read_metrics()}
        pending = self.read_status().get("checkpoint_row")
        if checkpoint_epoch and checkpoint_epoch not in have and isinstance(pending, dict) \
                and pending.get("epoch") == checkpoint_epoch:
            self.append_metrics(pending)

    def truncate_metrics_after(self, epoch: int) -> None:
        """Drops rows past `epoch` (a crash between the metrics row and the status write)."""
        dropped = self._drop_epochs_after(metrics_table, "metrics_version", epoch)
        if dropped or any(r["epoch"] > epoch for r in run_files.read_metrics(self.path)):
            with contextlib.suppress(OSError):
                run_files.rewrite_metrics(self.path, self.read_metrics())

    def _drop_epochs_after(self, table: sa.Table, version: str, epoch: int) -> int:
        """Deletes `table`'s rows of epochs past `epoch`, counting the change in `version`."""
        with self._db.write() as conn:
            dropped = conn.execute(sa.delete(table).where(table.c.run_id == self.run_id, table.c.epoch > epoch)).rowcount
            if dropped:
                conn.execute(sa.update(runs_table).where(self._where()).values({version: runs_table.c[version] + 1}))
        return dropped

    # --- per-batch reports: the curves inside each epoch, kept after the run -----------------
    def append_batches(self, epoch: int, reports: Sequence[tuple[int, float, float]]) -> None:
        """Records a finished epoch's (batch, running-mean loss, running-mean accuracy) reports."""
        rows = [{"run_id": self.run_id, "epoch": int(epoch), "batch": int(r[0]), "loss": run_files.finite(float(r[1])),
                 "accuracy": run_files.finite(float(r[2])) if len(r) > 2 else None} for r in reports]
        with self._db.write() as conn:
            conn.execute(sa.delete(batches_table).where(batches_table.c.run_id == self.run_id,
                                                        batches_table.c.epoch == int(epoch)))
            if rows:
                conn.execute(sa.insert(batches_table), rows)
            conn.execute(sa.update(runs_table).where(self._where())
                         .values(batches_version=runs_table.c.batches_version + 1))
        with contextlib.suppress(OSError):
            run_files.append_batches(self.path, epoch, reports)

    def read_batches(self) -> dict[int, list[tuple[int, float, float]]]:
        """{epoch: [(batch, running-mean loss, running-mean accuracy), ...]} for the finished epochs
        (NaN where a value was not recorded)."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(batches_table.c.epoch, batches_table.c.batch, batches_table.c.loss,
                                          batches_table.c.accuracy)
                                .where(batches_table.c.run_id == self.run_id)
                                .order_by(batches_table.c.epoch, batches_table.c.batch)).all()
        epochs: dict[int, list[tuple[int, float, float]]] = {}
        nan = float("nan")
        for epoch, batch, loss, accuracy in rows:
            epochs.setdefault(int(epoch), []).append((int(batch), nan if loss is None else float(loss),
                                                      nan if accuracy is None else float(accuracy)))
        return epochs

    def read_batch_losses(self) -> dict[int, list[tuple[int, float]]]:
        """batch_losses_of(read_batches())."""
        return batch_losses_of(self.read_batches())

    def read_batch_accuracies(self) -> dict[int, list[tuple[int, float]]]:
        """batch_accuracies_of(read_batches())."""
        return batch_accuracies_of(self.read_batches())

    def truncate_batches_after(self, epoch: int) -> None:
        """Drops the epochs past `epoch`: a resume redoes them from the checkpoint."""
        dropped = self._drop_epochs_after(batches_table, "batches_version", epoch)
        if dropped or any(e > epoch for e in run_files.read_batches(self.path)):
            with contextlib.suppress(OSError):
                run_files.rewrite_batches(self.path, self.read_batches())

    # --- progress ----------------------------------------------------------------------------
    def write_progress(self, progress: dict[str, Any]) -> None:
        """The trainer's live progress (about once a second), for every viewer in any process; the
        last one (the run has ended) goes into the folder's export too."""
        with self._db.write() as conn:
            conn.execute(sa.update(runs_table).where(self._where()).values(
                progress=run_files.finite(progress), progress_version=runs_table.c.progress_version + 1))
        if progress.get("state") in states.STATES and progress.get("state") not in ACTIVE_STATES:
            with contextlib.suppress(OSError):
                run_files.write_progress(self.path, progress)

    def read_progress(self) -> dict[str, Any]:
        with self._db.read() as conn:
            progress = conn.execute(sa.select(runs_table.c.progress).where(self._where())).scalar_one_or_none()
        return dict(progress) if isinstance(progress, dict) else {}

    # --- a learning-rate finder job's result -------------------------------------------------
    def write_lr_finding(self, finding: dict[str, Any]) -> None:
        safe_io.atomic_write_text(self._file(LR_FINDING_FILE), _json(finding))

    def read_lr_finding(self) -> dict[str, Any] | None:
        """The finder's {"rates", "losses", "smoothed", "suggestion", ...}; None when absent or damaged."""
        try:
            return run_files.read_json(self._file(LR_FINDING_FILE))
        except (OSError, ValueError):
            return None

    # --- checkpoints -------------------------------------------------------------------------
    @contextlib.contextmanager
    def checkpoint_lock(self) -> Iterator[None]:
        """Held while a checkpoint and the epoch it holds change (trainer) or are read together
        (an evaluation), across processes: predictions are never labelled with the wrong epoch."""
        folder = self.path / CHECKPOINT_DIR
        folder.mkdir(exist_ok=True)
        with _flock(folder):
            yield

    def write_checkpoint(self, save: Callable[[Path], None], which: str = "last") -> None:
        """Calls save(tmp_path) then renames it over the checkpoint: a failed write keeps the old one.

        Raises:
            CheckpointError: naming the file, the reason in words, and that the previous one is kept.
        """
        target = self._checkpoint_path(which)
        tmp = safe_io.temporary_name(target, suffix=".keras")   # model.save needs the suffix
        try:
            save(tmp)
            safe_io.replace_durably(tmp, target)
        except OSError as exc:
            raise CheckpointError(
                f"could not save checkpoint {CHECKPOINT_DIR}/{target.name} of run {self.run_id}: "
                f"{safe_io.disk_words(exc)}. The previous checkpoint is intact; free some space (or make "
                "the runs folder writable) and resume the run.") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def discard_checkpoint(self, which: str) -> None:
        """Removes a checkpoint nothing counts on any more (the partial one, once its epoch has ended)."""
        with contextlib.suppress(FileNotFoundError):
            self._checkpoint_path(which).unlink()

    def copy_checkpoint(self, source: str, target: str) -> None:
        """best.keras from last.keras (or back), through a temporary name like any checkpoint."""
        data = self._checkpoint_path(source)
        self.write_checkpoint(lambda tmp: tmp.write_bytes(data.read_bytes()), which=target)

    # --- predictions -------------------------------------------------------------------------
    def write_predictions(self, y_true: np.ndarray, y_prob: np.ndarray, *, epoch: int | None = None,
                          **status: Any) -> bool:
        """Saves test-set predictions made from the checkpoint of `epoch`, and `status` (their
        accuracy) with them: in one transaction of the status, so no reader sees the predictions of
        one epoch beside the accuracy of another.

        Returns False (and writes nothing) when the run already has predictions of a later epoch:
        an evaluation that finishes late never replaces newer ones.
        """
        with self._db.write() as conn:
            row = self._row(conn, lock=True)
            newest = (row.status or {}).get("predictions_epoch")
            if epoch is not None and isinstance(newest, int) and newest > epoch and self.has_predictions():
                return False
            target = self._file(PREDICTIONS_FILE)
            tmp = safe_io.temporary_name(target, suffix=".npz")
            try:
                np.savez(tmp, y_true=np.asarray(y_true, dtype=np.int64), y_prob=np.asarray(y_prob, dtype=np.float16))
                safe_io.replace_durably(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            changes = {**status, **({"predictions_epoch": epoch} if epoch is not None else {})}
            if changes:
                merged = {**(row.status or {}), **changes}
                conn.execute(sa.update(runs_table).where(self._where()).values(
                    status=run_files.finite(merged), status_version=row.status_version + 1))
                self._export_status({**_status_of(row), **merged})
            return True

    def read_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(y_true, y_prob); raises FileNotFoundError or ValueError when missing or damaged."""
        try:
            data_bytes = safe_io.read_bytes(self._file(PREDICTIONS_FILE), limit=64 << 20)
            with np.load(io.BytesIO(data_bytes), allow_pickle=False) as data:
                y_true, y_prob = data["y_true"], data["y_prob"]
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, OSError, ValueError) as exc:
            raise ValueError(f"{PREDICTIONS_FILE} is damaged ({type(exc).__name__}: {exc})") from None
        if y_prob.ndim != 2 or y_true.ndim != 1 or y_prob.shape[0] != y_true.shape[0]:
            raise ValueError(f"predictions have shapes {y_true.shape} and {y_prob.shape}")
        return y_true, y_prob

    def has_predictions(self) -> bool:
        return safe_io.is_regular_file(self._file(PREDICTIONS_FILE))

    # --- summary -----------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        """Never raises: a damaged run gives a summary whose `damaged` says why."""
        try:
            self.live_status()
        except Exception:  # noqa: BLE001 - summarised below
            pass
        found = self.store._summaries(run_id=self.run_id)
        return found[0] if found else RunSummary(self.run_id, "damaged", damaged="it is not in the run database")


def _trainer_gone(row) -> bool:
    """A training run whose lease has expired on the database's clock or, when this process leased
    it, whose thread here has ended (that is known exactly: a busy machine's late heartbeat on a
    run of ours must not interrupt it under its viewers in the same process)."""
    owner = row.lease_owner or ""
    if owner.startswith(_PROCESS_TOKEN + ":"):      # ours: whether its thread lives is known exactly
        return not is_active_here(row.run_id)
    return row.lease_expires_at is None or row.lease_expires_at < row.now


def batch_losses_of(batches: dict[int, list[tuple[int, float, float]]]) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean loss), ...]} of Run.read_batches()."""
    return {epoch: [(batch, loss) for batch, loss, _ in reports] for epoch, reports in batches.items()}


def batch_accuracies_of(batches: dict[int, list[tuple[int, float, float]]]) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean accuracy), ...]} of Run.read_batches(), for the epochs that
    recorded it."""
    epochs = {epoch: [(batch, accuracy) for batch, _, accuracy in reports if accuracy == accuracy]
              for epoch, reports in batches.items()}
    return {epoch: pairs for epoch, pairs in epochs.items() if pairs}


def _json(value: Any) -> str:
    return json.dumps(run_files.finite(value))


def _batches_kept(run_path: Path, status: dict[str, Any]) -> int:
    """Batches of epoch checkpoint_epoch + 1 that the run's partial checkpoint holds, as its status
    records them; 0 without that file (the run resumes at an epoch boundary)."""
    if not safe_io.is_regular_file(run_path / CHECKPOINT_DIR / PARTIAL_CHECKPOINT):
        return 0
    return max(0, int(_number(status.get("checkpoint_batch"))))


def _number(value: Any) -> float:
    """A number from a status, 0.0 for anything that is not a finite one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    try:
        number = float(value)
    except OverflowError:
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0


def _ran_on(status: dict[str, Any]) -> str:
    if status.get("state") in ("queued", "cancelled") or not isinstance(status.get("host"), str):
        return ""
    return status["host"][:60] + (" (Ray)" if status.get("executor") == "ray" else "")


def _label(value: Any) -> str:
    try:
        return check_label("name", value)
    except ValueError:
        return ""


class _FileLock:
    """An exclusive lock on a folder across processes (flock of the folder itself: no lock file
    to litter the run folder) and threads (an RLock), re-entrant in the thread that holds it: flock
    alone would block a thread that takes it twice through two opens."""

    def __init__(self, path: Path):
        self.path, self.thread_lock, self.depth, self.fd = path, threading.RLock(), 0, -1

    def __enter__(self) -> None:
        self.thread_lock.acquire()
        if self.depth == 0:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                if self.fd >= 0:
                    os.close(self.fd)
                    self.fd = -1
                self.thread_lock.release()
                raise
        self.depth += 1

    def __exit__(self, *exc_info) -> None:
        self.depth -= 1
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
        self.thread_lock.release()


_FILE_LOCKS: dict[str, _FileLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _flock(path: Path) -> _FileLock:
    """The process's one lock object for `path` (so nesting in a thread is recognised)."""
    key = os.path.abspath(path)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, _FileLock(Path(key)))


class RunStore:
    """Every run of one runs folder (EFFLAB_RUNS_DIR, default ./runs) and its database."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = database_for(self.root)
        return self._db

    def create(self, config: TrainConfig, *, name: str = "", author: str = "", kind: str = "train",
               claimed: bool = False, owner: str | None = None, limit_exempt: bool = False,
               tags: dict[str, Any] | None = None) -> Run:
        """A new run: its folder with config.json and its row, queued; the id sorts by start time.
        `kind` "lr_find" or "evaluate" makes it a finder or evaluation job (queued like a run, listed
        apart);
        `claimed` makes it this process's to train at once (the returned Run holds its lease);
        `owner` is who may act on it (core/store/ownership.py), `limit_exempt` the teacher or the command
        line (held to the server's queue limit only). `tags` go into the first status, so they are
        there before any trainer can claim the run (a sweep's trial names its sweep and trial).

        Raises:
            ValueError: a name or author that is not allowed (the message names the field).
            QueueFull: a queue limit reached (core/store/ownership.py; never for a claimed run).
        """
        name, author = check_label("name", name), check_label("author", author)
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}; got {kind!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        # The folder is made under a hidden name and renamed into place inside the transaction that
        # adds the row: no reader ever finds the folder without its row (it would import it) or
        # the row without its folder.
        building = Path(tempfile.mkdtemp(prefix=".creating-", dir=self.root))
        try:
            (building / CHECKPOINT_DIR).mkdir()
            safe_io.atomic_write_text(building / CONFIG_FILE, config.to_json())
            status = {"epoch": 0, "epochs": config.epochs, "error": "", "name": name, "author": author,
                      "started": f"{datetime.now():%Y-%m-%d %H:%M:%S}", "started_at": time.time(),
                      **trainer_identity(), **(tags or {})}
            while True:
                run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{config.variant}-{secrets.token_hex(2)}"
                path = self.root / run_id
                try:
                    with self.db.write() as conn:
                        if not claimed:          # counted in the transaction that adds it: no overshoot
                            self._check_queue_room(conn, owner, limit_exempt)
                        now = conn.execute(sa.select(self.db.now())).scalar_one()
                        conn.execute(sa.insert(runs_table).values(
                            run_id=run_id, kind=kind, state="queued", config=config.to_dict(), status=status,
                            queued_at=now, heartbeat=now, damaged="", owner=owner))
                        if path.exists():
                            raise FileExistsError(path)
                        os.rename(building, path)
                    break
                except (sa.exc.IntegrityError, FileExistsError):
                    continue                                     # that id is taken: draw another
        finally:
            shutil.rmtree(building, ignore_errors=True)
        run = Run(path, self)
        run._export_status({**status, "state": "queued", "kind": kind, "queued_at": now, "heartbeat": now})
        if claimed:
            return run.claim() or run
        return run

    def get(self, run_id: str) -> Run:
        """The run called `run_id`; refuses malformed ids, paths and links out of the folder. A run
        folder the database has not seen yet (copied in, or from before the database) is imported."""
        if not is_run_id(run_id):
            raise RunNotFoundError(f"run id must look like {RUN_ID_EXAMPLE}; got {str(run_id)[:80]!r}")
        path = self.root / run_id
        try:
            resolved_root = self.root.resolve()
            if path.is_symlink() or (path.exists() and path.resolve().parent != resolved_root):
                raise RunNotFoundError(f"run {run_id!r} points outside the runs folder")
        except OSError as exc:
            raise RunNotFoundError(f"run {run_id!r} cannot be read: {exc}") from None
        if not self._known(run_id):
            if not path.is_dir():
                raise RunNotFoundError(f"no run {run_id!r} in {self.root}")
            import_folder(self, path)
        return Run(path, self)

    def _known(self, run_id: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(sa.select(runs_table.c.run_id).where(runs_table.c.run_id == run_id)) \
                .scalar_one_or_none() is not None

    def run_ids(self) -> list[str]:
        """Every run's id, newest first."""
        self.import_new_folders()
        with self.db.read() as conn:
            return sorted(conn.execute(sa.select(runs_table.c.run_id)).scalars(), reverse=True)

    def import_new_folders(self) -> list[str]:
        """Imports the run folders of the runs folder that the database does not know; their ids."""
        return import_new_folders(self)

    def list(self, kinds: tuple[str, ...] | None = ("train",)) -> list[RunSummary]:
        """Every run, newest first; damaged ones carry their reason. `kinds=None`: learning-rate
        finder jobs too (the queue shows them; result pages and the run table do not)."""
        self.import_new_folders()
        self.interrupt_gone_trainers()
        summaries = self._summaries()
        return summaries if kinds is None else [s for s in summaries if s.kind in kinds or s.damaged]

    def interrupt_gone_trainers(self) -> None:
        """Marks every training run whose trainer is gone as interrupted (one query when none is)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(runs_table, self.db.now().label("now"))
                                .where(runs_table.c.state.in_(TRAINING_STATES))).all()
        for row in rows:
            if _trainer_gone(row):
                Run(self.root / row.run_id, self)._interrupt(row)

    def _summaries(self, run_id: str | None = None) -> list[RunSummary]:
        best = sa.select(metrics_table.c.run_id, sa.func.max(metrics_table.c.epoch).label("epochs_done"),
                         sa.func.max(metrics_table.c.val_accuracy).label("best_val")) \
            .group_by(metrics_table.c.run_id).subquery()
        query = sa.select(runs_table, best.c.epochs_done, best.c.best_val) \
            .select_from(runs_table.outerjoin(best, best.c.run_id == runs_table.c.run_id)) \
            .order_by(runs_table.c.run_id.desc())
        if run_id is not None:
            query = query.where(runs_table.c.run_id == run_id)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [self._summary_of(row) for row in rows]

    def _summary_of(self, row) -> RunSummary:
        status = _status_of(row)
        path = self.root / row.run_id
        test_accuracy = status.get("test_accuracy")
        summary = RunSummary(
            row.run_id, "damaged" if status.get("unreadable") else row.state,
            epochs=int(_number(status.get("epochs"))), started=str(status.get("started", ""))[:40],
            error=str(status.get("error") or ""),
            test_accuracy=_number(test_accuracy) if isinstance(test_accuracy, (int, float)) else None,
            has_predictions=safe_io.is_regular_file(path / PREDICTIONS_FILE),
            name=_label(status.get("name")), author=_label(status.get("author")),
            queued_at=row.queued_at, kind=row.kind if row.kind in KINDS else "train", ran_on=_ran_on(status),
            owner=row.owner,
            damaged=row.damaged or ("" if path.is_dir() else "its folder is gone"))
        if isinstance(row.config, dict):
            summary.config, summary.variant = row.config, str(row.config.get("variant", ""))
        summary.epochs_done = int(row.epochs_done or 0)
        summary.batches_kept = _batches_kept(path, status)
        summary.best_val_accuracy = float(row.best_val) if row.best_val is not None else None
        started_at = _number(status.get("started_at"))
        if started_at:
            end = _number(status.get("ended_at")) or _number(row.heartbeat)
            summary.duration_seconds = max(0.0, end - started_at)
        return summary

    def delete(self, run_id: str) -> None:
        """Removes a run, row and folder; refuses one that is queued or still training. One
        transaction against Resume: a run being deleted can never be queued again."""
        run = self.get(run_id)
        with contextlib.suppress(RunNotFoundError):
            run.live_status()
        trash = self.root / f".deleted-{run_id}-{secrets.token_hex(3)}"
        with self.db.write() as conn:
            row = run._row(conn, lock=True)
            if row.state in ACTIVE_STATES and not row.damaged:
                what = "queued; cancel it" if row.state == "queued" else "still training; stop it"
                raise ValueError(f"run {run_id} is {what} before deleting it")
            if run.path.is_dir():
                os.rename(run.path, trash)        # one step: the folder is gone for every reader at once
            conn.execute(sa.delete(metrics_table).where(metrics_table.c.run_id == run_id))
            conn.execute(sa.delete(batches_table).where(batches_table.c.run_id == run_id))
            conn.execute(sa.delete(runs_table).where(runs_table.c.run_id == run_id))
        shutil.rmtree(trash, ignore_errors=True)

    # --- the queue ---------------------------------------------------------------------------
    def queue(self) -> list[RunSummary]:
        """Queued runs in the order they train: oldest `queued_at` first."""
        self.import_new_folders()
        queued = [s for s in self._summaries() if s.state == "queued" and not s.damaged]
        return sorted(queued, key=lambda s: (s.queued_at or 0.0, s.run_id))

    def enqueue(self, run: Run, epochs: int, *, limit_exempt: bool = False) -> bool:
        """Puts a stopped, finished, failed, interrupted or cancelled run back in line to train up to
        `epochs`, in one compare-and-set: of two Resumes pressed at once, one queues it and the
        other gets False. It counts against its owner's queue limit (QueueFull) unless
        `limit_exempt` (the teacher, or the command line training it at once)."""
        with self.db.write() as conn:
            row = run._row(conn, lock=True)
            if states.next_state(row.state, "resume") is None or row.damaged:
                return False
            self._check_queue_room(conn, row.owner, limit_exempt)
            status = {**(row.status or {}), "epochs": epochs, "error": "", "ended_at": None}
            conn.execute(sa.update(runs_table).where(run._where()).values(
                state="queued", status=run_files.finite(status), queued_at=row.now, stop_requested_at=None,
                status_version=row.status_version + 1))
            run._export_status({**_status_of(row), **status, "state": "queued", "queued_at": row.now})
        return True

    def _check_queue_room(self, conn, owner: str | None, exempt: bool) -> None:
        """QueueFull when one more waiting run would pass a limit (core/store/ownership.py)."""
        self.db.lock_queue(conn)
        queued = runs_table.c.state == "queued"
        in_all = conn.execute(sa.select(sa.func.count()).where(queued)).scalar_one()
        of_owner = conn.execute(sa.select(sa.func.count()).where(queued, runs_table.c.owner == owner)) \
            .scalar_one() if owner else 0
        ownership.check_queue_room(in_all, of_owner, owner=owner, exempt=exempt)

    def claim(self, run_id: str) -> Run | None:
        """Takes a queued run for this process to train: it becomes `running` here, with a lease.
        None when someone else claimed (or cancelled) it first."""
        try:
            return self.get(run_id).claim()
        except RunNotFoundError:
            return None

    def cancel(self, run_id: str) -> bool:
        """A queued run leaves the line (state `cancelled`; its folder stays). False if not queued."""
        return self.get(run_id).transition("cancel", ended_at=time.time(),
                                           error="cancelled before it started training") is not None

    @contextlib.contextmanager
    def exclusive(self, name: str, seconds: float = EXCLUSIVE_SECONDS, wait: float = 0.0) -> Iterator[bool]:
        """Shared work that one thread of one process at a time may do (a sweep's driver step): yields
        True when this thread holds the named lease for the block, False when someone else still
        does after `wait` seconds (skip the work then: they are doing it). A holder that died is
        taken over after `seconds`."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:120]
        deadline = time.monotonic() + wait
        while not (held := self.take_lease(name, holder, seconds)) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            yield held
        finally:
            if held:
                with self.db.write() as conn:
                    conn.execute(sa.delete(leases_table).where(leases_table.c.name == name,
                                                               leases_table.c.holder == holder))

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Takes (or renews) the named lease for `holder` unless another holds it unexpired; whether
        `holder` holds it now. One write transaction, the row locked (SQLite's write transactions are
        serial; PostgreSQL locks the row, and of two first takers the second insert fails): two takers
        cannot both win."""
        try:
            with self.db.write() as conn:
                now = conn.execute(sa.select(self.db.now())).scalar_one()
                row = conn.execute(sa.select(leases_table).where(leases_table.c.name == name)
                                   .with_for_update()).first()
                if row is not None and row.holder != holder and row.expires_at > now:
                    return False
                values = {"holder": holder, "expires_at": now + seconds}
                if row is None:
                    conn.execute(sa.insert(leases_table).values(name=name, **values))
                else:
                    conn.execute(sa.update(leases_table).where(leases_table.c.name == name).values(**values))
                return True
        except sa.exc.IntegrityError:   # another taker inserted it first
            return False


class Keepalive:
    """A trainer's timer thread: renews its lease (the heartbeat) and turns a stop request into
    `stop_event`. A lease found lost also sets `stop_event`: the run is no longer this trainer's.

    From a thread rather than the batch callback, so a long compile, validation or test prediction
    never reads as dead; and so a Stop asked in another process costs the batch loop nothing but an
    Event check.
    """

    def __init__(self, run: Run, stop_event: threading.Event, on_stop_request: Callable[[], None] | None = None):
        self.run, self.stop_event, self.on_stop_request = run, stop_event, on_stop_request
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"keepalive-{run.run_id}", daemon=True)

    def __enter__(self) -> "Keepalive":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join(5)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        beat = heartbeat_seconds()
        while not self._done.wait(min(STOP_POLL_SECONDS, beat)):
            try:
                if not self.stop_event.is_set() and self.run.stop_requested():
                    self.stop_event.set()
                    if self.on_stop_request:
                        self.on_stop_request()
                if time.monotonic() - last_beat >= beat:
                    last_beat = time.monotonic()
                    if not self.run.renew_lease():
                        self.stop_event.set()        # fencing: someone declared this trainer gone
            except (OSError, sa.exc.SQLAlchemyError, RunNotFoundError):
                pass   # a database that is briefly away must not kill the beat; the lease decides
