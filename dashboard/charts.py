"""Chart builders for the training pages: DataFrames in, Plotly figures out.

Pure functions: no Streamlit, no TensorFlow. Every builder ends with `style_figure`, so every chart
has a title, axis titles with units and projector-sized fonts, and sets `layout.uirevision` to a
stable string so that a Streamlit rerun redraws the data but keeps the user's zoom and hidden traces.

A run's metrics frame has one row per finished epoch: epoch (1-based), loss, accuracy, val_loss,
val_accuracy (NaN without validation), learning_rate, epoch_seconds, images_per_second. Accuracy
is stored as a fraction and shown as a percentage.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.training.progress import format_clock
from dashboard.style import colour, style_figure

NO_EPOCHS_TEXT = "No finished epochs yet"
NO_BATCHES_TEXT = "Waiting for the first batch (the first step compiles the model, 20 s or more)"
NO_ESTIMATES_TEXT = "No estimates yet"
NO_BATCH_HISTORY_TEXT = "No finished epoch with its batches recorded yet"
BATCH_SMOOTHING = 0.9         # the per-batch loss line's EMA when the page's slider is at 0
LOSS_AXIS = "loss (cross-entropy)"
ACCURACY_AXIS = "accuracy (%)"
EPOCH_AXIS = "epoch"
# Up to this many points a line also gets markers (a single epoch is then still visible).
MARKERS_UP_TO = 40
CURVES_HEIGHT = 540           # room for a legend of several runs below the plot
LEGEND_WRAP = 40              # characters per legend line: two charts side by side at 1280 px hold ~50
LEGEND_LINE_PX = 22           # the figure grows by this per legend line beyond the first two
RAW_OPACITY = 0.3             # raw values under a smoothed line
PER_BATCH_OPACITY = 0.4       # derived per-batch losses under the running mean
HIGHLIGHT = colour(1)         # orange against the default blue: distinct for every common CVD
_METRICS = {"loss": ("loss", "val_loss", "Loss per epoch", LOSS_AXIS, 1.0, ".4f"),
            "accuracy": ("accuracy", "val_accuracy", "Accuracy per epoch", ACCURACY_AXIS, 100.0, ".2f")}
_RUN_ID = re.compile(r"^\d{8}-(\d{4})\d{2}-b[0-7]-([0-9a-f]{4})$")


# --- small helpers -----------------------------------------------------------------------------
def smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average.

    s_t = w·s_{t-1} + (1-w)·x_t from s_0 = 0, divided by 1 - w^n (n = finite points so far), so the
    first points are not pulled towards zero. Non-finite values stay as they are and are skipped:
    they neither reset nor poison the points after them.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1); got {weight!r}")
    x = np.asarray(values, dtype=float)
    out = x.copy()
    last, n = 0.0, 0
    for i, v in enumerate(x):
        if not math.isfinite(v):
            continue
        last = weight * last + (1.0 - weight) * v
        n += 1
        out[i] = last / (1.0 - weight ** n)
    return out


def eta_text(seconds: float | None) -> str:
    """A clock-style duration: "1:23", "1:02:03"; "—" when unknown (core.training.progress.format_clock)."""
    return format_clock(seconds, unknown="—")


def percent_text(fraction) -> str:
    """A fraction as a percentage with one decimal ("89.9%"); "—" when missing or not a number."""
    try:
        number = float(fraction)
    except (TypeError, ValueError):
        return "—"
    return f"{100 * number:.1f}%" if math.isfinite(number) else "—"


def _duration_text(seconds: float) -> str:
    """A human duration with two significant figures: "45 s", "2.5 min", "3.1 h", "2.3 d"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= (2 * size if unit == "d" else size):
            value = seconds / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.0f} s"


