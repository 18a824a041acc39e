"""Live curves: loss and accuracy per epoch for one or several runs, the running epoch's batches,
learning rate and throughput — redrawn in place about once a second while a run trains."""

from __future__ import annotations

import streamlit as st

from core.runs import ACTIVE_STATES
from dashboard import state
from dashboard.charts import (batch_loss_figure, curves_figure, learning_rate_figure, run_legend_label,
                              throughput_figure)

LIVE_REFRESH_SECONDS = 1.0
COMPARE_KEY = "compare_runs"     # set by the Runs page's "Compare" button
COMPARE_PARAM = "runs"           # ?runs=id1,id2 opens the page with those runs

st.title("Live curves")
summaries = [s for s in state.run_summaries() if not s.damaged]
if not summaries:
    st.info("No runs yet. Start one on the **Train** page; its curves appear here while it trains.")
    st.stop()

by_id = {s.run_id: s for s in summaries}
active = state.job_manager().active_run_id
from_url = [rid for rid in st.query_params.get(COMPARE_PARAM, "").split(",") if rid in by_id]
default = (st.session_state.pop(COMPARE_KEY, None) or from_url
           or [rid for rid in (active, st.session_state.get(state.SELECTED_RUN_KEY)) if rid in by_id][:1]
           or [summaries[0].run_id])
chosen = st.multiselect("Runs to show", list(by_id), default=[r for r in default if r in by_id],
                        format_func=lambda rid: state.run_label(by_id[rid]),
                        help="Pick several to overlay them; the legend names variant and key settings.")
st.query_params[COMPARE_PARAM] = ",".join(chosen)
smoothing = st.slider("Smoothing", 0.0, 0.95, 0.0, 0.05,
                      help="Exponential moving average as in TensorBoard; faint lines keep the raw values.")
if not chosen:
    st.info("Choose at least one run.")
    st.stop()


def _frames() -> dict:
    return {run_legend_label(by_id[rid].config, rid): state.metrics_frame(rid) for rid in chosen}


def draw(live: bool) -> None:
    frames = _frames()
    # uirevision keyed by the selection: a redraw keeps the user's zoom until they change runs.
    revision = "|".join(chosen)
    left, right = st.columns(2)
    left.plotly_chart(curves_figure(frames, "loss", smoothing=smoothing, uirevision=revision),
                      width="stretch", theme=None, key="loss_chart")
    right.plotly_chart(curves_figure(frames, "accuracy", smoothing=smoothing, uirevision=revision),
                       width="stretch", theme=None, key="accuracy_chart")
    if live and active in chosen:
        progress = state.job_manager().progress(active)
        st.plotly_chart(batch_loss_figure(progress.get("batch_losses") or (), epoch=progress.get("epoch"),
                                          uirevision=f"batch-{progress.get('epoch')}"),
                        width="stretch", theme=None, key="batch_chart")
        st.caption(f"Run `{active}` is {progress.get('phase', 'running')}: "
                   f"epoch {progress.get('epoch')} of {progress.get('epochs')}, "
                   f"batch {progress.get('batch')} of {progress.get('batches')}.")
    left, right = st.columns(2)
    left.plotly_chart(learning_rate_figure(frames, uirevision=revision), width="stretch", theme=None, key="lr_chart")
    right.plotly_chart(throughput_figure(frames, uirevision=revision), width="stretch", theme=None, key="ips_chart")


any_active = active in chosen or any(by_id[rid].state in ACTIVE_STATES for rid in chosen)
if any_active:
    st.fragment(run_every=LIVE_REFRESH_SECONDS)(draw)(live=True)
else:
    draw(live=False)
