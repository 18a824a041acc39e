"""Folding frozen BatchNormalization into the frozen convolution before it (core.training.model): the
folded network computes what the unfolded one does, trains the same weights the same way, and
stays a model every other part of the lab reads (checkpoints, export, Inside, Grad-CAM)."""

import keras
import numpy as np
import pytest

from core.settings.config import TrainConfig
from core.training.model import base_layers, build_model, compile_model, fold_frozen_batchnorm, load_checkpoint

pytestmark = pytest.mark.slow

# best-cpu's shape at a smaller size: blocks 4-7 fine-tune from the first step, their depthwise
# kernels kept. No random layers in training, so two models can be compared step for step.
ONE_PASS = dict(weights="imagenet", image_size=64, freeze_base=True, fine_tune_from_start=True,
                fine_tune_from_block=4, fine_tune_depthwise=False, epochs=1, dropout=0.0,
                drop_connect_rate=0.0, augment_flip=False, augment_crop_padding=0, optimizer="adam",
                learning_rate=1e-3)


def _pair(config: TrainConfig):
    """(folded, unfolded) models of `config`, the same weights, every BatchNorm with statistics
    of its own: the converted weights come with BatchNorm already folded (scale 1, mean 0,
    variance 1, ../shared/README.md), where a scale put on the wrong axis would go unnoticed."""
    keras.utils.set_random_seed(3)
    unfolded = build_model(config.replace(fold_frozen_batchnorm=False))
    rng = np.random.default_rng(3)
    for layer in unfolded.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Scales of 0.8-1.2 per channel keep the activations in range through 16 blocks.
            _, beta, _, _ = layer.get_weights()
            channels = len(beta)
            layer.set_weights([rng.uniform(0.8, 1.2, channels), beta, rng.normal(0, 0.05, channels),
                               rng.uniform(0.8, 1.2, channels)])
    return fold_frozen_batchnorm(unfolded, config), unfolded


