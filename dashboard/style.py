"""One look for every chart: projector-readable fonts, colour-blind-safe colours, titled axes.

Pure Plotly, no Streamlit: chart builders call `style_figure` last so every chart has a title,
axis titles with units, and fonts that read from the back of a classroom.
"""

from __future__ import annotations

import plotly.graph_objects as go

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Black is kept out of the cycle so it can mark reference lines.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
SERIES_COLOURS = OKABE_ITO[:7]
# Sequential scale for heat maps (cividis is designed for colour-vision deficiency, and prints in grey).
SEQUENTIAL_SCALE = "Cividis"
DIVERGING_SCALE = "RdBu"        # for differences centred on zero (blue/red is safe for red-green CVD)
FONT_FAMILY = "Inter, Segoe UI, Helvetica, Arial, sans-serif"
BASE_FONT_SIZE = 16             # body text; titles are larger
TITLE_FONT_SIZE = 22


def colour(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def style_figure(fig: go.Figure, *, title: str, x_title: str, y_title: str,
                 height: int = 460, legend: bool = True) -> go.Figure:
    """Applies the house style; returns the same figure for chaining."""
    fig.update_layout(
        title=dict(text=title, font=dict(size=TITLE_FONT_SIZE), x=0.01, xanchor="left"),
        font=dict(family=FONT_FAMILY, size=BASE_FONT_SIZE),
        template="plotly_white",
        height=height,
        margin=dict(l=70, r=30, t=70, b=60),
        showlegend=legend,
        legend=dict(font=dict(size=BASE_FONT_SIZE - 2)),
        hoverlabel=dict(font_size=BASE_FONT_SIZE),
        colorway=list(SERIES_COLOURS),
    )
    fig.update_xaxes(title=dict(text=x_title), showline=True, linecolor="#888", gridcolor="#e5e5e5")
    fig.update_yaxes(title=dict(text=y_title), showline=True, linecolor="#888", gridcolor="#e5e5e5")
    return fig
