"""The run store: one folder per run, the only code that knows the file names.

Writers replace JSON atomically (temp file + os.replace) and only append to metrics.csv, so a
crash at any moment leaves a readable folder. Readers tolerate what a crash leaves anyway: a
missing file, a truncated last CSV line, invalid JSON. A damaged run is listed with its reason
and never breaks a listing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.config import TrainConfig

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
PROGRESS_FILE = "progress.json"
PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.keras"
BEST_CHECKPOINT = "best.keras"
METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "epoch_seconds", "images_per_second")
STATES = ("queued", "running", "stopping", "stopped", "completed", "failed", "interrupted")
ACTIVE_STATES = ("queued", "running", "stopping")
RESUMABLE_STATES = ("stopped", "completed", "interrupted", "failed")
# A run written on another machine is presumed dead when its heartbeat is older than this.
STALE_HEARTBEAT_SECONDS = 120
RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-b[0-7]-[0-9a-f]{4}$")

# Runs whose training thread lives in this process: a status saying "running" for one of our
# own pid that is not in this set was left by a thread that no longer exists.
_ACTIVE_HERE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()
# status.json is read-modify-written by the training thread, Stop and any viewer that notices a
# dead trainer; without one lock a write can undo another's (e.g. lose checkpoint_epoch).
_STATUS_LOCK = threading.RLock()


class RunNotFoundError(LookupError):
    """A run id that is malformed, escapes the runs folder, or names no run."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file, why and what to do."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("EFFLAB_RUNS_DIR", "runs"))


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunSummary:
    """One row of the run table; `damaged` holds the reason when the folder could not be read."""

    run_id: str
    state: str
    variant: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    epochs: int = 0
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    started: str = ""
    duration_seconds: float | None = None
    error: str = ""
    damaged: str = ""
    has_predictions: bool = False


class Run:
    """One run folder. Methods read or write exactly one file each."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name

    # --- paths -------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def last_checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR / BEST_CHECKPOINT

    # --- config ------------------------------------------------------------------------------
    def read_config(self) -> TrainConfig:
        """Raises ValueError (ConfigError or JSON error) when config.json is damaged."""
        return TrainConfig.from_json(self.file(CONFIG_FILE).read_text(encoding="utf-8"))

    # --- status ------------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        status = _read_json(self.file(STATUS_FILE))
        if status.get("state") not in STATES:
            raise ValueError(f"unknown state {status.get('state')!r}")
        return status

    def write_status(self, *, if_state: tuple[str, ...] | None = None, **changes: Any) -> dict[str, Any] | None:
        """Merges `changes` into status.json (atomically) and stamps the heartbeat.

        With `if_state`, writes only while the state is one of those and returns None otherwise,
        so a late "stopping" or "interrupted" never overwrites a run that has just finished.
        """
        with _STATUS_LOCK:
            try:
                status = self.read_status()
            except (OSError, ValueError):
                status = {}
            if if_state is not None and status.get("state") not in if_state:
                return None
            status.update(changes)
            status["heartbeat"] = time.time()
            atomic_write_text(self.file(STATUS_FILE), json.dumps(status, indent=2))
            return status

    def live_status(self) -> dict[str, Any]:
        """status.json, with a run whose process is gone marked (and saved) as interrupted."""
        status = self.read_status()
        if status["state"] in ACTIVE_STATES and self._trainer_gone(status):
            # Checked again under the lock: the trainer may have written its final state since.
            with _STATUS_LOCK:
                status = self.read_status()
                if status["state"] in ACTIVE_STATES and self._trainer_gone(status):
                    status = self.write_status(
                        state="interrupted",
                        error="the training process ended without finishing (killed, crashed or "
                              "restarted); resume continues from the last checkpoint")
        return status

    def _trainer_gone(self, status: dict[str, Any]) -> bool:
        pid, host = status.get("pid"), status.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            if pid == os.getpid():
                with _ACTIVE_LOCK:
                    return self.run_id not in _ACTIVE_HERE
            return not _pid_alive(pid)
        return time.time() - float(status.get("heartbeat", 0)) > STALE_HEARTBEAT_SECONDS

    # --- metrics -----------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        path = self.file(METRICS_FILE)
        self._cut_partial_last_line(path)
        new = not path.exists() or path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        with open(path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _cut_partial_last_line(path: Path) -> None:
        # A process killed mid-append leaves a line without its newline; appending after it would
        # glue the next epoch onto that fragment.
        try:
            with open(path, "rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def read_metrics(self) -> list[dict[str, float]]:
        """Finished epochs, in order; a truncated last line (crash mid-write) or a garbled one is skipped."""
        path = self.file(METRICS_FILE)
        if not path.exists():
            return []
        rows: list[dict[str, float]] = []
        text = path.read_text(encoding="utf-8", errors="replace")
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        try:
            for raw in csv.DictReader(io.StringIO(complete)):
                try:
                    row = {k: float(raw[k]) if raw.get(k) not in (None, "") else float("nan")
                           for k in METRIC_COLUMNS}
                    row["epoch"] = int(row["epoch"])   # NaN (no epoch) raises: not a row
                except (TypeError, ValueError):
                    continue
                rows.append(row)
        except csv.Error:   # a garbled file: keep the rows read so far
            pass
        return rows

    def truncate_metrics_after(self, epoch: int) -> None:
        """Drops rows past `epoch` (a crash between the CSV append and the checkpoint rename)."""
        rows = self.read_metrics()
        if all(r["epoch"] <= epoch for r in rows):
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for r in rows:
            if r["epoch"] <= epoch:
                writer.writerow(r)
        atomic_write_text(self.file(METRICS_FILE), buffer.getvalue())

    # --- progress ----------------------------------------------------------------------------
    def write_progress(self, progress: dict[str, Any]) -> None:
        atomic_write_text(self.file(PROGRESS_FILE), json.dumps(progress))

    def read_progress(self) -> dict[str, Any]:
        try:
            return _read_json(self.file(PROGRESS_FILE))
        except (OSError, ValueError):
            return {}

    # --- predictions -------------------------------------------------------------------------
    def write_predictions(self, y_true: np.ndarray, y_prob: np.ndarray) -> None:
        tmp = self.file(f".{PREDICTIONS_FILE}.tmp.npz")
        np.savez(tmp, y_true=np.asarray(y_true, dtype=np.int64),
                 y_prob=np.asarray(y_prob, dtype=np.float16))
        os.replace(tmp, self.file(PREDICTIONS_FILE))

    def read_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(y_true, y_prob); raises FileNotFoundError or ValueError when missing or damaged."""
        try:
            with np.load(self.file(PREDICTIONS_FILE), allow_pickle=False) as data:
                y_true, y_prob = data["y_true"], data["y_prob"]
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, OSError) as exc:
            raise ValueError(f"{PREDICTIONS_FILE} is damaged ({type(exc).__name__}: {exc})") from None
        if y_prob.ndim != 2 or y_prob.shape[0] != y_true.shape[0]:
            raise ValueError(f"predictions have shapes {y_true.shape} and {y_prob.shape}")
        return y_true, y_prob

    def has_predictions(self) -> bool:
        return self.file(PREDICTIONS_FILE).is_file()

    # --- summary -----------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        """Never raises: a damaged folder gives a summary whose `damaged` says why."""
        try:
            status = self.live_status()
        except FileNotFoundError:
            return RunSummary(self.run_id, "damaged", damaged="status.json is missing")
        except (OSError, ValueError) as exc:
            return RunSummary(self.run_id, "damaged", damaged=f"status.json is unreadable: {exc}")
        summary = RunSummary(self.run_id, status["state"], epochs=int(status.get("epochs", 0) or 0),
                             started=str(status.get("started", "")), error=str(status.get("error") or ""),
                             test_accuracy=status.get("test_accuracy"),
                             has_predictions=self.has_predictions())
        try:
            config = self.read_config()
            summary.config, summary.variant = config.to_dict(), config.variant
        except FileNotFoundError:
            summary.damaged = "config.json is missing"
        except (OSError, ValueError) as exc:
            summary.damaged = f"config.json is unreadable: {exc}"
        try:
            metrics = self.read_metrics()
        except (OSError, ValueError) as exc:
            metrics, summary.damaged = [], f"metrics.csv is unreadable: {exc}"
        summary.epochs_done = metrics[-1]["epoch"] if metrics else 0
        val = [m["val_accuracy"] for m in metrics if m["val_accuracy"] == m["val_accuracy"]]
        summary.best_val_accuracy = max(val) if val else None
        if status.get("started_at"):
            end = status.get("ended_at") or status.get("heartbeat")
            summary.duration_seconds = max(0.0, float(end) - float(status["started_at"]))
        return summary


