"""Chart builders, tested on their traces against hand-computed references (no Streamlit, no TF)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import charts
from dashboard.style import SERIES_COLOURS, colour

NAN = float("nan")


def metrics(epochs=3, val=True, **overrides) -> pd.DataFrame:
    data = {
        "epoch": list(range(1, epochs + 1)),
        "loss": [2.0, 1.5, 1.2, 1.0, 0.9][:epochs],
        "accuracy": [0.25, 0.4, 0.5, 0.55, 0.6][:epochs],
        "val_loss": ([1.8, 1.6, 1.4, 1.3, 1.2] if val else [NAN] * 5)[:epochs],
        "val_accuracy": ([0.3, 0.42, 0.48, 0.5, 0.52] if val else [NAN] * 5)[:epochs],
        "learning_rate": [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4][:epochs],
        "epoch_seconds": [160.0, 150.0, 151.0, 149.0, 150.0][:epochs],
        "images_per_second": [280.0, 300.0, 298.0, 302.0, 300.0][:epochs],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def by_name(fig: go.Figure) -> dict[str, go.Scatter]:
    return {t.name: t for t in fig.data}


def assert_labelled(fig: go.Figure) -> None:
    """Every chart has a title and both axis titles, and a stable uirevision."""
    assert fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.uirevision is not None


# --- smooth -------------------------------------------------------------------------------------
def test_smooth_is_debiased_ema():
    # s1 = 0.5/(1-0.5) = 1; s2 = (0.25+1)/(1-0.25) = 5/3; s3 = (0.625+1.5)/(1-0.125) = 17/7
    np.testing.assert_allclose(charts.smooth([1, 2, 3], 0.5), [1.0, 5 / 3, 17 / 7])


def test_smooth_zero_weight_is_identity_and_first_point_is_unbiased():
    np.testing.assert_allclose(charts.smooth([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
    assert charts.smooth([7.0, 7.0, 7.0], 0.9) == pytest.approx([7.0, 7.0, 7.0])   # constant stays put


def test_smooth_skips_nans_without_poisoning_later_points():
    out = charts.smooth([1.0, NAN, 3.0], 0.5)
    assert out[0] == pytest.approx(1.0)
    assert math.isnan(out[1])
    # the NaN is skipped: s2 = (0.5*0.5 + 0.5*3) / (1 - 0.5**2) = 1.75 / 0.75
    assert out[2] == pytest.approx(1.75 / 0.75)
    lead = charts.smooth([NAN, 2.0, 4.0], 0.5)
    assert math.isnan(lead[0]) and lead[1] == pytest.approx(2.0)
    assert lead[2] == pytest.approx((0.5 + 2.0) / 0.75)


def test_smooth_rejects_weights_outside_unit_interval():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            charts.smooth([1.0], bad)


# --- eta and legend labels ----------------------------------------------------------------------
@pytest.mark.parametrize("seconds, text", [
    (83, "1:23"), (0, "0:00"), (59.6, "1:00"), (3723, "1:02:03"), (90000, "25:00:00"),
    (None, "—"), (NAN, "—"), (float("inf"), "—"), (-5, "0:00"),
])
def test_eta_text(seconds, text):
    assert charts.eta_text(seconds) == text


def config(**changes):
    base = {"variant": "b0", "image_size": 32, "optimizer": "adam", "learning_rate": 1e-3,
            "weights": "none", "head": "gap", "freeze_base": False, "fine_tune_at_epoch": 0,
            "epochs": 4, "lr_schedule": "constant"}
    return {**base, **changes}


def test_run_legend_label_is_short_and_names_the_run():
    assert charts.run_legend_label(config(), "20261125-142301-b0-3f9a") == "B0 32px adam lr=1e-3 · 1423-3f9a"


def test_run_legend_label_marks_weights_freezing_schedule_and_head():
    label = charts.run_legend_label(
        config(variant="b2", image_size=64, optimizer="adamw", learning_rate=3e-3, weights="imagenet",
               freeze_base=True, fine_tune_at_epoch=2, lr_schedule="cosine", head="seed"),
        "20261125-090000-b2-00ff")
    assert label == "B2 64px adamw lr=3e-3 cosine imagenet FT@2 seed head · 0900-00ff"
    frozen = charts.run_legend_label(config(weights="imagenet", freeze_base=True), "20261125-142301-b0-3f9a")
    assert "imagenet" in frozen and "frozen" in frozen and "FT@" not in frozen


def test_run_legend_label_formats_rates_and_tolerates_odd_ids():
    assert "lr=2.5e-4" in charts.run_legend_label(config(learning_rate=2.5e-4), "x")
    assert "lr=0.1" in charts.run_legend_label(config(learning_rate=0.1), "x")
    assert charts.run_legend_label(config(), "my-run").endswith(" · my-run")
    assert charts.run_legend_label(config(weights="/data/w/b0.h5"), "x").count("weights:b0.h5") == 1


def test_run_legend_labels_distinguish_two_runs_with_the_same_settings():
    a = charts.run_legend_label(config(), "20261125-142301-b0-3f9a")
    b = charts.run_legend_label(config(), "20261125-142301-b0-77aa")
    assert a != b


# --- curves -------------------------------------------------------------------------------------
def test_loss_curves_one_colour_per_run_train_solid_validation_dashed():
    fig = charts.curves_figure({"run A": metrics(), "run B": metrics(2)}, "loss")
    traces = by_name(fig)
    assert list(traces) == ["run A · train", "run A · validation", "run B · train", "run B · validation"]
    assert traces["run A · train"].line.dash == "solid" and traces["run A · validation"].line.dash == "dash"
    assert traces["run A · train"].line.color == traces["run A · validation"].line.color == colour(0)
    assert traces["run B · train"].line.color == colour(1)
    assert all(t.line.color in SERIES_COLOURS for t in fig.data)
    assert list(traces["run A · train"].x) == [1, 2, 3]
    assert list(traces["run A · train"].y) == pytest.approx([2.0, 1.5, 1.2])
    assert list(traces["run A · validation"].y) == pytest.approx([1.8, 1.6, 1.4])
    assert fig.layout.title.text == "Loss per epoch"
    assert fig.layout.xaxis.title.text == "epoch"
    assert fig.layout.yaxis.title.text == "loss (cross-entropy)"
    assert_labelled(fig)


def test_accuracy_is_shown_in_percent():
    fig = charts.curves_figure({"r": metrics()}, "accuracy")
    traces = by_name(fig)
    assert list(traces["r · train"].y) == pytest.approx([25.0, 40.0, 50.0])
    assert list(traces["r · validation"].y) == pytest.approx([30.0, 42.0, 48.0])
    assert fig.layout.title.text == "Accuracy per epoch"
    assert fig.layout.yaxis.title.text == "accuracy (%)"


def test_run_without_validation_has_no_validation_trace():
    fig = charts.curves_figure({"r": metrics(val=False)}, "loss")
    assert [t.name for t in fig.data] == ["r · train"]


def test_partial_validation_drops_missing_epochs():
    frame = metrics(val_loss=[NAN, 1.6, 1.4])
    trace = by_name(charts.curves_figure({"r": frame}, "loss"))["r · validation"]
    assert list(trace.x) == [2, 3] and list(trace.y) == pytest.approx([1.6, 1.4])


def test_single_epoch_run_shows_markers():
    fig = charts.curves_figure({"r": metrics(1)}, "accuracy")
    assert all("markers" in t.mode for t in fig.data)
    assert list(fig.data[0].x) == [1]


def test_smoothing_draws_ema_over_faint_raw_values():
    fig = charts.curves_figure({"r": metrics()}, "loss", smoothing=0.5)
    traces = by_name(fig)
    raw, main = traces["r · train (raw)"], traces["r · train"]
    assert list(raw.y) == pytest.approx([2.0, 1.5, 1.2])
    np.testing.assert_allclose(main.y, charts.smooth([2.0, 1.5, 1.2], 0.5))
    assert main.y[1] == pytest.approx((0.25 * 2.0 + 0.5 * 1.5) / 0.75)   # hand-computed, debiased
    assert raw.showlegend is False and raw.opacity < 1 and raw.line.width < main.line.width
    assert raw.legendgroup == main.legendgroup == "r · train"
    assert traces["r · validation (raw)"].line.dash == "dash"
    # raw lines are drawn first, so they lie underneath
    assert fig.data.index(raw) < fig.data.index(main)


def test_smoothing_accuracy_applies_to_percent_values():
    main = by_name(charts.curves_figure({"r": metrics()}, "accuracy", smoothing=0.6))["r · train"]
    np.testing.assert_allclose(main.y, charts.smooth([25.0, 40.0, 50.0], 0.6))


def test_repeated_epoch_after_resume_keeps_the_last_row_in_order():
    frame = pd.concat([metrics(2), metrics(3).iloc[[1, 2]].assign(loss=[1.4, 1.1])], ignore_index=True)
    trace = by_name(charts.curves_figure({"r": frame}, "loss"))["r · train"]
    assert list(trace.x) == [1, 2, 3] and list(trace.y) == pytest.approx([2.0, 1.4, 1.1])


@pytest.mark.parametrize("runs", [{}, {"r": pd.DataFrame()}, {"r": metrics().iloc[:0]}])
def test_curves_placeholder_without_finished_epochs(runs):
    fig = charts.curves_figure(runs, "loss")
    assert not fig.data
    assert fig.layout.annotations[0].text == "No finished epochs yet"
    assert fig.layout.title.text == "Loss per epoch"
    assert_labelled(fig)


def test_curves_reject_unknown_metric_and_bad_smoothing():
    with pytest.raises(ValueError):
        charts.curves_figure({"r": metrics()}, "val_loss")
    with pytest.raises(ValueError):
        charts.curves_figure({"r": metrics()}, "loss", smoothing=1.0)


def test_uirevision_is_passed_through_and_stable():
    a = charts.curves_figure({"r": metrics(2)}, "loss", uirevision="runs-1")
    b = charts.curves_figure({"r": metrics(3)}, "loss", uirevision="runs-1")
    assert a.layout.uirevision == b.layout.uirevision == "runs-1"
    assert charts.curves_figure({"r": metrics()}, "loss").layout.uirevision == "static"


# --- per-batch loss -----------------------------------------------------------------------------
def test_per_batch_loss_is_derived_from_running_means():
    own = [2.0, 1.0, 3.0, 0.5]
    running = [(b, float(np.mean(own[:b]))) for b in range(1, 5)]
    batches, means, derived = charts.per_batch_values(running)
    assert list(batches) == [1, 2, 3, 4]
    np.testing.assert_allclose(means, [2.0, 1.5, 2.0, 1.625])
    np.testing.assert_allclose(derived, own)


def test_per_batch_loss_with_skipped_reports_is_the_mean_over_the_gap():
    own = [2.0, 1.0, 3.0, 0.5, 1.5]
    running = [(b, float(np.mean(own[:b]))) for b in (2, 5)]
    _, _, derived = charts.per_batch_values(running)
    np.testing.assert_allclose(derived, [1.5, (3.0 + 0.5 + 1.5) / 3])


def test_per_batch_loss_keeps_the_latest_epoch_and_last_repeat():
    running = [(1, 9.0), (2, 9.0), (1, 2.0), (2, 1.5), (2, 1.5)]
    batches, means, derived = charts.per_batch_values(running)
    assert list(batches) == [1, 2]
    np.testing.assert_allclose(derived, [2.0, 1.0])


def test_batch_loss_figure_shows_running_mean_and_faint_derived_losses():
    fig = charts.batch_loss_figure([(1, 2.0), (2, 1.5), (3, 2.0)], epoch=3)
    traces = by_name(fig)
    mean = traces["running mean (as Keras reports it)"]
    per_batch = traces["per-batch loss (derived)"]
    assert list(mean.y) == pytest.approx([2.0, 1.5, 2.0])
    assert list(per_batch.y) == pytest.approx([2.0, 1.0, 3.0])
    assert list(per_batch.x) == [1, 2, 3]
    assert per_batch.opacity < 1 and per_batch.line.width < mean.line.width
    assert fig.layout.title.text == "Training loss in epoch 3 (per batch)"
    assert fig.layout.legend.orientation == "h"        # above the plot: at half width, beside it would halve it
    assert fig.layout.xaxis.title.text == "batch"
    assert fig.layout.yaxis.title.text == "loss (cross-entropy)"
    assert_labelled(fig)


def test_batch_loss_placeholder_while_compiling():
    fig = charts.batch_loss_figure([], epoch=1, uirevision="live")
    assert not fig.data
    assert fig.layout.annotations[0].text.startswith("Waiting for the first batch")
    assert fig.layout.title.text == "Training loss in epoch 1 (per batch)"
    assert fig.layout.uirevision == "live"
    assert_labelled(fig)


def test_loss_per_batch_spans_every_epoch_and_lines_up_runs_of_different_batch_sizes():
    # Run A: two epochs of 4 batches; run B: one epoch of 2 (twice the batch size). Running means in.
    run_a = {1: [(1, 2.0), (2, 1.5), (3, 1.0), (4, 1.0)], 2: [(1, 0.8), (2, 0.6), (3, 0.6), (4, 0.6)]}
    run_b = {1: [(1, 2.0), (2, 1.0)]}
    fig = charts.loss_per_batch_figure({"A": run_a, "B": run_b})
    lines = [t for t in fig.data if t.showlegend is not False]
    faint = [t for t in fig.data if t.showlegend is False]
    assert [t.name for t in lines] == ["A", "B"] and len(faint) == 2
    assert list(faint[0].x) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    assert list(faint[0].y) == pytest.approx([2.0, 1.0, 0.0, 1.0, 0.8, 0.4, 0.6, 0.6])   # each batch's own
    assert list(faint[1].x) == pytest.approx([0.5, 1.0])             # batch 1 of 2 sits mid-epoch
    assert lines[0].line.color == faint[0].line.color != lines[1].line.color
    assert faint[0].opacity < 1 and faint[0].line.width < lines[0].line.width
    # The slider at 0: the line is a 0.9 EMA (single batches are noise); at 0.5, that.
    assert list(lines[0].y) == pytest.approx(list(charts.smooth(faint[0].y, charts.BATCH_SMOOTHING)))
    assert "0.9" in fig.layout.title.subtitle.text
    half = charts.loss_per_batch_figure({"A": run_a}, smoothing=0.5)
    assert list(half.data[1].y) == pytest.approx(list(charts.smooth(faint[0].y, 0.5)))
    assert fig.layout.title.text == "Training loss per batch"
    assert fig.layout.xaxis.title.text == "epoch" and list(fig.layout.xaxis.range) == [0, 2]
    assert fig.layout.yaxis.title.text == "loss (cross-entropy)"
    assert_labelled(fig)


def test_loss_per_batch_placeholder_and_bad_smoothing():
    fig = charts.loss_per_batch_figure({"old run": {}})
    assert not fig.data and fig.layout.annotations[0].text == charts.NO_BATCH_HISTORY_TEXT
    assert_labelled(fig)
    with pytest.raises(ValueError, match="smoothing"):
        charts.loss_per_batch_figure({}, smoothing=1.0)


def test_batch_accuracy_figure_shows_percent_running_mean_and_each_batch():
    # Batches of equal size that got 50%, 100% and 75% right: Keras reports the running means.
    fig = charts.batch_accuracy_figure([(1, 0.5), (2, 0.75), (3, 0.75)], epoch=1)
    traces = by_name(fig)
    assert list(traces["running mean (as Keras reports it)"].y) == pytest.approx([50.0, 75.0, 75.0])
    assert list(traces["per-batch accuracy (derived)"].y) == pytest.approx([50.0, 100.0, 75.0])
    assert fig.layout.title.text == "Training accuracy in epoch 1 (per batch)"
    assert fig.layout.yaxis.title.text == "accuracy (%)"
    assert "%" in traces["per-batch accuracy (derived)"].hovertemplate
    assert_labelled(fig)


def test_accuracy_per_batch_is_in_percent_and_leaves_out_runs_without_it():
    fig = charts.accuracy_per_batch_figure({"new": {1: [(1, 0.25), (2, 0.5)]}, "old": {}})
    lines = [t for t in fig.data if t.showlegend is not False]
    faint = [t for t in fig.data if t.showlegend is False]
    assert [t.name for t in lines] == ["new"]
    assert list(faint[0].y) == pytest.approx([25.0, 75.0])
    assert list(faint[0].x) == pytest.approx([0.5, 1.0])
    assert fig.layout.title.text == "Training accuracy per batch"
    assert fig.layout.yaxis.title.text == "accuracy (%)"
    assert_labelled(fig)
    empty = charts.accuracy_per_batch_figure({"old": {}})
    assert not empty.data and empty.layout.annotations[0].text == charts.NO_BATCH_HISTORY_TEXT


def test_runs_without_accuracy_per_batch_are_named_under_the_chart():
    losses = {"new": {1: [(1, 2.0)]}, "old": {1: [(1, 2.0)]}, "no batches at all": {}}
    assert charts.unrecorded_accuracy_note(losses, {"new": {1: [(1, 0.5)]}}) == (
        "Accuracy per batch not recorded (trained before it was): old; the loss per batch is.")
    assert charts.unrecorded_accuracy_note(losses, {"new": {1: [(1, 0.5)]}, "old": {1: [(1, 0.5)]}}) is None


# --- learning rate and throughput ---------------------------------------------------------------
def test_learning_rate_is_a_step_line_on_a_log_axis():
    fig = charts.learning_rate_figure({"a": metrics(), "b": metrics(2)}, uirevision="lr")
    traces = by_name(fig)
    assert list(traces) == ["a", "b"]
    assert traces["a"].line.shape == "hv"
    assert list(traces["a"].y) == pytest.approx([1e-3, 1e-3, 5e-4])
    assert traces["b"].line.color == colour(1)
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.title.text == "learning rate (log scale)"
    assert fig.layout.uirevision == "lr"
    assert_labelled(fig)


def test_learning_rate_drops_values_a_log_axis_cannot_show():
    trace = charts.learning_rate_figure({"a": metrics(learning_rate=[0.0, 1e-3, 5e-4])}).data[0]
    assert list(trace.x) == [2, 3]


def test_throughput_per_run():
    fig = charts.throughput_figure({"a": metrics(), "b": metrics(1)})
    traces = by_name(fig)
    assert list(traces["a"].y) == pytest.approx([280.0, 300.0, 298.0])
    assert "markers" in traces["b"].mode and list(traces["b"].x) == [1]
    assert fig.layout.yaxis.title.text == "throughput (images/s)"
    assert fig.layout.xaxis.title.text == "epoch"
    assert_labelled(fig)


@pytest.mark.parametrize("builder", [charts.learning_rate_figure, charts.throughput_figure])
def test_epoch_charts_placeholder_when_empty(builder):
    fig = builder({})
    assert not fig.data and fig.layout.annotations[0].text == "No finished epochs yet"
    assert_labelled(fig)


def test_missing_columns_are_tolerated():
    old = metrics().drop(columns=["images_per_second", "val_accuracy"])
    assert not charts.throughput_figure({"old": old}).data
    assert [t.name for t in charts.curves_figure({"old": old}, "accuracy").data] == ["old · train"]


# --- epoch time estimates -----------------------------------------------------------------------
def estimates(**extra) -> pd.DataFrame:
    return pd.DataFrame({"variant": ["b0", "b1", "b7"], "seconds_per_epoch": [150.0, 600.0, 11160.0],
                         **extra})


def test_epoch_time_figure_bars_in_minutes_on_log_axis_with_human_labels():
    fig = charts.epoch_time_figure(estimates())
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.y) == ["B0", "B1", "B7"]
    np.testing.assert_allclose(bar.x, [2.5, 10.0, 186.0])
    assert list(bar.text) == ["2.5 min", "10 min", "3.1 h"]
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.title.text == "Estimated time per epoch on this machine"
    assert fig.layout.xaxis.title.text == "minutes per epoch (log scale)"
    assert fig.layout.yaxis.autorange == "reversed"   # B0 at the top
    assert_labelled(fig)


def test_epoch_time_figure_highlights_the_selected_row():
    bar = charts.epoch_time_figure(estimates(selected=[False, True, False])).data[0]
    colours = list(bar.marker.color)
    assert colours[1] != colours[0] == colours[2]
    assert all(c in SERIES_COLOURS for c in colours)
    plain = charts.epoch_time_figure(estimates()).data[0]
    assert len(set(plain.marker.color)) == 1


def test_epoch_time_figure_handles_missing_estimates_and_empty_input():
    bar = charts.epoch_time_figure(estimates(seconds_per_epoch=[45.0, NAN, 3 * 86400.0])).data[0]
    assert list(bar.text) == ["45 s", "no estimate", "3.0 d"]
    empty = charts.epoch_time_figure(pd.DataFrame(columns=["variant", "seconds_per_epoch"]))
    assert not empty.data and empty.layout.annotations[0].text
    assert_labelled(empty)


def test_builders_use_house_fonts():
    from dashboard.style import BASE_FONT_SIZE
    for fig in (charts.curves_figure({"r": metrics()}, "loss"), charts.batch_loss_figure([(1, 1.0)]),
                charts.loss_per_batch_figure({"r": {1: [(1, 1.0)]}}),
                charts.learning_rate_figure({"r": metrics()}), charts.throughput_figure({"r": metrics()}),
                charts.epoch_time_figure(estimates())):
        assert fig.layout.font.size == BASE_FONT_SIZE
        assert_labelled(fig)


def test_log_axes_get_readable_1_2_5_tick_labels():
    lr = charts.learning_rate_figure({"a": metrics()})   # rates 1e-3 .. 5e-4
    assert list(lr.layout.yaxis.ticktext) == ["5e-4", "1e-3"]
    np.testing.assert_allclose(lr.layout.yaxis.tickvals, [5e-4, 1e-3])
    time = charts.epoch_time_figure(estimates())
    assert "10" in time.layout.xaxis.ticktext and "100" in time.layout.xaxis.ticktext


def test_long_run_labels_go_in_a_legend_below_the_plot():
    fig = charts.curves_figure({"r": metrics()}, "loss")
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0


def test_long_run_labels_wrap_so_a_half_width_chart_shows_train_or_validation():
    """At 1280 px two charts sit side by side; an unwrapped label ran out of the chart, clipped
    just before the words that say which curve it is."""
    label = "Ana's first run · B0 32px adam lr=6e-4 cosine imagenet FT@2 · 1356-594b"
    assert charts.legend_text("B0 · train") == "B0 · train"
    lines = charts.legend_text(label + " · validation").split("<br>")
    assert len(lines) > 1 and all(len(line) <= charts.LEGEND_WRAP for line in lines)
    assert " ".join(lines) == label + " · validation"
    short = charts.curves_figure({"r": metrics()}, "loss")
    long = charts.curves_figure({label: metrics()}, "loss")
    assert [t.name for t in long.data] == [charts.legend_text(f"{label} · {kind}") for kind in ("train", "validation")]
    assert long.layout.height > short.layout.height          # the plot keeps its height: the figure grows
    for fig in (charts.learning_rate_figure({label: metrics()}), charts.throughput_figure({label: metrics()})):
        assert fig.data[0].name == charts.legend_text(label) and label in fig.data[0].hovertemplate


def test_charts_module_imports_neither_streamlit_nor_tensorflow():
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys, dashboard.charts; "
            "print(sorted(m for m in ('streamlit', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
