"""The process-wide job manager: a queue in front of training slots, and a scheduler only.

Start never refuses because the machine is busy: it creates the run as `queued` in the run store
and the scheduler hands the oldest queued run to a free slot, now or when a running job ends. The
queue lives in the store, not in memory, so it survives a restart of the server and any server on
the same runs folder drains it (claims are exclusive across processes), looking at it every
SCHEDULE_SECONDS from the moment the manager exists (dashboard/serve.py makes it as the server
starts). `EFFLAB_SLOTS` says how many runs train at once (core/jobs/slots.py decides the default); a
queued run starts only when its estimated memory fits beside the runs training here
(core/jobs/admission.py), and otherwise waits at its place.

Where a claimed run trains is its executor's business (core/jobs/executors/): a background thread of
this process (the default), a worker process of its own per run (EFFLAB_EXECUTOR=process), or a Ray
task on a cluster (EFFLAB_RAY_ADDRESS, or the CLI's --ray-address). The manager asks it only to
submit, stop and say whether a job lives; pages ask the manager (`where_runs_train`, `trains_here`,
`problem`), never which executor it is.

Stop works for any run: the executor of a run of ours is told (a thread's event is set at once); a
run trained by another process (the CLI, a second server) gets a stop request in the store, which
its trainer polls about once a second. The dashboard keeps one manager per server process
(st.cache_resource); the CLI makes its own, which trains the run it was asked for at once
(`queue=False`).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import UserInputError
from core.estimates.memory import check_fits
from core.jobs.admission import MemoryLedger
from core.jobs.executors import Executor, Job, JobError, make_executor
from core.jobs.executors.base import starting_phase
from core.jobs.slots import default_slots
from core.settings.config import MAX_EPOCHS, ConfigError, TrainConfig, check_startable
from core.store.ownership import QueueFull
from core.store.runs import ACTIVE_STATES, RESUMABLE_STATES, TRAINING_STATES, Run, RunNotFoundError, RunStore
from core.store.states import RunState

JOIN_FINISHING_SECONDS = 30.0   # a finished job's thread releases its slot within moments
# The queue is looked at this often even when nothing here ends: runs queued by another process,
# memory freed by one, a lease that lapsed on a run to resume. One indexed query when nothing waits.
SCHEDULE_SECONDS = 5.0

__all__ = ["JobError", "JobManager", "SCHEDULE_SECONDS", "starting_phase"]


class JobManager:
    """Queues runs and hands up to `slots` of them to its executor; tells anyone how they go."""

    def __init__(self, runs_dir: str | Path | None = None, data_dir: str | None = None, *,
                 slots: int | None = None, drain_queue: bool = True, ray_address: str | None = None,
                 periodic_work: Sequence[Callable[[JobManager], None]] = ()):
        """`periodic_work`: called with this manager on each of the scheduler's looks at the queue
        (every SCHEDULE_SECONDS), after it has started what it can.

        Raises:
            EnvSettingError: EFFLAB_EXECUTOR names no executor (core/jobs/executors/__init__.py).
        """
        self.store = RunStore(runs_dir)
        self.data_dir = data_dir
        self._slots = slots if slots is not None else default_slots()
        self.drain_queue = drain_queue
        self.periodic_work = list(periodic_work)
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._last_run_id: str | None = None
        self.executor: Executor = make_executor(self.store.root, data_dir, self._wake, ray_address_given=ray_address,
                                                drain_queue=drain_queue)
        # What this server's runs hold: this process's growth, or its worker processes' memory.
        self.memory = MemoryLedger.now(workers_bytes=self.executor.workers_bytes)
        self.memory_waits: dict[str, str] = {}    # queued run -> why it waits for memory (one line)
        if drain_queue:
            self.schedule()   # a restarted server picks up the queue it left
            _start_scheduler_thread(self)

    # --- what pages may ask, whatever the executor -------------------------------------------
    @property
    def slots(self) -> int:
        """How many runs train at once: the server's slots, or what a cluster holds."""
        return self.executor.capacity(self._slots)

    @property
    def trains_here(self) -> bool:
        """Runs use this machine's memory and devices (check them here); False on a cluster."""
        return self.executor.trains_here

    @property
    def problem(self) -> str:
        """Why queued runs cannot start now, in one line ("" while they can)."""
        return self.executor.problem

    def where_runs_train(self) -> str:
        """One line for the pages: where queued runs train and how many at once."""
        return self.executor.where(self.slots)

    # --- commands ----------------------------------------------------------------------------
    def find_learning_rate(self, config: TrainConfig, *, name: str = "", author: str = "", owner: str | None = None,
                           teacher: bool = False) -> str:
        """Queues a learning-rate range test on `config` (core/training/lr_find.py): it uses the machine like
        a run, so it waits for a slot like one. Its result: store.get(id).read_lr_finding()."""
        return self.start(config, name=name, author=author, kind="lr_find", owner=owner, teacher=teacher)

    def evaluate(self, run_id: str, *, which: str = "last", owner: str | None = None, teacher: bool = False) -> str:
        """Queues an evaluation job ("Evaluate now"): the run's `which` checkpoint over the test set,
        its predictions written to the run. It loads a model and predicts 10,000 images, so it waits
        for a slot like a run instead of running in a page's thread. An evaluation of that run
        already waiting or running is returned instead of a second. Its id.

        Raises:
            JobError: no such run, no such checkpoint yet, or what `start` refuses.
        """
        try:
            target = self.store.get(run_id)
            config = target.read_config()
        except (RunNotFoundError, ValueError) as exc:
            raise JobError(f"run {run_id} cannot be evaluated: {exc}") from None
        if target.checkpoint(which) is None:
            raise JobError(f"run {run_id} has no {which} checkpoint yet: one is written at the end of every "
                           "epoch, so evaluate it after its first epoch")
        if pending := self.evaluation_of(run_id):
            return pending
        return self.start(config, name=target.read_status().get("name") or run_id, kind="evaluate", owner=owner,
                          teacher=teacher, tags={"evaluates": run_id, "checkpoint": which})

    def evaluation_of(self, run_id: str) -> str | None:
        """The evaluation job of `run_id` that waits or runs now, if any."""
        active = [s.run_id for s in self.store.list(kinds=("evaluate",)) if s.state in ACTIVE_STATES]
        return next((job for job in active if self.store.get(job).read_status().get("evaluates") == run_id), None)

    def start(self, config: TrainConfig, *, name: str = "", author: str = "", queue: bool = True,
              kind: str = "train", owner: str | None = None, teacher: bool = False,
              tags: dict[str, Any] | None = None) -> str:
        """Creates a run for `config`; it joins the queue and trains when a slot frees. Returns its id.

        With queue=False (the CLI) the run is claimed and trained by this process at once. `owner`
        (core/store/ownership.py) is who may act on it; one person's waiting runs are limited, unless
        `teacher`. `tags` go into its first status (an evaluation job names the run it evaluates).

        Raises:
            JobError: a weights file that is not there, a config whose estimated peak memory exceeds
                what is free (checked now, before anything is allocated: running out of memory would
                take a run, or with the thread executor this process, down), a bad name, a full disk,
                a queue limit reached (core/store/ownership.py), an executor that cannot be reached.
        """
        try:
            check_startable(config)
            if self.trains_here:   # a cluster places a run on a node by its resources
                # Against what this server's runs could have at most: one that fits once the others
                # end is queued, and the scheduler starts it when it fits (core/jobs/admission.py).
                capacity, where = self.memory.capacity()
                check_fits(config, capacity, where=where)
        except UserInputError as exc:     # ConfigError, or a bad EFFLAB_MEMORY_GB
            raise JobError(str(exc)) from None
        problem = "" if queue else self.executor.ready(now=True)
        try:
            # Without the queue it is claimed as it is created: nobody can take it in between.
            run = self.store.create(config, name=name, author=author, kind=kind, claimed=not (queue or problem),
                                    owner=owner, limit_exempt=teacher, tags=tags)
        except (ValueError, QueueFull) as exc:
            raise JobError(str(exc)) from None
        except OSError as exc:
            raise JobError(f"could not create a run folder in {self.store.root}: "
                           f"{exc.strerror or exc}; check that it exists and has free space") from None
        self._last_run_id = run.run_id
        if problem:
            raise JobError(f"{problem} Run {run.run_id} stays queued; nothing is lost.")
        if queue:
            self.schedule()
        else:
            with self._lock:
                self._launch(run, config.epochs)
        return run.run_id

    def train_claimed(self, run: Run) -> str:
        """Trains `run`, created already claimed by this process, in a thread here at once (a
        sweep's trial from `python -m core sweep run`, core/sweeps/commands.py). Its id."""
        with self._lock:
            self._last_run_id = run.run_id
            self._launch(run, int(run.read_status().get("epochs") or 1))
        return run.run_id

    def do_periodic_work(self) -> None:
        """What the owner of this manager asked to happen on every periodic look at the queue (the
        dashboard: a step of each sweep it drives, core/sweeps/queueing.py). Passed in rather than
        imported, so scheduling knows nothing of sweeps."""
        for work in self.periodic_work:
            work(self)

    def resume(self, run_id: str, epochs: int | None = None, *, queue: bool = True, teacher: bool = False) -> str:
        """Puts a stopped, interrupted, failed, cancelled or finished run back in the queue, to
        continue up to `epochs` in total from its last checkpoint (optimizer state, learning rate,
        epoch counter, and the batch a mid-epoch Stop reached); its metrics are appended to."""
        # A run that has just written its final state here may still be in its job's last steps,
        # holding its slot: let them end first (outside the lock: they take it to hand the slot on),
        # or the run would wait in line behind itself, and a Stop pressed now would find it queued.
        finishing = self._jobs.get(run_id)
        if finishing is not None and finishing.thread is not threading.current_thread() \
                and finishing.thread.is_alive() and self._final_state_written(run_id):
            finishing.thread.join(JOIN_FINISHING_SECONDS)
        with self._lock:
            run = self.store.get(run_id)
            target = self._resume_target(run, epochs)
            try:
                if not self.store.enqueue(run, target, limit_exempt=teacher or not queue):
                    raise JobError(f"run {run_id} was resumed or deleted by someone else just now; the "
                                   "runs list shows where it stands (reload the page), and Resume it from "
                                   "there if it is not training or queued")
            except QueueFull as exc:
                raise JobError(str(exc)) from None
            self._last_run_id = run_id
            if not queue and (problem := self.executor.ready(now=True)):
                raise JobError(f"{problem} Run {run_id} stays queued; nothing is lost.")
            if not queue:
                claimed = self.store.claim(run_id)
                if claimed is None:
                    raise JobError(f"run {run_id} was claimed by another process just now: it trains "
                                   "there; `python -m core runs` shows where")
                self._launch(claimed, target)
                return run_id
        self.schedule()
        return run_id

    def _resume_target(self, run: Run, epochs: int | None) -> int:
        """The total epochs a resume of `run` trains to. Raises JobError: not resumable, a target
        that is not more than the epochs done, a config that can no longer start."""
        status = run.live_status()
        if status["state"] not in RESUMABLE_STATES:
            raise JobError(f"run {run.run_id} is {status['state']}; only a run that is "
                           f"{', '.join(RESUMABLE_STATES)} can be resumed")
        done = run.checkpoint_epoch()
        target = epochs if epochs is not None else status.get("epochs") or 0
        if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= MAX_EPOCHS:
            raise JobError(f"epochs: expected a total number of epochs in [1, {MAX_EPOCHS}]; got {epochs!r}")
        if target <= done:
            raise JobError(f"epochs: expected more than the {done} epochs run {run.run_id} has done "
                           f"(a total, not a number to add); got {target}")
        if done == 0 and not run.checkpoint_batch():   # no checkpoint: built again, from its weights file
            try:
                check_startable(run.read_config())
            except (ConfigError, OSError) as exc:
                raise JobError(str(exc)) from None
        return target

    def stop(self, run_id: str | None = None) -> bool:
        """Asks a training run to stop at the next batch (ours through its executor; another
        process's through the store). False when that run is not training. Default: this process's
        only job."""
        with self._lock:
            if run_id is None:
                alive = self._alive()
                if len(alive) != 1:
                    return False
                run_id = alive[0]
            job = self._jobs.get(run_id)
            try:
                run = self.store.get(run_id)
                ours = job is not None and job.thread.is_alive()
                if ours:
                    self.executor.stop(job, run)
                if run.live_status()["state"] not in TRAINING_STATES:
                    return False
                if not ours:
                    run.request_stop()   # another process trains it: its keepalive thread sees this
            except (RunNotFoundError, OSError, ValueError):
                return False
            # Only while it still trains: the trainer may have written its final state just now.
            return run.write_status(state=RunState.STOPPING, if_state=TRAINING_STATES) is not None

    def cancel(self, run_id: str) -> bool:
        """Takes a queued run out of the line: `cancelled`, its folder kept, resumable later."""
        try:
            return self.store.cancel(run_id)
        except (OSError, ValueError) as exc:
            raise JobError(f"could not cancel run {run_id}: {exc}") from None

    def wait(self, timeout: float | None = None, run_id: str | None = None) -> bool:
        """Blocks until `run_id` (default: every job, queued ones included) is done, or `timeout`
        seconds; True when nothing is left to wait for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._pending(run_id):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            job = self._jobs.get(run_id) if run_id else next(iter(self._alive_jobs()), None)
            if job is not None:
                job.thread.join(min(0.5, left) if left is not None else 0.5)
            else:
                time.sleep(min(0.2, left) if left is not None else 0.2)
                self.schedule()

    # --- queries -----------------------------------------------------------------------------
    @property
    def active_run_id(self) -> str | None:
        """The run this process trains when there is exactly one; the oldest of several."""
        alive = self._alive()
        return alive[0] if alive else None

    @property
    def active_run_ids(self) -> list[str]:
        return self._alive()

    @property
    def last_run_id(self) -> str | None:
        """The run most recently started or resumed through this manager."""
        return self._last_run_id

    def progress(self, run_id: str | None = None) -> dict[str, Any]:
        """Live progress of `run_id` (default: the last job): from memory when this process trains
        it, else from the run store (a worker process, another server, a finished run)."""
        run_id = run_id or self._last_run_id
        if run_id is None:
            return {}
        job = self._jobs.get(run_id)
        if job is not None and job.progress_here:
            return job.progress.snapshot()
        try:
            return self.store.get(run_id).read_progress()
        except RunNotFoundError:
            return {}

    # --- the scheduler -----------------------------------------------------------------------
    def schedule(self) -> list[str]:
        """Hands the oldest queued runs to free slots; returns the ids started now."""
        if not self.drain_queue:
            return []
        started: list[str] = []
        # An executor that must connect (Ray) is reached only when there is something to send (and
        # imported then, not before).
        if self.executor.connects and (not self.store.queue() or self.executor.ready()):
            return started
        with self._lock:
            free = self.slots - len(self._alive())
            if free <= 0:
                return started
            training = [job.config for job in self._alive_jobs() if job.config is not None]
            waits: dict[str, str] = {}
            for summary in self.store.queue():
                if free <= 0:
                    break
                config = _config_of(summary)
                reason = self._memory_wait(config, training)
                if reason:     # it keeps its place, and the runs behind it wait with it
                    waits[summary.run_id] = reason
                    break
                run = self.store.claim(summary.run_id)
                if run is None:
                    continue
                self._launch(run, summary.epochs or 1)
                started.append(run.run_id)
                training.append(config)
                free -= 1
            self.memory_waits = waits
        return started

    def _wake(self) -> None:
        """The executor's call: a slot freed, or a cluster may answer now."""
        self.schedule()

    def _memory_wait(self, config: TrainConfig | None, training: list[TrainConfig | None]) -> str:
        """Why `config` cannot start beside the runs training here yet ("" when it can): core/jobs/admission.py.
        A cluster places runs by its own resources; a config that cannot be read fails in training."""
        if not self.trains_here or config is None:
            return ""
        return self.memory.wait_reason(config, [c for c in training if c is not None])

    # --- internals ---------------------------------------------------------------------------
    def _final_state_written(self, run_id: str) -> bool:
        try:
            return self.store.get(run_id).read_status().get("state") in RESUMABLE_STATES
        except (RunNotFoundError, OSError, ValueError):
            return False

    def _alive_jobs(self) -> list[Job]:
        return [job for job in list(self._jobs.values()) if self.executor.alive(job)]

    def _alive(self) -> list[str]:
        return [job.run_id for job in sorted(self._alive_jobs(), key=lambda j: j.started)]

    def _pending(self, run_id: str | None) -> bool:
        if run_id is not None:
            job = self._jobs.get(run_id)
            if job is not None and self.executor.alive(job):
                return True
            try:
                return self.store.get(run_id).read_status().get("state") == RunState.QUEUED and self.drain_queue
            except (RunNotFoundError, OSError, ValueError):
                return False
        # Under the lock: the scheduler claims a queued run and registers its job under it, so a
        # run is never seen between the two (no longer queued, not yet a job) as nothing pending.
        with self._lock:
            return bool(self._alive()) or (self.drain_queue and bool(self.store.queue()))

    def _launch(self, run: Run, target_epochs: int) -> None:
        """Hands `run` (already claimed: state `running`, our lease) to the executor."""
        self._jobs[run.run_id] = self.executor.submit(run, target_epochs)


def _config_of(summary) -> TrainConfig | None:
    try:
        return TrainConfig.from_dict(summary.config)
    except (ConfigError, TypeError, ValueError):
        return None


def _start_scheduler_thread(manager: JobManager) -> None:
    """Looks at the queue every SCHEDULE_SECONDS for as long as `manager` exists (a weak reference:
    a manager nobody holds any more, as in tests, lets its thread end). Until its runs folder exists
    (the first Start anywhere makes it) there is nothing to train, and nothing is created."""
    ref = weakref.ref(manager)
    del manager

    def loop() -> None:
        while True:
            time.sleep(SCHEDULE_SECONDS)
            current = ref()
            if current is None:
                return
            try:
                if current.store.root.is_dir():
                    current.schedule()
                    current.do_periodic_work()
            except Exception:  # noqa: BLE001 - a database briefly away: the next round tries again
                pass
            del current

    threading.Thread(target=loop, name="efflab-scheduler", daemon=True).start()
