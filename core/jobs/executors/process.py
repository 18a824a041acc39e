"""EFFLAB_EXECUTOR=process: each run trains in a `python -m core work` worker process of its own.

A crash, or the kernel's out-of-memory kill, of one run then ends that worker only: the dashboard
and the other runs go on, and the run reads `interrupted` at once (this process watches the
worker's pid and knows it died; nobody has to wait for its lease) and resumes from its last
checkpoint. The choice for a shared class server; the thread executor starts a run a little sooner
and shows its progress from memory (bench/executors.py, bench/README.md).

The worker trains the run this process has claimed, nothing else: it takes over the claim's lease
(the claim's time is its proof), heartbeats it and polls stop requests as any trainer does, so Stop
goes through the run store. This process renews the lease too while the worker lives (a worker
still importing TensorFlow must not read as dead). What the worker prints goes to the run folder's
worker.log; its last line explains an exit that left the run unfinished. A worker whose parent
ends (the dashboard stopped, or killed) stops its run at the next batch, keeping a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.jobs.admission import resident_bytes
from core.jobs.executors.base import Executor, Job, JobError, config_or_none, record_crash, train_claimed
from core.jobs.slots import slots_explained
from core.store.run_files import WORKER_LOG_FILE
from core.store.runs import TRAINING_STATES, Run, RunStore, heartbeat_seconds, mark_active, trainer_identity
from core.store.states import RunState
from core.training.progress import Progress

CHECKOUT = Path(__file__).resolve().parents[3]
PARENT_POLL_SECONDS = 1.0        # how soon a worker notices that the server that started it is gone
LOG_TAIL_BYTES = 4096            # read from the end of worker.log to explain an early exit


class ProcessExecutor(Executor):
    """Runs in worker processes started from here, one per run, watched by a thread each."""

    name = "process"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._workers: dict[str, subprocess.Popen] = {}

    def submit(self, run: Run, target_epochs: int) -> Job:
        progress = Progress(state=RunState.RUNNING, phase="starting a worker process", run_id=run.run_id,
                            epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        # The claim's lease is this process's: while the worker lives, no viewer here may think it dead.
        mark_active(run.run_id, True)
        try:
            status = run.write_status(epochs=target_epochs, executor=self.name, submitted_from=trainer_identity())
            run.write_progress(progress.snapshot())
            with open(run.path / WORKER_LOG_FILE, "ab") as log:
                worker = subprocess.Popen(
                    worker_command(self.runs_dir, run.run_id, target_epochs, status["claimed_at"], self.data_dir),
                    cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    # Its own session: a Ctrl-C meant for the server is not sent to the runs; they
                    # see the server gone and stop with a checkpoint instead.
                    start_new_session=True)
        except (OSError, TypeError, KeyError) as exc:   # no python to start, a full disk, no claim
            mark_active(run.run_id, False)
            record_crash(run, progress, exc)
            raise JobError(f"could not start a worker process for run {run.run_id}: {exc}") from None
        self._workers[run.run_id] = worker
        thread = threading.Thread(target=lambda: self._watch(job, run, worker), name=f"worker-{run.run_id}",
                                  daemon=True)
        job = Job(run.run_id, thread, threading.Event(), progress, progress_here=False,
                  config=config_or_none(run), pid=worker.pid)
        thread.start()
        return job

    def _watch(self, job: Job, run: Run, worker: subprocess.Popen) -> None:
        """Waits for the worker, renewing the lease meanwhile; a worker that ended with its run
        still training (killed, crashed) leaves the run `interrupted` now, saying how it ended."""
        try:
            while True:
                try:
                    worker.wait(heartbeat_seconds())
                    break
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(Exception):
                        run.renew_lease()
            error = f"{ended_how(worker.pid, worker.returncode, run.path / WORKER_LOG_FILE)}; resume continues " \
                    "from the last checkpoint"
            with contextlib.suppress(Exception):
                if run.write_status(state=RunState.INTERRUPTED, if_state=TRAINING_STATES, ended_at=time.time(),
                                    error=error) is not None:
                    job.progress.update(state=RunState.INTERRUPTED, phase=RunState.INTERRUPTED, error=error)
                    run.write_progress({**run.read_progress(), "state": RunState.INTERRUPTED, "phase": RunState.INTERRUPTED,
                                        "error": error})
        finally:
            self._workers.pop(job.run_id, None)
            self._ended(job)

    def stop(self, job: Job, run: Run) -> None:
        run.request_stop()       # the worker's keepalive thread sees it within a second
        job.progress.update(state=RunState.STOPPING)

    @staticmethod
    def where_trained(status: dict) -> str:
        sent = status.get("submitted_from") if isinstance(status.get("submitted_from"), dict) else {}
        if status.get("state") in TRAINING_STATES and status.get("pid") == sent.get("pid"):
            return f"Starting a worker process on {status.get('host', '?')}"
        state = status.get("state")
        verb = "Training" if state in TRAINING_STATES else "Trained" if state in (RunState.COMPLETED, RunState.STOPPED) else "Ran"
        return f"{verb} in worker process {status.get('pid', '?')} on {status.get('host', '?')}"

    def workers_bytes(self) -> int:
        return sum(resident_bytes(f"/proc/{w.pid}/status") or 0 for w in list(self._workers.values()))

    def where(self, slots: int) -> str:
        return f"Training slots on this server (a worker process per run): {slots_explained(slots)}"


def worker_command(runs_dir: Path, run_id: str, target_epochs: int, claimed_at: float,
                   data_dir: str | None) -> list[str]:
    """`python -m core work ...` for one claimed run; the claim's time travels exactly (repr)."""
    command = [sys.executable, "-m", "core", "--runs-dir", str(Path(runs_dir).resolve())]
    if data_dir:
        command += ["--data-dir", str(Path(data_dir).resolve())]
    return command + ["work", run_id, "--epochs", str(target_epochs), "--claimed-at", repr(float(claimed_at)),
                      "--parent-pid", str(os.getpid())]


