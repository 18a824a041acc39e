"""dashboard/report.py: the shareable HTML report and per-class CSV, on the shared trained run.
One browser test opens the exported file offline (file://, every network request refused) and
checks that its charts drew and its images decoded."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import plotly_values
from core.analysis.evaluate import evaluate, mistakes
from core.data.cifar10 import CLASS_NAMES, load_cifar10
from dashboard.images import upscale
from dashboard.report import (MISTAKES_SHOWN, THUMB_SIDE, build_report, csv_filename, per_class_csv,
                              report_filename)

N_CHARTS = 6     # loss and accuracy per batch, loss and accuracy per epoch, confusion matrix, per-class error


class _Tags(HTMLParser):
    """Every start tag with its attributes (script bodies are data, not tags)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def run_data(trained_run, fixture_data_dir):
    y_true, y_prob = trained_run.read_predictions()
    config = json.loads((trained_run.path / "config.json").read_text())
    metrics = pd.DataFrame(trained_run.read_metrics())
    images = load_cifar10(fixture_data_dir, allow_download=False).x_test
    return dict(run_id=trained_run.run_id, config=config, status=trained_run.read_status(), metrics=metrics,
                evaluation=evaluate(y_true, y_prob), mistakes=mistakes(y_true, y_prob), images=images,
                batch_losses=trained_run.read_batch_losses(), batch_accuracies=trained_run.read_batch_accuracies())


@pytest.fixture(scope="module")
def report(run_data) -> str:
    return build_report(**run_data, generated=datetime(2026, 11, 25, 9, 30))


def test_report_is_self_contained(report):
    parsed = _parse(report)
    assert report.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external scripts, stylesheets, frames; images are data URIs
    assert not [a for t, a in parsed.tags if t == "script" and a.get("src")]
    assert not [t for t, _ in parsed.tags if t in ("link", "iframe", "object", "embed")]
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in parsed.tags if t == "img")
    # plotly.js inlined exactly once, and every chart is a plotly div
    assert report.count("window.PlotlyConfig") == 1
    charts = [a for t, a in parsed.tags if t == "div" and "plotly-graph-div" in a.get("class", "")]
    assert len(charts) == N_CHARTS
    assert len(re.findall(r'Plotly\.newPlot\(\s*"chart-', report)) == N_CHARTS
    assert 3_000_000 < len(report.encode()) < 7_000_000


def _chart_ids(html: str) -> list[str]:
    return re.findall(r'Plotly\.newPlot\(\s*"chart-([a-z-]+)"', html)


def test_one_epoch_report_leads_with_the_loss_and_accuracy_per_batch(report, run_data):
    """The trained run is set to one epoch: its per-epoch charts hold one point each, so the curves
    batch by batch come first, and the first carries plotly.js (the first chart of the file must)."""
    assert run_data["config"]["epochs"] == 1 and run_data["batch_losses"] and run_data["batch_accuracies"]
    assert _chart_ids(report) == ["loss-per-batch", "accuracy-per-batch", "loss", "accuracy", "confusion",
                                  "per-class"]
    assert report.index("window.PlotlyConfig") < report.index('id="chart-loss-per-batch"')
    batches = sum(len(pairs) for pairs in run_data["batch_losses"].values())
    figure = re.search(r'Plotly\.newPlot\(\s*"chart-loss-per-batch",\s*(\[.*?\]),\s*\{', report, re.S)
    traces = json.loads(figure.group(1))
    assert [len(plotly_values(t["x"])) for t in traces] == [batches, batches]    # each batch, and smoothed
    figure = re.search(r'Plotly\.newPlot\(\s*"chart-accuracy-per-batch",\s*(\[.*?\]),\s*\{', report, re.S)
    accuracy = plotly_values(json.loads(figure.group(1))[1]["y"])                # smoothed, in percent
    assert len(accuracy) == batches and 0 <= min(accuracy) and max(accuracy) <= 100 and max(accuracy) > 1


def test_longer_runs_put_the_batches_after_the_epochs_and_older_runs_go_without(run_data):
    longer = build_report(**dict(run_data, config={**run_data["config"], "epochs": 3}))
    assert _chart_ids(longer) == ["loss", "accuracy", "loss-per-batch", "accuracy-per-batch", "confusion",
                                  "per-class"]
    without_accuracy = build_report(**dict(run_data, batch_accuracies={}))   # batches.csv before accuracy
    assert _chart_ids(without_accuracy) == ["loss-per-batch", "loss", "accuracy", "confusion", "per-class"]
    older = build_report(**dict(run_data, batch_losses={}, batch_accuracies={}))
    assert _chart_ids(older) == ["loss", "accuracy", "confusion", "per-class"]
    assert "Per batch" not in older


