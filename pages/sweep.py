"""Sweep: set up a search over a few settings, start it as ordinary queued runs, watch the results."""

from __future__ import annotations

import time

import streamlit as st
import yaml

from core.errors import UserInputError
from core.settings.config import ConfigError
from core.sweeps import driver, results
from core.sweeps.queueing import start_sweep, stop_sweep
from core.sweeps.study import Sweep, list_sweeps
from core.sweeps.sweep_file import sweep_from_dict
from dashboard import control, identity, nav, state, sweep_charts, sweep_form

SWEEP_KEY = "sweep_shown"

st.title("Sweep")
st.caption("Many runs that differ in a few settings, searched by Optuna; each trial is an ordinary run in the "
           "queue, yours, within your limits. Results below fill in as trials finish.")
control.token_widget()
manager = state.job_manager()

with st.expander("Set up a new sweep", expanded=not list_sweeps(manager.store), icon=":material/tune:"):
    config = sweep_form.sweep_config(f"sweep {time.strftime('%H%M')}")
    with st.popover("As a sweep file", icon=":material/description:"):
        st.caption("The same sweep for `python -m core sweep run FILE` (W&B's sweep format).")
        st.code(yaml.safe_dump(config, sort_keys=False), language="yaml")
    if st.button("Start sweep", type="primary", icon=":material/play_arrow:", disabled=not control.can_start()):
        try:
            spec = sweep_from_dict(config)
            sweep, step = start_sweep(manager, spec, owner=identity.me(), teacher=control.is_teacher())
            st.session_state[SWEEP_KEY] = sweep.name
            note = f" {step.problem}" if step.problem else ""
            st.session_state["sweep_message"] = f"Sweep {sweep.name!r}: {len(step.queued)} trial(s) queued.{note}"
        except (ConfigError, UserInputError) as exc:
            st.error(str(exc))

sweeps = list_sweeps(manager.store)
if not sweeps:
    st.info("No sweeps yet: set one up above, or run `python -m core sweep create FILE`.")
    st.stop()
if message := st.session_state.pop("sweep_message", None):
    st.success(message)
names = [s.name for s in sweeps]
wanted = st.session_state.get(SWEEP_KEY)
name = st.selectbox("Sweep", names, index=names.index(wanted) if wanted in names else 0, key="sweep_picker")
st.session_state[SWEEP_KEY] = name


@st.fragment(run_every=state.live_refresh_seconds(3.0))
def results_panel(name: str) -> None:
    sweep = Sweep.open(manager.store, name)
    spec, trials = sweep.spec, results.trial_results(sweep)
    budget = spec.trial_budget()
    done = sum(1 for t in trials if t.state in sweep_charts.FINISHED_STATES)
    st.subheader(f"{name}: {driver.state_of(sweep)}")
    st.caption(f"{spec.method}, {len(trials)}" + (f" of {budget}" if budget else "") + f" trials asked, {done} "
               f"finished · metric {spec.metric} ({spec.goal}) · pruning {spec.pruning} · "
               + ("driven by the command line" if sweep.driver == "cli" else "queued on this server"))
    mine = control.may_act(sweep.owner)
    if not driver.finished(sweep) and not sweep.stopped and st.button(
            "Stop sweep", icon=":material/stop:", disabled=not mine, help=None if mine else control.LOCKED_HELP):
        stopped = stop_sweep(manager, sweep)
        st.info(f"Stopped: {len(stopped.cancelled)} queued trial(s) cancelled, {len(stopped.stopping)} asked to stop.")
    params = [p.name for p in spec.params]
    frame = sweep_charts.trials_frame(trials, params)
    st.dataframe(frame.drop(columns=["number"]), hide_index=True, width="stretch",
                 column_config={"value": st.column_config.NumberColumn(spec.metric, format="%.3f")})
    _charts(sweep, trials, frame, params)


def _charts(sweep: Sweep, trials, frame, params) -> None:
    spec = sweep.spec
    metric = results.METRIC_WORDS[spec.metric]
    if any(t.state in sweep_charts.FINISHED_STATES for t in trials):
        axes = {p.name: (results.setting_label(p.name), p.distribution == "log_uniform_values") for p in spec.params}
        st.plotly_chart(sweep_charts.parallel_coordinates(frame, axes, metric), width="stretch")
    scores = results.importances(sweep)
    if scores:
        st.markdown(f"**{results.importance_sentence(sweep, scores, trials)}**")
        st.plotly_chart(sweep_charts.importance_chart({results.setting_label(k): v for k, v in scores.items()}),
                        width="stretch")
    left, right = st.columns(2)
    if (frame["state"] == "complete").any():
        left.plotly_chart(sweep_charts.best_so_far_chart(frame, metric, spec.goal), width="stretch")
    curves = results.trial_curves(sweep, trials)
    if any(curves.values()):
        epoch_metric = results.METRIC_WORDS[spec.epoch_metric] + " after each epoch"
        right.plotly_chart(sweep_charts.curves_chart(curves, {t.number: t.state for t in trials}, epoch_metric),
                           width="stretch")
    best = next((t for t in trials if t.state == "complete" and t.value is not None
                 and t.value == _best_value(trials, spec.goal)), None)
    if best is not None:
        st.page_link(nav.page("confusion"), label=f"Best: {best.label} ({best.value:.3f}): its confusion matrix",
                     icon=":material/grid_on:", query_params={"run": best.run_id})
    if any(t.state == "complete" for t in trials):
        st.page_link(nav.page("board"), label="This sweep on the class board: test accuracy against minutes",
                     icon=":material/leaderboard:", query_params={nav.SWEEP_PARAM: sweep.name})


def _best_value(trials, goal: str) -> float:
    values = [t.value for t in trials if t.state == "complete" and t.value is not None]
    return max(values) if goal == "maximize" else min(values)


results_panel(name)
