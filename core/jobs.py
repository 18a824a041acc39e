"""The process-wide job manager: at most one training thread, started, stopped and resumed.

One job at a time, refused rather than queued: one EfficientNet saturates a CPU or a GPU, so a
second run would only halve both. The refusal names the run that is training. The dashboard
keeps one manager per server process (st.cache_resource); the CLI makes its own.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.progress import Progress
from core.runs import ACTIVE_STATES, RESUMABLE_STATES, Run, RunStore, mark_active


class JobError(RuntimeError):
    """A start, stop or resume that cannot be done; the message says why and what to do."""


class JobManager:
    """Starts training in a background thread and tells anyone who asks how it is going."""

    def __init__(self, runs_dir: str | Path | None = None, data_dir: str | None = None):
        self.store = RunStore(runs_dir)
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._run_id: str | None = None
        self._stop_event = threading.Event()
        self._progress = Progress()

    # --- commands ----------------------------------------------------------------------------
    def start(self, config: TrainConfig) -> str:
        """Creates a run for `config` and starts training it; returns its id at once."""
        with self._lock:
            self._refuse_if_busy()
            try:
                run = self.store.create(config)
            except OSError as exc:
                raise JobError(f"could not create a run folder in {self.store.root}: "
                               f"{exc.strerror or exc}; check that it exists and has free space") from None
            self._launch(run, config.epochs)
            return run.run_id

    def resume(self, run_id: str, epochs: int | None = None) -> str:
        """Continues a stopped, interrupted, failed or finished run up to `epochs` in total.

        Training restarts from checkpoints/last.keras with its optimizer state, learning rate and
        epoch counter; metrics.csv is appended to.
        """
        with self._lock:
            self._refuse_if_busy()
            run = self.store.get(run_id)
            status = run.live_status()
            if status["state"] not in RESUMABLE_STATES:
                raise JobError(f"run {run_id} is {status['state']}; only a run that is "
                               f"{', '.join(RESUMABLE_STATES)} can be resumed")
            done = int(status.get("checkpoint_epoch", 0)) if run.last_checkpoint.exists() else 0
            target = int(epochs) if epochs is not None else int(status.get("epochs") or 0)
            if not 1 <= target <= 1000:
                raise JobError(f"epochs: expected a total number of epochs in [1, 1000]; got {epochs!r}")
            if target <= done:
                raise JobError(f"epochs: expected more than the {done} epochs run {run_id} has done "
                               f"(a total, not a number to add); got {target}")
            self._launch(run, target)
            return run.run_id

    def stop(self, run_id: str | None = None) -> bool:
        """Asks the running job to stop at the next batch, with a checkpoint. False if none runs."""
        with self._lock:
            if not self._busy() or (run_id is not None and run_id != self._run_id):
                return False
            self._stop_event.set()
            # Only while it still trains: the thread may have written its final state just now.
            self.store.get(self._run_id).write_status(state="stopping", if_state=("queued", "running"))
            self._progress.update(state="stopping")
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job ends (or `timeout` seconds); True when nothing is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self._busy()

    # --- queries -----------------------------------------------------------------------------
    @property
    def active_run_id(self) -> str | None:
        return self._run_id if self._busy() else None

    def progress(self, run_id: str | None = None) -> dict[str, Any]:
        """Live progress of `run_id` (default: the active or last job), from memory when it is ours."""
        if run_id is None or run_id == self._run_id:
            return self._progress.snapshot()
        return self.store.get(run_id).read_progress()

    # --- internals ---------------------------------------------------------------------------
    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _refuse_if_busy(self) -> None:
        if self._busy():
            raise JobError(f"run {self._run_id} is training; stop it or wait for it to finish "
                           "(one run at a time: one model already uses the whole machine)")
        # Another process (the CLI, a second server) may be training into the same folder.
        for summary in self.store.list():
            if summary.state in ACTIVE_STATES:
                raise JobError(f"run {summary.run_id} is {summary.state} in another process on "
                               f"{self.store.root}; stop it there or wait for it to finish")

    def _launch(self, run: Run, target_epochs: int) -> None:
        self._run_id = run.run_id
        self._stop_event = threading.Event()
        self._progress = Progress(state="queued", phase="starting TensorFlow", run_id=run.run_id,
                                  epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        # Marked active before the thread exists, so no viewer mistakes the queued run for a dead one.
        mark_active(run.run_id, True)
        try:
            run.write_status(state="queued", epochs=target_epochs, error="", pid=os.getpid(),
                             host=socket.gethostname())
            self._thread = threading.Thread(
                target=self._work, args=(run, target_epochs, self._stop_event, self._progress),
                name=f"train-{run.run_id}", daemon=True)
            self._thread.start()
        except (OSError, RuntimeError) as exc:   # a full disk, or no thread to be had
            mark_active(run.run_id, False)
            self._progress.update(state="failed", phase="failed", error=str(exc))
            raise JobError(f"could not start run {run.run_id}: {exc}") from None

    def _work(self, run: Run, target_epochs: int, stop_event: threading.Event, progress: Progress) -> None:
        try:
            # Imported here: TensorFlow costs seconds to import and the dashboard must start fast.
            from core.train import train_run
        except Exception as exc:  # noqa: BLE001 - a broken install must still mark the run
            run.write_status(state="failed", error=f"could not import TensorFlow: {exc}")
            progress.update(state="failed", phase="failed", error=str(exc))
            mark_active(run.run_id, False)
            return
        train_run(run, target_epochs=target_epochs, stop_event=stop_event, progress=progress,
                  data_dir=self.data_dir)
