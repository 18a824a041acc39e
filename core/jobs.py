"""The process-wide job manager: a queue in front of training slots.

Start never refuses because the machine is busy: it creates the run as `queued` in the run store
and the scheduler hands the oldest queued run to a free slot (a training thread here), now or when
a running job ends. The queue lives in the store, not in memory, so it survives a restart of the
server and any server on the same runs folder drains it (claims are exclusive across processes),
looking at it every SCHEDULE_SECONDS from the moment the manager exists (dashboard/serve.py makes
it as the server starts). `EFFLAB_SLOTS` says how many runs train at once in this process
(core/slots.py decides the default); a queued run starts only when its estimated memory fits
beside the runs training here (core/admission.py), and otherwise waits at its place.

With EFFLAB_RAY_ADDRESS (or the CLI's --ray-address) the executor is a Ray cluster instead of our
threads (core/ray_executor.py): each run, when its turn comes, becomes a Ray task that trains it in
a worker process on whichever node Ray picks; the slots are what the cluster holds at once. A
thread here watches each task: a lost worker or node makes its run `interrupted` at once. When the
cluster cannot be reached the runs stay queued, `executor_problem` says why in one line, and the
scheduler tries again every RETRY_SECONDS. Without the variable Ray is never imported.

Stop works for any run: our own threads get their event set at once; a run trained by another
process (the CLI, a second server, a Ray task) gets a stop request in the store, which its trainer
polls about once a second. The dashboard keeps one manager per server process (st.cache_resource);
the CLI makes its own, which trains the run it was asked for at once (`queue=False`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.admission import MemoryLedger
from core.config import ConfigError, TrainConfig
from core.errors import UserInputError
from core.ownership import QueueFull
from core.progress import Progress
from core.ray_executor import ClusterUnreachable, RayExecutor, unreachable_message
from core.ray_executor import ray_address as ray_address_from_env
from core.runs import (RESUMABLE_STATES, TRAINING_STATES, Keepalive, Run, RunNotFoundError, RunStore,
                       heartbeat_seconds, is_active_here, mark_active, trainer_identity)
from core.slots import default_slots, slots_explained


JOIN_FINISHING_SECONDS = 30.0   # a finished job's thread releases its slot within moments
RETRY_SECONDS = 15.0            # an unreachable Ray cluster is asked again this often while runs wait
# The queue is looked at this often even when nothing here ends: runs queued by another process,
# memory freed by one, a lease that lapsed on a run to resume. One indexed query when nothing waits.
SCHEDULE_SECONDS = 5.0
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


class JobError(RuntimeError):
    """A start, stop, cancel or resume that cannot be done; the message says why and what to do."""


@dataclass
class Job:
    """One training thread of this process."""

    run_id: str
    thread: threading.Thread
    stop_event: threading.Event
    progress: Progress
    started: float = field(default_factory=time.time)
    # Set as the thread finishes: its slot counts as free while it hands over to the next run.
    finished: threading.Event = field(default_factory=threading.Event)
    # A Ray task: `thread` only watches it, and its progress is read from the run folder.
    remote: bool = False
    config: TrainConfig | None = None     # what it trains (memory admission counts it)


class JobManager:
    """Queues runs, trains up to `slots` of them in background threads, and tells anyone how they go."""

    def __init__(self, runs_dir: str | Path | None = None, data_dir: str | None = None, *,
                 slots: int | None = None, drain_queue: bool = True, ray_address: str | None = None):
        self.store = RunStore(runs_dir)
        self.data_dir = data_dir
        self.slots = slots if slots is not None else default_slots()
        self.drain_queue = drain_queue
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._last_run_id: str | None = None
        address = ray_address or ray_address_from_env()
        self.executor = RayExecutor(address, self.store.root, data_dir, outlive_head=drain_queue) if address else None
        self.executor_problem = ""        # why the Ray cluster cannot be reached now, in one line
        self._next_connect = 0.0
        self._retry: threading.Timer | None = None
        self.memory = MemoryLedger.now()          # this process before any run: what its runs hold
        self.memory_waits: dict[str, str] = {}    # queued run -> why it waits for memory (one line)
        if drain_queue:
            self.schedule()   # a restarted server picks up the queue it left
            _start_scheduler_thread(self)

    # --- commands ----------------------------------------------------------------------------
    def find_learning_rate(self, config: TrainConfig, *, name: str = "", author: str = "", owner: str | None = None,
                           teacher: bool = False) -> str:
        """Queues a learning-rate range test on `config` (core/lr_find.py): it uses the machine like
        a run, so it waits for a slot like one. Its result: store.get(id).read_lr_finding()."""
        return self.start(config, name=name, author=author, kind="lr_find", owner=owner, teacher=teacher)

    def start(self, config: TrainConfig, *, name: str = "", author: str = "", queue: bool = True,
              kind: str = "train", owner: str | None = None, teacher: bool = False) -> str:
        """Creates a run for `config`; it joins the queue and trains when a slot frees. Returns its id.

        With queue=False (the CLI) the run is claimed and trained by this process at once. `owner`
        (core/ownership.py) is who may act on it; one person's waiting runs are limited, unless
        `teacher`.

        Raises:
            JobError: a weights file that is not there, a config whose estimated peak memory exceeds
                what is free (checked now, before anything is allocated: training runs in this
                process, and running out of memory would take it down), a bad name, a full disk,
                a queue limit reached (core/ownership.py).
        """
        from core.config import check_startable
        from core.memory import check_fits
        try:
            check_startable(config)
            if self.executor is None:   # a Ray task's node is picked by Ray, by resources
                # Against what this server's runs could have at most: one that fits once the others
                # end is queued, and the scheduler starts it when it fits (core/admission.py).
                capacity, where = self.memory.capacity()
                check_fits(config, capacity, where=where)
        except UserInputError as exc:     # ConfigError, or a bad EFFLAB_MEMORY_GB
            raise JobError(str(exc)) from None
        problem = "" if queue or self.executor is None else self._reach_cluster(now=True)
        try:
            # Without the queue it is claimed as it is created: nobody can take it in between.
            run = self.store.create(config, name=name, author=author, kind=kind, claimed=not (queue or problem),
                                    owner=owner, limit_exempt=teacher)
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

    def resume(self, run_id: str, epochs: int | None = None, *, queue: bool = True, teacher: bool = False) -> str:
        """Puts a stopped, interrupted, failed, cancelled or finished run back in the queue, to
        continue up to `epochs` in total from its last checkpoint (optimizer state, learning rate,
        epoch counter, and the batch a mid-epoch Stop reached); its metrics are appended to."""
        # A run that has just written its final state here may still be in its thread's last steps,
        # holding its slot: let them end first (outside the lock: they take it to hand the slot on),
        # or the run would wait in line behind itself, and a Stop pressed now would find it queued.
        finishing = self._jobs.get(run_id)
        if finishing is not None and finishing.thread is not threading.current_thread() \
                and finishing.thread.is_alive() and self._final_state_written(run_id):
            finishing.thread.join(JOIN_FINISHING_SECONDS)
        with self._lock:
            run = self.store.get(run_id)
            status = run.live_status()
            if status["state"] not in RESUMABLE_STATES:
                raise JobError(f"run {run_id} is {status['state']}; only a run that is "
                               f"{', '.join(RESUMABLE_STATES)} can be resumed")
            done = run.checkpoint_epoch()
            target = epochs if epochs is not None else status.get("epochs") or 0
            if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= 1000:
                raise JobError(f"epochs: expected a total number of epochs in [1, 1000]; got {epochs!r}")
            if target <= done:
                raise JobError(f"epochs: expected more than the {done} epochs run {run_id} has done "
                               f"(a total, not a number to add); got {target}")
            if done == 0 and not run.checkpoint_batch():   # no checkpoint: built again, from its weights file
                from core.config import ConfigError, check_startable
                try:
                    check_startable(run.read_config())
                except (ConfigError, OSError) as exc:
                    raise JobError(str(exc)) from None
            try:
                if not self.store.enqueue(run, target, limit_exempt=teacher or not queue):
                    raise JobError(f"run {run_id} was resumed or deleted by someone else just now")
            except QueueFull as exc:
                raise JobError(str(exc)) from None
            self._last_run_id = run_id
            if not queue and self.executor is not None and (problem := self._reach_cluster(now=True)):
                raise JobError(f"{problem} Run {run_id} stays queued; nothing is lost.")
            if not queue:
                claimed = self.store.claim(run_id)
                if claimed is None:
                    raise JobError(f"run {run_id} was claimed by another process just now")
                self._launch(claimed, target)
                return run_id
        self.schedule()
        return run_id

    def stop(self, run_id: str | None = None) -> bool:
        """Asks a training run to stop at the next batch (ours at once; another process's through
        the store). False when that run is not training. Default: this process's only job."""
        with self._lock:
            if run_id is None:
                alive = self._alive()
                if len(alive) != 1:
                    return False
                run_id = alive[0]
            job = self._jobs.get(run_id)
            if job is not None and job.thread.is_alive():
                job.stop_event.set()
                job.progress.update(state="stopping")
            try:
                run = self.store.get(run_id)
                if run.live_status()["state"] not in TRAINING_STATES:
                    return False
            except (RunNotFoundError, OSError, ValueError):
                return False
            if job is None or job.remote:
                run.request_stop()   # another process trains it: its keepalive thread sees this
            # Only while it still trains: the trainer may have written its final state just now.
            return run.write_status(state="stopping", if_state=TRAINING_STATES) is not None

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
        it, else from the run's progress file (another process, or a finished run)."""
        run_id = run_id or self._last_run_id
        if run_id is None:
            return {}
        job = self._jobs.get(run_id)
        if job is not None and not job.remote:
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
        # Ray is reached only when there is something to send (it is imported then, not before).
        if self.executor is not None and (not self.store.queue() or self._reach_cluster()):
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

    def _memory_wait(self, config: TrainConfig | None, training: list[TrainConfig | None]) -> str:
        """Why `config` cannot start beside the runs training here yet ("" when it can): core/admission.py.
        A Ray cluster places runs by its own resources; a config that cannot be read fails in training."""
        if self.executor is not None or config is None:
            return ""
        return self.memory.wait_reason(config, [c for c in training if c is not None])

    # --- internals ---------------------------------------------------------------------------
    def _final_state_written(self, run_id: str) -> bool:
        try:
            return self.store.get(run_id).read_status().get("state") in RESUMABLE_STATES
        except (RunNotFoundError, OSError, ValueError):
            return False

    def _alive_jobs(self) -> list[Job]:
        return [job for job in self._jobs.values() if job.thread.is_alive() and not job.finished.is_set()]

    def _alive(self) -> list[str]:
        return [job.run_id for job in sorted(self._alive_jobs(), key=lambda j: j.started)]

    def _pending(self, run_id: str | None) -> bool:
        if run_id is not None:
            job = self._jobs.get(run_id)
            if job is not None and job.thread.is_alive() and not job.finished.is_set():
                return True
            try:
                return self.store.get(run_id).read_status().get("state") == "queued" and self.drain_queue
            except (RunNotFoundError, OSError, ValueError):
                return False
        # Under the lock: the scheduler claims a queued run and registers its job under it, so a
        # run is never seen between the two (no longer queued, not yet a job) as nothing pending.
        with self._lock:
            return bool(self._alive()) or (self.drain_queue and bool(self.store.queue()))

    def _launch(self, run: Run, target_epochs: int) -> None:
        """Starts the thread that trains `run` (already claimed: state `running`, our pid)."""
        if self.executor is not None:
            return self._launch_remote(run, target_epochs)
        try:
            config = run.read_config()
        except ValueError:
            config = None                      # the run fails in training, saying why
        progress = Progress(state="running", phase=starting_phase(), run_id=run.run_id,
                            epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        stop_event = threading.Event()
        # Marked active before the thread exists, so no viewer mistakes the run for a dead one.
        mark_active(run.run_id, True)
        try:
            run.write_status(epochs=target_epochs)
            thread = threading.Thread(target=self._work, args=(run, target_epochs, stop_event, progress),
                                      name=f"train-{run.run_id}", daemon=True)
            self._jobs[run.run_id] = Job(run.run_id, thread, stop_event, progress, config=config)
            thread.start()
        except (OSError, RuntimeError) as exc:   # a full disk, or no thread to be had
            mark_active(run.run_id, False)
            self._jobs.pop(run.run_id, None)
            progress.update(state="failed", phase="failed", error=str(exc))
            try:
                run.write_status(state="failed", error=f"could not start: {exc}", ended_at=time.time())
            except OSError:
                pass
            raise JobError(f"could not start run {run.run_id}: {exc}") from None

    def _work(self, run: Run, target_epochs: int, stop_event: threading.Event, progress: Progress) -> None:
        try:
            # Imported here: TensorFlow costs seconds to import and the dashboard must start fast.
            # Under the claim's heartbeat: on a busy machine the import can outlast a lease.
            with Keepalive(run, stop_event):
                from core.train import lr_find_run, train_run
            work = lr_find_run if run.read_status().get("kind") == "lr_find" else train_run
            work(run, target_epochs=target_epochs, stop_event=stop_event, progress=progress, data_dir=self.data_dir)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the run and the slot are freed
            progress.update(state="failed", phase="failed", error=str(exc))
            try:
                run.write_status(state="failed", error=f"{type(exc).__name__}: {exc}"[:500], ended_at=time.time(),
                                 if_state=TRAINING_STATES)
            except OSError:
                pass
        finally:
            if is_active_here(run.run_id):
                mark_active(run.run_id, False)
            job = self._jobs.get(run.run_id)
            if job is not None:
                job.finished.set()
            # The slot is free: the next queued run starts now, not when someone looks.
            try:
                self.schedule()
            except Exception:  # noqa: BLE001 - a damaged runs folder must not kill this thread loudly
                pass

    # --- the Ray executor --------------------------------------------------------------------
    def where_runs_train(self) -> str:
        """One line for the pages: where queued runs train and how many at once."""
        if self.executor is None:
            return f"Training slots on this server: {slots_explained(self.slots)}"
        if self.executor_problem:
            return f"Runs train on the Ray cluster at {self.executor.address}, which cannot be reached now"
        return (f"Runs train on the Ray cluster at {self.executor.address}: {self.slots} at once "
                "(Ray picks the node)")

    def _reach_cluster(self, now: bool = False) -> str:
        """Connects to the Ray cluster; "" when it answers, else the one-line reason (also kept in
        `executor_problem`) with a retry armed. Not asked again within RETRY_SECONDS unless `now`."""
        if not now and time.monotonic() < self._next_connect:
            return self.executor_problem
        try:
            self.executor.connect()
            self.slots = self.executor.capacity()
        except Exception as exc:  # noqa: BLE001 - whatever Ray raises, the runs wait and we say why
            reason = str(exc) if isinstance(exc, ClusterUnreachable) else \
                unreachable_message(self.executor.address, f"{type(exc).__name__}: {str(exc)[:200]}")
            self.executor_problem = reason + (" Queued runs wait and start when it answers."
                                              if self.drain_queue else "")
            self._next_connect = time.monotonic() + RETRY_SECONDS
            if self.drain_queue and (self._retry is None or not self._retry.is_alive()):
                self._retry = threading.Timer(RETRY_SECONDS + 0.1, self._retry_schedule)
                self._retry.daemon = True
                self._retry.start()
            return self.executor_problem
        self.executor_problem = ""
        return ""

    def _retry_schedule(self) -> None:
        try:
            self.schedule()
        except Exception:  # noqa: BLE001 - a timer thread must not die loudly; the next Start retries
            pass

    def _launch_remote(self, run: Run, target_epochs: int) -> None:
        """Sends `run` (claimed) to the Ray cluster and starts the thread that watches its task."""
        progress = Progress(state="running", phase="waiting for the Ray cluster", run_id=run.run_id,
                            epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        # Until the worker writes its own pid the claim is this process's: it must read as alive.
        mark_active(run.run_id, True)
        try:
            status = run.write_status(epochs=target_epochs, executor="ray", ray_address=self.executor.address,
                                      submitted_from=trainer_identity())
            run.write_progress(progress.snapshot())
            ref = self.executor.submit(run.run_id, target_epochs, status["claimed_at"], run.read_config())
        except Exception as exc:  # noqa: BLE001 - no room on the cluster, a lost connection, a full disk
            mark_active(run.run_id, False)
            message = str(exc) if isinstance(exc, ClusterUnreachable) else f"{type(exc).__name__}: {exc}"
            try:
                run.write_status(state="failed", error=f"could not start on Ray: {message}"[:500],
                                 error_kind="input" if isinstance(exc, ClusterUnreachable) else "training",
                                 ended_at=time.time())
            except OSError:
                pass
            raise JobError(f"could not start run {run.run_id} on Ray: {message}") from None
        stop_event = threading.Event()
        thread = threading.Thread(target=self._watch_remote, args=(run, ref), name=f"ray-{run.run_id}", daemon=True)
        self._jobs[run.run_id] = Job(run.run_id, thread, stop_event, progress, remote=True)
        thread.start()

    def _watch_remote(self, run: Run, ref) -> None:
        """Waits for the run's Ray task; a task Ray reports lost (worker or node died) leaves the run
        `interrupted` now, not when its heartbeat goes stale."""
        try:
            # The lease is the claim's: renewed here while the task waits for a node or trains (its
            # worker renews it too), so it lapses only when both this driver and the worker are gone.
            while not self.executor.wait(ref, heartbeat_seconds()):
                with contextlib.suppress(Exception):
                    run.renew_lease()
            result, lost = self.executor.outcome(ref)
        except Exception as exc:  # noqa: BLE001 - the driver lost the cluster: the task is lost to us
            result, lost = None, f"{type(exc).__name__}: {exc}"[:300]
        try:
            if lost:
                run.write_status(state="interrupted", if_state=TRAINING_STATES, ended_at=time.time(),
                                 error=f"the Ray task ended without finishing ({lost}); resume continues "
                                       "from the last checkpoint, on any node")
        except OSError:
            pass
        finally:
            mark_active(run.run_id, False)
            job = self._jobs.get(run.run_id)
            if job is not None:
                job.progress.update(state=(result or {}).get("state", "interrupted"))
                job.finished.set()
            try:
                self.schedule()
            except Exception:  # noqa: BLE001 - as in _work: the watcher ends quietly
                pass


def starting_phase(environ=os.environ) -> str:
    """The first phase a student sees, naming the framework that is loading: "starting TensorFlow",
    or "starting JAX" under KERAS_BACKEND=jax (a GPU machine without TensorFlow)."""
    backend = environ.get("KERAS_BACKEND", "tensorflow").strip().lower() or "tensorflow"
    return f"starting {BACKEND_NAMES.get(backend, backend)}"


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
            except Exception:  # noqa: BLE001 - a database briefly away: the next round tries again
                pass
            del current

    threading.Thread(target=loop, name="efflab-scheduler", daemon=True).start()
