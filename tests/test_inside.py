"""Inside the network: core.analysis.inside on the shared trained run (stage shapes checked against the real
model's layers, probabilities against model.predict), the feature-map size rule against Keras's
own EfficientNets, the chart builders on their traces, and an AppTest of pages/inside.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.analysis.inside import feature_map_sizes, first_block_at_1x1, round_filters, stage_layers

PAGE = "../pages/inside.py"
STAGE_KEYS = ["stem", *[f"block{n}" for n in range(1, 8)], "top", "pooled"]


@pytest.fixture(scope="module")
def model(trained_run):
    from core.training.model import load_checkpoint
    return load_checkpoint(trained_run.path / "checkpoints" / "last.keras")


@pytest.fixture(scope="module")
def test_image(fixture_data_dir):
    from core.data.cifar10 import load_cifar10
    return load_cifar10(fixture_data_dir, allow_download=False).x_test[7]


@pytest.fixture(scope="module")
def inside(model, test_image):
    from core.analysis.inside import look_inside
    return look_inside(model, test_image, top=6)


# --- the forward pass ---------------------------------------------------------------------------
def test_stages_match_the_model_layers_and_the_size_rule(inside, model):
    assert [s.key for s in inside.stages] == STAGE_KEYS
    expected = {size.key: size for size in feature_map_sizes(32, "b0")}
    for stage in inside.stages[:-1]:
        layer_shape = tuple(model.get_layer(stage.layer).output.shape[1:])
        assert stage.shape == layer_shape, stage.key
        assert stage.shape == (expected[stage.key].side, expected[stage.key].side, expected[stage.key].channels)
        assert stage.maps.shape == (6, *stage.shape[:2])
        assert stage.channel_means.shape == (stage.shape[2],)
    # Keras's block names: the last layer of block 1 is its projection (no residual: 32 -> 16
    # channels), of block 2 the residual add of its second repeat.
    assert inside.stage("block1").layer == "block1a_project_bn"
    assert inside.stage("block2").layer == "block2b_add"
    assert inside.stage("pooled").shape == (1280,) and inside.stage("pooled").layer == "head_pool"


def test_the_lesson_at_32_px_maps_are_1x1_by_block_6(inside):
    assert inside.stage("block5").shape[:2] == (2, 2)
    for key in ("block6", "block7", "top"):
        assert inside.stage(key).shape[:2] == (1, 1)
        assert inside.stage(key).caption.startswith("1×1 × ")
    assert inside.stage("block2").caption == "8×8 × 24 channels"


def test_top_channels_are_the_most_active_and_their_maps_are_the_layer_output(inside, model, test_image):
    import keras

    from core.analysis.saliency import input_size, prepare_image
    x = prepare_image(test_image, input_size(model))
    stage = inside.stage("block2")
    reference = np.asarray(keras.Model(model.inputs, model.get_layer(stage.layer).output)([x], training=False))[0]
    means = reference.mean(axis=(0, 1))
    assert list(stage.top_channels) == list(np.argsort(-means, kind="stable")[:6])
    np.testing.assert_allclose(stage.channel_means, means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stage.maps[0], reference[:, :, stage.top_channels[0]], rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(stage.channel_means[list(stage.top_channels)]) <= 0)


def test_probabilities_equal_model_predict(inside, model, test_image):
    from core.analysis.saliency import input_size, prepare_image
    predicted = model.predict(prepare_image(test_image, input_size(model)), verbose=0)[0]
    np.testing.assert_allclose(inside.probabilities, predicted, rtol=1e-5, atol=1e-6)
    assert inside.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    pooled = inside.stage("pooled").maps
    # The pooled vector is the top map's channel means (global average pooling).
    np.testing.assert_allclose(pooled, inside.stage("top").channel_means, rtol=1e-4, atol=1e-6)


def test_the_input_is_what_the_first_convolution_receives(inside):
    assert inside.image.shape == (32, 32, 3)
    assert inside.image.min() == 0.0 and inside.image.max() == pytest.approx(1.0)
    low, high = inside.input_range
    assert low < high


def test_bad_arguments_say_what_was_given(model, test_image):
    from core.analysis.inside import look_inside
    with pytest.raises(ValueError, match=r"image must be one \(height, width, 3\) picture; got shape \(32, 32\)"):
        look_inside(model, test_image[:, :, 0])
    with pytest.raises(ValueError, match="top must be .* 1 or more; got 0"):
        look_inside(model, test_image, top=0)


def test_a_model_that_is_no_efficientnet_is_refused():
    import keras
    inputs = keras.Input((8, 8, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="stem_activation, top_activation, block1.*not an EfficientNet"):
        stage_layers(other)


# --- the size rule, without a model ---------------------------------------------------------------
def test_feature_map_sizes_per_resolution():
    assert [s.side for s in feature_map_sizes(32)] == [16, 16, 8, 4, 2, 2, 1, 1, 1]
    assert [s.side for s in feature_map_sizes(64)] == [32, 32, 16, 8, 4, 4, 2, 2, 2]
    assert [s.side for s in feature_map_sizes(224)] == [112, 112, 56, 28, 14, 14, 7, 7, 7]
    assert first_block_at_1x1(32) == 6 and first_block_at_1x1(16) == 4
    assert first_block_at_1x1(64) is None and first_block_at_1x1(224) is None
    assert [s.channels for s in feature_map_sizes(32)] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]


@pytest.mark.parametrize("bad", [0, -32, 31.5, "32", True, None])
def test_feature_map_sizes_refuses_what_is_no_size(bad):
    with pytest.raises(ValueError, match=f"image_size must be a positive whole number of pixels; got {bad!r}"):
        feature_map_sizes(bad)


def test_sizes_and_channels_agree_with_keras_at_an_odd_size_and_another_width():
    """Against keras.applications itself: B2 (width 1.1) at 75 px, where every stride rounds up."""
    import keras
    from core.analysis.inside import _BLOCK_NAME
    base = keras.applications.EfficientNetB2(include_top=False, weights=None, input_shape=(75, 75, 3))
    last = {}
    for layer in base.layers:
        match = _BLOCK_NAME.match(layer.name)
        if match:
            last[f"block{match.group(1)}"] = layer.name
    last.update(stem="stem_activation", top="top_activation")
    for size in feature_map_sizes(75, "b2"):
        assert tuple(base.get_layer(last[size.key]).output.shape[1:]) == (size.side, size.side, size.channels)
    assert round_filters(1280, 1.1) == 1408


# --- chart builders -------------------------------------------------------------------------------
def test_channel_grid_has_one_heat_map_per_channel_and_titled_axes(inside):
    from dashboard.inside_charts import channel_grid_figure
    stage = inside.stage("stem")
    fig = channel_grid_figure(stage, columns=4)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 6
    np.testing.assert_allclose(np.asarray(heatmaps[0].z), stage.maps[0])
    assert "16×16 × 32 channels" in fig.layout.title.text
    texts = [a.text for a in fig.layout.annotations]
    assert "map row" in texts and any(t.startswith("map column") for t in texts)
    assert [f"channel {c}" for c in stage.top_channels] == texts[:6]
    assert fig.layout.coloraxis.colorbar.title.text == "activation"
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (stage.maps.min(), stage.maps.max())
    assert heatmaps[0].texttemplate is None                        # 16×16: colours only
    one = channel_grid_figure(inside.stage("block6"))
    assert one.data[0].texttemplate == "%{z:.2f}"                   # 1×1: the value as a number too
    with pytest.raises(ValueError, match="'pooled' is a vector"):
        channel_grid_figure(inside.stage("pooled"))


def test_probabilities_pooled_and_size_charts(inside):
    from dashboard.inside_charts import map_sizes_figure, pooled_figure, probabilities_figure
    fig = probabilities_figure(inside.probabilities, true_index=2)
    assert len(fig.data[0].x) == 10 and fig.layout.xaxis.title.text == "probability (%)"
    assert "bird (true)" in list(fig.data[0].y) and fig.data[0].orientation == "h"
    pooled = pooled_figure(inside.stage("pooled"))
    assert len(pooled.data[0].y) == 1280 and pooled.layout.xaxis.title.text
    sizes = map_sizes_figure(feature_map_sizes(32), feature_map_sizes(224), run_side=32, native_side=224,
                             variant="b0")
    assert [list(t.y) for t in sizes.data] == [[16, 16, 8, 4, 2, 2, 1, 1, 1], [112, 112, 56, 28, 14, 14, 7, 7, 7]]
    assert sizes.layout.yaxis.type == "log" and "log" in sizes.layout.yaxis.title.text
    assert [t.name for t in sizes.data] == ["32 px input (this run)", "224 px input (native)"]


# --- the page -------------------------------------------------------------------------------------
@pytest.fixture
def app(app_factory, trained_run):
    return app_factory(trained_run.path.parent)


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_page_shows_every_stage_of_a_test_image_from_the_url(app, trained_run):
    at = app(PAGE, image="3")
    assert at.title[0].value == "Inside the network"
    assert at.number_input(key="inside_index").value == 3
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert len(titles) == 12, titles       # probabilities, sizes, 9 stages, pooled vector
    assert titles[0].startswith("The model says")
    assert titles[1] == "Feature map size per stage, B0 at 32 px vs its native 224 px"
    assert titles[2].startswith("Stem: 16×16 × 32 channels")
    assert titles[8].startswith("Block 6: 1×1 × 192 channels")
    assert any("1×1 from block 6 on" in m.value for m in at.markdown)
    captions = [c.value for c in at.caption]
    assert any("Block 2 (layer `block2b_add`): 8×8 × 24 channels" in c for c in captions)
    assert any(c.startswith("CIFAR-10 test image #3") for c in
               [img.caption for e in at.get("image") for img in e.proto.imgs])
    assert at.query_params["image"] == ["3"] or at.query_params["image"] == "3"


def test_page_refuses_a_bad_image_number_and_offers_the_mistakes(app, trained_run):
    at = app(PAGE, image="99999")
    assert any("image must be a test image number from 0 to 99; got `99999`" in w.value for w in at.warning)
    assert at.number_input(key="inside_index").value == 0
    at.radio(key="inside_source").set_value("mistake").run()
    assert not at.exception, [e.value for e in at.exception]
    choice = at.selectbox(key="inside_mistake")
    assert choice.options and "taken for a" in choice.options[0]
    index = int(choice.value)
    y_true, y_prob = trained_run.read_predictions()
    assert y_true[index] != np.argmax(y_prob[index])
    assert len(_figures(at)) == 12
