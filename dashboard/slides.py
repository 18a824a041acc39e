"""Presentation mode's slides, as data: their order and titles, projector-sized figures, the CSS
that hides the controls, and the facts each slide states. Pure: no st.* calls (pages/present.py
draws the slides; tests check these on their values).

Sizes are for a 1280×720 projector: a slide's title bar takes about 80 px, so a chart gets
`CHART_HEIGHT` and stays above the fold; body text is 26 px and chart text at least 18 px, which
reads from the back of a classroom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from core.data.cifar10 import training_images
from core.settings.config import TrainConfig
from core.settings.variants import VARIANTS

CHART_HEIGHT = 580           # px: fits a 720 px tall screen under the title bar
HALF_CHART_HEIGHT = 560
FIG_FONT = 20                # chart body text on a slide
FIG_TITLE_FONT = 26
FIG_TICK_FONT = 18
MISTAKES_ON_SLIDE = 10       # 2 rows of 5
SALIENCY_ON_SLIDE = 4
LIVE_REFRESH_SECONDS = 2.0   # the curves slide of a training run redraws this often
PARCOORDS_MARGIN = dict(l=110, r=130, t=150, b=40)


@dataclass(frozen=True)
class Slide:
    key: str
    title: str


SLIDES: tuple[Slide, ...] = (
    Slide("title", "Training EfficientNet on CIFAR-10"),
    Slide("history", "From LeNet to EfficientNet"),
    Slide("scaling", "EfficientNet's compound scaling"),
    Slide("config", "How this model was trained"),
    Slide("curves", "Learning curves"),
    Slide("confusion", "What it confuses"),
    Slide("mistakes", "Its most confident mistakes"),
    Slide("saliency", "Where it looked"),
    Slide("board", "The class board"),
    Slide("sweep", "What the sweep found"),
)

# Hides the menu, sidebar, header and toolbar, and enlarges text for a projector.
PRESENTATION_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stSidebarNav"],
[data-testid="stExpandSidebarButton"] { display: none !important; }
[data-testid="stMainBlockContainer"] { padding: 0.6rem 2.2rem 1rem 2.2rem !important; max-width: none !important; }
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li { font-size: 1.65rem; line-height: 1.35; }
[data-testid="stMain"] h1 { font-size: 2.5rem !important; padding: 0.2rem 0 !important; }
[data-testid="stMain"] h2 { font-size: 2.1rem !important; }
[data-testid="stMain"] h3 { font-size: 1.8rem !important; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] p { font-size: 2.6rem !important; font-weight: 600; }
[data-testid="stMetricLabel"] p { font-size: 1.3rem !important; }
[data-testid="stCaptionContainer"], [data-testid="stImageCaption"], [data-testid="stImageCaption"] *,
[data-testid="stCaptionContainer"] p { font-size: 1.3rem !important; color: #333 !important; }
[data-testid="stMain"] button p { font-size: 1.25rem !important; }
[data-testid="stMain"] .katex { font-size: 1.9rem !important; }
[data-testid="stMarkdownContainer"] table { font-size: 1.35rem; }
</style>
"""


def slide_number(value: Any, count: int = len(SLIDES)) -> int:
    """A 0-based slide index from ?slide= (1-based): clamped, and 0 for anything unreadable."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return 0
    return min(max(number, 1), count) - 1


def projector(fig: go.Figure, height: int = CHART_HEIGHT) -> go.Figure:
    """A dashboard figure made readable from the back of a room: larger fonts, taller, and
    trimmed margins. Returns the same figure."""
    fig.update_layout(height=height, font=dict(size=FIG_FONT), title=dict(font=dict(size=FIG_TITLE_FONT)),
                      legend=dict(font=dict(size=FIG_FONT - 2)), hoverlabel=dict(font_size=FIG_FONT),
                      margin=dict(l=80, r=30, t=70, b=70))
    fig.update_xaxes(tickfont=dict(size=FIG_TICK_FONT), title_font=dict(size=FIG_FONT))
    fig.update_yaxes(tickfont=dict(size=FIG_TICK_FONT), title_font=dict(size=FIG_FONT))
    for trace in fig.data:
        if trace.type == "parcoords":
            trace.labelfont, trace.tickfont, trace.rangefont = (dict(size=FIG_FONT), dict(size=FIG_TICK_FONT),
                                                                dict(size=FIG_TICK_FONT))
            # Its axis names sit above the plot and its outer ticks beside it (dashboard/sweep_charts.py).
            fig.update_layout(margin=PARCOORDS_MARGIN)
        if trace.type == "heatmap":
            trace.textfont = dict(size=FIG_TICK_FONT)
        if trace.type in ("scatter", "bar") and getattr(trace, "textfont", None) is not None:
            trace.textfont.size = max(FIG_TICK_FONT, trace.textfont.size or 0)
    return fig


def sweep_shown(names: list[str], wanted: Any, of_run: list[str]) -> str | None:
    """The sweep the sweep slide shows: the one the URL names (?sweep=), else the newest sweep the
    run on the slides is a trial of (`of_run`), else the newest (`names` is newest first); None
    when there is none."""
    if wanted in names:
        return wanted
    return next((n for n in names if n in of_run), names[0] if names else None)


def variant_phi(variant: str) -> int:
    """The compound coefficient φ a variant stands for in the paper (B0 = 0 … B7 = 7)."""
    names = list(VARIANTS)
    return names.index(variant.lower()) if variant and variant.lower() in names else 0


def _rate(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def config_facts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of a run's settings, the ones worth saying out loud, in order."""
    c = config or {}
    variant = str(c.get("variant", "?")).upper()
    weights = c.get("weights", "none")
    start = {"imagenet": "ImageNet-trained", "none": "random (from scratch)"}.get(weights, "a weights file")
    facts = [("Network", f"EfficientNet-{variant}"), ("Input size", f"{c.get('image_size', '?')} px"),
             ("Starting weights", start)]
    if c.get("freeze_base") and c.get("fine_tune_from_start"):
        facts.append(("Phases", f"fine-tune blocks {c.get('fine_tune_from_block', 1)}–7 and the head from the start"))
    elif c.get("freeze_base"):
        at = int(c.get("fine_tune_at_epoch") or 0)
        facts.append(("Phases", f"head only, then fine-tune from epoch {at + 1}" if at else "head only (base frozen)"))
    facts += [("Optimizer", f"{c.get('optimizer', '?')}, learning rate {_rate(c.get('learning_rate'))}"),
              ("Schedule", str(c.get("lr_schedule", "constant"))),
              ("Batch size", str(c.get("batch_size", "?"))), ("Epochs", str(c.get("epochs", "?"))),
              ("Training images", f"{int(c['train_limit']):,}" if c.get("train_limit") else
               f"all {training_images(0, float(c.get('val_fraction', TrainConfig.val_fraction))):,}")]
    augment = [name for name, on in (("flips", c.get("augment_flip")),
                                     ("shifts", int(c.get("augment_crop_padding") or 0) > 0)) if on]
    facts.append(("Augmentation", " + ".join(augment) if augment else "none"))
    return facts
