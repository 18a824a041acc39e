"""EFFLAB_RAY_ADDRESS (or the CLI's --ray-address): each run, when its turn comes, becomes a Ray task
that trains it in a worker process on whichever node Ray picks (core/jobs/executors/ray_cluster.py); the
slots are what the cluster holds at once. A thread here watches each task: a lost worker or node
makes its run `interrupted` at once. When the cluster cannot be reached the runs stay queued,
`problem` says why in one line, and the scheduler is asked again every RETRY_SECONDS. Without the
variable Ray is never imported.
"""

from __future__ import annotations

import contextlib
import threading
import time

from core.jobs.executors.base import Executor, Job, JobError, config_or_none
from core.jobs.executors.ray_cluster import ClusterUnreachable, RayCluster, unreachable_message
from core.store.runs import TRAINING_STATES, Run, heartbeat_seconds, mark_active, trainer_identity
from core.store.states import RunState
from core.training.progress import Progress

RETRY_SECONDS = 15.0            # an unreachable cluster is asked again this often while runs wait


class RayExecutor(Executor):
    """Runs as Ray tasks; a Stop reaches the task's worker through the run store."""

    name = "ray"
    trains_here = False         # Ray places each run on a node by its resources
    connects = True

    def __init__(self, runs_dir, data_dir, wake, *, address: str, drain_queue: bool):
        super().__init__(runs_dir, data_dir, wake)
        self.address = address
        self.drain_queue = drain_queue   # a dashboard: outlive the head, and retry while runs wait
        self.cluster = RayCluster(address, self.runs_dir, data_dir, outlive_head=drain_queue)
        self._next_connect = 0.0
        self._retry: threading.Timer | None = None
        self._capacity: int | None = None

    def ready(self, now: bool = False) -> str:
        """Connects to the cluster; "" when it answers, else the one-line reason (also kept in
        `problem`) with a retry armed. Not asked again within RETRY_SECONDS unless `now`."""
        if not now and time.monotonic() < self._next_connect:
            return self.problem
        try:
            self.cluster.connect()
            self._capacity = self.cluster.capacity()
        except Exception as exc:  # noqa: BLE001 - whatever Ray raises, the runs wait and we say why
            reason = str(exc) if isinstance(exc, ClusterUnreachable) else \
                unreachable_message(self.address, f"{type(exc).__name__}: {str(exc)[:200]}")
            self.problem = reason + (" Queued runs wait and start when it answers." if self.drain_queue else "")
            self._next_connect = time.monotonic() + RETRY_SECONDS
            if self.drain_queue and (self._retry is None or not self._retry.is_alive()):
                self._retry = threading.Timer(RETRY_SECONDS + 0.1, self._retry_now)
                self._retry.daemon = True
                self._retry.start()
            return self.problem
        self.problem = ""
        return ""

    def _retry_now(self) -> None:
        try:
            self.wake()
        except Exception:  # noqa: BLE001 - a timer thread must not die loudly; the next Start retries
            pass

    def capacity(self, slots: int) -> int:
        return self._capacity if self._capacity is not None else slots

    def where(self, slots: int) -> str:
        if self.problem:
            return f"Runs train on the Ray cluster at {self.address}, which cannot be reached now"
        return f"Runs train on the Ray cluster at {self.address}: {slots} at once (Ray picks the node)"

    def submit(self, run: Run, target_epochs: int) -> Job:
        """Sends `run` to the cluster and starts the thread that watches its task."""
        progress = Progress(state=RunState.RUNNING, phase="waiting for the Ray cluster", run_id=run.run_id,
                            epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        # Until the worker writes its own pid the claim is this process's: it must read as alive.
        mark_active(run.run_id, True)
        try:
            status = run.write_status(epochs=target_epochs, executor=self.name, ray_address=self.address,
                                      submitted_from=trainer_identity())
            run.write_progress(progress.snapshot())
            ref = self.cluster.submit(run.run_id, target_epochs, status["claimed_at"], run.read_config())
        except Exception as exc:  # noqa: BLE001 - no room on the cluster, a lost connection, a full disk
            mark_active(run.run_id, False)
            message = str(exc) if isinstance(exc, ClusterUnreachable) else f"{type(exc).__name__}: {exc}"
            try:
                run.write_status(state=RunState.FAILED, error=f"could not start on Ray: {message}"[:500],
                                 error_kind="input" if isinstance(exc, ClusterUnreachable) else "training",
                                 ended_at=time.time())
            except OSError:
                pass
            raise JobError(f"could not start run {run.run_id} on Ray: {message}") from None
        thread = threading.Thread(target=lambda: self._watch(job, run, ref), name=f"ray-{run.run_id}", daemon=True)
        job = Job(run.run_id, thread, threading.Event(), progress, progress_here=False, config=config_or_none(run))
        thread.start()
        return job

    def _watch(self, job: Job, run: Run, ref) -> None:
        """Waits for the run's Ray task; a task Ray reports lost (worker or node died) leaves the run
        `interrupted` now, not when its heartbeat goes stale."""
        try:
            # The lease is the claim's: renewed here while the task waits for a node or trains (its
            # worker renews it too), so it lapses only when both this driver and the worker are gone.
            while not self.cluster.wait(ref, heartbeat_seconds()):
                with contextlib.suppress(Exception):
                    run.renew_lease()
            result, lost = self.cluster.outcome(ref)
        except Exception as exc:  # noqa: BLE001 - the driver lost the cluster: the task is lost to us
            result, lost = None, f"{type(exc).__name__}: {exc}"[:300]
        try:
            if lost:
                run.write_status(state=RunState.INTERRUPTED, if_state=TRAINING_STATES, ended_at=time.time(),
                                 error=f"the Ray task ended without finishing ({lost}); resume continues "
                                       "from the last checkpoint, on any node")
        except OSError:
            pass
        finally:
            job.progress.update(state=(result or {}).get("state", RunState.INTERRUPTED))
            self._ended(job)

    @staticmethod
    def where_trained(status: dict) -> str:
        sent = status.get("submitted_from") if isinstance(status.get("submitted_from"), dict) else {}
        if status.get("state") in TRAINING_STATES and status.get("pid") == sent.get("pid") \
                and status.get("host") == sent.get("host"):
            return f"Waiting for a node of the Ray cluster at {status.get('ray_address', '?')}"
        verb = "Training" if status.get("state") in TRAINING_STATES else "Trained"
        ip = f" ({status['node_ip']})" if status.get("node_ip") and status.get("node_ip") != status.get("host") else ""
        return (f"{verb} in a Ray worker on {status.get('host', '?')}{ip}, process {status.get('pid', '?')}, "
                f"cluster {status.get('ray_address', '?')}")

    def stop(self, job: Job, run: Run) -> None:
        run.request_stop()       # the task's worker polls the run store for it
        job.progress.update(state=RunState.STOPPING)
