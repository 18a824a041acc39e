"""core/analysis/saliency.py: Grad-CAM and SmoothGrad on a model whose evidence is known, on a real B0 at
32 px, and on the shared trained run's checkpoint."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.analysis import saliency
from core.settings.config import TrainConfig

SIZE = 16
RED, GREEN = 0, 1


def _check_map(result, shape):
    heat = result.heatmap
    assert heat.shape == shape and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() - heat.min() > 0.1, "the map is flat"


@pytest.fixture(scope="module")
def detector_model():
    """Two fixed 1×1 detectors: channel 0 fires on red pixels, channel 1 on green ones. The
    "red" class score is the mean of channel 0, "green" of channel 1: where the evidence for each
    class lies is known exactly."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    detect = keras.layers.Conv2D(2, 1, activation="relu", name="detect")
    x = detect(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(x))
    # red detector: R - G - B - 50 (> 0 only on red); green detector: G - R - B - 50
    kernel = np.array([[1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=np.float32)[None, None]
    detect.set_weights([kernel, np.array([-50.0, -50.0], dtype=np.float32)])
    dense.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, dtype=np.float32)])
    return model


@pytest.fixture(scope="module")
def two_patch_image() -> np.ndarray:
    """Grey, with a red patch top-left and a green patch bottom-right."""
    image = np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)
    image[:5, :5] = (220, 20, 20)
    image[-5:, -5:] = (20, 220, 20)
    return image


def _corner_means(heat):
    h, w = heat.shape
    return heat[: h // 3, : w // 3].mean(), heat[-(h // 3):, -(w // 3):].mean()


def test_grad_cam_finds_the_evidence(detector_model, two_patch_image):
    assert saliency.grad_cam_layer(detector_model) == "detect"
    red = saliency.grad_cam(detector_model, two_patch_image, RED)
    green = saliency.grad_cam(detector_model, two_patch_image, GREEN)
    _check_map(red, (SIZE, SIZE))
    _check_map(green, (SIZE, SIZE))
    red_tl, red_br = _corner_means(red.heatmap)
    green_tl, green_br = _corner_means(green.heatmap)
    assert red_tl > 0.5 and red_br < 0.05       # the red class looks at the red patch only
    assert green_br > 0.5 and green_tl < 0.05   # and the green class at the green one
    assert red.method == "grad-cam" and red.layer == "detect" and red.layer_shape == (SIZE, SIZE, 2)


def test_smoothgrad_finds_the_evidence(detector_model, two_patch_image):
    red = saliency.smoothgrad(detector_model, two_patch_image, RED, samples=8)
    _check_map(red, (SIZE, SIZE))
    red_tl, red_br = _corner_means(red.heatmap)
    assert red_tl > 3 * red_br
    assert red.method == "smoothgrad" and red.layer is None


def test_smoothgrad_is_deterministic(detector_model, two_patch_image):
    a = saliency.smoothgrad(detector_model, two_patch_image, GREEN, samples=4, seed=3)
    b = saliency.smoothgrad(detector_model, two_patch_image, GREEN, samples=4, seed=3)
    np.testing.assert_array_equal(a.heatmap, b.heatmap)


def test_empty_grad_cam_falls_back_to_smoothgrad(detector_model):
    grey = np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)     # nothing red: no evidence for "red"
    cam = saliency.grad_cam(detector_model, grey, RED)
    assert not cam.heatmap.any() and "no region argues" in cam.description
    assert saliency.explain(detector_model, grey, RED).method == "smoothgrad"
    assert saliency.explain(detector_model, grey, RED, method="grad-cam").method == "grad-cam"


def test_bad_class_is_refused(detector_model, two_patch_image):
    with pytest.raises(ValueError, match="class_index"):
        saliency.grad_cam(detector_model, two_patch_image, 2)
    with pytest.raises(ValueError, match="method"):
        saliency.explain(detector_model, two_patch_image, 0, method="lime")


