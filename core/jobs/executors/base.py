"""The interface every executor offers the scheduler: submit a claimed run, stop it, ask if it lives.

The scheduler (core/jobs/scheduler.py) decides which queued run trains and when; an executor only decides
where and how: a thread of this process (core/jobs/executors/thread.py), a worker process of its own
(core/jobs/executors/process.py), or a Ray task (core/jobs/executors/ray.py). Whatever the executor, the run
store is the contract: the trainer heartbeats the claim's lease, polls stop requests and writes
its progress and final state there, so pages read every run the same way.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.settings.config import TrainConfig
from core.store.runs import TRAINING_STATES, Keepalive, Run, mark_active
from core.store.states import RunState
from core.training.progress import Progress

BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


class JobError(RuntimeError):
    """A start, stop, cancel or resume that cannot be done; the message says why and what to do."""


@dataclass
class Job:
    """One run an executor trains for this process."""

    run_id: str
    # The thread of this process that ends with the job: the trainer itself, or the one watching
    # a worker process or Ray task.
    thread: threading.Thread
    stop_event: threading.Event
    progress: Progress
    # True: `progress` is the live progress (the trainer is in this process). False: the trainer
    # writes it to the run store, where it is read.
    progress_here: bool = True
    config: TrainConfig | None = None     # what it trains (memory admission counts it)
    started: float = field(default_factory=time.time)
    # Set as the job ends: its slot counts as free while the thread hands over to the next run.
    finished: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None                # the worker process, for an executor that has one


class Executor(ABC):
    """Trains claimed runs somewhere; calls `wake()` (the scheduler) when a slot frees or a run may start."""

    name = ""                   # "thread" | "process" | "ray": recorded in each run's status
    trains_here = True          # runs use this machine's memory and devices (admission, device report)
    # It must reach something (a cluster) before it takes runs: the scheduler asks `ready` only
    # when runs wait, so nothing is imported or dialled for an empty queue.
    connects = False

    def __init__(self, runs_dir: Path, data_dir: str | None, wake: Callable[[], object]):
        self.runs_dir = Path(runs_dir)
        self.data_dir = data_dir
        self.wake = wake
        self.problem = ""       # why runs cannot start now, in one line; "" while they can

    @abstractmethod
    def submit(self, run: Run, target_epochs: int) -> Job:
        """Starts training `run` (claimed by this process: `running`, its lease ours) up to
        `target_epochs`; returns its job at once.

        Raises:
            JobError: it could not be started; the run has been marked failed, saying why.
        """

    @abstractmethod
    def stop(self, job: Job, run: Run) -> None:
        """Asks the job to stop at its next batch, keeping a checkpoint."""

    def alive(self, job: Job) -> bool:
        """Whether the job still holds its slot."""
        return job.thread.is_alive() and not job.finished.is_set()

    def ready(self, now: bool = False) -> str:
        """"" when runs can be submitted now; else why not, in one line (kept in `problem`)."""
        return ""

    def capacity(self, slots: int) -> int:
        """How many runs train at once: the server's `slots`, unless the executor knows better."""
        return slots

    def workers_bytes(self) -> int | None:
        """Memory the runs hold outside this process (worker processes); None: they train inside it."""
        return None

    @abstractmethod
    def where(self, slots: int) -> str:
        """One line for the pages: where queued runs train and how many at once."""

    @staticmethod
    def where_trained(status: dict) -> str:
        """Where a run this kind of executor trains (or trained) does it, from its status, for a
        caption; "" when there is nothing to add (a thread of the server that shows it)."""
        return ""

    def _ended(self, job: Job) -> None:
        """The job's slot is free: its run no longer counts as ours, and the next queued run starts
        now, not when someone looks."""
        mark_active(job.run_id, False)
        job.finished.set()
        try:
            self.wake()
        except Exception:  # noqa: BLE001 - a damaged runs folder must not kill a thread loudly
            pass


def starting_phase(environ=os.environ) -> str:
    """The first phase a student sees, naming the framework that is loading: "starting TensorFlow",
    or "starting JAX" under KERAS_BACKEND=jax (a GPU machine without TensorFlow)."""
    backend = environ.get("KERAS_BACKEND", "tensorflow").strip().lower() or "tensorflow"
    return f"starting {BACKEND_NAMES.get(backend, backend)}"


def config_or_none(run: Run) -> TrainConfig | None:
    """The run's config, None when it cannot be read (the run then fails in training, saying why)."""
    try:
        return run.read_config()
    except ValueError:
        return None


def train_claimed(run: Run, target_epochs: int, stop_event: threading.Event, progress: Progress,
                  data_dir: str | None):
    """Trains `run` in this process, whichever executor brought it here: a run, a learning-rate
    finder job or an evaluation job (its status's kind). Returns the trainer's Outcome; raises only
    what it cannot record."""
    # Imported here: TensorFlow costs seconds to import and the dashboard must start fast. Under
    # the claim's heartbeat: on a busy machine the import can outlast a lease.
    with Keepalive(run, stop_event):
        from core.training.train import evaluate_run, lr_find_run, train_run
    work = {"lr_find": lr_find_run, "evaluate": evaluate_run}.get(run.read_status().get("kind"), train_run)
    return work(run, target_epochs=target_epochs, stop_event=stop_event, progress=progress, data_dir=data_dir)


def record_crash(run: Run, progress: Progress, exc: BaseException) -> None:
    """What escaped the trainer (it records its own failures): the run `failed`, saying what."""
    progress.update(state=RunState.FAILED, phase=RunState.FAILED, error=str(exc))
    with contextlib.suppress(OSError):
        run.write_status(state=RunState.FAILED, error=f"{type(exc).__name__}: {exc}"[:500], ended_at=time.time(),
                         if_state=TRAINING_STATES)
