"""AppTests of the result pages (confusion matrix, misclassified images, CNN history) on the
shared trained run. Clicking a confusion-matrix cell in a real browser is
test_browser_results.py::test_done_when_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.analysis.evaluate import correct_examples, evaluate, mistakes
from core.content.history import ARCHITECTURES, compound_scaling
from core.data.cifar10 import CLASS_NAMES
from core.store.runs import PREDICTIONS_FILE, RunStore
from conftest import ended, evaluated, training_here

CONFUSION, MISTAKES, HISTORY = "../pages/confusion.py", "../pages/mistakes.py", "../pages/history.py"
MISTAKES_TITLE = "Misclassified images"



@pytest.fixture
def app(app_factory, trained_run):
    """make(page, runs_dir=..., **query) -> an AppTest that has run that page (the trained run's folder)."""
    return app_factory(trained_run.path.parent)


@pytest.fixture(scope="module")
def run_eval(trained_run):
    y_true, y_prob = trained_run.read_predictions()
    return y_true, y_prob, evaluate(y_true, y_prob)


def _copy_run(trained_run, tmp_path) -> Path:
    """A private copy of the trained run (tests that write must not touch the shared one)."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    return runs


def _figure(at, index=0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _captions(at) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


# --- confusion matrix ---------------------------------------------------------------------------
def test_confusion_page(app, trained_run, run_eval):
    _, _, ev = run_eval
    at = app(CONFUSION)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Top-1 accuracy"] == f"{100 * ev.top1_accuracy:.1f}%"
    assert metrics["Top-5 accuracy"] == f"{100 * ev.top5_accuracy:.1f}%"
    assert metrics["Test images"] == f"{ev.n:,}"
    heat = _figure(at, 0)
    assert heat["data"][0]["type"] == "heatmap"
    hover = heat["data"][0]["customdata"]
    assert hover[3][5].startswith("true cat predicted as dog: ")
    assert heat["layout"]["title"]["text"].startswith("Confusion matrix")
    assert len(at.get("plotly_chart")) == 3 if not ev.confused_pairs.empty else 2
    table = at.dataframe[0].value
    assert list(table.index) == list(CLASS_NAMES)
    assert {"precision", "recall", "f1", "support", "error_rate"} <= set(table.columns)
    assert table["support"].sum() == ev.n
    # row-normalised view
    at.radio(key="confusion_scale").set_value("% of true class").run()
    assert not at.exception
    assert "% of each true class" in _figure(at, 0)["layout"]["title"]["text"]


def test_pair_button_opens_exactly_those_images(app, trained_run, run_eval):
    y_true, y_prob, ev = run_eval
    if ev.confused_pairs.empty:
        pytest.skip("the trained run made no mistakes")
    pair = ev.confused_pairs.iloc[0]
    at = app(CONFUSION)
    button = at.button(key=f"pair_{pair.true_index}_{pair.predicted_index}")
    assert button.label.startswith(f"{pair.true} → {pair.predicted}: {pair['count']:,}")
    button.click().run()
    assert not at.exception
    assert at.title[0].value == MISTAKES_TITLE                      # switched page
    query = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert query == {"run": trained_run.run_id, "true": pair.true, "pred": pair.predicted}
    expected = mistakes(y_true, y_prob, true_class=int(pair.true_index),
                        predicted_class=int(pair.predicted_index))
    captions = _captions(at)
    assert len(captions) == min(len(expected), 24)
    assert all(c.startswith(f"{pair.true} → {pair.predicted} (") and c.endswith("%)") for c in captions)
    assert at.markdown[0].value.startswith(f"**{len(expected):,} misclassified {pair.true} images "
                                           f"predicted as {pair.predicted}**")


def test_evaluate_now_for_a_run_without_predictions(app, trained_run, tmp_path):
    runs = _copy_run(trained_run, tmp_path)
    run = RunStore(runs).get(trained_run.run_id)
    (run.path / PREDICTIONS_FILE).unlink()
    ended(training_here(run), "stopped")
    at = app(CONFUSION, runs_dir=runs)
    assert any("no test-set predictions" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    at.button(key="evaluate_now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # It went through the queue as a job of its own (not the page's thread), owned by who asked.
    jobs = RunStore(runs).list(kinds=("evaluate",))
    assert [job.kind for job in jobs] == ["evaluate"]
    assert RunStore(runs).get(jobs[0].run_id).read_status()["evaluates"] == run.run_id
    evaluated(at)
    assert run.has_predictions()
    assert any(s.value.startswith("Evaluated: test accuracy") for s in at.success), [e.value for e in at.error]
    assert RunStore(runs).get(jobs[0].run_id).read_status()["state"] == "completed"
    assert [s.run_id for s in RunStore(runs).list()] == [run.run_id]      # the job is not listed as a run
    assert at.get("plotly_chart") and {m.label for m in at.metric} >= {"Top-1 accuracy", "Top-5 accuracy"}
    assert at.button(key="evaluate_now").label.startswith("Re-evaluate")   # a stopped run may refresh


def test_evaluate_now_refuses_without_a_checkpoint(app, trained_run, tmp_path):
    runs = _copy_run(trained_run, tmp_path)
    run = RunStore(runs).get(trained_run.run_id)
    (run.path / PREDICTIONS_FILE).unlink()
    shutil.rmtree(run.checkpoint("last").parent)
    at = app(CONFUSION, runs_dir=runs)
    assert any("no checkpoint yet" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "evaluate_now"]


@pytest.mark.parametrize("page", [CONFUSION, MISTAKES, HISTORY])
def test_pages_without_runs(app, tmp_path, page):
    at = app(page, runs_dir=tmp_path / "no-runs")
    assert at.title and not at.exception
    if page != HISTORY:
        assert at.info and "No runs yet" in at.info[0].value


# --- misclassified images ------------------------------------------------------------------------
def test_gallery_from_url_filters_and_pages(app, trained_run, run_eval):
    y_true, y_prob, ev = run_eval
    true_index = int(np.bincount(ev.confused_pairs["true_index"], weights=ev.confused_pairs["count"],
                                 minlength=10).argmax())
    true = CLASS_NAMES[true_index]
    at = app(MISTAKES, run=trained_run.run_id, true=true)
    expected = mistakes(y_true, y_prob, true_class=true_index)
    captions = _captions(at)
    assert len(captions) == min(len(expected), 24)
    assert all(c.startswith(f"{true} → ") for c in captions)
    # the most confident mistake comes first
    first = expected.iloc[0]
    assert captions[0] == f"{true} → {first.predicted} ({100 * first.confidence:.0f}%)"
    # all mistakes, 12 per page, page 2
    at.selectbox(key="gallery_true").set_value("any")
    at.selectbox(key="gallery_per_page").set_value(12).run()
    assert not at.exception and "true" not in at.query_params
    every = mistakes(y_true, y_prob)
    assert len(_captions(at)) == min(len(every), 12)
    if len(every) > 12:
        at.number_input(key="gallery_page").set_value(2).run()
        assert len(_captions(at)) == min(len(every) - 12, 12)
    # loss order
    at.radio(key="gallery_sort").set_value("loss").run()
    assert not at.exception
    by_loss = mistakes(y_true, y_prob, sort="loss")
    top = by_loss.iloc[0]
    assert _captions(at)[0] == f"{top.true} → {top.predicted} ({100 * top.confidence:.0f}%)"


def test_gallery_correct_view_for_contrast(app, trained_run, run_eval):
    y_true, y_prob, ev = run_eval
    cls = int(ev.per_class["correct"].to_numpy().argmax())
    name = CLASS_NAMES[cls]
    at = app(MISTAKES, run=trained_run.run_id, true=name, view="correct")
    expected = correct_examples(y_true, y_prob, true_class=cls)
    captions = _captions(at)
    assert len(captions) == min(len(expected), 24)
    assert all(c.startswith(f"{name} → {name} (") for c in captions)
    assert at.selectbox(key="gallery_pred").disabled


def test_detail_view_with_saliency(app, trained_run, run_eval):
    y_true, y_prob, _ = run_eval
    wrong = mistakes(y_true, y_prob)
    index = int(wrong.iloc[0]["index"]) if len(wrong) else 0
    at = app(MISTAKES, run=trained_run.run_id, image=str(index))
    assert at.subheader[0].value.startswith(f"Test image #{index}: ")
    top5 = _figure(at, 0)
    assert top5["data"][0]["type"] == "bar" and len(top5["data"][0]["y"]) == 5
    assert top5["layout"]["xaxis"]["title"]["text"] == "Probability (%)"
    detail_captions = _captions(at)[:3]
    assert detail_captions[0].endswith("upscaling of the 32×32 original")
    assert detail_captions[1].startswith("What the model looked at for")
    assert any("Grad-CAM on block4a_expand_activation (4×4×240)" in c.value for c in at.caption)
    true_class = CLASS_NAMES[int(y_true[index])]
    at.radio(key="detail_class").set_value(int(y_true[index])).run()     # evidence for the true class
    assert not at.exception
    assert any(f"for “{true_class}”" in c for c in _captions(at))
    at.button(key="detail_close").click().run()
    assert "image" not in at.query_params and not at.subheader


@pytest.mark.parametrize("param, value", [
    ("image", "²"),                                  # str.isdigit() says yes, int() raises
    ("image", "٣"),                                  # an Arabic-Indic 3: int() would accept it
    ("image", "-1"), ("image", "99999999"), ("image", " 3"), ("image", "1e3"),
    ("image", "[click](http://evil.example)"), ("image", "![x](http://evil.example/p.png)"),
    ("true", "[click](http://evil.example)"), ("pred", "**dog**"), ("view", "everything"),
])
def test_bad_gallery_parameters_are_refused_as_text(app, trained_run, param, value):
    at = app(MISTAKES, run=trained_run.run_id, **{param: value})
    assert not at.exception
    warnings = [w.value for w in at.warning if f"`{param}` must be" in w.value]
    assert len(warnings) == 1, [w.value for w in at.warning]
    assert "](" not in warnings[0] and "**" not in warnings[0]      # nothing but plain text came through
    assert not [h for h in at.subheader if h.value.startswith("Test image #")]
    assert not any("evil" in m.value for m in at.markdown)
    assert at.radio(key="gallery_view").value == "mistakes" and at.selectbox(key="gallery_true").value == "any"


def test_a_valid_image_parameter_still_opens_the_detail_view(app, trained_run):
    at = app(MISTAKES, run=trained_run.run_id, image="0")
    assert not at.warning and at.subheader[0].value.startswith("Test image #0: ")


def test_inspect_button_opens_the_detail_view(app, trained_run):
    at = app(MISTAKES, run=trained_run.run_id)
    inspect = [b for b in at.button if b.key and b.key.startswith("inspect_")]
    assert inspect
    index = inspect[0].key.removeprefix("inspect_")
    inspect[0].click().run()
    assert not at.exception
    assert at.query_params["image"] in (index, [index])
    assert at.subheader[0].value.startswith(f"Test image #{index}: ")


def test_gallery_without_test_images_says_how_to_fix(app, trained_run, tmp_path):
    at = app(MISTAKES, data_dir=tmp_path / "empty", run=trained_run.run_id)
    assert at.error and "EFFLAB_DATA_DIR" in at.error[0].value
    assert not at.get("image")


def test_gallery_for_a_run_without_predictions(app, trained_run, tmp_path):
    runs = _copy_run(trained_run, tmp_path)
    RunStore(runs).get(trained_run.run_id)._file(PREDICTIONS_FILE).unlink()
    at = app(MISTAKES, runs_dir=runs)
    assert "no test-set predictions" in at.info[0].value


# --- CNN history ---------------------------------------------------------------------------------------
def test_history_page(app, trained_run):
    at = app(HISTORY)
    table = at.dataframe[0].value
    assert len(table) == len(ARCHITECTURES)
    assert {"AlexNet", "ResNet-50", "ResNet-152", "EfficientNet-B7"} <= set(table["name"])
    assert table["figures_source"].notna().all() and table["url"].str.startswith("https://").all()
    chart = _figure(at, 0)
    names = [trace["name"] for trace in chart["data"]]
    assert names == ["Published (ImageNet)", "Your CIFAR-10 runs"]
    assert chart["layout"]["xaxis"]["type"] == "log"
    comparison = at.dataframe[1].value
    assert list(comparison["Model"])[1:] == ["AlexNet", "ResNet-50", "ResNet-152"]
    at.slider(key="phi").set_value(3.0).run()
    assert not at.exception
    s = compound_scaling(3.0)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Depth"] == f"×{s['depth']:.2f}" and metrics["Resolution"] == f"{s['resolution_px']} px"
    scaling = _figure(at, 1)
    assert scaling["data"][0]["y"] == pytest.approx([s["depth"], s["width"], s["resolution"], s["flops"]])
    assert len(at.dataframe[2].value) == 8                                 # B0–B7 from core.settings.variants
    at.radio(key="history_metric").set_value("ilsvrc").run()
    assert not at.exception
    at.toggle(key="history_show_runs").set_value(False).run()
    assert len(_figure(at, 0)["data"]) == 1


# --- speed with a full-size run --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_size_run(tmp_path_factory, trained_run):
    """A copy of the trained run whose predictions cover 10,000 test images, and data to match."""
    from cifar_fixture import fixture_arrays, write_cifar_fixture
    root = tmp_path_factory.mktemp("full")
    data_dir = write_cifar_fixture(root / "data", train_per_class=1, test_per_class=1000)
    _, _, _, y_test = fixture_arrays(train_per_class=1, test_per_class=1000)
    runs = root / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    rng = np.random.default_rng(0)
    y_prob = rng.dirichlet(np.full(10, 0.3), size=len(y_test))
    y_prob[np.arange(len(y_test)), y_test] += rng.random(len(y_test))       # mostly right
    y_prob /= y_prob.sum(axis=1, keepdims=True)
    RunStore(runs).get(trained_run.run_id).write_predictions(y_test, y_prob.astype(np.float32))
    return runs, data_dir


def test_pages_with_10000_predictions_evaluate_and_decode_once(app, full_size_run, monkeypatch):
    """A full-size test set: the matrix is computed once and the images decoded once, whatever
    the reruns (how long those reruns take is for a benchmark, not a test)."""
    import core.data.cifar10
    import core.analysis.evaluate
    runs, data_dir = full_size_run
    calls = {"evaluate": 0, "load_cifar10": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(core.analysis.evaluate, "evaluate", counted("evaluate", core.analysis.evaluate.evaluate))
    monkeypatch.setattr(core.data.cifar10, "load_cifar10", counted("load_cifar10", core.data.cifar10.load_cifar10))
    at = app(CONFUSION, runs_dir=runs, data_dir=data_dir)
    assert at.metric[2].value == "10,000"
    at.toggle(key="confusion_mistakes_only").set_value(True).run()
    assert not at.exception and calls["evaluate"] == 1          # the matrix is computed once

    at.switch_page(MISTAKES).run()
    assert not at.exception and len(_captions(at)) == 24
    at.radio(key="gallery_method").set_value("smooth").run()
    at.run()
    assert not at.exception
    assert calls["load_cifar10"] == 1 and calls["evaluate"] == 1     # nothing decoded again


def test_url_numbers_are_ascii_digits_in_range():
    from dashboard.url_state import parse_int
    assert [parse_int(v, 0, 9_999) for v in ("0", "9999", "0042")] == [0, 9_999, 42]
    for bad in ("²", "٣", "-1", "10000", "+1", " 1", "1 ", "1_000", "1e3", "", "0x10", "1" * 13, None):
        assert parse_int(bad, 0, 9_999) is None, bad