def _rate_text(rate: float) -> str:
    """1e-3, 3e-4, 2.5e-4, 0.1: short and exact enough to tell runs apart."""
    if rate >= 0.1 or rate <= 0:
        return f"{rate:g}"
    mantissa, exponent = f"{rate:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def run_legend_label(config: dict, run_id: str) -> str:
    """A short legend label from a TrainConfig dict, e.g. "B0 32px adam lr=1e-3 imagenet FT@2 · 1423-3f9a".

    Shows what usually differs between runs (variant, size, optimizer, rate, schedule, weights,
    freezing, head) and the run's start time and random suffix, which tell apart two runs with the
    same settings.
    """
    c = config or {}
    parts = [str(c.get("variant", "?")).upper()]
    if c.get("image_size") is not None:
        parts.append(f"{c['image_size']}px")
    if c.get("optimizer"):
        parts.append(str(c["optimizer"]))
    if isinstance(c.get("learning_rate"), (int, float)):
        parts.append(f"lr={_rate_text(float(c['learning_rate']))}")
    if c.get("lr_schedule") not in (None, "constant"):
        parts.append(str(c["lr_schedule"]))
    weights = c.get("weights", "none")
    if weights == "imagenet":
        parts.append("imagenet")
    elif weights and weights != "none":
        parts.append("weights:" + re.split(r"[\\/]", str(weights))[-1])
    if c.get("freeze_base") and c.get("fine_tune_from_start"):
        parts.append(f"FT from block {c.get('fine_tune_from_block', 1)}")
    elif c.get("freeze_base"):
        at, epochs = int(c.get("fine_tune_at_epoch") or 0), c.get("epochs")
        fine_tunes = at > 0 and (epochs is None or at < int(epochs))
        parts.append(f"FT@{at}" if fine_tunes else "frozen")
    if c.get("head") == "seed":
        parts.append("seed head")
    match = _RUN_ID.match(run_id or "")
    short_id = f"{match.group(1)}-{match.group(2)}" if match else (run_id or "")
    return " ".join(parts) + (f" · {short_id}" if short_id else "")


def _series(frame: pd.DataFrame, column: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one column: numeric, one row per epoch (a resume's repeat keeps the
    last), sorted, rows without a value dropped. Empty arrays if the column is missing."""
    if frame is None or frame.empty or "epoch" not in frame or column not in frame:
        return np.array([], dtype=float), np.array([], dtype=float)
    df = pd.DataFrame({"epoch": pd.to_numeric(frame["epoch"], errors="coerce"),
                       "value": pd.to_numeric(frame[column], errors="coerce")})
    df = df.dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last").sort_values("epoch")
    df = df[np.isfinite(df["value"])]
    return df["epoch"].to_numpy(dtype=float), df["value"].to_numpy(dtype=float) * scale


def _mode(n_points: int) -> str:
    return "lines+markers" if n_points <= MARKERS_UP_TO else "lines"


def _placeholder(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=20, color="#555"))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def _epoch_ticks(fig: go.Figure, max_epoch: float) -> None:
    # Whole epochs only: with few epochs Plotly would otherwise tick 0.5, 1, 1.5.
    if max_epoch <= 20:
        fig.update_xaxes(tickmode="linear", tick0=1, dtick=1)
    else:
        fig.update_xaxes(tickformat="d")


def _log_ticks(low: float, high: float) -> list[float]:
    """Tick values 1-2-5 per decade (1 per decade over wide ranges) covering [low, high], so a log
    axis gets a few large labels instead of Plotly's small 2..9 minor digits."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1,) if last - first > 4 else (1, 2, 5)
    ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in steps]
    inside = [t for t in ticks if low / 1.001 <= t <= high * 1.001]
    return inside if len(inside) >= 2 else [t for t in ticks if low / 10 <= t <= high * 10]


def legend_text(label: str, width: int = LEGEND_WRAP) -> str:
    """A long run label broken into lines of about `width` characters ("<br>" between them), so a
    legend below a half-width chart shows all of it instead of clipping its end (which says
    train or validation). Short labels come back unchanged."""
    if len(label) <= width:
        return label
    return "<br>".join(textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False))


def _legend_below(fig: go.Figure) -> None:
    # Run labels are long: beside the plot they would take half its width on a projector. Below
    # it, each wrapped line takes height from the plot, so the figure grows by as much.
    lines = sum((trace.name or "").count("<br>") + 1 for trace in fig.data if trace.showlegend is not False)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      height=fig.layout.height + LEGEND_LINE_PX * max(0, lines - 2))


