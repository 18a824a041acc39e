"""A finished run as one self-contained HTML file, and its per-class metrics as CSV.

Pure: run data in, a string out; no Streamlit. The file opens offline and by e-mail: plotly.js is
inlined once (the first chart), every later chart reuses it, and the test images are PNG data
URIs, so nothing is fetched from anywhere. Every text from the run is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from core.analysis.evaluate import Evaluation
from core.data.cifar10 import CLASS_NAMES
from core.settings.config import with_meaning
from core.store.states import RunState
from dashboard.charts import (BATCH_SMOOTHING, accuracy_per_batch_figure, curves_figure, loss_per_batch_figure,
                              loss_per_batch_leads, percent_text, run_legend_label)
from dashboard.images import caption, upscale
from dashboard.result_charts import confusion_figure, per_class_error_figure
from dashboard.style import FONT_FAMILY

MISTAKES_SHOWN = 24
THUMB_SIDE = 96               # px of each embedded 32×32 image (nearest: the crisp pixels the model saw)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
CSV_COLUMNS = ("class", "precision", "recall", "f1", "support", "correct", "errors", "error_rate")
# The per-class table as both the confusion page and this report show it: column -> (header, printf
# format). Rates are percentages; the header carries the unit.
PER_CLASS_COLUMNS = {
    "precision": ("Precision %", "%.1f"), "recall": ("Recall %", "%.1f"), "f1": ("F1 %", "%.1f"),
    "support": ("Images", "%d"), "error_rate": ("Error %", "%.1f"), "errors": ("Errors", "%d"),
}
PER_CLASS_NOTE = ("Precision: of the images predicted as the class, the share that were. Recall: of the "
                  "class's images, the share found (the class's accuracy). F1: their harmonic mean. "
                  "Images: the class's test images. Errors: how many of them were misclassified.")
STATUS_FACTS = (("state", "State"), ("epoch", "Epochs done"), ("test_images", "Test images"),
                ("predictions_epoch", "Predictions from epoch"), ("started", "Started"))

_CSS = f"""
:root {{ color-scheme: light; }}
body {{ font-family: {FONT_FAMILY}; color: #1B1F24; background: #fff; margin: 0; font-size: 17px;
       line-height: 1.45; }}
