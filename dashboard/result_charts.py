"""Chart builders for the result and history pages: data in, Plotly figure out, no st.* calls.

Every figure goes through `style.style_figure` (title, axis titles with units, projector-sized
fonts, colour-blind-safe colours) and is unit-tested on its traces (tests/test_result_charts.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# TrainConfig's own size rules (private there; one copy of each rule, not two).
from core.analysis.evaluate import cell_hover_text, row_normalised
from core.content.history import COMPOUND_SCALING, compound_scaling
from core.data.cifar10 import CLASS_NAMES, NUM_CLASSES
from core.settings.config import _final_feature_size, _top_channels
from core.settings.variants import VARIANTS
from dashboard.style import OKABE_ITO, SEQUENTIAL_SCALE, style_figure

PICKER_TRACE = "cell picker"     # the invisible scatter layer that makes heat-map cells clickable
RUNS_TRACE = "Your CIFAR-10 runs"
RUN_COLOUR = OKABE_ITO[3]        # vermillion: stands out from the cividis year scale
BAR_COLOUR = OKABE_ITO[0]
HIGHLIGHT_COLOUR = OKABE_ITO[3]
TRUE_COLOUR = OKABE_ITO[2]
# Error metric for the history chart: (history column, how it becomes an error %, axis words).
HISTORY_METRICS = {
    "top1": ("imagenet_top1", "accuracy", "ImageNet top-1 error (%), single model"),
    "top5": ("imagenet_top5", "accuracy", "ImageNet top-5 error (%), single model"),
    "ilsvrc": ("ilsvrc_top5_error", "error", "ILSVRC top-5 error (%), contest entry"),
}


# --- confusion page --------------------------------------------------------------------------
def confusion_figure(confusion, class_names: Sequence[str] = CLASS_NAMES, *, normalise: bool = False,
                     mistakes_only: bool = False, selectable: bool = True) -> go.Figure:
    """The confusion matrix as a heat map: rows = true class (top to bottom), columns = predicted.

    Args:
        confusion: Square count matrix.
        class_names: Names in index order.
        normalise: Colour and label each cell by its share of the true class (%), else by count.
        mistakes_only: Leave the diagonal uncoloured so the colour scale spans the mistakes.
        selectable: Add an invisible marker per cell so `st.plotly_chart(on_select=...)` can
            report a clicked cell (Plotly heat maps emit no selection events themselves:
            streamlit/streamlit#8760).

    Returns:
        Trace 0 is the heat map (customdata = hover text such as "true cat predicted as dog:
        112 (11.2%)"); trace 1, when selectable, the picker, whose points carry (true, predicted)
        indices as customdata.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    names = list(class_names)
    pct = row_normalised(counts)
    values = pct if normalise else counts.astype(np.float64)
    labels = [[f"{v:.1f}%" if normalise else f"{int(v):,}" for v in row] for row in values]
    z = values.copy()
    if mistakes_only:
        np.fill_diagonal(z, np.nan)
    hover = cell_hover_text(counts, names)
    fig = go.Figure(go.Heatmap(
        z=[[None if math.isnan(v) else v for v in row] for row in z], x=names, y=names,
        text=labels, texttemplate="%{text}", textfont=dict(size=15),
        customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorscale=SEQUENTIAL_SCALE, xgap=1, ygap=1, name="confusion",
        colorbar=dict(title=dict(text="% of true class" if normalise else "Images")),
    ))
    if selectable:
        k = len(names)
        t_idx, p_idx = np.divmod(np.arange(k * k), k)
        fig.add_trace(go.Scatter(
            x=[names[j] for j in p_idx], y=[names[i] for i in t_idx], mode="markers",
            name=PICKER_TRACE, showlegend=False,
            customdata=np.stack([t_idx, p_idx], axis=1),
            hovertext=[hover[i][j] for i, j in zip(t_idx, p_idx)],
            hovertemplate="%{hovertext}<br>click to see these images<extra></extra>",
            marker=dict(symbol="square", size=36, opacity=0.0),
            selected=dict(marker=dict(opacity=0.0)), unselected=dict(marker=dict(opacity=0.0)),
        ))
    what = "% of each true class" if normalise else "test images"
    style_figure(fig, title=f"Confusion matrix ({what})", x_title="Predicted class",
                 y_title="True class", height=720, legend=False)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(side="bottom", showgrid=False, tickangle=-45)
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def selected_cell(points: Iterable[dict], class_names: Sequence[str] = CLASS_NAMES) -> tuple[int, int] | None:
    """(true, predicted) class indices of the first clicked confusion cell, from a selection event."""
    names = list(class_names)
    for point in points or []:
        custom = point.get("customdata")
        if isinstance(custom, dict):       # the browser sends a numpy pair as {"0": t, "1": p}
            custom = [custom.get("0", custom.get(0)), custom.get("1", custom.get(1))]
        if isinstance(custom, (list, tuple)) and len(custom) == 2 and None not in custom:
            return int(custom[0]), int(custom[1])
        if point.get("x") in names and point.get("y") in names:
            return names.index(point["y"]), names.index(point["x"])
    return None


def per_class_error_figure(per_class: pd.DataFrame) -> go.Figure:
    """Horizontal bars of each class's test error rate (%), worst class on top."""
    frame = per_class.sort_values("error_rate", ascending=True)
    error = 100 * frame["error_rate"].to_numpy(dtype=np.float64)
    fig = go.Figure(go.Bar(
        x=error, y=list(frame.index), orientation="h", marker_color=BAR_COLOUR,
        # Inside a long bar, after a short one: after a 100% bar in this narrow column the label
        # would run off the chart.
        text=[f"{e:.1f}%" for e in error], textposition=["inside" if e >= 45 else "outside" for e in error],
        cliponaxis=False, insidetextanchor="end", constraintext="none",
        customdata=np.stack([frame["errors"], frame["support"]], axis=1),
        hovertemplate="%{y}: %{x:.1f}% wrong (%{customdata[0]} of %{customdata[1]})<extra></extra>",
        name="error rate",
    ))
    style_figure(fig, title="Test error per class", x_title="Error rate (%)",
                 y_title="True class", height=480, legend=False)
    fig.update_xaxes(range=[0, max(100.0, float(error.max(initial=0)) * 1.15)])
    return fig


def pair_label(true_name: str, predicted_name: str) -> str:
    return f"{true_name} → {predicted_name}"


def confused_pairs_figure(pairs: pd.DataFrame, top: int = 10) -> go.Figure:
    """The `top` most frequent (true → predicted) mistakes, most frequent on top."""
    head = pairs.head(top).iloc[::-1]
    labels = [pair_label(t, p) for t, p in zip(head["true"], head["predicted"])]
    share = 100 * head["share_of_true"].to_numpy(dtype=np.float64)
    fig = go.Figure(go.Bar(
        x=head["count"], y=labels, orientation="h", marker_color=OKABE_ITO[1],
        text=[f"{c:,}" for c in head["count"]], textposition="outside", cliponaxis=False,
        customdata=share, name="mistakes",
        hovertemplate="%{y}: %{x:,} images (%{customdata:.1f}% of the true class)<extra></extra>",
    ))
    style_figure(fig, title=f"Most-confused pairs (top {min(top, len(pairs))})",
                 x_title="Misclassified test images (count)", y_title="True → predicted",
                 height=max(320, 60 + 36 * len(head)), legend=False)
    return fig


def top5_figure(top: Sequence[tuple[int, float]], true_index: int | None = None,
                class_names: Sequence[str] = CLASS_NAMES, title: str = "Top-5 probabilities") -> go.Figure:
    """Bars of the most probable classes (most probable on top); the true class in its own colour.

    Args:
        top: [(class_index, probability), ...] as core.analysis.evaluate.top_k returns.
        true_index: The true class, drawn in green and marked "(true)".
    """
    names = [class_names[i] + (" (true)" if i == true_index else "") for i, _ in top]
    probs = [100 * p for _, p in top]
    colours = [TRUE_COLOUR if i == true_index else (HIGHLIGHT_COLOUR if rank == 0 else BAR_COLOUR)
               for rank, (i, _) in enumerate(top)]
    fig = go.Figure(go.Bar(
        x=probs[::-1], y=names[::-1], orientation="h", marker_color=colours[::-1],
        text=[f"{p:.1f}%" for p in probs[::-1]], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>", name="probability",
    ))
    style_figure(fig, title=title, x_title="Probability (%)", y_title="Class", height=360, legend=False)
    fig.update_xaxes(range=[0, 115])
    return fig


# --- history page ----------------------------------------------------------------------------
def _head_params(config: dict, channels: int) -> int:
    if config.get("head", "gap") == "gap":
        return channels * NUM_CLASSES + NUM_CLASSES
    from core.training.model import SEED_HEAD_UNITS   # imports keras: only for the rare "seed" head
    feature = _final_feature_size(int(config.get("image_size", 32)))
    sizes = [feature * feature * channels, *SEED_HEAD_UNITS, NUM_CLASSES]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def model_params(config: dict) -> int | None:
    """Parameter count of a run's model from its config alone (no TensorFlow): the variant's
    no-top base (core.settings.variants) plus the head. None for an unknown variant."""
    variant = str(config.get("variant", "")).lower()
    if variant not in VARIANTS:
        return None
    return VARIANTS[variant].base_params + _head_params(config, _top_channels(variant))


def runs_frame(summaries) -> pd.DataFrame:
    """The user's runs that have a test accuracy, as rows for `history_scatter_figure`."""
    rows = []
    for s in summaries:
        if s.test_accuracy is None or s.damaged or not s.config:
            continue
        params = model_params(s.config)
        if params is None:
            continue
        rows.append({"run_id": s.run_id, "variant": s.variant.upper(),
                     "image_size": s.config.get("image_size"), "weights": s.config.get("weights"),
                     "params_millions": params / 1e6, "test_accuracy": 100 * float(s.test_accuracy),
                     "test_error": 100 * (1 - float(s.test_accuracy))})
    return pd.DataFrame(rows, columns=["run_id", "variant", "image_size", "weights",
                                       "params_millions", "test_accuracy", "test_error"])


# Label placement for a legible chart: EfficientNets are labelled "B0".."B7" below their markers,
# and the two classic networks that crowd ResNet-50 move aside.
LABEL_POSITIONS = {**{f"EfficientNet-B{i}": "bottom center" for i in range(8)},
                   "Inception-v3": "bottom center", "DenseNet-201": "top left"}


def point_label(name: str) -> str:
    return name.removeprefix("EfficientNet-")


def history_points(history: pd.DataFrame, metric: str = "top1") -> tuple[pd.DataFrame, list[str]]:
    """(rows that can be plotted with an `error` column, names of the rows left out)."""
    if metric not in HISTORY_METRICS:
        raise ValueError(f"metric must be one of {tuple(HISTORY_METRICS)}, got {metric!r}")
    column, kind, _ = HISTORY_METRICS[metric]
    frame = history.copy()
    frame["error"] = 100 - frame[column] if kind == "accuracy" else frame[column]
    ok = frame["error"].notna() & frame["params_millions"].notna()
    return frame[ok].reset_index(drop=True), list(frame.loc[~ok, "name"])


def history_scatter_figure(history: pd.DataFrame, runs: pd.DataFrame | None = None,
                           metric: str = "top1") -> go.Figure:
    """Published ImageNet error against parameters (log x), coloured by year; the user's CIFAR-10
    runs as a second series (test error against their parameter count).

    Args:
        history: core.content.history.history_frame().
        runs: `runs_frame(...)` of the user's runs, or None.
        metric: "top1", "top5" (single-model ImageNet) or "ilsvrc" (the contest entry's top-5).
    """
    points, _ = history_points(history, metric)
    axis_words = HISTORY_METRICS[metric][2]
    fig = go.Figure(go.Scatter(
        x=points["params_millions"], y=points["error"], mode="markers+text", name="Published (ImageNet)",
        text=[point_label(n) for n in points["name"]], textfont=dict(size=13),
        textposition=[LABEL_POSITIONS.get(n, "top center") for n in points["name"]],
        customdata=(np.stack([points["name"], points["year"], points["figures_source"]], axis=1)
                    if len(points) else None),
        marker=dict(size=14, color=points["year"], colorscale=SEQUENTIAL_SCALE, showscale=True,
                    line=dict(width=1, color="#333"),
                    colorbar=dict(title=dict(text="Year"), x=1.02, len=0.75, y=0.4)),
        hovertemplate=("%{customdata[0]} (%{customdata[1]})<br>" + axis_words.split(" (")[0]
                       + ": %{y:.1f}%<br>%{x:.2f}M parameters<br>source: %{customdata[2]}<extra></extra>"),
    ))
    if runs is not None and len(runs):
        fig.add_trace(go.Scatter(
            x=runs["params_millions"], y=runs["test_error"], mode="markers+text", name=RUNS_TRACE,
            text=[f"{v} {px}px" for v, px in zip(runs["variant"], runs["image_size"])],
            textposition="middle right", textfont=dict(size=13, color=RUN_COLOUR),
            marker=dict(symbol="star", size=18, color=RUN_COLOUR, line=dict(width=1, color="#333")),
            customdata=np.stack([runs["run_id"], runs["variant"], runs["image_size"],
                                 runs["test_accuracy"]], axis=1),
            hovertemplate=("%{customdata[0]}<br>%{customdata[1]} at %{customdata[2]} px<br>"
                           "CIFAR-10 test accuracy %{customdata[3]:.1f}%, error %{y:.1f}% "
                           "(CIFAR-10, not ImageNet)<br>%{x:.2f}M parameters<extra></extra>"),
        ))
    style_figure(fig, title="Error against model size: published ImageNet results and your CIFAR-10 runs",
                 x_title="Parameters (millions, log scale)",
                 y_title=f"Error (%): {axis_words.split(' error')[0]}; yours: CIFAR-10",
                 height=620)
    # 1-2-5 ticks in full size: Plotly's default labels the 2..9 of each decade in small digits.
    params = pd.concat([points["params_millions"], runs["params_millions"] if runs is not None and len(runs)
                        else pd.Series(dtype=float)]).dropna()
    ticks = [m * 10.0 ** e for e in range(-1, 4) for m in (1, 2, 5)]
    if len(params):
        ticks = [t for t in ticks if params.min() / 2 <= t <= params.max() * 2]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.0, xanchor="left"))
    return fig


