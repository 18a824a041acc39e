"""AppTests of the classroom pages (presentation mode, try your own image, shareable report,
compare runs) on the shared trained run, and unit tests of their pure helpers
(dashboard/slides.py, dashboard/compare_charts.py, dashboard/nav.py)."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.analysis.evaluate import evaluate, mistakes
from core.data.cifar10 import CLASS_NAMES
from core.store.runs import PREDICTIONS_FILE, RunStore
from conftest import plotly_values, training_here
from dashboard import compare_charts, nav, slides

PRESENT, TRY, REPORT, COMPARE = ("../pages/present.py", "../pages/try_image.py", "../pages/report.py",
                                 "../pages/compare.py")
CONFUSION = "../pages/confusion.py"
SAMPLE_PHOTO = Path(__import__("sklearn").__file__).parent / "datasets" / "images" / "flower.jpg"



@pytest.fixture
def app(app_factory, trained_run):
    """make(page, runs_dir=..., **query) -> an AppTest that has run that page (the trained run's folder)."""
    return app_factory(trained_run.path.parent)


def _query(at) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _images(at) -> list:
    return [img for element in at.get("image") for img in element.proto.imgs]


def _title(at) -> str:
    return at.title[0].value if at.title else ""


def _copy_run(trained_run, runs: Path, run_id: str | None = None) -> Path:
    runs.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_run.path, runs / (run_id or trained_run.run_id))
    return runs


# --- presentation mode ------------------------------------------------------------------------------
def test_presentation_from_url_steps_through_every_slide(app, trained_run):
    y_true, y_prob = trained_run.read_predictions()
    ev = evaluate(y_true, y_prob)
    at = app(PRESENT, present="1", run=trained_run.run_id)
    assert _title(at) == slides.SLIDES[0].title
    assert _query(at)["slide"] == "1" and _query(at)["run"] == trained_run.run_id
    # the arrow keys are Streamlit keyboard shortcuts of the two buttons
    assert at.button(key="slide_next").proto.shortcut.lower() in ("right", "arrowright")
    assert at.button(key="slide_prev").proto.shortcut.lower() in ("left", "arrowleft")
    assert at.button(key="slide_prev").disabled
    assert {m.label for m in at.metric} >= {"Network", "Test accuracy"}
    assert len(_images(at)) == len(CLASS_NAMES)                  # one test image per class

    seen = {}
    for number in range(2, len(slides.SLIDES) + 1):
        at.button(key="slide_next").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert _query(at)["slide"] == str(number)
        slide = slides.SLIDES[number - 1]
        assert _title(at) == slide.title
        seen[slide.key] = (_figures(at), _images(at), {m.label: m.value for m in at.metric})
    assert at.button(key="slide_next").disabled                 # the last slide

    history, *_ = seen["history"]
    assert [t["name"] for t in history[0]["data"]] == ["Published (ImageNet)", "Your CIFAR-10 runs"]
    assert history[0]["layout"]["font"]["size"] >= slides.FIG_FONT       # projector-sized
    assert seen["scaling"][0][0]["data"][0]["type"] == "bar"
    # A one-epoch run: its loss per epoch would be one point, so the slide shows it batch by batch,
    # and its accuracy as numbers.
    (loss,), _, numbers = seen["curves"]
    batches = sum(len(pairs) for pairs in trained_run.read_batch_losses().values())
    assert loss["layout"]["title"]["text"] == "Training loss per batch"
    assert [len(plotly_values(t["x"])) for t in loss["data"]] == [batches, batches]   # each batch, smoothed
    trained = trained_run.read_metrics()[-1]
    assert numbers["Test accuracy"] == f"{100 * ev.top1_accuracy:.1f}%"
    assert numbers["Accuracy on the training images, during its pass"] == f"{100 * trained['accuracy']:.1f}%"
    assert numbers["Validation accuracy"] == f"{100 * trained['val_accuracy']:.1f}%"
    confusion = seen["confusion"][0][0]["data"][0]
    assert confusion["type"] == "heatmap" and np.array(confusion["z"]).sum() == ev.n
    wrong = mistakes(y_true, y_prob)
    assert len(seen["mistakes"][1]) == min(len(wrong), slides.MISTAKES_ON_SLIDE)
    first = wrong.iloc[0]
    assert seen["mistakes"][1][0].caption == f"{first.true} → {first.predicted} ({100 * first.confidence:.0f}%)"
    saliency = seen["saliency"][1]
    assert len(saliency) == 2 * min(len(wrong), slides.SALIENCY_ON_SLIDE)   # image + overlay each
    assert saliency[1].caption == f"looked for “{first.predicted}” here"

    at.button(key="slide_prev").click().run()
    assert _title(at) == slides.SLIDES[-2].title and _query(at)["slide"] == str(len(slides.SLIDES) - 1)