def test_report_holds_settings_tables_and_mistakes(report, run_data):
    parsed = _parse(report)
    text = " ".join(parsed.text)
    for key, value in run_data["config"].items():
        assert key in text and str(value) in text
    dropout_default = build_report(**dict(run_data, config={**run_data["config"], "dropout": -1.0}))
    assert "-1.0 (the variant's own)" in " ".join(_parse(dropout_default).text)
    ev = run_data["evaluation"]
    assert f"{100 * ev.top1_accuracy:.1f}%" in text and f"{100 * ev.top5_accuracy:.1f}%" in text
    assert "report made 2026-11-25 09:30" in text and run_data["run_id"] in text
    for name in CLASS_NAMES:
        assert f"<td>{name}</td>" in report
    images = [a for t, a in parsed.tags if t == "img"]
    wrong = run_data["mistakes"]
    assert len(images) == min(MISTAKES_SHOWN, len(wrong))
    first = wrong.iloc[0]
    assert images[0]["alt"].startswith(f"test image {int(first['index'])}: {first.true} → {first.predicted}")
    png = base64.b64decode(images[0]["src"].split(",", 1)[1])
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    expected = np.asarray(upscale(run_data["images"][int(first["index"])], THUMB_SIDE, "nearest"))
    np.testing.assert_array_equal(decoded, expected)                 # the very test image, enlarged


def test_report_escapes_text_and_works_without_images(run_data):
    data = dict(run_data, config={**run_data["config"], "weights": "<script>alert(1)</script>"}, images=None)
    html = build_report(**data)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not [t for t, _ in _parse(html).tags if t == "img"]
    assert "listed without them" in html


def test_report_of_an_unfinished_run_says_so(run_data):
    html = build_report(**dict(run_data, status={"state": "stopped", "predictions_epoch": 1}))
    assert "This run is stopped; the test predictions are from epoch 1." in html


def test_per_class_csv(run_data):
    ev = run_data["evaluation"]
    frame = pd.read_csv(io.StringIO(per_class_csv(ev)))
    assert list(frame.columns) == ["class", "precision", "recall", "f1", "support", "correct", "errors",
                                   "error_rate"]
    assert list(frame["class"]) == list(CLASS_NAMES)
    np.testing.assert_allclose(frame["recall"], ev.per_class["recall"].round(4))
    assert frame["support"].sum() == ev.n and (frame["correct"] + frame["errors"] == frame["support"]).all()
    assert report_filename("x").endswith(".html") and csv_filename("x").endswith(".csv")


def check_report_renders_offline(path: Path, expected_images: int, screenshot_name: str | None = None,
                                 chromium=None) -> None:
    """Opens an exported report from disk with the network refused; asserts every chart drew SVG
    with its traces and every image decoded. `chromium`: a browser already launched (Playwright
    allows one per thread), else one of its own."""
    from contextlib import contextmanager

    from browser import chromium_page, screenshot

    @contextmanager
    def page_of(launched):
        context = launched.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()

    with (page_of(chromium) if chromium is not None else chromium_page(1280, 900)) as page:
        refused = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                   else (refused.append(route.request.url), route.abort()))
        page.goto(path.resolve().as_uri())
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {N_CHARTS}",
                               timeout=60_000)
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(d =>
            d.querySelectorAll('.main-svg').length > 0 && d.querySelectorAll('.trace, .hm, image').length > 0)""")
        assert drawn == [True] * N_CHARTS, drawn
        decoded = page.evaluate("() => [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        assert decoded == [True] * expected_images
        assert refused == [], refused
        if screenshot_name:
            screenshot(page, screenshot_name)


@pytest.mark.slow
def test_exported_report_renders_in_a_browser_offline(report, run_data, tmp_path):
    pytest.importorskip("playwright.sync_api")
    from browser import CHROMIUM
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    path = tmp_path / report_filename(run_data["run_id"])
    path.write_text(report, encoding="utf-8")
    check_report_renders_offline(path, min(MISTAKES_SHOWN, len(run_data["mistakes"])), "report-offline")