SCALING_LABELS = ("Depth (layers)", "Width (channels)", "Resolution (pixels per side)", "FLOPs")


def scaling_figure(phi: float) -> go.Figure:
    """Bars of EfficientNet's compound-scaling multipliers at compound coefficient `phi`."""
    s = compound_scaling(phi)
    values = [s["depth"], s["width"], s["resolution"], s["flops"]]
    formulas = ["α^φ", "β^φ", "γ^φ", "(α·β²·γ²)^φ"]
    fig = go.Figure(go.Bar(
        x=list(SCALING_LABELS), y=values, marker_color=[OKABE_ITO[i] for i in (0, 1, 2, 3)],
        text=[f"×{v:.2f}" for v in values], textposition="outside", cliponaxis=False,
        customdata=formulas, name="multiplier",
        hovertemplate="%{x}: %{customdata} = ×%{y:.3f}<extra></extra>",
    ))
    a, b, g = (COMPOUND_SCALING[k] for k in ("alpha", "beta", "gamma"))
    style_figure(fig, title=(f"Compound scaling at φ = {s['phi']:g} (α = {a}, β = {b}, γ = {g}): "
                             f"{s['resolution_px']} px input"),
                 x_title="What is scaled", y_title="Multiplier of B0 (×, log scale)",
                 height=460, legend=False)
    top = max(values)
    fig.update_yaxes(type="log", range=[-0.05, math.log10(max(top, 1.0) * 2.2)])
    return fig
