"""Runs: every run in one sortable, filterable table; compare, resume, delete, download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.cifar10 import training_images
from core.jobs.scheduler import JobError
from core.settings.config import MAX_EPOCHS, TrainConfig
from core.store.runs import RESUMABLE_STATES, TRAINING_STATES
from dashboard import control, nav, state, take_home

st.title("Runs")
control.token_widget()
summaries = state.run_summaries()
if not summaries:
    st.info("No runs yet: start one on the **Train** page (or with `python -m core train`).")
    st.stop()


manager = state.job_manager()
place = {s.run_id: i for i, s in enumerate(manager.store.queue(), start=1)}
st.caption(f":material/memory: {manager.where_runs_train()}. {len(place)} run(s) waiting in line.")
if manager.problem:
    st.error(f"**Queued runs cannot start now:** {manager.problem}")


def _state(s) -> str:
    if s.damaged:
        return "damaged"
    return f"queued #{place[s.run_id]}" if s.run_id in place else s.state


def _row(s) -> dict:
    c = s.config or {}
    return {
        "run": s.run_id, "name": s.name, "author": s.author, "state": _state(s),
        "variant": (s.variant or "?").upper(),
        "test acc (%)": None if s.test_accuracy is None else round(100 * s.test_accuracy, 1),
        "best val acc (%)": None if s.best_val_accuracy is None else round(100 * s.best_val_accuracy, 1),
        "epochs": f"{s.epochs_done}/{s.epochs}", "image px": c.get("image_size"), "weights": c.get("weights"),
        "optimizer": c.get("optimizer"), "learning rate": c.get("learning_rate"), "batch": c.get("batch_size"),
        # The engine's count for CIFAR-10 (train_limit, or what val_fraction leaves), not a constant.
        "images": training_images(c.get("train_limit") or 0, c.get("val_fraction", TrainConfig.val_fraction))
        if c else None,
        "duration (min)": None if s.duration_seconds is None else round(s.duration_seconds / 60, 1),
        "started": s.started, "ran on": s.ran_on, "note": s.damaged or s.error,
    }


table = pd.DataFrame([_row(s) for s in summaries])
f1, f2, f3 = st.columns([2, 2, 3])
table["state filter"] = table["state"].str.replace(r" #\d+$", "", regex=True)
states = f1.multiselect("State", sorted(table["state filter"].unique()), placeholder="all states")
variants = f2.multiselect("Variant", sorted(table["variant"].unique()), placeholder="all variants")
text = f3.text_input("Search", placeholder="name, author, run id, optimizer, error text ...")
shown = table
if states:
    shown = shown[shown["state filter"].isin(states)]
if variants:
    shown = shown[shown["variant"].isin(variants)]
if text:
    shown = shown[shown.apply(lambda row: text.lower() in " ".join(map(str, row.values)).lower(), axis=1)]

shown = shown.drop(columns=["state filter"])
selection = st.dataframe(
    shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="runs_table",
    column_config={
        "best val acc (%)": st.column_config.ProgressColumn("best val acc", format="%.1f%%", min_value=0, max_value=100),
        "test acc (%)": st.column_config.ProgressColumn("test acc", format="%.1f%%", min_value=0, max_value=100),
        "learning rate": st.column_config.NumberColumn(format="%.0e"),
        "note": st.column_config.TextColumn(width="large"),
    },
)
picked = [shown.iloc[i]["run"] for i in selection.selection.rows]
st.caption(f"{len(shown)} of {len(table)} runs · select rows (click the left edge) to act on them · "
           "click a column header to sort")
if not picked:
    st.stop()

by_id = {s.run_id: s for s in summaries}
st.subheader(f"{len(picked)} selected")
c1, c2, c3, c4, c5 = st.columns(5)
if c1.button(":material/compare_arrows: Compare", width="stretch",
             help="Curves overlaid, settings side by side, per-class accuracy and confusion differences."):
    st.session_state[nav.COMPARE_KEY] = picked
    st.switch_page(nav.page("compare"))

# What this browser may change: its own runs, or every run for the teacher (dashboard/control.py).
mine = {rid for rid in picked if control.may_act(by_id[rid].owner)}
first = by_id[picked[0]]
with c2.popover(":material/replay: Resume", width="stretch",
                disabled=len(picked) != 1 or first.state not in RESUMABLE_STATES or first.run_id not in mine,
                help=None if first.run_id in mine else control.LOCKED_HELP):
    target = st.number_input("Total epochs", first.epochs_done + 1, MAX_EPOCHS, value=first.epochs_done + 1)
    if st.button("Resume now", type="primary"):
        try:
            if not state.may_act(first.run_id):
                raise JobError(control.LOCKED_HELP)
            state.job_manager().resume(first.run_id, int(target), teacher=control.is_teacher())
            state.remember_my_run(first.run_id)
            st.switch_page(nav.page("train"))
        except (JobError, ValueError) as exc:
            st.error(str(exc))


@st.dialog("Delete runs?")
def confirm_delete(run_ids: list[str]) -> None:
    st.write(f"This removes {len(run_ids)} run folder(s), their checkpoints and predictions. It cannot be undone.")
    st.code("\n".join(run_ids))
    if st.button("Delete", type="primary"):
        if not all(state.may_act(run_id) for run_id in run_ids):
            st.session_state["runs_message"] = control.LOCKED_HELP
            st.rerun()
        problems = []
        for run_id in run_ids:
            try:
                state.store().delete(run_id)
            except (ValueError, OSError) as exc:
                problems.append(str(exc))
        st.session_state["runs_message"] = "; ".join(problems) or f"Deleted {len(run_ids)} run(s)."
        st.rerun()


training = [rid for rid in picked if by_id[rid].state in TRAINING_STATES and rid in mine]
if c3.button(":material/stop: Stop", width="stretch", disabled=not training,
             help="Stops the selected training runs that are yours at their next batch, wherever they train "
                  "(this server, another one, the command line)." if training else control.LOCKED_HELP):
    stopped = [rid for rid in training if state.may_act(rid) and manager.stop(rid)]
    st.session_state["runs_message"] = f"Stop requested for {len(stopped)} run(s): " + ", ".join(stopped)
    st.rerun()
cancellable = [rid for rid in picked if rid in place and rid in mine]
if c4.button(":material/cancel: Cancel", width="stretch", disabled=not cancellable,
             help="Takes the selected queued runs that are yours out of the line (they stay listed as "
                  "cancelled and can be resumed later)." if cancellable else control.LOCKED_HELP):
    done = [rid for rid in cancellable if state.may_act(rid) and manager.cancel(rid)]
    st.session_state["runs_message"] = f"Cancelled {len(done)} queued run(s)."
    st.rerun()
deletable = len(mine) == len(picked)
if c5.button(":material/delete: Delete", width="stretch", disabled=not deletable,
             help=None if deletable else control.LOCKED_HELP):
    confirm_delete(picked)
if message := st.session_state.pop("runs_message", None):
    st.info(message)

for run_id in picked:
    with st.container(border=True):
        st.markdown(f"**{state.markdown_text(state.run_label(by_id[run_id]))}**")
        if by_id[run_id].damaged:
            st.warning(f"Damaged: {by_id[run_id].damaged}")
        d1, d2, d3, d4, d5 = st.columns([1, 1, 1, 1, 1])
        config_text = state.config_json(run_id)
        d1.download_button("Settings (JSON)", config_text or "", file_name=f"{run_id}-config.json",
                           mime="application/json", disabled=config_text is None, key=f"cfg_{run_id}")
        d2.download_button("Metrics (CSV)", state.metrics_csv(run_id), file_name=f"{run_id}-metrics.csv",
                           mime="text/csv", key=f"csv_{run_id}")
        if take_home.model_download_button(run_id, key=f"model_{run_id}", container=d3):
            with d4.popover("Use it at home", icon=":material/code:"):
                take_home.snippet_block(run_id)
        if run_id in mine and not by_id[run_id].damaged:
            with d5.popover("Rename", icon=":material/edit:"):
                new_name = st.text_input("Name", value=by_id[run_id].name, max_chars=60, key=f"rename_{run_id}")
                if st.button("Save", key=f"rename_save_{run_id}"):
                    try:
                        if not state.may_act(run_id):
                            raise ValueError(control.LOCKED_HELP)
                        state.store().get(run_id).rename(new_name)
                        st.session_state["runs_message"] = f"Renamed {run_id}."
                        st.rerun()
                    except ValueError as exc:
                        st.error(str(exc))
