"""Chart builders for the Sweep page: a sweep's trials in, Plotly figures out; no st.* calls.

Each takes plain data from core/sweeps/results.py (a DataFrame of trials: number, label, state,
value and one column per varied setting) and returns a styled figure (dashboard/style.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.style import SEQUENTIAL_SCALE, colour, style_figure

FADED = "#c8c8c8"             # pruned and failed trials: there, but out of the way
LOG_SPAN = 100                 # positive values spanning this factor or more get a log axis (a rate grid)
FINISHED_STATES = ("complete", "pruned", "fail")
FEW_VALUES = 8                 # a numeric axis with at most this many values ticks each one


def trials_frame(results, params: Sequence[str]) -> pd.DataFrame:
    """One row per trial (TrialResult list in): number, label, run, state, value, each setting."""
    frame = pd.DataFrame([{"number": r.number + 1, "label": r.label, "run": r.run_id, "state": r.state,
                           "value": r.value, **{p: r.params.get(p) for p in params}} for r in results],
                         columns=["number", "label", "run", "state", "value", *params])
    # Numbers even before any trial has one: a column of only None would be drawn as the word "None".
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def _dimension(values: pd.Series, label: str, log: bool) -> dict:
    """A parallel-coordinates axis: words as evenly spaced ticks, a log range as powers of ten."""
    if values.map(lambda v: isinstance(v, str) or isinstance(v, bool)).any():
        words = sorted({str(v) for v in values.dropna()})
        return dict(label=label, values=[words.index(str(v)) if v is not None else np.nan for v in values],
                    tickvals=list(range(len(words))), ticktext=words)
    numbers = pd.to_numeric(values, errors="coerce")
    positive = bool((numbers > 0).all()) and len(numbers) > 0
    if positive and (log or numbers.max() / numbers.min() >= LOG_SPAN):
        logs = np.log10(numbers)
        ticks = np.arange(math.floor(logs.min()), math.ceil(logs.max()) + 1)
        return dict(label=f"{label} (log)", values=logs, tickvals=ticks, ticktext=[f"1e{int(t)}" for t in ticks])
    distinct = sorted(numbers.dropna().unique())
    if 0 < len(distinct) <= FEW_VALUES:   # a grid's values: tick exactly those, not 4, 4.5, 5, ...
        return dict(label=label, values=numbers, tickvals=distinct, ticktext=[f"{v:g}" for v in distinct])
    return dict(label=label, values=numbers)


def parallel_coordinates(trials: pd.DataFrame, params: Mapping[str, tuple[str, bool]], metric: str) -> go.Figure:
    """Each finished trial a line through every varied setting to its metric; pruned and failed ones
    grey (Parcoords has no per-line opacity, so the colour scale's bottom end is that grey).
    `params`: {column: (axis label, log scale)}."""
    shown = trials[trials["state"].isin(FINISHED_STATES)].reset_index(drop=True)
    values = pd.to_numeric(shown["value"], errors="coerce")
    complete = shown["state"] == "complete"
    low, high = (values[complete].min(), values[complete].max()) if complete.any() else (0.0, 1.0)
    span = (high - low) or 1.0
    # Completed trials on 0.1..1 by their metric; the rest at 0, the grey end of the scale.
    shade = np.where(complete, 0.1 + 0.9 * (values - low) / span, 0.0)
    scale = [[0.0, FADED], [0.05, FADED], *[[0.1 + 0.9 * i / 4, c] for i, c in enumerate(_cividis(5))]]
    dimensions = [_dimension(shown[col], label, log) for col, (label, log) in params.items()]
    dimensions.append(dict(label=metric, values=values))
    fig = go.Figure(go.Parcoords(line=dict(color=shade, colorscale=scale, cmin=0, cmax=1), dimensions=dimensions,
                                 labelfont=dict(size=16), tickfont=dict(size=14)))
    faded = int((~complete).sum())
    title = "Every trial through its settings to its result" + (f" ({faded} pruned or failed in grey)" if faded else "")
    style_figure(fig, title=title, x_title="", y_title="", legend=False, height=520)
    # Parcoords writes its axis names above the plot and its outer ticks beside it: room for both.
    return fig.update_layout(margin=dict(l=90, r=110, t=130, b=50))


def _cividis(n: int) -> list[str]:
    from plotly.colors import sample_colorscale
    return sample_colorscale(SEQUENTIAL_SCALE, [i / (n - 1) for i in range(n)])


def importance_chart(scores: Mapping[str, float]) -> go.Figure:
    """Optuna's importances as horizontal bars, the most important on top."""
    ordered = sorted(scores.items(), key=lambda item: item[1])
    fig = go.Figure(go.Bar(x=[v for _, v in ordered], y=[k for k, _ in ordered], orientation="h",
                           marker_color=colour(0), text=[f"{v:.2f}" for _, v in ordered], textposition="auto"))
    fig.update_xaxes(range=[0, 1])
    return style_figure(fig, title="Which setting mattered (Optuna's fANOVA importance)",
                        x_title="share of the spread in the result (0-1)", y_title="setting", legend=False,
                        height=max(260, 90 + 60 * len(ordered)))


def best_so_far_chart(trials: pd.DataFrame, metric: str, goal: str) -> go.Figure:
    """Each completed trial's result by trial number, and the best so far as a step line."""
    done = trials[trials["state"] == "complete"].sort_values("number")
    values = pd.to_numeric(done["value"], errors="coerce")
    best = values.cummax() if goal == "maximize" else values.cummin()
    fig = go.Figure([
        go.Scatter(x=done["number"], y=values, mode="markers", name="trial", marker=dict(size=12, color=colour(0)),
                   customdata=done["run"], hovertemplate="trial %{x}: %{y:.3f}<br>run %{customdata}<extra></extra>"),
        go.Scatter(x=done["number"], y=best, mode="lines", name="best so far", line=dict(shape="hv", width=3,
                                                                                        color=colour(1))),
    ])
    fig.update_xaxes(dtick=1)
    return style_figure(fig, title="Best so far, trial by trial", x_title="trial (number)", y_title=metric)


def curves_chart(curves: Mapping[int, Sequence[tuple[int, float]]], states: Mapping[int, str],
                 metric: str) -> go.Figure:
    """Every trial's per-epoch curve on one chart; pruned ones dashed and faded where they stopped."""
    fig = go.Figure()
    for i, (number, points) in enumerate(sorted(curves.items())):
        if not points:
            continue
        pruned = states.get(number) == "pruned"
        fig.add_scatter(x=[e for e, _ in points], y=[v for _, v in points], mode="lines+markers",
                        name=f"trial {number + 1}" + (" (pruned)" if pruned else ""), opacity=0.45 if pruned else 1,
                        line=dict(color=colour(i), width=3, dash="dash" if pruned else "solid"))
    fig.update_xaxes(dtick=1)
    return style_figure(fig, title="Every trial's curve", x_title="epoch (number)", y_title=metric)
