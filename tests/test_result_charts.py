"""Chart builders (dashboard/result_charts.py) and image helpers (dashboard/images.py), on their
traces and pixels. Pure functions: no Streamlit, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from plotly.colors import hex_to_rgb, sequential

from core.analysis.evaluate import evaluate, top_k
from core.content.history import ARCHITECTURES, compound_scaling, history_frame
from core.data.cifar10 import CLASS_NAMES
from core.settings.variants import VARIANTS
from core.store.runs import RunSummary
from dashboard import images, result_charts as rc, url_state
from dashboard.style import OKABE_ITO, SEQUENTIAL_SCALE

CAT, DOG = CLASS_NAMES.index("cat"), CLASS_NAMES.index("dog")


@pytest.fixture(scope="module")
def confusion() -> np.ndarray:
    """1,000 images per class; 112 cats taken for dogs, 40 dogs for cats."""
    c = np.diag(np.full(10, 1000))
    c[CAT, CAT], c[CAT, DOG] = 888, 112
    c[DOG, DOG], c[DOG, CAT] = 960, 40
    return c


def _titled(fig) -> None:
    """Every chart has a title and both axis titles, in projector-readable fonts."""
    assert fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.font.size >= 14


# --- confusion matrix ---------------------------------------------------------------------------
def test_confusion_heatmap_counts_and_hover(confusion):
    fig = rc.confusion_figure(confusion)
    heat = fig.data[0]
    assert heat.type == "heatmap" and list(heat.x) == list(CLASS_NAMES) == list(heat.y)
    np.testing.assert_array_equal(np.array(heat.z, dtype=float), confusion)
    assert heat.customdata[CAT][DOG] == "true cat predicted as dog: 112 (11.2%)"
    assert heat.text[CAT][DOG] == "112" and heat.text[0][0] == "1,000"
    assert fig.layout.yaxis.autorange == "reversed"       # class 0 on top, as a matrix reads
    _titled(fig)
    assert fig.layout.xaxis.title.text == "Predicted class" and fig.layout.yaxis.title.text == "True class"


def test_confusion_uses_cividis(confusion):
    heat = rc.confusion_figure(confusion).data[0]
    assert [c for _, c in heat.colorscale] == list(getattr(sequential, SEQUENTIAL_SCALE))


def test_confusion_normalised_rows_and_mistakes_only(confusion):
    fig = rc.confusion_figure(confusion, normalise=True, mistakes_only=True)
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    assert z[CAT, DOG] == pytest.approx(11.2) and z[DOG, CAT] == pytest.approx(4.0)
    assert fig.data[0].text[CAT][DOG] == "11.2%" and fig.data[0].text[CAT][CAT] == "88.8%"
    assert "% of each true class" in fig.layout.title.text
    assert fig.data[0].colorbar.title.text == "% of true class"


def test_confusion_picker_points_name_their_cells(confusion):
    picker = rc.confusion_figure(confusion).data[1]
    assert picker.name == rc.PICKER_TRACE and picker.type == "scatter" and len(picker.x) == 100
    point = CAT * 10 + DOG
    assert (picker.y[point], picker.x[point]) == ("cat", "dog")
    assert tuple(picker.customdata[point]) == (CAT, DOG)
    assert picker.hovertext[point].startswith("true cat predicted as dog: 112")
    assert picker.marker.opacity == 0          # invisible: the heat map is what the user sees
    assert len(rc.confusion_figure(confusion, selectable=False).data) == 1


@pytest.mark.parametrize("point", [
    {"customdata": [CAT, DOG], "x": "dog", "y": "cat"},
    {"customdata": {"0": CAT, "1": DOG}, "x": "dog", "y": "cat"},   # what the browser sends
    {"x": "dog", "y": "cat"},
])
def test_selected_cell(point):
    assert rc.selected_cell([point]) == (CAT, DOG)


def test_selected_cell_none():
    assert rc.selected_cell([]) is None and rc.selected_cell(None) is None
    assert rc.selected_cell([{"x": 3, "y": 4}]) is None


def test_per_class_error_figure(confusion):
    y_true = np.repeat(np.arange(10), 10)
    y_prob = np.full((100, 10), 0.01)
    y_prob[np.arange(100), y_true] = 0.9
    y_prob[y_true == CAT, DOG] = 0.95                # every cat wrong
    y_prob[np.flatnonzero(y_true == DOG)[:3], CAT] = 0.95
    fig = rc.per_class_error_figure(evaluate(y_true, y_prob).per_class)
    bar = fig.data[0]
    assert bar.orientation == "h" and bar.y[-1] == "cat" and bar.x[-1] == pytest.approx(100)
    assert bar.y[-2] == "dog" and bar.x[-2] == pytest.approx(30)
    assert list(bar.x) == sorted(bar.x)
    assert "%" in fig.layout.xaxis.title.text
    # A 100% label goes inside its bar (outside it ran off the chart's narrow column), a 30% one after it.
    assert bar.textposition[-1] == "inside" and bar.textposition[-2] == "outside"
    _titled(fig)


def test_confused_pairs_figure():
    y_true = np.array([CAT] * 5 + [DOG] * 3 + [0])
    y_prob = np.full((9, 10), 0.01)
    y_prob[:5, DOG] = 0.9
    y_prob[5:8, CAT] = 0.9
    y_prob[8, 0] = 0.9
    pairs = evaluate(y_true, y_prob).confused_pairs
    fig = rc.confused_pairs_figure(pairs, top=5)
    bar = fig.data[0]
    assert list(bar.y) == ["dog → cat", "cat → dog"] and list(bar.x) == [3, 5]
    assert "count" in fig.layout.xaxis.title.text
    _titled(fig)


def test_top5_figure_marks_true_class():
    row = np.array([0.02, 0.01, 0.05, 0.3, 0.02, 0.5, 0.04, 0.03, 0.02, 0.01])
    fig = rc.top5_figure(top_k(row, 5), true_index=CAT)
    bar = fig.data[0]
    assert list(bar.y)[::-1] == ["dog", "cat (true)", "bird", "frog", "horse"]
    assert list(bar.x)[::-1] == pytest.approx([50, 30, 5, 4, 3])
    colours = dict(zip(bar.y, bar.marker.color))
    assert colours["cat (true)"] == rc.TRUE_COLOUR and colours["dog"] == rc.HIGHLIGHT_COLOUR
    assert set(bar.marker.color) <= set(OKABE_ITO)
    assert fig.layout.xaxis.title.text == "Probability (%)"


# --- history --------------------------------------------------------------------------------------
def test_model_params_from_config():
    b0 = VARIANTS["b0"].base_params
    assert rc.model_params({"variant": "b0", "head": "gap"}) == b0 + 1280 * 10 + 10
    assert rc.model_params({"variant": "B2", "head": "gap"}) == VARIANTS["b2"].base_params + 1408 * 10 + 10
    seed = 1280 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert rc.model_params({"variant": "b0", "head": "seed", "image_size": 32}) == b0 + seed
    assert rc.model_params({"variant": "b9"}) is None


def _summary(run_id, accuracy, variant="b0", damaged="", **config):
    return RunSummary(run_id=run_id, state="completed", variant=variant, damaged=damaged,
                      config={"variant": variant, "head": "gap", "image_size": 32, **config},
                      test_accuracy=accuracy)


def test_runs_frame_keeps_runs_with_a_test_accuracy():
    frame = rc.runs_frame([_summary("a", 0.766), _summary("b", None), _summary("c", 0.5, damaged="x"),
                           _summary("d", 0.881, variant="b2", image_size=64)])
    assert list(frame["run_id"]) == ["a", "d"]
    assert frame["test_error"].tolist() == pytest.approx([23.4, 11.9])
    assert frame["params_millions"].iloc[0] == pytest.approx(4.062381)
    assert frame["variant"].tolist() == ["B0", "B2"]


def test_history_points_by_metric():
    history = history_frame()
    top1, left_out = rc.history_points(history, "top1")
    alexnet = top1.set_index("name").loc["AlexNet"]
    assert alexnet["error"] == pytest.approx(100 - 59.3)
    assert {"LeNet-5", "ZFNet", "GoogLeNet"} == set(left_out)   # no top-1, or no parameter count
    ilsvrc, _ = rc.history_points(history, "ilsvrc")
    assert ilsvrc.set_index("name").loc["ResNet-152", "error"] == pytest.approx(3.57)
    with pytest.raises(ValueError, match="metric"):
        rc.history_points(history, "top3")


def test_history_scatter_figure_two_series():
    history = history_frame()
    runs = rc.runs_frame([_summary("20261125-142301-b0-3f9a", 0.766)])
    fig = rc.history_scatter_figure(history, runs, "top1")
    published, yours = fig.data
    points, _ = rc.history_points(history, "top1")
    assert len(published.x) == len(points) and list(published.y) == pytest.approx(list(points["error"]))
    assert list(published.marker.color) == list(points["year"])        # coloured by year
    assert [c for _, c in published.marker.colorscale] == list(getattr(sequential, SEQUENTIAL_SCALE))
    assert published.marker.colorbar.title.text == "Year"
    assert "AlexNet" in published.text and "B0" in published.text
    assert yours.name == rc.RUNS_TRACE and list(yours.y) == pytest.approx([23.4])
    assert "CIFAR-10, not ImageNet" in yours.hovertemplate
    assert yours.marker.color in OKABE_ITO
    assert fig.layout.xaxis.type == "log" and "log scale" in fig.layout.xaxis.title.text
    assert "millions" in fig.layout.xaxis.title.text and "(%)" in fig.layout.yaxis.title.text
    # 1-2-5 ticks labelled in full size over the points' range (4M for B0 ... 138M for VGG-16).
    assert list(fig.layout.xaxis.ticktext) == ["5", "10", "20", "50", "100", "200"]
    _titled(fig)
    assert len(rc.history_scatter_figure(history, None, "top5").data) == 1


def test_history_covers_the_issue_list():
    names = {a.name for a in ARCHITECTURES}
    for wanted in ("LeNet-5", "AlexNet", "ZFNet", "GoogLeNet", "VGG-16", "ResNet-50", "ResNet-152",
                   "Inception-v3", "EfficientNet-B0", "EfficientNet-B7"):
        assert wanted in names
    assert all(a.figures_source for a in ARCHITECTURES)


@pytest.mark.parametrize("phi", [0, 1, 2.5, 7])
def test_scaling_figure(phi):
    fig = rc.scaling_figure(phi)
    s = compound_scaling(phi)
    bar = fig.data[0]
    assert list(bar.x) == list(rc.SCALING_LABELS)
    assert list(bar.y) == pytest.approx([s["depth"], s["width"], s["resolution"], s["flops"]])
    assert fig.layout.yaxis.type == "log"
    assert f"{s['resolution_px']} px" in fig.layout.title.text and "φ" in fig.layout.title.text
    assert set(bar.marker.color) <= set(OKABE_ITO)
    _titled(fig)


# --- images -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def test_upscale_nearest_keeps_crisp_blocks(tiny_image):
    big = np.asarray(images.upscale(tiny_image, 128, "nearest"))
    assert big.shape == (128, 128, 3)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(tiny_image, 4, axis=0), 4, axis=1))


def test_upscale_smooth_differs_and_validates(tiny_image):
    smooth = np.asarray(images.upscale(tiny_image, 128, "smooth"))
    assert smooth.shape == (128, 128, 3)
    assert not np.array_equal(smooth, np.asarray(images.upscale(tiny_image, 128, "nearest")))
    with pytest.raises(ValueError, match="method"):
        images.upscale(tiny_image, 64, "bicubic")
    with pytest.raises(ValueError, match="image"):
        images.upscale(tiny_image[..., 0], 64)


def test_caption():
    assert images.caption("cat", "dog", 0.973) == "cat → dog (97%)"


def test_colormap_is_the_house_scale():
    scale = getattr(sequential, SEQUENTIAL_SCALE)
    rgb = images.colormap(np.array([[0.0, 1.0, -3.0, 7.0]]))
    assert tuple(rgb[0, 0]) == tuple(hex_to_rgb(scale[0])) == tuple(rgb[0, 2])
    assert tuple(rgb[0, 1]) == tuple(hex_to_rgb(scale[-1])) == tuple(rgb[0, 3])
    lightness = images.colormap(np.linspace(0, 1, 50)[None]).astype(float).mean(axis=-1)[0]
    assert (np.diff(lightness) >= -1).all()        # readable in grey: brighter means more


def test_overlay_heatmap(tiny_image):
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    plain = np.asarray(images.overlay_heatmap(tiny_image, heat, alpha=0.0, size=64))
    np.testing.assert_array_equal(plain, np.asarray(images.upscale(tiny_image, 64)))
    only_heat = np.asarray(images.overlay_heatmap(tiny_image, heat, alpha=1.0, size=64))
    assert only_heat.shape == (64, 64, 3)
    np.testing.assert_array_equal(only_heat, np.asarray(images.heat_image(heat, 64)))
    # the hot corner is brighter than the cold one
    assert only_heat[:8, :8].mean() > only_heat[-8:, -8:].mean()
    with pytest.raises(ValueError, match="alpha"):
        images.overlay_heatmap(tiny_image, heat, alpha=1.5)


@pytest.mark.parametrize("n, per_page, pages", [(0, 24, 1), (1, 24, 1), (24, 24, 1), (25, 24, 2), (9000, 96, 94)])
def test_page_count(n, per_page, pages):
    assert images.page_count(n, per_page) == pages


def test_page_bounds_clamp():
    assert images.page_bounds(1, 24, 50) == (0, 24)
    assert images.page_bounds(3, 24, 50) == (48, 50)
    assert images.page_bounds(9, 24, 50) == (48, 50)     # past the end: the last page
    assert images.page_bounds(0, 24, 50) == (0, 24)
    assert images.page_bounds(1, 24, 0) == (0, 0)


def test_grid_rows():
    assert [list(r) for r in images.grid_rows(8, 3)] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert images.grid_rows(0, 6) == []


def test_gallery_query():
    assert url_state.gallery_query("r1", "cat", "dog") == {"run": "r1", "true": "cat", "pred": "dog"}
    assert url_state.gallery_query("r1", "cat", "cat", view="correct") == {"run": "r1", "true": "cat",
                                                                         "view": "correct"}
    with pytest.raises(ValueError, match="view"):
        url_state.gallery_query("r1", view="all")