def _finish(fig: go.Figure, uirevision: str, **style) -> go.Figure:
    style_figure(fig, **style)
    fig.update_layout(uirevision=uirevision)
    return fig


# --- per-epoch charts ----------------------------------------------------------------------------
def curves_figure(runs: dict[str, pd.DataFrame], metric: str, *, smoothing: float = 0.0,
                  uirevision: str = "static") -> go.Figure:
    """Training (solid) and validation (dashed) curves of `metric` ("loss" or "accuracy"), one
    colour per run. With `smoothing` > 0 the main line is the debiased EMA and the raw values are
    drawn faint underneath; each legend entry toggles its line and its raw values together."""
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {', '.join(_METRICS)}; got {metric!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing!r}")
    train_col, val_col, title, y_title, scale, fmt = _METRICS[metric]
    unit = "%" if scale == 100.0 else ""
    fig, max_epoch = go.Figure(), 0.0
    for i, (label, frame) in enumerate((runs or {}).items()):
        for column, kind, dash in ((train_col, "train", "solid"), (val_col, "validation", "dash")):
            x, y = _series(frame, column, scale)
            if not len(x):
                continue
            max_epoch = max(max_epoch, float(x.max()))
            name = legend_text(f"{label} · {kind}")
            if smoothing > 0:
                fig.add_trace(go.Scatter(
                    x=x, y=y, mode=_mode(len(x)), name=f"{name} (raw)", legendgroup=name,
                    showlegend=False, opacity=RAW_OPACITY, line=dict(color=colour(i), width=1, dash=dash),
                    marker=dict(size=5), hovertemplate=f"{name} (raw)<br>epoch %{{x}}: %{{y:{fmt}}}{unit}"
                                                       "<extra></extra>"))
            fig.add_trace(go.Scatter(
                x=x, y=smooth(y, smoothing) if smoothing > 0 else y, mode=_mode(len(x)), name=name,
                legendgroup=name, line=dict(color=colour(i), width=3, dash=dash), marker=dict(size=8),
                hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:{fmt}}}{unit}<extra></extra>"))
    _finish(fig, uirevision, title=title, x_title=EPOCH_AXIS, y_title=y_title, height=CURVES_HEIGHT)
    if not fig.data:
        return _placeholder(fig, NO_EPOCHS_TEXT)
    _epoch_ticks(fig, max_epoch)
    _legend_below(fig)
    if smoothing > 0:
        fig.update_layout(title_subtitle_text=f"EMA smoothing {smoothing:g}; faint lines: raw values")
    return fig


def learning_rate_figure(runs: dict[str, pd.DataFrame], uirevision: str = "static") -> go.Figure:
    """The learning rate of each epoch, one step line per run, on a log axis."""
    fig, max_epoch = go.Figure(), 0.0
    for i, (label, frame) in enumerate((runs or {}).items()):
        x, y = _series(frame, "learning_rate")
        keep = y > 0                      # a log axis cannot show 0
        x, y = x[keep], y[keep]
        if not len(x):
            continue
        max_epoch = max(max_epoch, float(x.max()))
        fig.add_trace(go.Scatter(x=x, y=y, mode=_mode(len(x)), name=legend_text(label), line_shape="hv",
                                 line=dict(color=colour(i), width=3), marker=dict(size=8),
                                 hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.3g}}<extra></extra>"))
    _finish(fig, uirevision, title="Learning rate per epoch", x_title=EPOCH_AXIS,
            y_title="learning rate (log scale)")
    fig.update_yaxes(type="log")
    if not fig.data:
        return _placeholder(fig, NO_EPOCHS_TEXT)
    _epoch_ticks(fig, max_epoch)
    _legend_below(fig)
    rates = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data])
    ticks = _log_ticks(rates.min(), rates.max())
    fig.update_yaxes(tickvals=ticks, ticktext=[_rate_text(t) for t in ticks])
    return fig


