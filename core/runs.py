"""The run store: one folder per run, the only code that knows the file names.

Like TensorBoard's DataProvider or MLflow's AbstractStore, callers ask a `Run` for what they need
(its status, metrics, predictions, a checkpoint, a version stamp for their caches, a stop request)
and never name a file: a second backend (shared storage on a cluster) changes this module only.

Writers replace files atomically and durably (core/safe_io.py) and only append to metrics.csv, so a
crash or a power cut at any moment leaves a readable folder. Readers tolerate what a crash leaves
anyway: a missing file, a truncated last CSV line, invalid JSON. A damaged run is listed with its
reason and never breaks a listing.

The queue lives here too: a queued run is a folder whose status is `queued`, with the time it
joined; whoever trains it first claims it under a lock on the runs folder, so two servers (or a
server and the CLI) sharing one folder never train the same run twice.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
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

from core import safe_io
from core.config import TrainConfig
from core.errors import SelfExplainedError

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
BATCHES_FILE = "batches.csv"            # every finished epoch's per-batch running-mean loss and accuracy
PROGRESS_FILE = "progress.json"
PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.keras"
BEST_CHECKPOINT = "best.keras"
STOP_REQUEST_FILE = "stop-request"      # present while a stop is asked for; any trainer polls it
TENSORBOARD_DIR = "tensorboard"
LR_FINDING_FILE = "lr_find.json"        # a learning-rate finder job's curve and suggestion
# Artifacts a caller may ask a version stamp of (for its caches), and where each lives.
ARTIFACTS = {"config": CONFIG_FILE, "status": STATUS_FILE, "metrics": METRICS_FILE, "batches": BATCHES_FILE,
             "progress": PROGRESS_FILE, "predictions": PREDICTIONS_FILE,
             "last": f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}", "best": f"{CHECKPOINT_DIR}/{BEST_CHECKPOINT}",
             "lr_find": LR_FINDING_FILE}
# What a folder in the store holds: a training run, or a learning-rate finder job. Both go through
# the queue (they use the same machine); only training runs are listed as runs.
KINDS = ("train", "lr_find")
CHECKPOINTS = ("last", "best")
METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "epoch_seconds", "images_per_second")
# loss and accuracy: Keras' running means over the epoch's batches 1..batch. Files written before
# accuracy was recorded have three columns; their lines still read, with no accuracy.
BATCH_COLUMNS = ("epoch", "batch", "loss", "accuracy")
STATES = ("queued", "running", "stopping", "stopped", "completed", "failed", "interrupted", "cancelled")
ACTIVE_STATES = ("queued", "running", "stopping")        # not to be deleted or resumed
TRAINING_STATES = ("running", "stopping")                # a trainer somewhere owns the run
RESUMABLE_STATES = ("stopped", "completed", "interrupted", "failed", "cancelled")
# A run trained on another machine is presumed dead when its heartbeat is older than this. Trainers
# beat from a timer thread every few seconds, so a long compile or test prediction stays alive.
STALE_HEARTBEAT_SECONDS = 120
HEARTBEAT_SECONDS = 5.0
STOP_POLL_SECONDS = 1.0          # how often a trainer looks for a stop request from elsewhere
# fullmatch, not `$`: `$` also matches before a trailing newline.
RUN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-b[0-7]-[0-9a-f]{4}")
RUN_ID_EXAMPLE = "20261125-142301-b0-3f9a"
LABEL_MAX_CHARS = 60
# Letters and digits of any script, spaces and everyday punctuation: no markup, no control characters.
_LABEL_PUNCTUATION = set(" -–—_.,:;'’()+/=@#&!?%")

# Runs whose training thread lives in this process: a status saying "running" for one of our
# own pid that is not in this set was left by a thread that no longer exists.
_ACTIVE_HERE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()
# status.json is read-modify-written by the training thread, Stop and any viewer that notices a
# dead trainer; without one lock a write can undo another's (e.g. lose checkpoint_epoch).
_STATUS_LOCK = threading.RLock()


class RunNotFoundError(LookupError):
    """A run id that is malformed, escapes the runs folder, or names no run."""


class CheckpointError(SelfExplainedError, RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file, why and what to do."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("EFFLAB_RUNS_DIR", "runs"))


def is_run_id(text: Any) -> bool:
    """Whether `text` is a well-formed run id (the one check every page and command uses)."""
    return isinstance(text, str) and RUN_ID_PATTERN.fullmatch(text) is not None


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(safe_io.read_text(path))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
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


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22); None where
    unknown. Recorded with the pid, so a pid reused after a reboot is not taken for the trainer."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def trainer_identity() -> dict[str, Any]:
    """What status.json records of the process that trains: pid, its start time, host."""
    return {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid()), "host": socket.gethostname()}


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
    name: str = ""
    author: str = ""
    queued_at: float | None = None
    kind: str = "train"
    ran_on: str = ""          # the trainer's host, "(Ray)" after it for a Ray task; "" until it trains

    @property
    def label(self) -> str:
        """"Ana — lr 3e-3" (name and author) or "" when neither was given."""
        return " — ".join(part for part in (self.name, self.author and f"by {self.author}") if part)


class Run:
    """One run folder. Callers ask it for what they need; only this class knows the file names."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name

    # --- paths (private: nobody outside the store names a run file) ---------------------------
    def _file(self, name: str) -> Path:
        return self.path / name

    def _checkpoint_path(self, which: str) -> Path:
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint: expected one of {', '.join(CHECKPOINTS)}; got {which!r}")
        return self.path / CHECKPOINT_DIR / (LAST_CHECKPOINT if which == "last" else BEST_CHECKPOINT)

    def checkpoint(self, which: str = "last") -> Path | None:
        """The path of the run's last (or best) checkpoint, to load; None when it has none."""
        path = self._checkpoint_path(which)
        return path if safe_io.is_regular_file(path) else None

    def version(self, artifact: str) -> float:
        """A stamp that changes whenever `artifact` changes (its mtime; 0.0 when absent): the key
        for caches of anything derived from it. Artifacts: see ARTIFACTS."""
        if artifact not in ARTIFACTS:
            raise ValueError(f"artifact: expected one of {', '.join(ARTIFACTS)}; got {artifact!r}")
        return safe_io.modified_time(self.path / ARTIFACTS[artifact])

    def versions(self, *artifacts: str) -> tuple[float, ...]:
        return tuple(self.version(a) for a in artifacts)

    def tensorboard_dir(self) -> Path:
        """The folder TensorBoard event files go in (created on demand)."""
        folder = self.path / TENSORBOARD_DIR
        folder.mkdir(exist_ok=True)
        return folder

    # --- config ------------------------------------------------------------------------------
    def read_config(self) -> TrainConfig:
        """Raises ValueError (ConfigError or JSON error) when config.json is damaged."""
        try:
            return TrainConfig.from_json(safe_io.read_text(self._file(CONFIG_FILE)))
        except RecursionError:
            raise ValueError("config.json is nested too deeply") from None

    # --- status ------------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        status = _read_json(self._file(STATUS_FILE))
        if status.get("state") not in STATES:
            raise ValueError(f"unknown state {str(status.get('state'))[:40]!r}")
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
            safe_io.atomic_write_text(self._file(STATUS_FILE), json.dumps(status, indent=2))
            return status

    def live_status(self) -> dict[str, Any]:
        """status.json, with a run whose trainer is gone marked (and saved) as interrupted."""
        status = self.read_status()
        if status["state"] in TRAINING_STATES and self._trainer_gone(status):
            # Checked again under the lock: the trainer may have written its final state since.
            with _STATUS_LOCK:
                status = self.read_status()
                if status["state"] in TRAINING_STATES and self._trainer_gone(status):
                    status = self.write_status(
                        state="interrupted", if_state=TRAINING_STATES,
                        error="the training process ended without finishing (killed, crashed or "
                              "restarted); resume continues from the last checkpoint") or self.read_status()
        return status

    def _trainer_gone(self, status: dict[str, Any]) -> bool:
        pid, host = status.get("pid"), status.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool):
            if pid == os.getpid():
                with _ACTIVE_LOCK:
                    return self.run_id not in _ACTIVE_HERE
            if not _pid_alive(pid):
                return True
            recorded = status.get("pid_start")
            return isinstance(recorded, int) and process_start_ticks(pid) not in (None, recorded)
        return time.time() - _number(status.get("heartbeat")) > STALE_HEARTBEAT_SECONDS

    def checkpoint_epoch(self) -> int:
        """Finished epochs the last checkpoint holds (0 when there is no checkpoint)."""
        if self.checkpoint("last") is None:
            return 0
        try:
            return int(_number(self.read_status().get("checkpoint_epoch")))
        except (OSError, ValueError):
            return 0

    # --- stop requests: Stop from any process, polled by the trainer wherever it runs ----------
    def request_stop(self) -> None:
        safe_io.atomic_write_text(self._file(STOP_REQUEST_FILE), json.dumps({"requested_at": time.time()}))

    def stop_requested(self) -> bool:
        """Cheap (one stat): trainers call it about once a second, not per batch."""
        return safe_io.is_regular_file(self._file(STOP_REQUEST_FILE))

    def clear_stop_request(self) -> None:
        try:
            os.unlink(self._file(STOP_REQUEST_FILE))
        except FileNotFoundError:
            pass

    # --- metrics -----------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        path = self._file(METRICS_FILE)
        safe_io.cut_partial_last_line(path)
        new = safe_io.modified_time(path) == 0.0 or path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        safe_io.append_line_durably(path, buffer.getvalue().encode("utf-8"))

    def read_metrics(self) -> list[dict[str, float]]:
        """Finished epochs, in order; a truncated last line (crash mid-write) or a garbled one is skipped."""
        path = self._file(METRICS_FILE)
        try:
            text = safe_io.read_text(path, safe_io.MAX_CSV_BYTES)
        except FileNotFoundError:
            return []
        rows: list[dict[str, float]] = []
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        try:
            for raw in csv.DictReader(io.StringIO(complete)):
                try:
                    row = {k: float(raw[k]) if raw.get(k) not in (None, "") else float("nan")
                           for k in METRIC_COLUMNS}
                    row["epoch"] = int(row["epoch"])   # NaN (no epoch) raises: not a row
                except (TypeError, ValueError, OverflowError):
                    continue
                rows.append(row)
        except csv.Error:   # a garbled file: keep the rows read so far
            pass
        return rows

    def reconcile_metrics(self, checkpoint_epoch: int) -> None:
        """Makes metrics.csv hold exactly the epochs 1..checkpoint_epoch, before a resume.

        Drops rows past the checkpoint (their weights were never saved) and restores the row of the
        checkpoint's own epoch when its append failed (a full disk): status.json keeps a copy of it.
        """
        self.truncate_batches_after(checkpoint_epoch)
        rows = self.read_metrics()
        if any(r["epoch"] > checkpoint_epoch for r in rows):
            self._rewrite_metrics([r for r in rows if r["epoch"] <= checkpoint_epoch])
            rows = self.read_metrics()
        have = {r["epoch"] for r in rows}
        try:
            pending = self.read_status().get("checkpoint_row")
        except (OSError, ValueError):
            pending = None
        if checkpoint_epoch and checkpoint_epoch not in have and isinstance(pending, dict) \
                and pending.get("epoch") == checkpoint_epoch:
            self.append_metrics(pending)

    def truncate_metrics_after(self, epoch: int) -> None:
        """Drops rows past `epoch` (a crash between the CSV append and the status write)."""
        rows = self.read_metrics()
        if any(r["epoch"] > epoch for r in rows):
            self._rewrite_metrics([r for r in rows if r["epoch"] <= epoch])

    def _rewrite_metrics(self, rows: list[dict[str, float]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        safe_io.atomic_write_text(self._file(METRICS_FILE), buffer.getvalue())

    # --- per-batch reports: the curves inside each epoch, kept after the run -----------------
    def append_batches(self, epoch: int, reports: Sequence[tuple[int, float, float]]) -> None:
        """Appends a finished epoch's (batch, running-mean loss, running-mean accuracy) reports, in
        one durable append."""
        path = self._file(BATCHES_FILE)
        safe_io.cut_partial_last_line(path)
        has_header = safe_io.modified_time(path) and path.stat().st_size
        text = _batch_lines({epoch: reports}, header=not has_header)
        safe_io.append_line_durably(path, text.encode("utf-8"))

    def read_batches(self) -> dict[int, list[tuple[int, float, float]]]:
        """{epoch: [(batch, running-mean loss, running-mean accuracy), ...]} for the finished epochs
        written so far (runs from before this file, and epochs a crash cut short, have none). The
        accuracy is NaN in lines written before it was recorded; garbled lines are skipped."""
        try:
            text = safe_io.read_text(self._file(BATCHES_FILE), safe_io.MAX_CSV_BYTES)
        except FileNotFoundError:
            return {}
        epochs: dict[int, list[tuple[int, float, float]]] = {}
        for line in text.splitlines()[1:] if text.endswith("\n") else text.splitlines()[1:-1]:
            try:
                epoch, batch, loss, *accuracy = line.split(",")
                if len(accuracy) > 1:
                    continue
                epochs.setdefault(int(epoch), []).append(
                    (int(batch), float(loss), float(accuracy[0]) if accuracy and accuracy[0] else math.nan))
            except ValueError:
                continue
        return epochs

    def read_batch_losses(self) -> dict[int, list[tuple[int, float]]]:
        """batch_losses_of(read_batches())."""
        return batch_losses_of(self.read_batches())

    def read_batch_accuracies(self) -> dict[int, list[tuple[int, float]]]:
        """batch_accuracies_of(read_batches())."""
        return batch_accuracies_of(self.read_batches())

    def truncate_batches_after(self, epoch: int) -> None:
        """Drops the epochs past `epoch`: a resume redoes them from the checkpoint."""
        epochs = self.read_batches()
        if any(e > epoch for e in epochs):
            kept = {e: reports for e, reports in epochs.items() if e <= epoch}
            safe_io.atomic_write_text(self._file(BATCHES_FILE), _batch_lines(kept, header=True))

    # --- progress ----------------------------------------------------------------------------
    def write_progress(self, progress: dict[str, Any]) -> None:
        safe_io.atomic_write_text(self._file(PROGRESS_FILE), json.dumps(progress))

    def read_progress(self) -> dict[str, Any]:
        try:
            return _read_json(self._file(PROGRESS_FILE))
        except (OSError, ValueError):
            return {}

    # --- a learning-rate finder job's result -------------------------------------------------
    def write_lr_finding(self, finding: dict[str, Any]) -> None:
        safe_io.atomic_write_text(self._file(LR_FINDING_FILE), json.dumps(finding))

    def read_lr_finding(self) -> dict[str, Any] | None:
        """The finder's {"rates", "losses", "smoothed", "suggestion", ...}; None when absent or damaged."""
        try:
            return _read_json(self._file(LR_FINDING_FILE))
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

    def copy_checkpoint(self, source: str, target: str) -> None:
        """best.keras from last.keras (or back), through a temporary name like any checkpoint."""
        data = self._checkpoint_path(source)
        self.write_checkpoint(lambda tmp: tmp.write_bytes(data.read_bytes()), which=target)

    # --- predictions -------------------------------------------------------------------------
    def write_predictions(self, y_true: np.ndarray, y_prob: np.ndarray, *, epoch: int | None = None) -> bool:
        """Saves test-set predictions made from the checkpoint of `epoch`.

        Returns False (and writes nothing) when the run already has predictions of a later epoch:
        an evaluation that finishes late never replaces newer ones.
        """
        with _STATUS_LOCK:
            try:
                newest = self.read_status().get("predictions_epoch")
            except (OSError, ValueError):
                newest = None
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
        """Never raises: a damaged folder gives a summary whose `damaged` says why."""
        try:
            return self._summary()
        except Exception as exc:  # noqa: BLE001 - one bad folder must never break a listing
            return RunSummary(self.run_id, "damaged", damaged=f"unreadable: {type(exc).__name__}: {exc}"[:300])

    def _summary(self) -> RunSummary:
        try:
            status = self.live_status()
        except FileNotFoundError:
            return RunSummary(self.run_id, "damaged", damaged="status.json is missing")
        except (OSError, ValueError) as exc:
            return RunSummary(self.run_id, "damaged", damaged=f"status.json is unreadable: {exc}")
        test_accuracy = status.get("test_accuracy")
        summary = RunSummary(self.run_id, status["state"], epochs=int(_number(status.get("epochs"))),
                             started=str(status.get("started", ""))[:40], error=str(status.get("error") or ""),
                             test_accuracy=_number(test_accuracy) if test_accuracy is not None else None,
                             has_predictions=self.has_predictions(),
                             name=_label(status.get("name")), author=_label(status.get("author")),
                             queued_at=_number(status.get("queued_at")) or None,
                             kind=status.get("kind") if status.get("kind") in KINDS else "train",
                             ran_on=_ran_on(status))
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
        started_at = _number(status.get("started_at"))
        if started_at:
            end = _number(status.get("ended_at")) or _number(status.get("heartbeat"))
            summary.duration_seconds = max(0.0, end - started_at)
        return summary


def batch_losses_of(batches: dict[int, list[tuple[int, float, float]]]) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean loss), ...]} of Run.read_batches()."""
    return {epoch: [(batch, loss) for batch, loss, _ in reports] for epoch, reports in batches.items()}


def batch_accuracies_of(batches: dict[int, list[tuple[int, float, float]]]) -> dict[int, list[tuple[int, float]]]:
    """{epoch: [(batch, running-mean accuracy), ...]} of Run.read_batches(), for the epochs that
    recorded it."""
    epochs = {epoch: [(batch, accuracy) for batch, _, accuracy in reports if accuracy == accuracy]
              for epoch, reports in batches.items()}
    return {epoch: pairs for epoch, pairs in epochs.items() if pairs}


def _batch_lines(epochs: dict[int, Sequence[tuple]], *, header: bool) -> str:
    """batches.csv text for {epoch: [(batch, loss[, accuracy]), ...]}, each line ending in a newline;
    a missing or NaN accuracy is left empty."""
    def accuracy_text(report: tuple) -> str:
        return repr(float(report[2])) if len(report) > 2 and report[2] == report[2] else ""

    lines = [",".join(BATCH_COLUMNS)] if header else []
    lines += [f"{int(e)},{int(r[0])},{float(r[1])!r},{accuracy_text(r)}"
              for e, reports in sorted(epochs.items()) for r in reports]
    return "".join(line + "\n" for line in lines)


def _number(value: Any) -> float:
    """A number from status.json, 0.0 for anything that is not a finite one."""
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
    to litter the run store) and threads (an RLock), re-entrant in the thread that holds it: flock
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
    """All runs under one folder (EFFLAB_RUNS_DIR, default ./runs)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()

    def create(self, config: TrainConfig, *, name: str = "", author: str = "", kind: str = "train") -> Run:
        """A new run folder with config.json and a queued status; the id sorts by start time.
        `kind` "lr_find" makes it a learning-rate finder job (queued like a run, listed apart).

        Raises:
            ValueError: a name or author that is not allowed (the message names the field).
        """
        name, author = check_label("name", name), check_label("author", author)
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}; got {kind!r}")
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
        safe_io.atomic_write_text(run._file(CONFIG_FILE), config.to_json())
        now = time.time()
        run.write_status(state="queued", kind=kind, epoch=0, epochs=config.epochs, error="", name=name, author=author,
                         started=f"{datetime.now():%Y-%m-%d %H:%M:%S}", started_at=now, queued_at=now,
                         **trainer_identity())
        return run

    def get(self, run_id: str) -> Run:
        """The run called `run_id`; refuses malformed ids, paths and links out of the folder."""
        if not is_run_id(run_id):
            raise RunNotFoundError(f"run id must look like {RUN_ID_EXAMPLE}; got {str(run_id)[:80]!r}")
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
                       if is_run_id(p.name) and p.is_dir() and not p.is_symlink()), reverse=True)

    def list(self, kinds: tuple[str, ...] | None = ("train",)) -> list[RunSummary]:
        """Every run, newest first; damaged ones carry their reason. `kinds=None`: learning-rate
        finder jobs too (the queue shows them; result pages and the run table do not)."""
        summaries = [Run(self.root / rid).summary() for rid in self.run_ids()]
        return summaries if kinds is None else [s for s in summaries if s.kind in kinds or s.damaged]

    def delete(self, run_id: str) -> None:
        """Removes a run folder; refuses one that is queued or still training."""
        run = self.get(run_id)
        try:
            state = run.live_status()["state"]
        except (OSError, ValueError):
            state = "damaged"
        if state in ACTIVE_STATES:
            what = "queued; cancel it" if state == "queued" else "still training; stop it"
            raise ValueError(f"run {run_id} is {what} before deleting it")
        shutil.rmtree(run.path)

    # --- the queue ---------------------------------------------------------------------------
    def queue(self) -> list[RunSummary]:
        """Queued runs in the order they train: oldest `queued_at` first."""
        queued = [s for s in self.list(kinds=None) if s.state == "queued" and not s.damaged]
        return sorted(queued, key=lambda s: (s.queued_at or 0.0, s.run_id))

    @contextlib.contextmanager
    def queue_lock(self) -> Iterator[None]:
        """Across processes: only one claim (or cancel) of a queued run at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _flock(self.root):
            yield

    def enqueue(self, run: Run, epochs: int) -> None:
        """Puts a stopped, finished or cancelled run back in line to train up to `epochs`."""
        run.clear_stop_request()
        run.write_status(state="queued", epochs=epochs, error="", queued_at=time.time(), ended_at=None)

    def claim(self, run_id: str) -> Run | None:
        """Takes a queued run for this process to train: it becomes `running` here. None when
        someone else claimed (or cancelled) it first."""
        with self.queue_lock():
            try:
                run = self.get(run_id)
                status = run.read_status()
            except (RunNotFoundError, OSError, ValueError):
                return None
            if status.get("state") != "queued":
                return None
            run.clear_stop_request()
            run.write_status(state="running", error="", executor="thread", claimed_at=time.time(),
                             **trainer_identity())
            return run

    def cancel(self, run_id: str) -> bool:
        """A queued run leaves the line (state `cancelled`; its folder stays). False if not queued."""
        with self.queue_lock():
            run = self.get(run_id)
            return run.write_status(state="cancelled", if_state=("queued",), ended_at=time.time(),
                                    error="cancelled before it started training") is not None


def mark_active(run_id: str, active: bool) -> None:
    """Called by the trainer thread: this process is (or no longer is) training `run_id`."""
    with _ACTIVE_LOCK:
        (_ACTIVE_HERE.add if active else _ACTIVE_HERE.discard)(run_id)


def is_active_here(run_id: str) -> bool:
    with _ACTIVE_LOCK:
        return run_id in _ACTIVE_HERE


class Keepalive:
    """A trainer's timer thread: beats the heartbeat and turns a stop request into `stop_event`.

    From a thread rather than the batch callback, so a long compile, validation or test prediction
    never reads as dead on another host; and so a Stop asked in another process costs the batch
    loop nothing but an Event check.
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
        while not self._done.wait(STOP_POLL_SECONDS):
            try:
                if not self.stop_event.is_set() and self.run.stop_requested():
                    self.stop_event.set()
                    if self.on_stop_request:
                        self.on_stop_request()
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    self.run.write_status(if_state=TRAINING_STATES)
            except OSError:
                pass   # a full disk must not kill the beat: the trainer reports the failure
