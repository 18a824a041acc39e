"""Feeding the device: the model augments and resizes CIFAR's 32 px uint8 images itself.

The in-model `Augment` layer is held to the tests the host augmentation passed (tests/test_data.py):
a flip mirrors about half the images, a translate is a window of the reflect-padded original, the
same seed gives the same result, inference leaves images alone. And it compiles under XLA, which
Keras's own RandomTranslation does not. Checkpoints from before the change (input = image_size,
resized on the host) still load, resume, predict and explain.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_fixture import class_of, fixture_arrays
from core.data.augment import Augment
from core.settings.config import TrainConfig
from core.training.model import build_model, compile_model, host_preprocessing, load_checkpoint
from conftest import ended


@pytest.fixture(scope="module")
def x_y():
    x_train, y_train, _, _ = fixture_arrays()
    return x_train, y_train


def _index_of(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    where = {img.tobytes(): i for i, img in enumerate(x)}
    return np.array([where.get(np.asarray(img).astype(np.uint8).tobytes(), -1) for img in images])


def test_augment_flip_mirrors_about_half_and_only_in_training(x_y):
    x = x_y[0]
    layer = Augment(flip=True, pad=0, seed=5)
    out = keras.ops.convert_to_numpy(layer(x.astype("float32"), training=True))
    plain, flipped = _index_of(out, x), _index_of(out, x[:, :, ::-1])
    assert ((plain == np.arange(len(x))) | (flipped == np.arange(len(x)))).all()  # each stays itself
    assert 0.3 * len(x) < (flipped == np.arange(len(x))).sum() < 0.7 * len(x)
    again = keras.ops.convert_to_numpy(Augment(flip=True, pad=0, seed=5)(x.astype("float32"), training=True))
    np.testing.assert_array_equal(again, out)            # the same seed, the same flips
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x.astype("float32"))), x)  # inference


def test_augment_translate_is_a_reflect_padded_window(x_y):
    x, pad = x_y[0][:20], 3
    out = keras.ops.convert_to_numpy(Augment(flip=False, pad=pad, seed=1)(x.astype("float32"), training=True))
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect").astype(np.float32)
    offsets = []
    for i, image in enumerate(out):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(padded[i, dy:dy + 32, dx:dx + 32], image)]
        assert hits, f"output {i} is not a window of its padded original"
        offsets.append(hits[0])
    assert len(set(offsets)) > 5   # the windows really move
    assert (class_of(out) == x_y[1][:20]).all()


def test_model_takes_32px_and_resizes_inside(x_y):
    config = TrainConfig(weights="none", image_size=64, augment_flip=True, augment_crop_padding=4)
    model = build_model(config)
    assert tuple(model.inputs[0].shape) == (None, 32, 32, 3)
    assert model.get_layer("prep_resize").output.shape[1:3] == (64, 64)
    assert model.get_layer("stem_conv").output.shape[1:3] == (32, 32)      # stride 2 from 64 px
    assert host_preprocessing(model, config) == {}                        # nothing left for the host
    x = x_y[0][:8]
    as_uint8 = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x.astype("float32"), verbose=0), as_uint8, atol=1e-6)
    # Augmentation is training-only: two inference calls agree exactly.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=False)),
                                  keras.ops.convert_to_numpy(model(x, training=False)))
    # XLA: no layer opts out (Keras's RandomTranslation would, silently dropping jit_compile).
    compile_model(model, config, 1e-3, jit_compile=True)
    assert model.jit_compile is True


def test_augment_compiles_under_xla(x_y):
    layer = Augment(flip=True, pad=4, seed=2)
    step = tf.function(lambda images: layer(images, training=True), jit_compile=True)
    out = step(tf.constant(x_y[0][:16], tf.float32)).numpy()
    assert out.shape == (16, 32, 32, 3) and (class_of(out) == x_y[1][:16]).all()


def _old_style_model(config: TrainConfig) -> keras.Model:
    """The model as core.training.model built it before the change: input at image_size, no input layers."""
    inputs = keras.Input((config.image_size, config.image_size, 3), name="image")
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=inputs)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_b0_cifar10")


@pytest.mark.full
def test_checkpoint_from_before_the_change_loads_resumes_predicts_and_explains(tmp_path, fixture_data_dir):
    from core.data.cifar10 import load_cifar10
    from core.jobs.scheduler import JobManager
    from core.analysis.predict_image import predict
    from core.analysis.saliency import explain
    config = TrainConfig(image_size=64, epochs=2, batch_size=32, train_limit=96, val_fraction=0.2, seed=4)
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    run = manager.store.create(config)
    old = _old_style_model(config)
    compile_model(old, config, config.learning_rate)
    old.optimizer.build(old.trainable_variables)      # as a trained checkpoint holds its slots
    assert host_preprocessing(old, config) == {"image_size": 64, "augment_flip": True, "crop_padding": 4}
    run.write_checkpoint(lambda tmp: old.save(tmp))
    ended(run, "stopped", checkpoint_epoch=1, epochs=2)

    manager.resume(run.run_id, epochs=2)
    assert manager.wait(600)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert [row["epoch"] for row in run.read_metrics()] == [2]
    _, y_prob = run.read_predictions()
    assert y_prob.shape == (100, 10) and np.isfinite(y_prob).all()
    resumed = load_checkpoint(run.checkpoint("last"))
    assert tuple(resumed.inputs[0].shape) == (None, 64, 64, 3)      # still the old model, resumed
    image = load_cifar10(fixture_data_dir, allow_download=False).x_test[0]
    probabilities = predict(resumed, image)                          # 32 px in, resized for it
    assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) < 1e-4
    heat = explain(resumed, image, int(np.argmax(probabilities))).heatmap
    assert heat.shape == (64, 64) and np.isfinite(heat).all()