def throughput_figure(runs: dict[str, pd.DataFrame], uirevision: str = "static") -> go.Figure:
    """Training images per second of each epoch (validation excluded), one line per run."""
    fig, max_epoch = go.Figure(), 0.0
    for i, (label, frame) in enumerate((runs or {}).items()):
        x, y = _series(frame, "images_per_second")
        if not len(x):
            continue
        max_epoch = max(max_epoch, float(x.max()))
        fig.add_trace(go.Scatter(x=x, y=y, mode=_mode(len(x)), name=legend_text(label),
                                 line=dict(color=colour(i), width=3), marker=dict(size=8),
                                 hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:,.0f}} images/s<extra></extra>"))
    _finish(fig, uirevision, title="Training throughput per epoch", x_title=EPOCH_AXIS,
            y_title="throughput (images/s)")
    if not fig.data:
        return _placeholder(fig, NO_EPOCHS_TEXT)
    _epoch_ticks(fig, max_epoch)
    _legend_below(fig)
    fig.update_yaxes(rangemode="tozero")
    return fig


# --- the running epoch ---------------------------------------------------------------------------
# What Keras reports per batch, as the charts show it: (axis title, scale, hover format, unit, noun).
_BATCH_METRICS = {"loss": (LOSS_AXIS, 1.0, ".4f", "", "loss"),
                  "accuracy": (ACCURACY_AXIS, 100.0, ".2f", "%", "accuracy")}


def per_batch_values(reports: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batches, running means, per-batch values) from Keras' running means of the epoch (its loss
    or its accuracy: both are means over the batches so far).

    Keras reports mean_b, the mean over batches 1..b, so batch b's own value is
    b·mean_b − (b−1)·mean_{b−1}. Where reports skip batches (p < b−1) this gives the mean of
    batches p+1..b: (b·mean_b − p·mean_p) / (b − p). Exact for equal batches; Keras weights by
    batch size, so a smaller last batch is slightly off. Only the last rising run of batch numbers
    counts (a new epoch restarts them), and a repeated batch keeps its last report.
    """
    pairs = [(int(b), float(m)) for b, m in reports if int(b) >= 1]
    starts = [i for i in range(1, len(pairs)) if pairs[i][0] < pairs[i - 1][0]]
    pairs = list(dict(pairs[starts[-1]:] if starts else pairs).items())
    if not pairs:
        return np.array([]), np.array([]), np.array([])
    batches = np.array([b for b, _ in pairs], dtype=float)
    means = np.array([m for _, m in pairs], dtype=float)
    previous_b = np.concatenate(([0.0], batches[:-1]))
    previous_m = np.concatenate(([0.0], means[:-1]))
    with np.errstate(invalid="ignore"):
        derived = (batches * means - previous_b * previous_m) / (batches - previous_b)
    return batches, means, derived


def _running_epoch_figure(reports: Sequence[tuple[int, float]], metric: str, epoch: int | None,
                          uirevision: str) -> go.Figure:
    """The running epoch's loss or accuracy: Keras' running mean as a line, each batch's own faint."""
    y_title, scale, fmt, unit, noun = _BATCH_METRICS[metric]
    title = (f"Training {noun} in epoch {epoch} (per batch)" if epoch is not None
             else f"Training {noun} in the current epoch (per batch)")
    fig = go.Figure()
    batches, means, derived = per_batch_values(reports or ())
    if len(batches):
        fig.add_trace(go.Scatter(
            x=batches, y=derived * scale, mode="lines+markers", name=f"per-batch {noun} (derived)",
            opacity=PER_BATCH_OPACITY, line=dict(color=colour(5), width=1), marker=dict(size=5),
            hovertemplate=f"batch %{{x}}: %{{y:{fmt}}}{unit}<extra>per-batch {noun}</extra>"))
        fig.add_trace(go.Scatter(
            x=batches, y=means * scale, mode=_mode(len(batches)), name="running mean (as Keras reports it)",
            line=dict(color=colour(0), width=3), marker=dict(size=7),
            hovertemplate=f"batch %{{x}}: %{{y:{fmt}}}{unit}<extra>running mean</extra>"))
    _finish(fig, uirevision, title=title, x_title="batch", y_title=y_title)
    if not fig.data:
        return _placeholder(fig, NO_BATCHES_TEXT)
    # Whole batch numbers only: with a handful of batches Plotly's own ticks (1, 1.5, 2) read "1 2 2".
    fig.update_xaxes(tickformat="d", tick0=1, dtick=max(1, math.ceil(int(batches.max()) / 10)))
    _legend_below(fig)     # beside the plot, it would take half the width of a chart drawn at half width
    return fig