@pytest.mark.parametrize("value, expected", [("6", 5), ("99", len(slides.SLIDES) - 1), ("abc", 0)])
def test_presentation_opens_the_slide_in_the_url(app, trained_run, value, expected):
    at = app(PRESENT, present="1", run=trained_run.run_id, slide=value)
    assert _title(at) == slides.SLIDES[expected].title
    assert _query(at)["slide"] == str(expected + 1)


def test_toggle_switches_into_presentation_and_exit_comes_back(app, trained_run):
    at = app(CONFUSION, run=trained_run.run_id)
    assert _title(at) == "Confusion matrix"
    at.toggle(key="presentation_toggle").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert _title(at) == slides.SLIDES[0].title
    query = _query(at)
    assert query["present"] == "1" and query["run"] == trained_run.run_id
    # AppTest keeps requesting the page of its last at.switch_page(); the browser is on /present now.
    at.switch_page(PRESENT)
    at.button(key="slide_next").click().run()
    assert _title(at) == slides.SLIDES[1].title
    at.button(key="slide_exit").click().run()
    assert not at.exception
    assert _title(at) == "Confusion matrix"
    assert "present" not in at.query_params and _query(at)["run"] == trained_run.run_id
    assert at.toggle(key="presentation_toggle").value is False


def test_present_parameter_on_any_page_opens_the_slides(app, trained_run):
    at = app(CONFUSION, present="1", run=trained_run.run_id)
    assert _title(at) == slides.SLIDES[0].title
    assert not [t for t in at.toggle if t.key == "presentation_toggle"]    # no controls


def test_presentation_without_runs(app, tmp_path):
    at = app(PRESENT, runs_dir=tmp_path / "none", present="1")
    assert any("No runs yet" in m.value for m in at.markdown)
    for _ in range(len(slides.SLIDES) - 1):
        at.button(key="slide_next").click().run()
        assert not at.exception, [e.value for e in at.exception]


def test_presentation_of_a_run_without_predictions(app, trained_run, tmp_path):
    runs = _copy_run(trained_run, tmp_path / "runs")
    RunStore(runs).get(trained_run.run_id)._file(PREDICTIONS_FILE).unlink()
    at = app(PRESENT, runs_dir=runs, present="1", slide="6")
    assert any("no test-set predictions" in m.value for m in at.markdown)


def test_curves_slide_of_a_training_run_redraws_itself(app, trained_run, tmp_path):
    """A run this process is training: the curves slide is a fragment that re-reads the metrics."""
    from core.store.runs import mark_active
    runs = _copy_run(trained_run, tmp_path / "runs")
    run = training_here(RunStore(runs).get(trained_run.run_id), epochs=2)
    try:
        at = app(PRESENT, runs_dir=runs, present="1", run=run.run_id)
        assert any("Training right now" in m.value for m in at.markdown)
        at = app(PRESENT, runs_dir=runs, present="1", run=run.run_id, slide="5")
        loss = _figures(at)[0]
        assert len(plotly_values(loss["data"][0]["x"])) == 1
        row = dict(run.read_metrics()[-1], epoch=2)
        run.append_metrics(row)
        at.run()                                   # what the fragment's timer does in a browser
        assert not at.exception
        assert list(plotly_values(_figures(at)[0]["data"][0]["x"])) == [1, 2]
    finally:
        mark_active(run.run_id, False)


