"""Builders for the run-comparison page: tables and figures from several runs, no st.* calls.

Runs are named by short labels (their names, "Quick demo", or their variants, "B0", "B2"; "B0 ·
1423-3f9a" when two runs would share one), so sentences read like "B2 confuses cat and dog 40 fewer
times than B0".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.analysis.evaluate import row_normalised
from core.data.cifar10 import CLASS_NAMES
from core.settings.config import with_meaning
from dashboard.style import DIVERGING_SCALE, colour, style_figure

_RUN_ID = re.compile(r"^\d{8}-(\d{4})\d{2}-b[0-7]-([0-9a-f]{4})$")
MISSING = "—"
DIFFERENT_BACKGROUND = "#FFE2B8"      # light orange (Okabe-Ito orange, pale): "this setting differs"


def short_id(run_id: str) -> str:
    """"1423-3f9a" (start time and random suffix) from "20261125-142301-b0-3f9a"."""
    match = _RUN_ID.match(run_id or "")
    return f"{match.group(1)}-{match.group(2)}" if match else str(run_id)


def short_labels(variants: Mapping[str, str], names: Mapping[str, str] | None = None) -> dict[str, str]:
    """{run_id: label}: the run's name ("Quick demo") when it was given one, else its variant ("B2");
    a label two runs would share gets each run's short id ("B0 · 1423-3f9a")."""
    labels = {rid: ((names or {}).get(rid) or "").strip() or (v or "?").upper() for rid, v in variants.items()}
    counts = Counter(labels.values())
    return {rid: label if counts[label] == 1 else f"{label} · {short_id(rid)}" for rid, label in labels.items()}


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _setting_text(key: str, value) -> str:
    """A setting's value as text, with what a special value means: "-1 (the variant's own)"."""
    return with_meaning(key, value, _text(value))


def settings_frame(configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """Settings side by side: one row per setting (first run's order, then any others), one
    column per run label, every value as text ("—" where a run lacks the setting)."""
    keys: list[str] = []
    for config in configs.values():
        keys.extend(k for k in (config or {}) if k not in keys)
    return pd.DataFrame({label: [_setting_text(k, (config or {}).get(k)) for k in keys]
                         for label, config in configs.items()}, index=pd.Index(keys, name="setting"))


def differing_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the rows whose values are not all the same."""
    if frame.empty:
        return pd.Series(dtype=bool)
    return frame.nunique(axis=1) > 1


def highlight_differences(frame: pd.DataFrame):
    """A pandas Styler that paints the rows that differ (background and bold)."""
    different = differing_rows(frame)
    style = f"background-color: {DIFFERENT_BACKGROUND}; font-weight: bold"

    def paint(row: pd.Series) -> list[str]:
        return [style if different.get(row.name, False) else ""] * len(row)

    return frame.style.apply(paint, axis=1)


def per_class_accuracy_figure(per_class: Mapping[str, pd.DataFrame],
                              class_names: Sequence[str] = CLASS_NAMES) -> go.Figure:
    """Grouped bars: each class's test accuracy (recall, %) for each run."""
    fig = go.Figure()
    for i, (label, frame) in enumerate(per_class.items()):
        recall = 100 * frame["recall"].reindex(list(class_names)).to_numpy(dtype=np.float64)
        fig.add_trace(go.Bar(
            x=list(class_names), y=recall, name=label, marker_color=colour(i),
            text=[f"{v:.0f}" for v in recall], textposition="outside", cliponaxis=False,
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}}% correct<extra></extra>"))
    style_figure(fig, title="Accuracy per class (% of the class's test images)", x_title="True class",
                 y_title="Accuracy (%)", height=480)
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    fig.update_yaxes(range=[0, 110])
    return fig


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two square matrices of the same shape, got {a.shape} and {b.shape}")
    return a, b


def confusion_difference(a, b, *, normalise: bool = False) -> np.ndarray:
    """b − a, off the diagonal (NaN on it): in images, or in points of % of the true class."""
    a, b = _check_pair(a, b)
    change = (row_normalised(b) - row_normalised(a)) if normalise else (b - a).astype(np.float64)
    np.fill_diagonal(change, np.nan)
    return change


def confusion_difference_figure(a, b, label_a: str, label_b: str, *, normalise: bool = False,
                                class_names: Sequence[str] = CLASS_NAMES) -> go.Figure:
    """A diverging heat map of how often run b makes each mistake compared with run a.

    Blue: b makes the mistake less often (better); red: more often. The diagonal (correct
    answers, where more is better) is left blank: the per-class chart shows it.
    """
    a, b = _check_pair(a, b)
    names = list(class_names)
    change = confusion_difference(a, b, normalise=normalise)
    limit = float(np.nanmax(np.abs(change))) if np.isfinite(change).any() else 0.0
    limit = limit or 1.0
    text = [["" if math.isnan(v) or v == 0 else (f"{v:+.1f}" if normalise else f"{v:+.0f}").replace("-", "−")
             for v in row] for row in change]
    hover = [[(f"true {names[i]} predicted as {names[j]}: {label_b} {b[i, j]:,} vs {label_a} {a[i, j]:,}"
               if i != j else f"{names[i]} correct: {label_b} {b[i, j]:,} vs {label_a} {a[i, j]:,}")
              for j in range(len(names))] for i in range(len(names))]
    fig = go.Figure(go.Heatmap(
        z=[[None if math.isnan(v) else v for v in row] for row in change], x=names, y=names,
        text=text, texttemplate="%{text}", textfont=dict(size=14), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=DIVERGING_SCALE, reversescale=True,
        zmid=0, zmin=-limit, zmax=limit, xgap=1, ygap=1, name="difference",
        # The title says which run minus which; a short colour-bar title leaves the matrix its width.
        colorbar=dict(title=dict(text="difference<br>(% points)" if normalise else "difference<br>(images)"))))
    what = "% of the true class" if normalise else "test images"
    style_figure(fig, title=f"Mistakes of {label_b} minus mistakes of {label_a} ({what})",
                 x_title="Predicted class", y_title="True class", height=620, legend=False)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, tickangle=-45)     # as the confusion matrix: no overlapping names
    fig.update_layout(title_subtitle_text="blue: fewer mistakes, red: more; the diagonal is left blank")
    return fig