def _batchnorm_names(model) -> set[str]:
    return {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.fixture
def images(real_data_dir):
    from core.data.cifar10 import load_cifar10
    cifar = load_cifar10(real_data_dir)
    return cifar.x_test[:32], keras.utils.to_categorical(cifar.y_test[:32], 10)


def test_folded_network_predicts_what_the_unfolded_one_does(monkeypatch, weights_dir, images):
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    folded, unfolded = _pair(TrainConfig(**ONE_PASS))
    x, _ = images
    np.testing.assert_allclose(folded.predict_on_batch(x), unfolded.predict_on_batch(x), atol=1e-5)
    # And before the softmax, where a saturated output could not hide a difference.
    features = [keras.Model(m.inputs, m.get_layer("top_activation").output).predict_on_batch(x)
                for m in (folded, unfolded)]
    assert features[1].std() > 0.1
    np.testing.assert_allclose(features[0], features[1], rtol=1e-4, atol=1e-5 * np.abs(features[1]).max())
    # Folded: every BatchNorm after a kernel that stays frozen (the stem, blocks 1-3, the kept
    # depthwise kernels); kept: those after the expand, project and top convolutions that train.
    remaining = _batchnorm_names(folded)
    assert remaining and all(n.startswith(("block4", "block5", "block6", "block7", "top_")) for n in remaining)
    assert "block4a_expand_bn" in remaining and "top_bn" in remaining and "block4a_bn" not in remaining
    assert isinstance(folded.get_layer("block2a_expand_bn"), keras.layers.Identity)
    assert folded.get_layer("block2a_expand_conv").use_bias and not folded.get_layer("block2a_expand_conv").trainable
    assert len(_batchnorm_names(unfolded)) == len(remaining) + 26
    assert _batchnorm_names(build_model(TrainConfig(**ONE_PASS))) == remaining    # what a run builds
    assert [w.name for w in folded.trainable_weights] == [w.name for w in unfolded.trainable_weights]


@pytest.mark.full
def test_folded_network_trains_the_same_steps(monkeypatch, weights_dir, images):
    """The same losses and the same weights after two steps: folding changes no trainable
    parameter, so the optimiser sees the same gradients. SGD, whose step is proportional to the
    gradient; Adam divides by its size, and a near-zero gradient's rounding then moves a weight by
    up to a whole step."""
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    config = TrainConfig(**{**ONE_PASS, "optimizer": "sgd", "learning_rate": 0.005})
    folded, unfolded = _pair(config)
    x, y = images
    before = [w.numpy() for w in folded.trainable_weights]
    losses = []
    for model in (folded, unfolded):
        compile_model(model, config, config.learning_rate)
        losses.append([float(model.train_on_batch(x, y)[0]) for _ in range(2)])
    assert max(np.abs(w.numpy() - b).max() for w, b in zip(folded.trainable_weights, before)) > 1e-4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    for mine, theirs in zip(folded.trainable_weights, unfolded.trainable_weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-3, atol=5e-5, err_msg=mine.name)


def test_only_kernels_no_phase_trains_are_folded(monkeypatch, weights_dir):
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    # The head alone, for good: every BatchNorm of the base is folded.
    head_only = build_model(TrainConfig(weights="imagenet", freeze_base=True, epochs=2))
    assert _batchnorm_names(head_only) == set()
    # Head first, fine-tuning from block 6 later: that phase opens blocks 6-7, the top and their
    # depthwise kernels, so their BatchNorm stays, frozen; blocks 1-5 are folded.
    two_phase = build_model(TrainConfig(weights="imagenet", freeze_base=True, fine_tune_at_epoch=1,
                                        fine_tune_from_block=6, epochs=2))
    remaining = _batchnorm_names(two_phase)
    assert "block6a_bn" in remaining and "top_bn" in remaining
    assert all(n.startswith(("block6", "block7", "top_")) for n in remaining)
    # Nothing stays frozen (the whole base fine-tunes) or nothing is frozen (from scratch, where
    # BatchNorm trains): the model is built as Keras builds it.
    whole = build_model(TrainConfig(weights="imagenet", freeze_base=True, fine_tune_from_start=True))
    scratch = build_model(TrainConfig(weights="none"))
    off = build_model(TrainConfig(weights="imagenet", freeze_base=True, fold_frozen_batchnorm=False))
    assert len(_batchnorm_names(whole)) == len(_batchnorm_names(scratch)) == len(_batchnorm_names(off)) == 49


@pytest.mark.full
def test_folded_model_is_a_checkpoint_an_export_and_a_network_to_look_inside(
        tmp_path, monkeypatch, weights_dir, images):
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    from core.analysis.export import export_model
    from core.analysis.inside import stage_layers
    from core.analysis.saliency import grad_cam, grad_cam_layer
    config = TrainConfig(**ONE_PASS)
    model = build_model(config)
    compile_model(model, config, config.learning_rate)
    x, y = images
    model.train_on_batch(x, y)        # a checkpoint carries the optimiser's state too
    path = tmp_path / "last.keras"
    model.save(path)
    loaded = load_checkpoint(path)     # safe_mode: nothing but Keras's and the lab's own layers
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert {l.name for l in base_layers(loaded) if l.trainable and l.weights} == \
        {l.name for l in base_layers(model) if l.trainable and l.weights}
    exported = keras.saving.load_model(export_model(path, tmp_path / "plain.keras"))
    np.testing.assert_allclose(exported.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert [key for key, _, _ in stage_layers(loaded)][:2] == ["stem", "block1"]
    unfolded = build_model(config.replace(fold_frozen_batchnorm=False))
    assert grad_cam_layer(loaded) == grad_cam_layer(unfolded)
    saliency = grad_cam(loaded, x[0], class_index=3)
    assert np.isfinite(saliency.heatmap).all() and saliency.heatmap.shape == (32, 32)