def test_curves_slide_of_a_one_epoch_run_shows_its_running_batches(app, trained_run, tmp_path):
    """A one-epoch run still in its epoch has no batches.csv yet: the slide draws the batches of its
    progress file (what the CLI or another server writes) instead of an empty per-epoch chart."""
    from core.store.runs import mark_active
    runs = _copy_run(trained_run, tmp_path / "runs")
    run = RunStore(runs).get(trained_run.run_id)
    run.reconcile_metrics(0)                      # back before its first epoch: no rows, no batches
    run = training_here(run, epochs=1)
    run.write_progress({"phase": "training", "epoch": 1, "epochs": 1, "batch": 3, "batches": 5,
                        "accuracy": 0.41, "batch_losses": [[1, 2.5], [2, 2.4], [3, 2.2]]})
    mark_active(run.run_id, True)
    try:
        at = app(PRESENT, runs_dir=runs, present="1", run=run.run_id, slide="5")
        assert not at.exception, [e.value for e in at.exception]
        loss = _figures(at)[0]
        assert loss["layout"]["title"]["text"] == "Training loss in epoch 1 (per batch)"
        assert list(plotly_values(loss["data"][1]["y"])) == [2.5, 2.4, 2.2]       # Keras' running mean
        assert any("batch 3 of 5" in m.value for m in at.markdown)
        numbers = {m.label: m.value for m in at.metric}
        assert numbers["Accuracy on the training images so far"] == "41.0%" and numbers["Batches done"] == "3 of 5"
    finally:
        mark_active(run.run_id, False)


