"""The run as a process other than 0 sees it, in a run over several processes (core/training/processes.py).

Only process 0 writes the run folder. The others train the same model on their part of every
batch and must keep the engine's own bookkeeping (epochs done, the best validation accuracy so
far), so a `FollowerRun` answers the trainer's questions from memory, reads what process 0 wrote
where a follower needs it (the config and the checkpoint a resume starts from, on the shared
runs folder), and writes nothing: no status, no metrics, no checkpoint, no heartbeat.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from core.settings.config import TrainConfig
from core.store.runs import Run


class FollowerRun:
    """Run's interface for the trainer, over memory; `source` is process 0's run when resuming."""

    def __init__(self, config: TrainConfig, source: Run | None = None):
        self.config, self.source = config, source
        self.run_id = f"{source.run_id if source else 'new-run'} (process follower)"
        self._status: dict = dict(source.read_status()) if source else {}
        self._metrics: list[dict] = list(source.read_metrics()) if source else []

    # --- what process 0 wrote -------------------------------------------------------------------
    def read_config(self) -> TrainConfig:
        return self.config

    def checkpoint(self, which: str) -> Path | None:
        return self.source.checkpoint(which) if self.source else None

    def checkpoint_epoch(self) -> int:
        return int(self._status.get("checkpoint_epoch") or 0)

    def checkpoint_batch(self) -> int:
        return int(self._status.get("checkpoint_batch") or 0) if self.checkpoint("partial") else 0

    # --- the trainer's bookkeeping, in memory ----------------------------------------------------
    def read_status(self) -> dict:
        return dict(self._status)

    def write_status(self, **fields) -> None:
        self._status.update(fields)

    def read_metrics(self) -> list[dict]:
        return list(self._metrics)

    def append_metrics(self, row: dict) -> None:
        self._metrics.append(dict(row))

    def reconcile_metrics(self, epochs_done: int) -> None:
        self._metrics = [row for row in self._metrics if int(row["epoch"]) <= epochs_done]

    # --- what only process 0 writes ---------------------------------------------------------------
    def checkpoint_lock(self):
        return contextlib.nullcontext()

    def write_checkpoint(self, save, which: str = "last") -> None:
        pass

    def copy_checkpoint(self, source: str, target: str) -> None:
        pass

    def discard_checkpoint(self, which: str) -> None:
        pass

    def write_progress(self, snapshot: dict) -> None:
        pass

    def append_batches(self, epoch: int, reports) -> None:
        pass

    def write_predictions(self, *args, **kwargs) -> bool:
        return False

    def stop_requested(self) -> bool:
        return False   # process 0 reads the request and tells the others (core.training.callbacks.StopGuard)

    def clear_stop_request(self) -> None:
        pass

    def renew_lease(self) -> bool:
        return True    # the lease is process 0's: it renews it
