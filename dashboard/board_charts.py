"""The class board's chart: a Board (core/sweeps/board.py) in, a Plotly figure out; no st.* calls.

One marker trace per person (colour, and past seven people a second marker shape, so nobody
shares a look with someone else), the Pareto front as a black step line over them, and each run's
name, person, accuracy and minutes on hover.
"""

from __future__ import annotations

import plotly.graph_objects as go

from core.sweeps.board import Board
from dashboard.style import SERIES_COLOURS, colour, style_figure

FRONT_COLOUR = "#000000"      # kept out of the series colours (dashboard/style.py) for lines like this
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")
MARKER_SIZE = 14
FRONT_NAME = "Pareto front (nobody beats these on both)"
TITLE = "Class board: test accuracy against training time"
X_TITLE = "training time (minutes)"
Y_TITLE = "test accuracy (%)"
Y_RANGE = [-3, 105]            # 0-100% with room for a marker's radius at either end
HEIGHT = 420                   # the page's whole chart inside a 1280×720 first view


def board_figure(board: Board, title: str = TITLE) -> go.Figure:
    """Every run a point, coloured by person; the front a step line (up and to the right: each
    step is the accuracy the next extra minutes bought)."""
    fig = go.Figure()
    for i, person in enumerate(board.people):
        mine = [p for p in board.points if p.person == person]
        fig.add_scatter(
            x=[p.minutes for p in mine], y=[p.accuracy for p in mine], mode="markers", name=person,
            marker=dict(size=MARKER_SIZE, color=colour(i), symbol=SYMBOLS[i // len(SERIES_COLOURS) % len(SYMBOLS)],
                        line=dict(width=1, color="#333")),
            customdata=[[p.label, p.person, p.run_id] for p in mine],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{y:.1f}% in %{x:.1f} min"
                          "<br>run %{customdata[2]}<extra></extra>")
    if board.front:
        front = board.front
        # Rings round the front's points too: a front of one run has no step to draw.
        fig.add_scatter(x=[p.minutes for p in front], y=[p.accuracy for p in front], mode="lines+markers",
                        name=FRONT_NAME, line=dict(shape="hv", width=3, color=FRONT_COLOUR, dash="dot"),
                        marker=dict(symbol="circle-open", size=MARKER_SIZE + 10, color=FRONT_COLOUR,
                                    line=dict(width=2)), hoverinfo="skip")
    # Both axes from zero and accuracy to 100%: a class compares runs by how far apart they are, so
    # autorange's zoom onto a few close points (9.5% to 10.5%) would make small gaps look large.
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(range=Y_RANGE, tickvals=list(range(0, 101, 20)))
    return style_figure(fig, title=title, x_title=X_TITLE, y_title=Y_TITLE, height=HEIGHT)
