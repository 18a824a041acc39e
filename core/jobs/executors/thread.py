"""The default executor: each run trains in a background thread of this process (the dashboard's).

Nothing to start but a thread, and the live progress is in memory, sub-second. The price: a run
that crashes the interpreter or is killed for memory takes this process, and every run in it, down
(core/jobs/executors/process.py is the executor that isolates runs).
"""

from __future__ import annotations

import threading
import time

from core.jobs.executors.base import (Executor, Job, JobError, config_or_none, record_crash, starting_phase,
                                      train_claimed)
from core.jobs.slots import slots_explained
from core.store.runs import Run, mark_active
from core.store.states import RunState
from core.training.progress import Progress


class ThreadExecutor(Executor):
    """Runs in threads of this process; a Stop sets the thread's event, seen at the next batch."""

    name = "thread"

    def submit(self, run: Run, target_epochs: int) -> Job:
        progress = Progress(state=RunState.RUNNING, phase=starting_phase(), run_id=run.run_id,
                            epoch=0, epochs=target_epochs, batch=0, batches=0, error="")
        # Marked active before the thread exists, so no viewer mistakes the run for a dead one.
        mark_active(run.run_id, True)
        stop_event = threading.Event()
        try:
            run.write_status(epochs=target_epochs)
            # The thread reads `job`, bound before it starts.
            thread = threading.Thread(target=lambda: self._work(job, run, target_epochs),
                                      name=f"train-{run.run_id}", daemon=True)
            job = Job(run.run_id, thread, stop_event, progress, config=config_or_none(run))
            thread.start()
        except (OSError, RuntimeError) as exc:   # a full disk, or no thread to be had
            mark_active(run.run_id, False)
            progress.update(state=RunState.FAILED, phase=RunState.FAILED, error=str(exc))
            try:
                run.write_status(state=RunState.FAILED, error=f"could not start: {exc}", ended_at=time.time())
            except OSError:
                pass
            raise JobError(f"could not start run {run.run_id}: {exc}") from None
        return job

    def _work(self, job: Job, run: Run, target_epochs: int) -> None:
        try:
            train_claimed(run, target_epochs, job.stop_event, job.progress, self.data_dir)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the run and the slot are freed
            record_crash(run, job.progress, exc)
        finally:
            self._ended(job)

    def stop(self, job: Job, run: Run) -> None:
        job.stop_event.set()
        job.progress.update(state=RunState.STOPPING)

    def where(self, slots: int) -> str:
        return f"Training slots on this server: {slots_explained(slots)}"