def pair_changes(a, b, label_a: str, label_b: str,
                 class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """How often each pair of classes is confused (either way round) by b compared with a.

    Returns:
        One row per pair whose count changed, largest |change| first: first, second (class names),
        count_a, count_b, change (b − a) and a sentence such as
        "B2 confuses cat and dog 40 fewer times than B0 (60 vs 100)".
    """
    a, b = _check_pair(a, b)
    names = list(class_names)
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            count_a, count_b = int(a[i, j] + a[j, i]), int(b[i, j] + b[j, i])
            change = count_b - count_a
            if change == 0:
                continue
            times = "time" if abs(change) == 1 else "times"
            sentence = (f"{label_b} confuses {names[i]} and {names[j]} {abs(change)} "
                        f"{'more' if change > 0 else 'fewer'} {times} than {label_a} "
                        f"({count_b} vs {count_a})")
            rows.append({"first": names[i], "second": names[j], "count_a": count_a, "count_b": count_b,
                         "change": change, "sentence": sentence})
    frame = pd.DataFrame(rows, columns=["first", "second", "count_a", "count_b", "change", "sentence"])
    if frame.empty:
        return frame
    order = np.lexsort((frame.index.to_numpy(), -frame["change"].abs().to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


# --- the sentence on top of the page -------------------------------------------------------------
MINUS = "\u2212"
SETTINGS_NAMED = 2          # more differing settings than this are counted, not listed


def setting_changes(config_a: Mapping | None, config_b: Mapping | None, label_a: str, label_b: str) -> list[str]:
    """What b does differently from a, in words: "B2 instead of B0" for the variant, then
    "learning_rate 0.0003 instead of 0.001" for each other setting that differs (config order)."""
    a, b = dict(config_a or {}), dict(config_b or {})
    keys = list(a) + [k for k in b if k not in a]
    changes = []
    for key in keys:
        va, vb = _setting_text(key, a.get(key)), _setting_text(key, b.get(key))
        if va == vb:
            continue
        if key == "variant":
            changes.insert(0, f"{vb.upper()} instead of {va.upper()}")
        else:
            changes.append(f"{key} {vb} instead of {va}")
    return changes


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}".replace("-", MINUS)


def change_sentence(label_a: str, label_b: str, config_a: Mapping | None, config_b: Mapping | None,
                    accuracy_a: float | None, accuracy_b: float | None, confusion_a=None, confusion_b=None,
                    class_names: Sequence[str] = CLASS_NAMES) -> str:
    """One plain sentence: what run b changed against run a, and what it did.

    "B2 instead of B0, same settings: +6.1 points; cat↔dog confusions −40". Accuracies are
    test-set fractions (None when a run has none); the confusion part names the pair of classes
    whose confusions (either way round) changed most, and is left out when the two confusion
    matrices are missing or count different numbers of test images.
    """
    changes = setting_changes(config_a, config_b, label_a, label_b)
    variant_changed = _text((config_a or {}).get("variant")) != _text((config_b or {}).get("variant"))
    if not changes:
        what = f"{label_b} repeats {label_a} with the same settings"
    else:
        named = changes[:SETTINGS_NAMED + variant_changed]
        rest = len(changes) - len(named)
        if rest:
            named.append(f"{rest} more setting{'s' if rest > 1 else ''}")
        what = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
        if variant_changed and len(changes) == 1:
            what += ", same settings"
        elif not variant_changed:
            what = f"{label_b} with {what}"
    results = []
    if accuracy_a is None or accuracy_b is None:
        missing = [label for label, acc in ((label_a, accuracy_a), (label_b, accuracy_b)) if acc is None]
        results.append(f"no test accuracy for {' and '.join(missing)} yet")
    else:
        results.append(f"{_signed(100 * (accuracy_b - accuracy_a), 1)} points")
    if confusion_a is not None and confusion_b is not None:
        a, b = _check_pair(confusion_a, confusion_b)
        if a.sum() == b.sum():
            pairs = pair_changes(a, b, label_a, label_b, class_names)
            if not pairs.empty:
                top = pairs.iloc[0]
                results.append(f"{top['first']}\u2194{top['second']} confusions {_signed(int(top['change']), 0)}")
    return f"{what}: {'; '.join(results)}"