class RunStore:
    """All runs under one folder (EFFLAB_RUNS_DIR, default ./runs)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()

    def create(self, config: TrainConfig) -> Run:
        """A new run folder with config.json and a queued status; the id sorts by start time."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{config.variant}-{secrets.token_hex(2)}"
            path = self.root / run_id
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        (path / CHECKPOINT_DIR).mkdir()
        run = Run(path)
        atomic_write_text(run.file(CONFIG_FILE), config.to_json())
        run.write_status(state="queued", epoch=0, epochs=config.epochs, error="",
                         started=f"{datetime.now():%Y-%m-%d %H:%M:%S}", started_at=time.time(),
                         pid=os.getpid(), host=socket.gethostname())
        return run

    def get(self, run_id: str) -> Run:
        """The run called `run_id`; refuses malformed ids, paths and links out of the folder."""
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
            raise RunNotFoundError(f"run id must look like 20261125-142301-b0-3f9a; got {run_id!r}")
        path = self.root / run_id
        try:
            resolved_root = self.root.resolve()
            if path.is_symlink() or path.resolve().parent != resolved_root:
                raise RunNotFoundError(f"run {run_id!r} points outside the runs folder")
        except OSError as exc:
            raise RunNotFoundError(f"run {run_id!r} cannot be read: {exc}") from None
        if not path.is_dir():
            raise RunNotFoundError(f"no run {run_id!r} in {self.root}")
        return Run(path)

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir()
                       if p.is_dir() and not p.is_symlink() and RUN_ID_PATTERN.match(p.name)),
                      reverse=True)

    def list(self) -> list[RunSummary]:
        """Every run, newest first; damaged ones carry their reason."""
        return [Run(self.root / rid).summary() for rid in self.run_ids()]

    def delete(self, run_id: str) -> None:
        """Removes a run folder; refuses one that is still training."""
        run = self.get(run_id)
        try:
            state = run.live_status()["state"]
        except (OSError, ValueError):
            state = "damaged"
        if state in ACTIVE_STATES:
            raise ValueError(f"run {run_id} is still training; stop it before deleting it")
        shutil.rmtree(run.path)


def mark_active(run_id: str, active: bool) -> None:
    """Called by the trainer thread: this process is (or no longer is) training `run_id`."""
    with _ACTIVE_LOCK:
        (_ACTIVE_HERE.add if active else _ACTIVE_HERE.discard)(run_id)
