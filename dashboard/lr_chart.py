"""The learning-rate finder's chart: core.training.lr_find's curve in, a Plotly figure out, no st.* calls."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.style import OKABE_ITO, style_figure

CURVE_COLOUR, RAW_COLOUR, SUGGESTION_COLOUR = OKABE_ITO[0], "#b8b8b8", OKABE_ITO[3]
LOSS_AXIS = "training loss (cross-entropy)"   # raw and smoothed both: the legend tells them apart


def lr_finder_figure(rates, smoothed, suggestion: float | None, *, losses=None, method: str = "") -> go.Figure:
    """Smoothed loss against learning rate (log axis), the suggestion marked by a line and a point.

    Args:
        rates, smoothed: The range test's rates and smoothed losses (same length, 2 or more).
        suggestion: The suggested rate (within the rates' range); None: the loss fell at no rate,
            and the chart says so in its title.
        losses: Each batch's raw loss, drawn faintly behind the smoothed curve; None: left out.
        method: How the suggestion was chosen, for its label ("steepest descent ...").

    Raises:
        ValueError: The arrays differ in length, hold fewer than two points, or a rate is not positive.
    """
    rates, smoothed = np.asarray(rates, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    if rates.shape != smoothed.shape or rates.ndim != 1 or len(rates) < 2:
        raise ValueError(f"rates and smoothed must be two equal-length curves of 2 or more points; got "
                         f"shapes {rates.shape} and {smoothed.shape}")
    if np.any(rates <= 0):
        raise ValueError("rates must all be positive: they are drawn on a log axis")
    fig = go.Figure()
    if losses is not None:
        fig.add_trace(go.Scatter(x=rates, y=np.asarray(losses, dtype=np.float64), mode="lines",
                                 name="loss per batch", line=dict(color=RAW_COLOUR, width=1),
                                 hovertemplate="rate %{x:.2e}: loss %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=rates, y=smoothed, mode="lines", name="smoothed loss",
                             line=dict(color=CURVE_COLOUR, width=3),
                             hovertemplate="rate %{x:.2e}: smoothed loss %{y:.3f}<extra></extra>"))
    if suggestion is not None:
        at = float(np.interp(np.log10(suggestion), np.log10(rates), smoothed))
        fig.add_trace(go.Scatter(x=[suggestion], y=[at], mode="markers+text", name="suggestion",
                                 marker=dict(color=SUGGESTION_COLOUR, size=14, symbol="diamond"),
                                 text=[f"{suggestion:.1e}"], textposition="top right",
                                 hovertemplate=f"suggested rate %{{x:.2e}}{' (' + method + ')' if method else ''}"
                                               "<extra></extra>"))
        fig.add_vline(x=suggestion, line=dict(color=SUGGESTION_COLOUR, dash="dash", width=2))
    title = f"suggested rate {suggestion:.1e}" if suggestion is not None else "the loss fell at no rate"
    style_figure(fig, title=f"Learning-rate finder: {title}",
                 x_title="learning rate (log scale)", y_title=LOSS_AXIS, height=420)
    finite = smoothed[np.isfinite(smoothed)]
    top = min(float(finite.max()), 2.0 * float(finite[0])) if len(finite) else 1.0
    fig.update_xaxes(type="log", exponentformat="power")
    fig.update_yaxes(range=[0.9 * float(finite.min()) if len(finite) else 0, 1.05 * top])
    return fig
