"""Shareable report: a finished run as one self-contained HTML file (settings, interactive curves,
confusion matrix, per-class table, top mistakes with their images), a per-class CSV, and the
trained model to take home with the code that uses it.

The HTML is built by dashboard/report.py and cached per run files, so the download button
serves the same bytes until the run changes.
"""

from __future__ import annotations

import streamlit as st

from core.store.states import RunState
from dashboard import nav, report_files, state, take_home
from dashboard.report import MISTAKES_SHOWN, csv_filename, per_class_frame, report_filename

st.title("Shareable report")
st.markdown("One file to send after class: it opens in any browser, offline, with interactive charts. "
            f"It holds the run's settings, its loss and accuracy curves, the confusion matrix, the "
            f"per-class table and its {MISTAKES_SHOWN} most confident mistakes with their images.")

runs = state.with_predictions(state.run_summaries())
if not runs:
    st.info("No run has test-set predictions yet. A run writes them when it finishes; for a running "
            "or stopped run, use “Evaluate now” on the confusion page.")
    st.page_link(nav.page("confusion"), label="Open the confusion page", icon=":material/grid_on:")
    st.stop()

run_id = state.select_run([s.run_id for s in runs], label="Run", key="report_run",
                          labels={s.run_id: state.run_label(s) for s in runs}, sidebar=False)
summary = next(s for s in runs if s.run_id == run_id)
evaluation = state.evaluation(run_id)
if evaluation is None:
    st.error("This run's predictions cannot be read; evaluate it again on the confusion page.")
    st.stop()
if summary.state != RunState.COMPLETED:
    st.warning(f"This run is {summary.state}: the report shows its predictions as they are "
               "(from an earlier checkpoint), and says so.")

with st.spinner("Building the report ..."):
    html, csv, note = report_files.report_files(run_id)
if note:
    st.warning(note)

cols = st.columns(3)
cols[0].metric("Top-1 test accuracy", f"{100 * evaluation.top1_accuracy:.1f}%")
cols[1].metric("Test images", f"{evaluation.n:,}")
cols[2].metric("Report size", f"{len(html.encode()) / 1e6:.1f} MB",
               help="Most of it is the charting library (plotly.js), included so the file works offline.")

buttons = st.columns(2)
buttons[0].download_button("Download the HTML report", data=html, file_name=report_filename(run_id),
                           mime="text/html", type="primary", icon=":material/download:",
                           key="download_report", on_click="ignore", width="stretch")
buttons[1].download_button("Download per-class metrics (CSV)", data=csv, file_name=csv_filename(run_id),
                           mime="text/csv", icon=":material/table_view:", key="download_csv",
                           on_click="ignore", width="stretch")
st.caption("Precision, recall and F1 in the CSV are fractions (0–1); recall is the class's accuracy.")

st.subheader("Take the model home", anchor=False)
home = st.columns([2, 3])
which = home[0].radio("Checkpoint", list(take_home.CHECKPOINTS), format_func=take_home.CHECKPOINTS.get,
                      horizontal=True, key="report_model_which",
                      help="The last epoch's weights, or those of the epoch with the best validation accuracy.")
if take_home.model_download_button(run_id, which=which, key="download_model", container=home[0],
                                   label="Download the trained model (.keras)", width="stretch"):
    with home[1]:
        take_home.snippet_block(run_id, which)

st.subheader("Per class", anchor=False)
table = per_class_frame(evaluation).set_index("class")
for column in ("precision", "recall", "f1", "error_rate"):
    table[column] = 100 * table[column]
percent = "%.1f%%"
st.dataframe(table, width="stretch", column_config={
    "precision": st.column_config.NumberColumn("Precision", format=percent),
    "recall": st.column_config.NumberColumn("Recall (accuracy)", format=percent),
    "f1": st.column_config.NumberColumn("F1", format=percent),
    "support": st.column_config.NumberColumn("Test images", format="%d"),
    "correct": st.column_config.NumberColumn("Correct", format="%d"),
    "errors": st.column_config.NumberColumn("Errors", format="%d"),
    "error_rate": st.column_config.NumberColumn("Error rate", format=percent),
})