def ended_how(pid: int, code: int | None, log: Path) -> str:
    """How a worker ended, in words: the signal that killed it (SIGKILL: most often the kernel's
    out-of-memory killer), or its exit code and the last line it printed."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = " (the kernel's out-of-memory killer sends it when memory runs out)" if -code == signal.SIGKILL else ""
        return f"its worker process {pid} was killed by {name}{hint}"
    last = last_line(log)
    return f"its worker process {pid} exited with code {code}" + (f": {last[:300]}" if last else "")


def last_line(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def work(runs_dir: str | Path | None, run_id: str, target_epochs: int, claimed_at: float,
         data_dir: str | None, parent_pid: int | None = None) -> str:
    """The worker's side (`python -m core work`): trains the run claimed at `claimed_at` in this
    process; returns its final state, or "skipped" when the claim is no longer current (the run was
    declared gone and resumed elsewhere meanwhile): it trains nothing then.

    Raises:
        RunNotFoundError: no such run.
    """
    run = RunStore(runs_dir).get(run_id)
    if run.read_status().get("state") not in TRAINING_STATES or not run.adopt_lease(claimed_at):
        return "skipped"
    run.write_status(if_state=TRAINING_STATES, executor="process", **trainer_identity())
    progress = Progress(state=RunState.RUNNING, phase="starting a worker process", run_id=run_id, epoch=0,
                        epochs=target_epochs, batch=0, batches=0, error="")
    stop_event = threading.Event()
    if parent_pid:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop_event), name="parent-watch",
                         daemon=True).start()
    try:
        return train_claimed(run, target_epochs, stop_event, progress, data_dir).state
    except BaseException as exc:  # noqa: BLE001 - recorded, then this process ends
        record_crash(run, progress, exc)
        return RunState.FAILED


def _stop_when_orphaned(parent_pid: int, stop_event: threading.Event) -> None:
    """A worker outliving the server that watches it would train unseen: it stops at the next batch,
    keeping a checkpoint to resume from."""
    while not stop_event.is_set():
        if os.getppid() != parent_pid:
            stop_event.set()
            return
        time.sleep(PARENT_POLL_SECONDS)

