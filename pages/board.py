"""Class board: every finished run of the class, or of one sweep, as test accuracy against training
minutes, coloured by person, with the Pareto front drawn (core/sweeps/board.py says how each is
counted). ?sweep=NAME opens it on that sweep; it redraws itself as runs finish.
"""

from __future__ import annotations

import streamlit as st

from core.sweeps.board import class_board, trial_run_ids
from core.sweeps.study import Sweep, SweepError, list_sweeps
from dashboard import nav, state
from dashboard.board_charts import board_figure

ALL = ""                          # the selector's "every run of the class"
FRONT_NAMED = 5                   # runs of the front named under the chart
REFRESH_SECONDS = 5.0

st.title("Class board")
# The sentence and the selector side by side, so that the whole chart fits a projector's first view.
explained, chosen = st.columns([3, 2], vertical_alignment="bottom")
explained.caption("Every run with a test accuracy as one point: further up is more accurate, further left "
                  "took fewer minutes of training. The black steps join the runs nobody beat on both.")

store = state.store()
names = [s.name for s in list_sweeps(store)]
wanted = st.query_params.get(nav.SWEEP_PARAM, ALL)
options = [ALL, *names]
choice = chosen.selectbox("Runs on the board", options, index=options.index(wanted) if wanted in names else 0,
                          format_func=lambda n: f"Sweep: {n}" if n else "All runs of the class",
                          key="board_sweep")
if choice:
    st.query_params[nav.SWEEP_PARAM] = choice
else:
    st.query_params.pop(nav.SWEEP_PARAM, None)


@st.fragment(run_every=state.live_refresh_seconds(REFRESH_SECONDS))
def board_panel(sweep_name: str) -> None:
    summaries = [s for s in state.run_summaries() if not s.damaged]
    only = None
    if sweep_name:
        try:
            only = trial_run_ids(Sweep.open(store, sweep_name))
        except SweepError as exc:
            st.warning(str(exc))
            return
    board = class_board(summaries, state.epoch_seconds(summaries), only)
    if not board.points:
        st.info("No run here has a test accuracy yet: a run gets one when it completes. Train one on the "
                "**Train** page, or start a sweep on the **Sweep** page.")
        return
    st.plotly_chart(board_figure(board), width="stretch", key="board_chart")
    st.markdown(front_sentence(board))
    if board.left_out:
        st.caption(f"{board.left_out} run(s) of these have no test accuracy (yet): queued, training, stopped, "
                   "pruned or failed runs are left off.")


def front_sentence(board) -> str:
    """"On the front: trial 3 by Ana (91.2% in 4.1 min), ..." in plain text made inert for Markdown."""
    shown = [f"{state.markdown_text(p.label)} by {state.markdown_text(p.person)} "
             f"({p.accuracy:.1f}% in {p.minutes:.1f} min)" for p in board.front[:FRONT_NAMED]]
    more = len(board.front) - len(shown)
    runs, people = len(board.points), len(board.people)
    counted = f"{runs} run{'s' * (runs != 1)} by {people} {'person' if people == 1 else 'people'}"
    return (f"**{counted}.** On the front: " + "; ".join(shown)
            + (f"; and {more} more." if more > 0 else "."))


board_panel(choice)