main {{ max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }}
h1 {{ font-size: 30px; margin: 0 0 4px; }}
h2 {{ font-size: 23px; margin: 36px 0 10px; border-bottom: 2px solid #e5e5e5; padding-bottom: 4px; }}
.sub {{ color: #555; margin: 0 0 18px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ background: #F3F6FA; border-radius: 8px; padding: 10px 16px; min-width: 150px; }}
.card .label {{ font-size: 14px; color: #555; }}
.card .value {{ font-size: 26px; font-weight: 600; }}
.grid2 {{ display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }}
.grid2 > * {{ min-width: 0; }}
@media (max-width: 900px) {{ .grid2 {{ grid-template-columns: 1fr; }} }}
table {{ border-collapse: collapse; font-size: 15px; }}
th, td {{ padding: 4px 12px; border-bottom: 1px solid #e5e5e5; text-align: left; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
table.settings {{ width: 100%; }}
table.status {{ width: 50%; }}
@media (max-width: 900px) {{ table.status {{ width: 100%; }} }}
table.status {{ margin-top: 12px; }}
.mistakes {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({THUMB_SIDE + 40}px, 1fr));
            gap: 14px; }}
figure {{ margin: 0; text-align: center; }}
figure img {{ width: {THUMB_SIDE}px; height: {THUMB_SIDE}px; image-rendering: pixelated;
             border: 1px solid #ccc; }}
figcaption {{ font-size: 14px; }}
.note {{ color: #555; font-size: 14px; }}
footer {{ margin-top: 40px; color: #777; font-size: 13px; }}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(image: np.ndarray, side: int = THUMB_SIDE) -> str:
    """A uint8 (h, w, 3) image as a data: URI of an upscaled (nearest) PNG."""
    buffer = io.BytesIO()
    upscale(image, side, "nearest").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def per_class_frame(evaluation: Evaluation) -> pd.DataFrame:
    """One row per class: precision, recall (= the class's accuracy), F1 as fractions; counts."""
    table = evaluation.per_class.reset_index()
    table = table.rename(columns={table.columns[0]: "class"})
    return table[list(CSV_COLUMNS)]


def per_class_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """The per-class table as shown (PER_CLASS_COLUMNS): one row per class (index = class name),
    rates as percentages, counts as integers; headers and formats are PER_CLASS_COLUMNS'.

    Args:
        per_class: core.analysis.evaluate.Evaluation.per_class (rates as fractions).
    """
    table = per_class[list(PER_CLASS_COLUMNS)].copy()
    for column, (_, number_format) in PER_CLASS_COLUMNS.items():
        table[column] = table[column].astype(int) if number_format == "%d" else 100 * table[column].astype(float)
    return table


def per_class_csv(evaluation: Evaluation) -> str:
    """The per-class metrics as CSV (fractions with 4 decimals; counts as integers)."""
    return per_class_frame(evaluation).round(4).to_csv(index=False)


def report_filename(run_id: str) -> str:
    return f"efficientnet-lab-report-{run_id}.html"


def csv_filename(run_id: str) -> str:
    return f"efficientnet-lab-per-class-{run_id}.csv"


class _Charts:
    """Figures as <div>s; the first carries plotly.js, the rest reuse it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: go.Figure, name: str) -> str:
        height = fig.layout.height or 460
        div = pio.to_html(fig, full_html=False, include_plotlyjs=self.count == 0, config=PLOTLY_CONFIG,
                          div_id=f"chart-{name}", default_width="100%", default_height=f"{height}px")
        self.count += 1
        return f'<div class="chart">{div}</div>'


def _cards(facts: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div></div>'
        for label, value in facts) + "</div>"


def _settings_table(config: dict[str, Any]) -> str:
    items = list(config.items())
    half = (len(items) + 1) // 2

    def table(rows: list[tuple[str, Any]]) -> str:   # dropout -1 is no rate: "-1.0 (the variant's own)"
        body = "".join(f"<tr><th>{_e(key)}</th><td>{_e(with_meaning(key, value, str(value)))}</td></tr>"
                       for key, value in rows)
        return f'<table class="settings">{body}</table>'

    return f'<div class="grid2">{table(items[:half])}{table(items[half:])}</div>'


def _per_class_table(evaluation: Evaluation) -> str:
    table = per_class_table(evaluation.per_class)
    head = "<tr><th>Class</th>" + "".join(f"<th class=num>{_e(header)}</th>"
                                          for header, _ in PER_CLASS_COLUMNS.values()) + "</tr>"
    rows = "".join(
        f"<tr><td>{_e(name)}</td>" + "".join(f"<td class=num>{_number(row[column], number_format)}</td>"
                                             for column, (_, number_format) in PER_CLASS_COLUMNS.items()) + "</tr>"
        for name, row in table.iterrows())
    return f'<table class="per-class">{head}{rows}</table>'


def _number(value: Any, number_format: str) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return number_format % number if math.isfinite(number) else "—"


def _mistakes_grid(mistakes: pd.DataFrame, images: np.ndarray | None, limit: int) -> str:
    if mistakes is None or mistakes.empty:
        return '<p class="note">No mistakes on this test set.</p>'
    if images is None:
        return ('<p class="note">The test images were not available when this report was made, so '
                "the mistakes are listed without them.</p><ol>" + "".join(
                    f"<li>#{int(r['index'])}: {_e(caption(r['true'], r['predicted'], r['confidence']))}</li>"
                    for _, r in mistakes.head(limit).iterrows()) + "</ol>")
    items = []
    for _, row in mistakes.head(limit).iterrows():
        index = int(row["index"])
        text = caption(row["true"], row["predicted"], row["confidence"])
        items.append(f'<figure><img src="{png_data_uri(images[index])}" alt="test image {index}: '
                     f'{_e(text)}" width="{THUMB_SIDE}" height="{THUMB_SIDE}">'
                     f"<figcaption>{_e(text)}<br><span class=note>#{index}</span></figcaption></figure>")
    return '<div class="mistakes">' + "".join(items) + "</div>"


_BatchHistory = Mapping[int, Sequence[tuple[int, float]]]    # {epoch: [(batch, running mean), ...]}


def _curves(charts: _Charts, label: str, metrics: pd.DataFrame, batch_losses: _BatchHistory | None,
            batch_accuracies: _BatchHistory | None, epochs: int) -> str:
    """The curves section: loss and accuracy per epoch, and per batch where they were recorded,
    first for a one-epoch run (whose per-epoch charts hold one point each)."""
    epoch_note = ('<p class="note">Per epoch. Solid: training set; dashed: validation set. Hover for '
                  "values, drag to zoom, double-click to reset.</p>")
    measured = "loss and accuracy" if batch_accuracies else "loss"
    batch_note = (f'<p class="note">Per batch, every finished epoch: the thick line is the training {measured} '
                  f"smoothed (EMA {BATCH_SMOOTHING:g}), the faint one each batch's own.</p>")

    def epoch_charts() -> str:
        loss = charts(curves_figure({label: metrics}, "loss"), "loss")
        accuracy = charts(curves_figure({label: metrics}, "accuracy"), "accuracy")
        return f'{epoch_note}<div class="grid2">{loss}{accuracy}</div>'

    def batch_charts() -> str:
        loss = charts(loss_per_batch_figure({label: dict(batch_losses)}), "loss-per-batch")
        if not batch_accuracies:       # a run from before the accuracy was recorded per batch
            return batch_note + loss
        accuracy = charts(accuracy_per_batch_figure({label: dict(batch_accuracies)}), "accuracy-per-batch")
        return f'{batch_note}<div class="grid2">{loss}{accuracy}</div>'

    if not batch_losses:
        return epoch_charts()
    # Left to right: the chart made first is the one that carries plotly.js, and it must come first.
    if loss_per_batch_leads([epochs]):
        return batch_charts() + epoch_charts()
    return epoch_charts() + batch_charts()


def _name_and_author(status: dict[str, Any]) -> str:
    """"Ana — by Bo · " as typed at Start (escaped where it is written), "" when neither was given."""
    named = " — ".join(str(part) for part in (status.get("name"), status.get("author") and f"by {status['author']}")
                       if part)
    return f"{named} · " if named else ""


def _facts(config: dict[str, Any], status: dict[str, Any], metrics: pd.DataFrame | None,
           evaluation: Evaluation) -> list[tuple[str, str]]:
    """The cards at the top: model, test accuracies, test images, epochs."""
    finished = len(metrics) if metrics is not None else 0
    return [("Model", f"EfficientNet-{str(config.get('variant', '?')).upper()} @ {config.get('image_size', '?')} px"),
            ("Top-1 test accuracy", percent_text(evaluation.top1_accuracy)),
            ("Top-5 test accuracy", percent_text(evaluation.top5_accuracy)),
            ("Test images", f"{evaluation.n:,}"),
            ("Epochs", f"{finished} of {status.get('epochs', config.get('epochs', '?'))}")]


def _caveat(status: dict[str, Any]) -> str:
    """A note when the run did not complete: its predictions come from an earlier checkpoint."""
    state = str(status.get("state", "unknown"))
    if state == RunState.COMPLETED:
        return ""
    epoch = status.get("predictions_epoch")
    return (f'<p class="note">This run is {_e(state)}; the test predictions are from '
            + (f"epoch {_e(epoch)}" if epoch else "an earlier checkpoint") + ".</p>")


def build_report(*, run_id: str, config: dict[str, Any], status: dict[str, Any], metrics: pd.DataFrame,
                 evaluation: Evaluation, mistakes: pd.DataFrame, images: np.ndarray | None,
                 batch_losses: _BatchHistory | None = None, batch_accuracies: _BatchHistory | None = None,
                 generated: datetime | None = None, mistakes_shown: int = MISTAKES_SHOWN) -> str:
    """The run as one HTML document that needs no network (its template inline, so the whole page
    reads in one place).

    Args:
        run_id: The run's id.
        config: Its TrainConfig as a dict (config.json).
        status: status.json (state, epochs, test accuracy, ...); may be partial.
        metrics: metrics.csv as a DataFrame (one row per epoch); may be empty.
        evaluation: core.analysis.evaluate.evaluate() of its test predictions.
        mistakes: core.analysis.evaluate.mistakes() of the same predictions, ranked (most confident first).
        images: The test images the predictions are for (N, 32, 32, 3), or None when unavailable.
        batch_losses: Every finished epoch's per-batch losses (core.store.runs.Run.read_batch_losses);
            None or empty for a run from before they were recorded (no per-batch chart then).
        batch_accuracies: The same for the training accuracy (Run.read_batch_accuracies); None or
            empty for a run from before it was recorded (the loss per batch alone then).
        generated: When the report was made (default: now).
        mistakes_shown: How many of the top mistakes to embed.

    Returns:
        A complete HTML document (about 5 MB: plotly.js is inlined once).
    """
    generated = generated or datetime.now()
    label = run_legend_label(config, run_id)
    variant = str(config.get("variant", "?")).upper()
    charts = _Charts()
    curves = _curves(charts, label, metrics, batch_losses, batch_accuracies, int(config.get("epochs", 1)))
    confusion = charts(confusion_figure(evaluation.confusion, selectable=False), "confusion")
    per_class = charts(per_class_error_figure(evaluation.per_class), "per-class")
    named = _name_and_author(status)
    facts = _facts(config, status, metrics, evaluation)
    caveat = _caveat(status)
    status_rows = "".join(f"<tr><th>{_e(title)}</th><td>{_e(status[key])}</td></tr>"
                          for key, title in STATUS_FACTS if status.get(key) not in (None, ""))
    wrong = int(evaluation.per_class["errors"].sum())
    shown = min(mistakes_shown, 0 if mistakes is None else len(mistakes))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="EfficientNet Lab">
<title>EfficientNet Lab report: {_e(run_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>EfficientNet-{_e(variant)} on CIFAR-10</h1>
<p class="sub">{_e(named)}Run <code>{_e(run_id)}</code> · {_e(label)} · report made {generated:%Y-%m-%d %H:%M}</p>
{_cards(facts)}
{caveat}
<h2 id="settings">Settings</h2>
<p class="note">Every training setting of the run (config.json), as <code>python -m core train</code>
takes them.</p>
{_settings_table(config)}
<table class="status">{status_rows}</table>
<h2 id="curves">Training curves</h2>
{curves}
<h2 id="confusion">Confusion matrix</h2>
<p class="note">Rows: the true class; columns: what the model predicted. The diagonal holds the
correct answers; {wrong:,} of {evaluation.n:,} test images are off it.</p>
{confusion}
<h2 id="per-class">Per class</h2>
<div class="grid2"><div>{_per_class_table(evaluation)}
<p class="note">{_e(PER_CLASS_NOTE)}</p></div>
{per_class}</div>
<h2 id="mistakes">The {shown} most confident mistakes</h2>
<p class="note">Each caption reads true class → predicted class (the model's confidence). The images
are the 32×32 test images, enlarged.</p>
{_mistakes_grid(mistakes, images, mistakes_shown)}
<footer>Made with EfficientNet Lab. This file is self-contained: it works offline, and its charts
are interactive. Classes: {_e(", ".join(CLASS_NAMES))}.</footer>
</main>
</body>
</html>
"""