def test_layer_choice_skips_residual_branches():
    """A map inside a residual block is not a cut (the skip bypasses it); the Add after it is."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="inside_branch")(a)
    c = keras.layers.Add(name="block_out")([a, b])
    d = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="to_2x2")(c)
    x = keras.layers.GlobalAveragePooling2D()(d)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    assert saliency.grad_cam_layer(model) == "block_out"            # to_2x2 is only 2×2
    assert saliency.grad_cam_layer(model, min_size=2) == "to_2x2"
    assert saliency.grad_cam_layer(model, min_size=16) is None


def test_no_spatial_layer_falls_back_to_smoothgrad():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 4, strides=4, name="collapse")(inputs)   # 1×1 at once
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert saliency.grad_cam_layer(model) is None
    assert saliency.explain(model, image, 1).method == "smoothgrad"
    with pytest.raises(ValueError, match="smoothgrad"):
        saliency.grad_cam(model, image, 1)


# --- a real EfficientNet-B0 at CIFAR's 32 px --------------------------------------------------------
@pytest.fixture(scope="module")
def b0():
    from core.training.model import build_model
    keras.utils.set_random_seed(0)
    return build_model(TrainConfig(variant="b0", weights="none", image_size=32))


@pytest.fixture(scope="module")
def cifar_like_image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_b0_at_32px_uses_a_4x4_map(b0):
    # Stages 6-7 are 1×1 and 4b-5 are 2×2 at 32 px; block4a's expansion is the last 4×4 cut.
    assert saliency.grad_cam_layer(b0) == "block4a_expand_activation"
    assert saliency.grad_cam_layer(b0, min_size=2) == "block6a_expand_activation"


@pytest.mark.parametrize("method", ["grad-cam", "smoothgrad"])
def test_b0_maps(b0, cifar_like_image, method):
    first = saliency.explain(b0, cifar_like_image, 3, method=method)
    _check_map(first, (32, 32))
    again = saliency.explain(b0, cifar_like_image, 3, method=method)
    np.testing.assert_array_equal(first.heatmap, again.heatmap)
    assert first.method == method
    if method == "grad-cam":
        assert first.layer_shape == (4, 4, 240) and "block4a_expand_activation" in first.description


def test_prepare_image_resizes_like_evaluation():
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    same = saliency.prepare_image(image, (32, 32))
    assert same.shape == (1, 32, 32, 3) and same.dtype == np.float32
    np.testing.assert_array_equal(same[0], image.astype(np.float32))
    assert saliency.prepare_image(image, (64, 64)).shape == (1, 64, 64, 3)


@pytest.mark.parametrize("head", ["gap", "seed"])
def test_history_param_count_matches_keras(head):
    """The history chart counts a run's parameters from its config; Keras agrees."""
    from core.training.model import build_model
    from dashboard.result_charts import model_params
    config = TrainConfig(variant="b0", weights="none", image_size=32, head=head)
    assert model_params(config.to_dict()) == build_model(config).count_params()


# --- the shared trained run -------------------------------------------------------------------------
def test_trained_checkpoint_maps(trained_run, fixture_data_dir):
    from core.data.cifar10 import load_cifar10
    from core.training.model import load_checkpoint
    model = load_checkpoint(trained_run.checkpoint("last"))
    image = load_cifar10(fixture_data_dir, allow_download=False).x_test[0]
    predicted = int(np.argmax(model(saliency.prepare_image(image, (32, 32)), training=False)[0]))
    cam = saliency.grad_cam(model, image, predicted)
    assert cam.layer == "block4a_expand_activation" and cam.layer_shape[:2] == (4, 4)
    heat = cam.heatmap
    assert heat.shape == (32, 32) and np.isfinite(heat).all()
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    _check_map(saliency.explain(model, image, predicted), (32, 32))   # Grad-CAM, or SmoothGrad if empty
    _check_map(saliency.smoothgrad(model, image, predicted), (32, 32))