def batch_loss_figure(batch_losses: Sequence[tuple[int, float]], *, epoch: int | None = None,
                      uirevision: str = "static") -> go.Figure:
    """The running epoch's loss: Keras' running mean as a line, each batch's own loss faint."""
    return _running_epoch_figure(batch_losses, "loss", epoch, uirevision)


def batch_accuracy_figure(batch_accuracies: Sequence[tuple[int, float]], *, epoch: int | None = None,
                          uirevision: str = "static") -> go.Figure:
    """The running epoch's training accuracy: the running mean, and each batch's own faint."""
    return _running_epoch_figure(batch_accuracies, "accuracy", epoch, uirevision)


def values_through_epochs(epochs: dict[int, Sequence[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """(x, per-batch value) over a whole run from its {epoch: [(batch, running mean), ...]}: x is in
    epochs, batch b of n in epoch e at e - 1 + b / n, so runs with different batch sizes line up."""
    xs, ys = [], []
    for epoch, pairs in sorted(epochs.items()):
        batches, _, derived = per_batch_values(pairs)
        if len(batches):
            xs.append(epoch - 1 + batches / batches.max())
            ys.append(derived)
    return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.array([]), np.array([]))


def _per_batch_history_figure(runs: dict[str, dict[int, Sequence[tuple[int, float]]]], metric: str,
                              smoothing: float, uirevision: str) -> go.Figure:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing!r}")
    y_title, scale, fmt, unit, noun = _BATCH_METRICS[metric]
    weight = smoothing or BATCH_SMOOTHING
    fig, max_epoch = go.Figure(), 0.0
    for i, (label, epochs) in enumerate((runs or {}).items()):
        x, y = values_through_epochs(epochs or {})
        if not len(x):
            continue
        y = y * scale
        max_epoch = max(max_epoch, float(np.ceil(x.max())))
        name = legend_text(label)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", name=f"{name} (each batch)", legendgroup=name, showlegend=False,
            opacity=RAW_OPACITY, line=dict(color=colour(i), width=1),
            hovertemplate=f"{name}<br>epoch %{{x:.3f}}: %{{y:{fmt}}}{unit}<extra>one batch</extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=smooth(y, weight), mode="lines", name=name, legendgroup=name,
            line=dict(color=colour(i), width=3),
            hovertemplate=f"{name}<br>epoch %{{x:.3f}}: %{{y:{fmt}}}{unit}<extra>smoothed</extra>"))
    _finish(fig, uirevision, title=f"Training {noun} per batch", x_title=EPOCH_AXIS, y_title=y_title,
            height=CURVES_HEIGHT)
    if not fig.data:
        return _placeholder(fig, NO_BATCH_HISTORY_TEXT)
    if max_epoch > 2:        # one or two epochs: Plotly's own ticks (0.2, 0.4, ...) say where in them
        _epoch_ticks(fig, max_epoch)
    _legend_below(fig)
    fig.update_xaxes(range=[0, max_epoch])
    fig.update_layout(title_subtitle_text=f"EMA smoothing {weight:g}; faint lines: each batch")
    return fig


def unrecorded_accuracy_note(losses: dict[str, dict], accuracies: dict[str, dict]) -> str | None:
    """A line for under the per-batch charts naming the runs with a loss per batch but no accuracy
    per batch (trained before it was recorded), which the accuracy chart leaves out; None if none."""
    missing = [label for label, epochs in losses.items() if epochs and not accuracies.get(label)]
    if not missing:
        return None
    return ("Accuracy per batch not recorded (trained before it was): " + ", ".join(missing)
            + "; the loss per batch is.")