# --- try your own image -------------------------------------------------------------------------------
def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size (what a decompression bomb's header says)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _noise(h=240, w=320):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_try_image_rejects_bad_uploads_with_clear_messages(app, trained_run):
    full = _png(_noise())
    gif = io.BytesIO()
    Image.fromarray(_noise()).save(gif, format="GIF")
    cases = [
        ("notes.png", b"these are my notes, not a picture\n" * 20, "not an image file"),
        ("cut.png", full[: len(full) // 2], "cut off or damaged"),
        ("bomb.png", _png_header(100_000, 100_000), "decompression bomb"),
        ("big-bomb.png", _png_header(9_000, 9_000), "decompression bomb"),
        ("huge.png", full + b"\0" * (10 * 1024 * 1024), "more than the 10.0 MB accepted"),
        ("anim.png", gif.getvalue(), "only PNG and JPEG are accepted"),
    ]
    at = app(TRY, run=trained_run.run_id)
    assert at.info and "Drop a photo" in at.info[0].value
    for name, data, expected in cases:
        at.file_uploader(key="try_upload").set_value((name, data, "image/png")).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert at.error, name
        assert name in at.error[0].value and expected in at.error[0].value, (name, at.error[0].value)
        assert "PNG or JPEG" in at.error[0].value
        assert not at.get("plotly_chart") and not at.subheader


def test_try_image_classifies_a_jpeg_photo(app, trained_run):
    at = app(TRY, run=trained_run.run_id)
    at.file_uploader(key="try_upload").set_value(("flower.jpg", SAMPLE_PHOTO.read_bytes(), "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert at.subheader[0].value.startswith("The model says: **")
    top5 = _figures(at)[0]
    assert top5["data"][0]["type"] == "bar" and len(top5["data"][0]["y"]) == 5
    probabilities = sorted(top5["data"][0]["x"])
    assert probabilities == sorted(probabilities) and 0 < sum(probabilities) <= 100.0 + 1e-6
    captions = [img.caption for img in _images(at)]
    assert captions[1] == "What the model sees: 32×32 pixels"
    assert captions[2].startswith("Where it looked for “")
    assert any("flower.jpg: JPEG, 640 × 427 px" in c.value and "centre square" in c.value for c in at.caption)


def test_try_image_with_a_random_test_image(app, trained_run):
    y_true, _ = trained_run.read_predictions()
    at = app(TRY, run=trained_run.run_id)
    at.radio(key="try_source").set_value("test").run()
    assert not at.exception, [e.value for e in at.exception]
    index = at.session_state["try_random_index"]
    verdict, truth = at.subheader[0].value, CLASS_NAMES[y_true[index]]
    assert ("✅ right" in verdict) or (f"it is a {truth}" in verdict)
    names = list(_figures(at)[0]["data"][0]["y"])
    assert (f"{truth} (true)" in names) == (truth in [n.removesuffix(" (true)") for n in names])
    at.button(key="try_another").click().run()
    assert not at.exception


def test_try_image_without_a_finished_run(app, tmp_path):
    at = app(TRY, runs_dir=tmp_path / "none")
    assert "no finished run" in at.info[0].value


# --- shareable report ---------------------------------------------------------------------------------
def test_report_page_offers_html_and_csv(app, trained_run):
    y_true, y_prob = trained_run.read_predictions()
    at = app(REPORT, run=trained_run.run_id)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download the HTML report", "Download per-class metrics (CSV)",
                      "Download the trained model (.keras)"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Top-1 test accuracy"] == f"{100 * evaluate(y_true, y_prob).top1_accuracy:.1f}%"
    assert float(metrics["Report size"].split()[0]) < 8
    assert list(at.dataframe[0].value.index) == list(CLASS_NAMES)


def test_report_page_without_predictions(app, trained_run, tmp_path):
    runs = _copy_run(trained_run, tmp_path / "runs")
    RunStore(runs).get(trained_run.run_id)._file(PREDICTIONS_FILE).unlink()
    at = app(REPORT, runs_dir=runs)
    assert "No run has test-set predictions" in at.info[0].value


# --- compare runs -----------------------------------------------------------------------------------
@pytest.fixture
def two_runs(trained_run, tmp_path):
    """The trained run (B0) and a copy posing as a B2 run with other settings and predictions."""
    runs = _copy_run(trained_run, tmp_path / "runs")
    other_id = trained_run.run_id[:16] + "b2-beef"
    _copy_run(trained_run, runs, other_id)
    # Edited before the store first sees the folder: a copied folder is imported with what it holds.
    config_file = runs / other_id / "config.json"
    config = json.loads(config_file.read_text())
    config.update(variant="b2", learning_rate=0.0003, optimizer="sgd")
    config_file.write_text(json.dumps(config))
    other = RunStore(runs).get(other_id)
    y_true, y_prob = other.read_predictions()
    rng = np.random.default_rng(7)
    better = rng.dirichlet(np.full(10, 0.3), size=len(y_true))
    better[np.arange(len(y_true)), y_true] += rng.random(len(y_true))
    other.write_predictions(y_true, (better / better.sum(axis=1, keepdims=True)).astype(np.float32))
    return runs, trained_run.run_id, other_id


def test_compare_page(app, two_runs):
    runs, base_id, other_id = two_runs
    base, other = (evaluate(*RunStore(runs).get(rid).read_predictions()) for rid in (base_id, other_id))
    at = app(COMPARE, runs_dir=runs)
    assert set(at.multiselect(key="compare_chosen").value) == {base_id, other_id}
    per_batch, accuracy_per_batch, loss, accuracy, per_class, difference = _figures(at)
    # one-epoch runs: loss and accuracy batch by batch first (each batch faint, then smoothed, per run)
    assert per_batch["layout"]["title"]["text"] == "Training loss per batch"
    assert [t["name"] for t in per_batch["data"] if t.get("showlegend") is not False] in (["B0", "B2"], ["B2", "B0"])
    assert accuracy_per_batch["layout"]["title"]["text"] == "Training accuracy per batch"
    assert accuracy_per_batch["layout"]["yaxis"]["title"]["text"] == "accuracy (%)"
    assert {t["name"] for t in loss["data"]} == {"B0 · train", "B0 · validation", "B2 · train", "B2 · validation"}
    assert accuracy["layout"]["title"]["text"] == "Accuracy per epoch"
    # settings: only the differing ones, highlighted
    settings = at.dataframe[1].value
    assert set(settings.index) == {"variant", "learning_rate", "optimizer"}
    assert settings.loc["variant"].tolist() == ["b2", "b0"] or settings.loc["variant"].tolist() == ["b0", "b2"]
    # per-class accuracy side by side
    bars = {t["name"]: plotly_values(t["y"]) for t in per_class["data"]}
    assert bars["B0"] == pytest.approx(100 * base.per_class["recall"].to_numpy())
    assert bars["B2"] == pytest.approx(100 * other.per_class["recall"].to_numpy())
    # confusion difference: B2 − B0 (the older run is the baseline), diagonal blank
    z = np.array([[np.nan if v is None else v for v in row] for row in difference["data"][0]["z"]], dtype=float)
    expected = (other.confusion - base.confusion).astype(float)
    np.fill_diagonal(expected, np.nan)
    np.testing.assert_array_equal(z, expected)
    sentences = compare_charts.pair_changes(base.confusion, other.confusion, "B0", "B2")["sentence"]
    bullet = next(m.value for m in at.markdown if "confuses" in m.value)
    assert bullet.startswith(f"- {sentences.iloc[0]}")
    # only-different toggle off: every setting
    at.toggle(key="compare_only_different").set_value(False).run()
    assert len(at.dataframe[1].value) == len(json.loads((runs / base_id / "config.json").read_text()))
    at.radio(key="compare_scale").set_value("% of the true class").run()
    assert not at.exception
    assert "% of the true class" in _figures(at)[5]["layout"]["title"]["text"]


def test_compare_page_puts_the_batches_after_longer_runs_and_leaves_them_out_without_any(app, two_runs):
    runs, base_id, other_id = two_runs
    RunStore(runs).get(other_id).write_status(epochs=3, name="Longer run")   # three epochs: the usual order
    figures = _figures(app(COMPARE, runs_dir=runs))
    assert [f["layout"]["title"]["text"] for f in figures[:4]] == ["Loss per epoch", "Accuracy per epoch",
                                                                   "Training loss per batch",
                                                                   "Training accuracy per batch"]
    assert {t["name"] for t in figures[2]["data"] if t.get("showlegend") is not False} == {"B0", "Longer run"}
    # A run from before the accuracy was recorded per batch: its loss only, and a line that says so.
    other = RunStore(runs).get(other_id)
    for epoch, reports in other.read_batches().items():
        other.append_batches(epoch, [(batch, loss) for batch, loss, _ in reports])   # the loss alone
    at = app(COMPARE, runs_dir=runs)
    accuracy = _figures(at)[3]
    assert [t["name"] for t in accuracy["data"] if t.get("showlegend") is not False] == ["B0"]
    assert any("not recorded" in c.value and "Longer run" in c.value for c in at.caption)
    for rid in (base_id, other_id):                              # runs from before per-batch curves
        RunStore(runs).get(rid).truncate_batches_after(0)
    titles = [f["layout"]["title"]["text"] for f in _figures(app(COMPARE, runs_dir=runs))]
    assert titles[:2] == ["Loss per epoch", "Accuracy per epoch"] and "Training loss per batch" not in titles


def test_compare_page_needs_two_runs(app, trained_run):
    at = app(COMPARE)
    assert "at least two runs" in at.info[0].value


# --- pure helpers -------------------------------------------------------------------------------------
def test_presentation_requested():
    assert nav.presentation_requested({"present": "1"}) and nav.presentation_requested({"present": "True"})
    assert not nav.presentation_requested({}) and not nav.presentation_requested({"present": "0"})


def test_slide_number_and_facts():
    assert slides.slide_number(None) == 0 and slides.slide_number("3") == 2
    assert slides.slide_number("0") == 0 and slides.slide_number("1000") == len(slides.SLIDES) - 1
    facts = dict(slides.config_facts({"variant": "b0", "image_size": 64, "weights": "imagenet",
                                      "freeze_base": True, "fine_tune_at_epoch": 2, "optimizer": "adam",
                                      "learning_rate": 0.001, "train_limit": 0, "val_fraction": 0.1,
                                      "augment_flip": True, "augment_crop_padding": 0}))
    assert facts["Network"] == "EfficientNet-B0" and facts["Input size"] == "64 px"
    assert facts["Starting weights"] == "ImageNet-trained"
    assert facts["Phases"] == "head only, then fine-tune from epoch 3"
    assert facts["Training images"] == "all 45,000" and facts["Augmentation"] == "flips"
    assert slides.variant_phi("b3") == 3 and slides.variant_phi("zz") == 0


def test_projector_enlarges_every_font():
    import plotly.graph_objects as go
    fig = slides.projector(go.Figure(go.Bar(x=[1], y=[2], text=["2"], textfont=dict(size=10))), 500)
    assert fig.layout.height == 500 and fig.layout.font.size == slides.FIG_FONT
    assert fig.layout.xaxis.tickfont.size == slides.FIG_TICK_FONT
    assert fig.data[0].textfont.size >= slides.FIG_TICK_FONT


def test_compare_builders():
    labels = compare_charts.short_labels({"20261125-142301-b0-3f9a": "b0", "20261125-150000-b0-0001": "b0",
                                          "20261125-160000-b2-0002": "b2"})
    assert labels["20261125-160000-b2-0002"] == "B2"
    assert labels["20261125-142301-b0-3f9a"] == "B0 · 1423-3f9a"
    named = compare_charts.short_labels({"20261125-142301-b0-3f9a": "b0", "20261125-150000-b0-0001": "b0",
                                         "20261125-160000-b2-0002": "b2"},
                                        {"20261125-142301-b0-3f9a": "Quick demo", "20261125-160000-b2-0002": "B0"})
    assert named == {"20261125-142301-b0-3f9a": "Quick demo", "20261125-150000-b0-0001": "B0 · 1500-0001",
                     "20261125-160000-b2-0002": "B0 · 1600-0002"}      # a name that is another run's variant
    frame = compare_charts.settings_frame({"A": {"lr": 0.001, "flip": True}, "B": {"lr": 0.003, "flip": True,
                                                                                  "extra": 1}})
    assert frame.loc["lr"].tolist() == ["0.001", "0.003"] and frame.loc["extra"].tolist() == ["—", "1"]
    assert compare_charts.differing_rows(frame).to_dict() == {"lr": True, "flip": False, "extra": True}
    a = np.array([[50, 30, 0], [100, 10, 5], [0, 0, 9]])
    b = np.array([[70, 20, 0], [60, 40, 5], [1, 0, 9]])
    pairs = compare_charts.pair_changes(a, b, "B0", "B2", ["cat", "dog", "frog"])
    assert pairs["sentence"].tolist() == ["B2 confuses cat and dog 50 fewer times than B0 (80 vs 130)",
                                          "B2 confuses cat and frog 1 more time than B0 (1 vs 0)"]
    diff = compare_charts.confusion_difference(a, b)
    assert np.isnan(np.diag(diff)).all() and diff[1, 0] == -40 and diff[0, 1] == -10
    fig = compare_charts.confusion_difference_figure(a, b, "B0", "B2", class_names=["cat", "dog", "frog"])
    assert fig.data[0].zmid == 0 and fig.data[0].text[1][0] == "−40"
    styler = compare_charts.highlight_differences(frame)
    assert "background-color" in styler.to_html()
    per_class = pd.DataFrame({"recall": [0.5, 1.0, 0.25]}, index=["cat", "dog", "frog"])
    bars = compare_charts.per_class_accuracy_figure({"B0": per_class}, ["cat", "dog", "frog"])
    assert list(bars.data[0].y) == [50.0, 100.0, 25.0]
