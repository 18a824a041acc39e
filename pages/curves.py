"""Live curves: loss and accuracy per epoch for one or several runs, every finished epoch's loss
and accuracy per batch, the running epoch's batches, learning rate and throughput — redrawn in
place while a run trains: the running epoch's batches every few seconds (less often when a crowd
watches), the epoch charts the moment an epoch lands."""

from __future__ import annotations

import time

import streamlit as st

from core.store.runs import ACTIVE_STATES, TRAINING_STATES
from dashboard import state, url_state
from dashboard.charts import (accuracy_per_batch_figure, batch_accuracy_figure, batch_loss_figure, curves_figure,
                              learning_rate_figure, loss_per_batch_figure, loss_per_batch_leads, run_legend_label,
                              throughput_figure, unrecorded_accuracy_note)
from dashboard.nav import COMPARE_KEY, COMPARE_PARAM

# Each redraw costs the server CPU per viewer, taken from the training it shows (bench/viewers.py
# measures it), so only the running epoch's batch chart is redrawn on a timer. The epoch charts
# change once per epoch (minutes apart): the live fragment notices a new metrics.csv row with a
# stat() and redraws the whole page then, instead of every viewer redrawing them on a timer.
LIVE_REFRESH_SECONDS = 3.0      # the running epoch's batches; slower with a crowd (state.live_refresh_seconds)
DRAWN_VERSIONS_KEY = "curves_drawn_versions"

st.title("Live curves")
summaries = [s for s in state.run_summaries() if not s.damaged]
if not summaries:
    st.info("No runs yet. Start one on the **Train** page; its curves appear here while it trains.")
    st.stop()

