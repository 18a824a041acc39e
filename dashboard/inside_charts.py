"""Chart builders for the "Inside the network" page: core.analysis.inside results in, Plotly figures out.

No st.* calls; every figure has a title and axis titles (dashboard.style) and is unit-tested on
its traces (tests/test_inside.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.analysis.inside import Stage, StageSize
from core.data.cifar10 import CLASS_NAMES
from dashboard.style import BASE_FONT_SIZE, OKABE_ITO, SEQUENTIAL_SCALE, style_figure

GRID_COLUMNS = 8            # the eight most active channels in one row: the page's full width
TILE_HEIGHT = 110           # px per row of small heat maps (a tile is ~70 px wide at 1280 px: the
GRID_CHROME = 130           # rest is room for a colour bar with readable ticks); + title and margins
TEXT_UP_TO = 2              # maps this small (or smaller) show their values as numbers too
RUN_COLOUR, NATIVE_COLOUR = OKABE_ITO[3], OKABE_ITO[0]


def channel_grid_figure(stage: Stage, columns: int = GRID_COLUMNS) -> go.Figure:
    """The stage's most active channels as a grid of small heat maps, one colour scale for all.

    Row 0 of a map is drawn at the top, as in the image. A 1×1 map is one coloured square: the
    point of the lesson at 32 px. Tiles carry no tick labels (the hover names row and column):
    at this size they would only crowd the titles.
    """
    if not stage.is_map:
        raise ValueError(f"stage {stage.key!r} is a vector, not a feature map")
    count = len(stage.top_channels)
    rows = max(1, math.ceil(count / columns))
    fig = make_subplots(rows=rows, cols=columns, horizontal_spacing=0.02, vertical_spacing=0.18,
                        subplot_titles=[f"channel {c}" for c in stage.top_channels],
                        x_title="map column (position left → right)", y_title="map row")
    low, high = float(stage.maps.min()), float(stage.maps.max())
    high = high if high > low else low + 1e-6          # one value everywhere: still a valid scale
    # Maps of a few pixels (1×1 from block 6 at 32 px) say more as numbers than as colours. A tile
    # is about 65 px wide at 1280 px (eight in a row): a 2×2 map's cells hold four characters.
    side = max(stage.shape[:2])
    numbers = {} if side > TEXT_UP_TO else \
        dict(texttemplate="%{z:.2f}", textfont=dict(size=BASE_FONT_SIZE - 2)) if side == 1 else \
        dict(texttemplate="%{z:.1f}", textfont=dict(size=BASE_FONT_SIZE - 4))
    for i, (channel, values) in enumerate(zip(stage.top_channels, stage.maps)):
        fig.add_trace(go.Heatmap(
            z=values, coloraxis="coloraxis", name=f"channel {channel}", **numbers,
            hovertemplate=f"channel {channel}<br>row %{{y}}, column %{{x}}<br>activation %{{z:.3f}}<extra></extra>",
        ), row=i // columns + 1, col=i % columns + 1)
    style_figure(fig, title=f"{stage.title}: {stage.caption} — the {count} most active",
                 x_title="", y_title="", height=GRID_CHROME + TILE_HEIGHT * rows, legend=False)
    # One scale for all tiles, set on the shared colour axis (it ignores the traces' zmin/zmax).
    fig.update_layout(coloraxis=dict(colorscale=SEQUENTIAL_SCALE, cmin=low, cmax=high,
                                     colorbar=dict(title=dict(text="activation", font=dict(size=BASE_FONT_SIZE - 2)),
                                                   nticks=3, tickformat=".2g", len=1.0, thickness=14)),
                      margin=dict(l=60, r=30, t=90, b=60))
    # Squares stay square, under their titles, and the image's top row is on top.
    fig.update_xaxes(showticklabels=False, constrain="domain", title=None, showgrid=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain", constraintoward="top",
                     title=None, showgrid=False)
    for i in range(1, count + 1):
        fig.update_yaxes(scaleanchor=f"x{'' if i == 1 else i}", row=(i - 1) // columns + 1,
                         col=(i - 1) % columns + 1)
    # "channel 1122" must fit over a 70 px tile; the axis titles (annotations too) stay larger.
    fig.update_annotations(font_size=BASE_FONT_SIZE - 4)
    fig.update_annotations(selector=lambda a: not a.text.startswith("channel "), font_size=BASE_FONT_SIZE - 2)
    return fig


def pooled_figure(stage: Stage, highlight: int = 10) -> go.Figure:
    """The pooled vector: one bar per feature, the `highlight` largest in their own colour."""
    values = np.asarray(stage.maps, dtype=np.float64)
    top = set(np.argsort(-values, kind="stable")[:highlight].tolist())
    colours = [RUN_COLOUR if i in top else NATIVE_COLOUR for i in range(len(values))]
    fig = go.Figure(go.Bar(x=np.arange(len(values)), y=values, marker_color=colours, marker_line_width=0,
                           name="feature", hovertemplate="feature %{x}: %{y:.3f}<extra></extra>"))
    style_figure(fig, title=f"{stage.title}: {stage.caption}, what the classifier reads",
                 x_title="feature (channel of the last map)", y_title="mean activation", height=320,
                 legend=False)
    fig.update_layout(bargap=0)
    return fig


def probabilities_figure(probabilities: Sequence[float], true_index: int | None = None,
                         class_names: Sequence[str] = CLASS_NAMES) -> go.Figure:
    """All ten classes' probabilities as bars, the predicted class (and the true one) marked."""
    probs = 100 * np.asarray(probabilities, dtype=np.float64)
    best = int(np.argmax(probs))
    names = [name + (" (true)" if i == true_index else "") for i, name in enumerate(class_names)]
    colours = [OKABE_ITO[2] if i == true_index else (RUN_COLOUR if i == best else NATIVE_COLOUR)
               for i in range(len(probs))]
    # Horizontal bars: the class names read level and each value sits at its bar's end in full
    # size (on ten upright bars in a third of the page Plotly shrank them to 9 px).
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", marker_color=colours, name="probability",
                           text=[f"{p:.1f}%" for p in probs], textposition="outside", cliponaxis=False,
                           textfont=dict(size=BASE_FONT_SIZE - 2), constraintext="none",
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    # Short enough for a third of the page at 1280 px, "automobile" included.
    style_figure(fig, title=f"The model says {class_names[best]} ({probs[best]:.0f}%)",
                 x_title="probability (%)", y_title="class", height=420, legend=False)
    fig.update_xaxes(range=[0, 125], tickvals=[0, 25, 50, 75, 100])
    fig.update_yaxes(autorange="reversed")          # airplane at the top, as the classes are listed
    return fig


