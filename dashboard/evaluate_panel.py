"""The Confusion page's "Evaluate now": a button that queues an evaluation job (the run's latest
checkpoint over the test set, core.jobs.scheduler.JobManager.evaluate), then its place in line or
its progress, then the page redrawn with the new predictions. The job loads a model and predicts
10,000 images, so it waits for a training slot like a run instead of running in this page's thread."""

from __future__ import annotations

import time

import streamlit as st

from core.estimates.timing import evaluation_seconds
from core.jobs.queue import ordinal
from core.jobs.scheduler import JobError
from core.store.runs import Run
from core.store.states import ACTIVE_STATES, RunState
from dashboard import control, identity, state
from dashboard.run_status import wait_text

JOBS_KEY = "evaluation_jobs"          # run id -> this session's evaluation job of it, until its end is shown
REFRESH_SECONDS = 2.0


def ended_evaluation(run_id: str) -> None:
    """What came of this session's evaluation of the run, shown once when it has ended. Called at
    the top of the page, whichever view the new predictions lead to."""
    job_id = st.session_state.get(JOBS_KEY, {}).get(run_id)
    if not job_id:
        return
    status = state.status(job_id)
    job_state = status.get("state")
    if job_state in ACTIVE_STATES:
        return
    st.session_state[JOBS_KEY].pop(run_id)
    if job_state == RunState.COMPLETED:
        epoch = status.get("predictions_epoch")
        st.success(f"Evaluated: test accuracy {100 * float(status.get('test_accuracy') or 0):.1f}%"
                   + (f", from epoch {epoch}'s checkpoint." if epoch else "."))
    else:
        st.error(f"Evaluation {job_state}: {status.get('error') or 'no predictions were written'}")


def evaluate_panel(run_id: str, run_state: str, has_predictions: bool) -> None:
    """The button, or the evaluation of this run that waits or runs now (this session's or anyone's)."""
    run = state.get_run(run_id)
    if run is None:
        return
    if not state.has_checkpoint(run_id):
        st.warning("This run has no checkpoint yet, so there is nothing to evaluate: a checkpoint is "
                   "written at the end of every epoch. Wait for the first epoch to finish.")
        return
    if job_id := state.job_manager().evaluation_of(run_id):
        st.fragment(run_every=REFRESH_SECONDS)(_job_panel)(job_id)
        return
    _button(run, run_state, has_predictions)


def _note(run: Run, busy: bool) -> str:
    try:
        seconds = evaluation_seconds(run.read_config().to_dict())
        length = wait_text(seconds) if seconds >= 60 else f"about {seconds:.0f} s"
    except (KeyError, ValueError, TypeError):
        length = "a while"
    return (f"Runs the latest checkpoint over the 10,000 test images: {length} here. It waits for a "
            "training slot like a run" + (", so while this run trains on the only slot it starts when the "
                                         "run ends." if busy and state.job_manager().slots == 1 else "."))


def _button(run: Run, run_state: str, has_predictions: bool) -> None:
    run_id = run.run_id
    note = _note(run, run_state in ACTIVE_STATES)
    label = "Evaluate now" if not has_predictions else "Re-evaluate with the latest checkpoint"
    allowed = state.may_act(run_id)
    if st.button(label, key="evaluate_now", help=note if allowed else control.LOCKED_HELP, disabled=not allowed,
                 type="primary" if not has_predictions else "secondary"):
        if not state.may_act(run_id):
            st.error(control.LOCKED_HELP)
            return
        try:
            job_id = state.job_manager().evaluate(run_id, owner=identity.me(), teacher=control.is_teacher())
        except JobError as exc:
            st.error(f"Evaluation refused: {exc}")
            return
        st.session_state.setdefault(JOBS_KEY, {})[run_id] = job_id
        st.rerun()
    st.caption(note)


def _job_panel(job_id: str) -> None:
    """Where the job stands; once it has ended, the whole page once more (the new matrix, or why not)."""
    manager = state.job_manager()
    status = state.status(job_id)
    job_state = status.get("state", "unknown")
    if job_state == RunState.QUEUED:
        place = next((i for i, s in enumerate(manager.store.queue(), start=1) if s.run_id == job_id), None)
        st.info(f"Evaluation queued{f': {ordinal(place)} in line' if place else ''}. It starts by itself when a "
                "training slot frees; you may leave this page.", icon=":material/hourglass_top:")
        return
    if job_state in ACTIVE_STATES:
        progress = manager.progress(job_id)
        batch, batches = int(progress.get("batch") or 0), int(progress.get("batches") or 0)
        text = f"Evaluating: {progress.get('phase') or 'starting'}"
        if batches:
            text += f" · batch {batch} of {batches}"
            started = progress.get("phase_started")
            if batch and isinstance(started, (int, float)):
                left = (time.time() - started) / batch * (batches - batch)
                text += f" · {left:.0f} s left"
        st.progress(min(1.0, batch / batches) if batches else 0.0, text=text)
        return
    st.rerun()   # it has just ended: the whole page once more, with what came of it
