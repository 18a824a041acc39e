"""A run folder's readable files: what the store writes beside the artifacts so that a folder
stands on its own, and reads back when it imports a folder it has not seen (a folder from before
the database, or one copied from another lab).

The database is the truth for a run in this lab (core/store/runs.py); these files are its export:
config.json once, status.json on every change of the status, a metrics.csv row and the epoch's
batches.csv lines at the end of every epoch, progress.json when the run ends. Writes are atomic
and durable (core/store/safe_io.py); readers tolerate what a crash leaves: a missing file, a
truncated last CSV line, invalid JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.store import safe_io

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
BATCHES_FILE = "batches.csv"            # every finished epoch's per-batch running-mean loss and accuracy
PROGRESS_FILE = "progress.json"         # a finished run's last progress (live progress is in the database)
# What a run of the store is: a training run, a learning-rate finder job, or an evaluation job
# ("Evaluate now": another run's checkpoint over the test set). All go through the queue (they
# use the same machine); only training runs are listed as runs.
KINDS = ("train", "lr_find", "evaluate")
WORKER_LOG_FILE = "worker.log"          # what a run's worker process printed (EFFLAB_EXECUTOR=process)
METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "epoch_seconds", "images_per_second")
# loss and accuracy: Keras' running means over the epoch's batches 1..batch. Files written before
# accuracy was recorded have three columns; their lines still read, with no accuracy.
BATCH_COLUMNS = ("epoch", "batch", "loss", "accuracy")
# Import reads CSV files line by line, with no cap on their size (the database has none either).
MAX_LINE_CHARS = 4096


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity in it replaced by None (JSON, and PostgreSQL, have none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; ValueError when it is not one, OSError when it cannot be read."""
    try:
        data = json.loads(safe_io.read_text(path))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


# --- writing the export --------------------------------------------------------------------------
def write_status(folder: Path, status: dict[str, Any]) -> None:
    safe_io.atomic_write_text(folder / STATUS_FILE, json.dumps(finite(status), indent=2))


def write_progress(folder: Path, progress: dict[str, Any]) -> None:
    safe_io.atomic_write_text(folder / PROGRESS_FILE, json.dumps(finite(progress)))


def append_metrics(folder: Path, row: dict[str, Any]) -> None:
    path = folder / METRICS_FILE
    safe_io.cut_partial_last_line(path)
    new = safe_io.modified_time(path) == 0.0 or path.stat().st_size == 0
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    if new:
        writer.writeheader()
    writer.writerow({k: _cell(row.get(k)) for k in METRIC_COLUMNS})
    safe_io.append_line_durably(path, buffer.getvalue().encode("utf-8"))


def rewrite_metrics(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in METRIC_COLUMNS} for row in rows)
    safe_io.atomic_write_text(folder / METRICS_FILE, buffer.getvalue())


def append_batches(folder: Path, epoch: int, reports: Sequence[tuple]) -> None:
    path = folder / BATCHES_FILE
    safe_io.cut_partial_last_line(path)
    has_header = safe_io.modified_time(path) and path.stat().st_size
    safe_io.append_line_durably(path, batch_lines({epoch: reports}, header=not has_header).encode("utf-8"))


def rewrite_batches(folder: Path, epochs: dict[int, Sequence[tuple]]) -> None:
    safe_io.atomic_write_text(folder / BATCHES_FILE, batch_lines(epochs, header=True))


def batch_lines(epochs: dict[int, Sequence[tuple]], *, header: bool) -> str:
    """batches.csv text for {epoch: [(batch, loss[, accuracy]), ...]}, each line ending in a newline;
    a missing or NaN accuracy is left empty."""
    def accuracy_text(report: tuple) -> str:
        return repr(float(report[2])) if len(report) > 2 and report[2] is not None and report[2] == report[2] else ""

    lines = [",".join(BATCH_COLUMNS)] if header else []
    lines += [f"{int(e)},{int(r[0])},{float(r[1])!r},{accuracy_text(r)}"
              for e, reports in sorted(epochs.items()) for r in reports]
    return "".join(line + "\n" for line in lines)


def _cell(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and value != value) else value


# --- reading a folder (import) --------------------------------------------------------------------
def _complete_lines(path: Path) -> Iterator[str]:
    """The file's lines that end in a newline (a crash's last fragment is not one), refusing links
    and non-regular files like every read of the store."""
    fd = safe_io._open_regular(path, 0)    # O_RDONLY
    with open(fd, encoding="utf-8", errors="replace", newline="") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield line[:MAX_LINE_CHARS]


def read_metrics(folder: Path) -> list[dict[str, float]]:
    """metrics.csv's finished epochs, in order; a truncated or garbled line is skipped."""
    try:
        lines = list(_complete_lines(folder / METRICS_FILE))
    except FileNotFoundError:
        return []
    rows: list[dict[str, float]] = []
    try:
        for raw in csv.DictReader(lines):
            try:
                row = {k: float(raw[k]) if raw.get(k) not in (None, "") else float("nan") for k in METRIC_COLUMNS}
                row["epoch"] = int(row["epoch"])   # NaN (no epoch) raises: not a row
            except (TypeError, ValueError, OverflowError):
                continue
            rows.append(row)
    except csv.Error:   # a garbled file: keep the rows read so far
        pass
    by_epoch = {row["epoch"]: row for row in rows}      # a repeated epoch: its last row
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_batches(folder: Path) -> dict[int, list[tuple[int, float, float]]]:
    """batches.csv: {epoch: [(batch, loss, accuracy), ...]}; the accuracy is NaN in lines written
    before it was recorded; garbled lines are skipped."""
    try:
        lines = _complete_lines(folder / BATCHES_FILE)
        next(lines, None)                                  # the header
        epochs: dict[int, dict[int, tuple[int, float, float]]] = {}
        for line in lines:
            try:
                epoch, batch, loss, *accuracy = line.rstrip("\r\n").split(",")
                if len(accuracy) > 1:
                    continue
                report = (int(batch), float(loss), float(accuracy[0]) if accuracy and accuracy[0] else math.nan)
                epochs.setdefault(int(epoch), {})[report[0]] = report
            except ValueError:
                continue
    except FileNotFoundError:
        return {}
    return {epoch: [reports[b] for b in sorted(reports)] for epoch, reports in sorted(epochs.items())}


def read_progress(folder: Path) -> dict[str, Any]:
    try:
        return read_json(folder / PROGRESS_FILE)
    except (OSError, ValueError):
        return {}


RUN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-b[0-7]-[0-9a-f]{4}")


def is_run_id(text: Any) -> bool:
    """Whether `text` is a well-formed run id (the one check every page and command uses)."""
    return isinstance(text, str) and RUN_ID_PATTERN.fullmatch(text) is not None
