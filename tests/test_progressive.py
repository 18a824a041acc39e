"""Progressive resizing: the first share of a run's training steps at a smaller size, the rest at
image_size; validation, checkpoints and the test set always at image_size; sizes that would make
EfficientNet pad its stride-2 layers differently are refused by name."""

import keras
import numpy as np
import pytest

from core.settings.config import ConfigError, TrainConfig, progressive_start_sizes
from core.training.model import PREP_LAYER_PREFIX
from core.training.train import ProgressiveResize


TRACED_SIZES: list[int] = []   # module level: Keras copies a list given to a layer as an attribute


class _SizeSeen(keras.layers.Layer):
    """Records the height of what reaches it each time a step is traced (call runs at trace time)."""

    def call(self, x):
        TRACED_SIZES.append(int(x.shape[1]))
        return x


def test_training_steps_run_at_the_start_size_then_at_image_size_and_the_layer_ends_there():
    config = TrainConfig(image_size=64, progressive_start_size=32, progressive_start_fraction=0.5, epochs=2,
                         batch_size=8)
    inputs = keras.Input((32, 32, 3))
    resize = keras.layers.Resizing(64, 64, name=f"{PREP_LAYER_PREFIX}resize")
    x = _SizeSeen()(resize(inputs))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (32, 32, 32, 3)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 10, 32), 10)

    class SizeOfEachStep(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sizes: list[int] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.sizes.append(resize.height)

    each_step = SizeOfEachStep()
    TRACED_SIZES.clear()   # the functional build traced the symbolic 64 px graph
    # Keras' own validation runs after an epoch's last step, before any callback's epoch end.
    model.fit(images, labels, batch_size=8, epochs=2, validation_data=(images[:8], labels[:8]),
              callbacks=[ProgressiveResize(config, steps=4), each_step], verbose=0)

    # 8 steps, the first 4 (one epoch of two) at 32 px; the train step was traced again at 64.
    assert each_step.sizes == [32] * 4 + [64] * 4
    # TensorFlow may trace a step twice; what counts is the order and that 64 px came in twice:
    # for validation (not at 32, though it ran mid-run) and for the train step after the switch.
    assert TRACED_SIZES[0] == 32 and TRACED_SIZES == sorted(TRACED_SIZES), TRACED_SIZES
    assert TRACED_SIZES.count(64) >= 2, TRACED_SIZES
    assert resize.height == 64 and resize.get_config()["height"] == 64   # what a checkpoint saves


def test_the_eta_counts_the_steps_left_at_each_size_at_that_size_s_pace():
    from core.estimates.timing import relative_cost
    from core.training.callbacks import FitState
    config = TrainConfig(image_size=120, progressive_start_size=88, progressive_start_fraction=0.5, epochs=2)
    resize = ProgressiveResize(config, steps=10)   # 20 steps: 10 at 88 px, then 10 at 120
    assert resize.remaining_steps(0, 2, 2) == {88: 8, 120: 10}
    assert resize.remaining_steps(0, 2, 1) == {88: 8, 120: 0}
    assert resize.remaining_steps(1, 4, 2) == {88: 0, 120: 6}
    fit = FitState(train_images=1280, steps=10, target_epochs=2, phase_name="fine-tuning", resize=resize)
    fit.epoch, fit.batches_done = 0, 2
    fit.seconds_per_image = {88: (2.56, 256)}   # 0.01 s per image so far, all at 88 px
    slower = relative_cost("b0", 120, 88)
    assert 1.4 < slower < 2.5
    assert fit.resize_eta(1) == pytest.approx(8 * 128 * 0.01)
    assert fit.resize_eta(2) == pytest.approx(8 * 128 * 0.01 + 10 * 128 * 0.01 * slower)
    assert fit.etas(0.0) == (fit.resize_eta(1), fit.resize_eta(2))
    # Once a 120 px step has been timed, its own pace counts.
    fit.epoch, fit.batches_done = 1, 4
    fit.seconds_per_image[120] = (5.12, 256)
    assert fit.resize_eta(2) == pytest.approx(6 * 128 * 0.02)


def test_start_sizes_differ_from_the_image_size_by_multiples_of_32():
    assert progressive_start_sizes(120) == [88, 56]
    assert progressive_start_sizes(64) == [32]
    assert progressive_start_sizes(32) == []
    TrainConfig(image_size=120, progressive_start_size=88)
    with pytest.raises(ConfigError, match=r"progressive_start_size: expected 0 \(off\) or a size below "
                                          r"image_size \(120\).*one of 88, 56; got 96"):
        TrainConfig(image_size=120, progressive_start_size=96)
    with pytest.raises(ConfigError, match=r"progressive_start_size.*one of 88, 56; got 120"):
        TrainConfig(image_size=120, progressive_start_size=120)
    with pytest.raises(ConfigError, match=r"image_size 32 leaves no smaller size"):
        TrainConfig(image_size=32, progressive_start_size=16)
    with pytest.raises(ConfigError, match=r"progressive_start_fraction: expected a number in \(0, 1\]; got 0"):
        TrainConfig(image_size=64, progressive_start_size=32, progressive_start_fraction=0)


@pytest.mark.full
@pytest.mark.slow
def test_a_run_trains_at_two_sizes_and_keeps_image_size_for_validation_checkpoint_and_test(
        tmp_path, fixture_data_dir):
    """A real B0 run through the engine: half the steps at 32 px, half at 64; the checkpoint, the
    validation and the test set at 64 px, and the throughput measured without either trace."""
    from core.jobs.scheduler import JobManager
    from core.training.model import load_checkpoint, resize_layer
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    config = TrainConfig(image_size=64, progressive_start_size=32, progressive_start_fraction=0.5, epochs=1,
                         batch_size=16, train_limit=96, val_fraction=0.2, augment_crop_padding=0)
    run_id = manager.start(config)
    assert manager.wait(600)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert 0 <= status["test_accuracy"] <= 1
    [row] = run.read_metrics()
    assert row["val_accuracy"] != "" and row["images_per_second"] > 0
    assert resize_layer(load_checkpoint(run.checkpoint("last"))).height == 64