by_id = {s.run_id: s for s in summaries}
# Runs in training anywhere (this server's slots, the CLI, another server): their batches are live.
training = [s.run_id for s in summaries if s.state in TRAINING_STATES]
from_url = url_state.run_ids_param(COMPARE_PARAM, list(by_id))   # unknown ids: refused, shown as text
default = (st.session_state.pop(COMPARE_KEY, None) or from_url
           or [rid for rid in (st.session_state.get(state.SELECTED_RUN_KEY), *training) if rid in by_id][:1]
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
active = next((rid for rid in chosen if rid in training), None)   # the run whose batches are drawn


# Building a Plotly figure costs tens of milliseconds of CPU (mostly copying its template), and
# every viewer redraws once a second: forty laptops would take the CPU from the run they watch.
# So figures are built once per change of their data and shared, read-only, by every session.
@st.cache_resource(max_entries=32, show_spinner=False)
def epoch_figures(versions: tuple, labels: tuple, smoothing: float) -> dict:
    """The charts of finished epochs for runs at these versions ((run id, metrics, batches), ...)."""
    frames = {label: state.metrics_frame(rid) for (rid, *_), label in zip(versions, labels)}
    losses = {label: state.batch_losses(rid) for (rid, *_), label in zip(versions, labels)}
    accuracies = {label: state.batch_accuracies(rid) for (rid, *_), label in zip(versions, labels)}
    # uirevision keyed by the selection: a redraw keeps the user's zoom until they change runs.
    revision = "|".join(rid for rid, *_ in versions)
    return {"loss": curves_figure(frames, "loss", smoothing=smoothing, uirevision=revision),
            "batches": loss_per_batch_figure(losses, smoothing=smoothing, uirevision=f"steps-{revision}"),
            "batch_accuracy": (accuracy_per_batch_figure(accuracies, smoothing=smoothing,
                                                         uirevision=f"steps-accuracy-{revision}")
                               if any(accuracies.values()) else None),
            "batch_accuracy_note": unrecorded_accuracy_note(losses, accuracies),
            "accuracy": curves_figure(frames, "accuracy", smoothing=smoothing, uirevision=revision),
            "lr": learning_rate_figure(frames, uirevision=revision),
            "ips": throughput_figure(frames, uirevision=revision)}


@st.cache_resource(max_entries=8, show_spinner=False)
def batch_figures(run_id: str, epoch, second: int, _batch_losses: tuple, _batch_accuracies: tuple) -> tuple:
    """The running epoch's per-batch loss and accuracy (None for a trainer from before it was
    reported), built at most once a second for all viewers (batches come faster than that, so a
    per-batch key would rebuild them for nearly every viewer)."""
    return (batch_loss_figure(_batch_losses, epoch=epoch, uirevision=f"batch-{epoch}"),
            batch_accuracy_figure(_batch_accuracies, epoch=epoch, uirevision=f"batch-accuracy-{epoch}")
            if _batch_accuracies or not _batch_losses else None)


def _figures() -> dict:
    return epoch_figures(tuple((rid, state.metrics_version(rid), state.batches_version(rid)) for rid in chosen),
                         tuple(_legend(rid) for rid in chosen), smoothing)


def _legend(run_id: str) -> str:
    """The run's name first (names cannot hold markup: core.store.runs.check_label), then its settings."""
    name = by_id[run_id].name
    return (f"{name} · " if name else "") + run_legend_label(by_id[run_id].config, run_id)


def draw_loss_and_accuracy() -> None:
    figures = _figures()
    left, right = st.columns(2)
    left.plotly_chart(figures["loss"], width="stretch", theme=None, key="loss_chart")
    right.plotly_chart(figures["accuracy"], width="stretch", theme=None, key="accuracy_chart")


def _side_by_side(loss, accuracy, loss_key: str, accuracy_key: str) -> None:
    """Loss left and accuracy right, as the epoch charts; the loss alone, full width, without one."""
    if accuracy is None:
        st.plotly_chart(loss, width="stretch", theme=None, key=loss_key)
        return
    left, right = st.columns(2)
    left.plotly_chart(loss, width="stretch", theme=None, key=loss_key)
    right.plotly_chart(accuracy, width="stretch", theme=None, key=accuracy_key)


def draw_per_batch() -> None:
    figures = _figures()
    _side_by_side(figures["batches"], figures["batch_accuracy"], "loss_per_batch_chart", "accuracy_per_batch_chart")
    if figures["batch_accuracy"] is not None and figures["batch_accuracy_note"]:
        st.caption(state.markdown_text(figures["batch_accuracy_note"]))


def draw_batches() -> None:
    progress = state.job_manager().progress(active)
    loss, accuracy = batch_figures(active, progress.get("epoch"), int(time.time()),
                                   tuple(progress.get("batch_losses") or ()),
                                   tuple(progress.get("batch_accuracies") or ()))
    _side_by_side(loss, accuracy, "batch_chart", "batch_accuracy_chart")
    st.caption(f"Run `{active}` is {progress.get('phase', 'running')}: "
               f"epoch {progress.get('epoch')} of {progress.get('epochs')}, "
               f"batch {progress.get('batch')} of {progress.get('batches')}.")


def draw_rate_and_throughput() -> None:
    figures = _figures()
    left, right = st.columns(2)
    left.plotly_chart(figures["lr"], width="stretch", theme=None, key="lr_chart")
    right.plotly_chart(figures["ips"], width="stretch", theme=None, key="ips_chart")


def _live_snapshot() -> tuple:
    """What the epoch charts and the page's layout depend on: a change means redraw the page."""
    return (tuple(state.job_manager().active_run_ids),
            tuple((state.metrics_version(rid), state.status(rid).get("state")) for rid in chosen),
            tuple(state.batches_version(rid) for rid in chosen))


def watch_live() -> None:
    """The page's only timer: the running epoch's batches, and a full redraw when an epoch lands
    or the run ends (the epoch charts, the learning rate and throughput then have a new point)."""
    state.keep_live_refresh_in_budget(LIVE_REFRESH_SECONDS)
    if _live_snapshot() != st.session_state.get(DRAWN_VERSIONS_KEY):
        st.rerun()
    if active in chosen:
        draw_batches()


drawn = st.session_state[DRAWN_VERSIONS_KEY] = _live_snapshot()
any_active = active in chosen or any(run_state in ACTIVE_STATES for _, run_state in drawn[1])
# Runs from before batches.csv, or still in their first epoch, have no batch history: no empty chart.
with_batches = any(state.batch_losses(rid) for rid in chosen)


def draw_live() -> None:
    if any_active:
        st.fragment(run_every=state.live_refresh_seconds(LIVE_REFRESH_SECONDS))(watch_live)()


if loss_per_batch_leads(by_id[rid].epochs for rid in chosen):
    # One-epoch runs: the batches are the curve (the running epoch's, then every finished one's);
    # a per-epoch chart holds one point per run.
    draw_live()
    if with_batches:
        draw_per_batch()
    draw_loss_and_accuracy()
else:
    draw_loss_and_accuracy()
    draw_live()
    if with_batches:
        draw_per_batch()
draw_rate_and_throughput()
