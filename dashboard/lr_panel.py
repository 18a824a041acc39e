"""The Train page's learning-rate finder (fastai's lr_find, core/training/lr_find.py): a button that queues
the range test on the form's settings, its live progress, then the curve with its suggestion and
"Use this rate", which fills the form's learning rate. The test uses the machine like a run, so it
waits in the same queue (core.jobs.scheduler.JobManager.find_learning_rate)."""

from __future__ import annotations

import streamlit as st

from core.jobs.queue import ordinal
from core.jobs.scheduler import JobError, JobManager
from core.settings.config import TrainConfig
from core.store.states import ACTIVE_STATES, TRAINING_STATES, RunState
from core.training.lr_find import NEVER_FELL, worth_using
from dashboard import control, identity, state, train_form
from dashboard.lr_chart import lr_finder_figure

JOB_KEY = "lr_find_job"                 # this session's finder job (a run id of kind lr_find)
APPLY_KEY = "lr_find_apply"             # set by "Use this rate": the page redraws the form with it
RATE_WIDGET_KEY = "cfg_learning_rate"   # the form's learning-rate box (dashboard/train_form.py)
LIVE_KEY = "lr_find_live"              # the panel is on a timer (the job waits or runs)
REFRESH_SECONDS = 2.0


def find_button(manager: JobManager, config: TrainConfig | None, *, disabled: bool) -> None:
    """"Find a learning rate": queues the range test on the current settings."""
    def queue_it() -> None:
        if config is None:
            st.session_state["train_error"] = "Check the settings first."
            return
        if refusal := train_form.start_refusal(config):
            st.session_state["train_error"] = refusal
            return
        try:
            st.session_state[JOB_KEY] = manager.find_learning_rate(config, owner=identity.me(),
                                                                   teacher=control.is_teacher())
        except JobError as exc:
            st.session_state["train_error"] = str(exc)

    st.button(":material/search_insights: Find a learning rate", width="stretch", on_click=queue_it,
              disabled=disabled,
              help="About a hundred batches with the rate rising from 1e-7 to 10 on these settings; the "
                   "loss against the rate shows where learning is fastest. Waits in the queue like a run.")


def _use_rate(rate: float) -> None:
    st.session_state[RATE_WIDGET_KEY] = float(f"{rate:.2g}")
    st.session_state[APPLY_KEY] = True


def finder_panel(manager: JobManager) -> None:
    """This session's finder job: its place, its progress, or its curve and suggestion."""
    job_id = st.session_state.get(JOB_KEY)
    if not job_id:
        return
    if st.session_state.pop(APPLY_KEY, False):
        st.rerun()   # the whole page: the form's learning-rate box shows the rate just chosen
    run = state.get_run(job_id)
    status = state.status(job_id)
    job_state = status.get("state", "unknown")
    st.markdown("**Learning-rate finder**")
    if job_state == RunState.QUEUED:
        place = next((i for i, s in enumerate(manager.store.queue(), start=1) if s.run_id == job_id), None)
        st.caption(f"{ordinal(place)} in line: it starts when a training slot frees." if place else "Queued.")
        return
    if job_state in TRAINING_STATES:
        progress = manager.progress(job_id)
        batch, batches = int(progress.get("batch") or 0), int(progress.get("batches") or 1)
        rate = progress.get("learning_rate")
        st.progress(min(1.0, batch / batches), text=f"{progress.get('phase', 'starting')}: batch {batch} of "
                    f"{batches}" + (f" · rate {rate:.1e}" if isinstance(rate, float) else ""))
        return
    if st.session_state.pop(LIVE_KEY, False):
        st.rerun()   # it has just ended: the whole page, so this panel stops refreshing itself
    finding = run.read_lr_finding() if run is not None else None
    if job_state == RunState.FAILED or finding is None:
        st.error(f"The learning-rate finder {job_state}: {status.get('error') or 'no result was saved'}")
        return
    # A curve that never fell suggests nothing: say so, and offer no rate to use (issue 32).
    suggestion = float(finding["suggestion"]) if worth_using(finding) else None
    st.plotly_chart(lr_finder_figure(finding["rates"], finding["smoothed"], suggestion, losses=finding["losses"],
                                     method=finding.get("method", "")),
                    width="stretch", theme=None, key="lr_finder_chart")
    if suggestion is None:
        st.warning(NEVER_FELL)
        return
    ended = {"diverged": "the loss exploded, so the test stopped there",
             "finished": "it ran all its batches", "stopped": "it was stopped"}.get(finding.get("ended"), "")
    st.caption(f"Suggested rate {suggestion:.1e} ({finding.get('method', '')}); {ended}.")
    st.button(f":material/check: Use this rate ({suggestion:.1e})", key="lr_use", on_click=_use_rate,
              args=(suggestion,), disabled=not control.can_start(),
              help="Fills the learning rate above; press Start when ready.")


def finder_fragment(manager: JobManager) -> None:
    """The panel, redrawn every few seconds while the job waits or runs."""
    if not st.session_state.get(JOB_KEY):
        return
    running = state.status(st.session_state[JOB_KEY]).get("state") in ACTIVE_STATES
    st.session_state[LIVE_KEY] = running
    st.fragment(run_every=REFRESH_SECONDS if running else None)(finder_panel)(manager)
