"""Confusion matrix: where a run's test predictions go wrong, and a way into those images.

Clicking a heat-map cell or a ranked pair's button opens the gallery (pages/mistakes.py) with
?run=…&true=cat&pred=dog, so the same view is a shareable link.
"""

from __future__ import annotations

import streamlit as st

from core.data.cifar10 import CLASS_NAMES
from core.store.states import RunState
from dashboard import control, nav, state
from dashboard.evaluate_panel import ended_evaluation, evaluate_panel
from dashboard.report import PER_CLASS_COLUMNS, PER_CLASS_NOTE, per_class_table
from dashboard.result_charts import (confused_pairs_figure, confusion_figure, pair_label,
                                     per_class_error_figure, selected_cell)
from dashboard.url_state import gallery_query

PAIR_BUTTONS = 10


def open_gallery(run_id: str, true_index: int, predicted_index: int) -> None:
    view = "correct" if true_index == predicted_index else "mistakes"
    st.switch_page(nav.page("mistakes"), query_params=gallery_query(
        run_id, CLASS_NAMES[true_index], CLASS_NAMES[predicted_index], view=view,
        run_param=state.RUN_QUERY_PARAM))


st.title("Confusion matrix")
control.token_widget()
summaries = state.run_summaries()
if not summaries:
    st.info("No runs yet. Train one first.")
    st.page_link(nav.page("train"), label="Go to Train")
    st.stop()

labels = {s.run_id: state.run_label(s) for s in summaries}
run_id = state.select_run([s.run_id for s in summaries], labels=labels)
status = state.status(run_id)
run_state = status.get("state", "unknown")
ended_evaluation(run_id)

if damage := state.predictions_damage(run_id):
    st.error(f"This run's test-set predictions are damaged ({damage}). Evaluate again to rewrite them.")
    evaluate_panel(run_id, run_state, has_predictions=False)
    st.stop()
evaluation = state.evaluation(run_id)

if evaluation is None:
    st.info(f"Run {run_id} ({run_state}) has no test-set predictions yet. A finished run writes "
            "them at the end; for a running or stopped run, evaluate its latest checkpoint.")
    evaluate_panel(run_id, run_state, has_predictions=False)
    st.stop()

if run_state != RunState.COMPLETED:
    epoch = status.get("predictions_epoch")
    st.caption(f"This run is {run_state}; these predictions are from "
               + (f"epoch {epoch}." if epoch else "an earlier checkpoint."))
    evaluate_panel(run_id, run_state, has_predictions=True)

cols = st.columns(4)
cols[0].metric("Top-1 accuracy", f"{100 * evaluation.top1_accuracy:.1f}%")
cols[1].metric("Top-5 accuracy", f"{100 * evaluation.top5_accuracy:.1f}%")
cols[2].metric("Test images", f"{evaluation.n:,}")
cols[3].metric("Misclassified", f"{int(evaluation.per_class['errors'].sum()):,}")

# The matrix gets the page's whole width: ten columns of counts must stay readable on a projector.
controls = st.columns([1, 1, 2])
scale = controls[0].radio("Cells show", ["counts", "% of true class"], horizontal=True, key="confusion_scale")
mistakes_only = controls[1].toggle("Colour the mistakes only", key="confusion_mistakes_only",
                                   help="Leave the diagonal (correct predictions) uncoloured, so "
                                        "the colour scale spreads over the mistakes.")
fig = confusion_figure(evaluation.confusion, normalise=scale != "counts", mistakes_only=mistakes_only)
event = st.plotly_chart(fig, key="confusion_chart", on_select="rerun", selection_mode="points",
                        config={"displayModeBar": False}, theme=None)
st.caption("Click a cell to see those images (a diagonal cell shows the correctly classified ones). "
           "Hover for counts and percentages.")
cell = selected_cell(getattr(getattr(event, "selection", None), "points", None) or [])
if cell is not None:
    open_gallery(run_id, *cell)

st.subheader("Most-confused pairs")
pairs = evaluation.confused_pairs
if pairs.empty:
    st.success("No mistakes at all on this test set.")
else:
    buttons_col, chart_col = st.columns([2, 3], gap="large")
    with buttons_col:
        for row in pairs.head(PAIR_BUTTONS).itertuples():
            text = (f"{pair_label(row.true, row.predicted)}: {row.count:,} "
                    f"({100 * row.share_of_true:.1f}% of {row.true}) — show images")
            if st.button(text, key=f"pair_{row.true_index}_{row.predicted_index}", width="stretch"):
                open_gallery(run_id, int(row.true_index), int(row.predicted_index))
    with chart_col:
        st.plotly_chart(confused_pairs_figure(pairs), key="pairs_chart",
                        config={"displayModeBar": False}, theme=None)

st.subheader("Per class")
chart_col, table_col = st.columns([2, 3], gap="large")
with chart_col:
    st.plotly_chart(per_class_error_figure(evaluation.per_class), key="per_class_chart",
                    config={"displayModeBar": False}, theme=None)
with table_col:
    # Short headers, units in them: all seven columns fit half the page without scrolling.
    st.dataframe(per_class_table(evaluation.per_class), width="stretch", column_config={
        column: st.column_config.NumberColumn(header, format=number_format)
        for column, (header, number_format) in PER_CLASS_COLUMNS.items()})
    st.caption(PER_CLASS_NOTE)