def map_sizes_figure(run_sizes: Sequence[StageSize], native_sizes: Sequence[StageSize], *,
                     run_side: int, native_side: int, variant: str) -> go.Figure:
    """Side of each stage's feature map at the run's input size next to the variant's native size
    (log axis: 1 px and 112 px on one chart)."""
    keys = [size.key for size in run_sizes]
    labels = [key.replace("block", "block ") for key in keys]
    fig = go.Figure()
    for sizes, side, colour, who in ((run_sizes, run_side, RUN_COLOUR, "this run"),
                                     (native_sizes, native_side, NATIVE_COLOUR, "native")):
        fig.add_trace(go.Bar(
            x=labels, y=[s.side for s in sizes], name=f"{side} px input ({who})", marker_color=colour,
            text=[f"{s.side}×{s.side}" for s in sizes], textposition="outside", cliponaxis=False,
            textfont=dict(size=BASE_FONT_SIZE - 3), constraintext="none",   # not shrunk to the bar's width
            hovertemplate="%{x}: %{text} × " + "%{customdata} channels<extra>" + f"{side} px</extra>",
            customdata=[s.channels for s in sizes]))
    style_figure(fig, title=f"Feature map size per stage, {variant.upper()} at {run_side} px vs its native "
                 f"{native_side} px", x_title="stage", y_title="map side (px, log scale)", height=400)
    fig.update_layout(barmode="group", bargroupgap=0.1,         # a gap, so "16×16" stays off its neighbour
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    # Map sides are halvings of the input: powers of two read better than Plotly's 1-2-5 log ticks.
    top = max(s.side for s in [*run_sizes, *native_sizes])
    ticks = [2 ** k for k in range(int(math.log2(top)) + 2)]
    fig.update_yaxes(type="log", range=[-0.2, math.log10(top * 3)], tickvals=ticks, ticktext=[str(t) for t in ticks])
    return fig