def loss_per_batch_figure(runs: dict[str, dict[int, Sequence[tuple[int, float]]]], *,
                          smoothing: float = 0.0, uirevision: str = "static") -> go.Figure:
    """Every finished epoch's per-batch training loss, one colour per run, on an epoch axis: the
    curve a one-epoch run has instead of a single point per epoch. Each batch's own loss (derived
    from Keras' running means) is drawn faint; the line is its debiased EMA, at `smoothing` or,
    when that is 0, at BATCH_SMOOTHING: single batches are too noisy to read unsmoothed."""
    return _per_batch_history_figure(runs, "loss", smoothing, uirevision)


def accuracy_per_batch_figure(runs: dict[str, dict[int, Sequence[tuple[int, float]]]], *,
                              smoothing: float = 0.0, uirevision: str = "static") -> go.Figure:
    """loss_per_batch_figure's companion: every finished epoch's per-batch training accuracy (runs
    from before it was recorded have none, and are left out)."""
    return _per_batch_history_figure(runs, "accuracy", smoothing, uirevision)


def loss_per_batch_leads(epochs_set: Iterable[int]) -> bool:
    """Whether the per-batch loss chart goes before the per-epoch charts: every run shown is set to
    train one epoch (the presets), so each per-epoch chart holds a single point and the curve is in
    the batches. Decided by the epochs a run is set to, not those done, so a live page keeps its layout."""
    return all(int(epochs) <= 1 for epochs in epochs_set)


# --- planning ------------------------------------------------------------------------------------
def epoch_time_figure(estimates: pd.DataFrame, *, uirevision: str = "static") -> go.Figure:
    """Estimated minutes per epoch for each variant, horizontal bars on a log axis, B0 at the top.
    A boolean column `selected`, if present, highlights its rows."""
    fig = go.Figure()
    df = estimates if estimates is not None else pd.DataFrame()
    if not df.empty and {"variant", "seconds_per_epoch"} <= set(df.columns):
        seconds = pd.to_numeric(df["seconds_per_epoch"], errors="coerce").to_numpy(dtype=float)
        valid = np.isfinite(seconds) & (seconds > 0)
        variants = [str(v).upper() for v in df["variant"]]
        selected = (df["selected"].fillna(False).astype(bool).to_numpy() if "selected" in df
                    else np.zeros(len(df), dtype=bool))
        if valid.any():
            minutes = np.where(valid, seconds / 60.0, np.nan)
            fig.add_trace(go.Bar(
                x=minutes, y=variants, orientation="h", name="estimate",
                text=[_duration_text(s) if ok else "no estimate" for s, ok in zip(seconds, valid)],
                textposition="outside", cliponaxis=False,
                textfont=dict(size=16, color=["#000" if s else "#333" for s in selected]),
                marker=dict(color=[HIGHLIGHT if s else colour(0) for s in selected],
                            line=dict(color=["#000" if s else "rgba(0,0,0,0)" for s in selected], width=2)),
                hovertemplate="%{y}: %{text} per epoch<extra></extra>"))
            low, high = np.log10(minutes[valid].min()), np.log10(minutes[valid].max())
            fig.update_xaxes(range=[low - 0.3, high + 0.6])  # room for the labels at the bars' ends
            ticks = _log_ticks(10 ** (low - 0.3), 10 ** (high + 0.6))
            fig.update_xaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
            fig.update_yaxes(categoryorder="array", categoryarray=variants, autorange="reversed")
    _finish(fig, uirevision, title="Estimated time per epoch on this machine",
            x_title="minutes per epoch (log scale)", y_title="variant", legend=False,
            height=max(360, 60 + 45 * len(df)))
    fig.update_xaxes(type="log")
    if not fig.data:
        return _placeholder(fig, NO_ESTIMATES_TEXT)
    return fig
