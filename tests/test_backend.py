"""core/training/backend.py, and the engine pieces that differ between Keras backends.

`make test` runs this file under TensorFlow; `make test-jax` runs it again under JAX as on a GPU
machine without TensorFlow (conftest makes TensorFlow unimportable there) with two host devices
(XLA_FLAGS), so that data parallelism over several devices runs on this CPU too.
"""

import sys

import keras
import numpy as np
import pytest

from core.errors import UserInputError
from core.settings.config import TrainConfig
from core.training import backend

ON_JAX = keras.backend.backend() == "jax"


class _RateFromBatch(keras.callbacks.Callback):
    def __init__(self, batch: int, rate: float):
        super().__init__()
        self.batch, self.rate = batch, rate

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            self.model.optimizer.learning_rate.assign(self.rate)   # as core.training.train.CosineSchedule


def test_a_rate_set_mid_epoch_reaches_the_next_step():
    """The cosine schedule sets the rate before every batch. Under JAX, fit keeps the optimizer's
    variables in its own state between steps, and Keras syncs that state to the model whenever a
    callback reads `self.model`: the rate must still reach the next step. Rate 0 until batch 2,
    then 0.5: the weights must move."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    x, y = np.ones((32, 4), np.float32), np.zeros((32, 2), np.float32)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[_RateFromBatch(2, 0.5)])
    moved = [np.abs(np.array(w) - b).max() for w, b in zip(model.get_weights(), before)]
    assert max(moved) > 1e-3, moved
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.5)


def test_multi_worker_is_refused_with_the_way_to_several_processes():
    with pytest.raises(UserInputError, match="KERAS_BACKEND=jax"):
        backend.make_strategy("multi_worker")


def test_one_device_unless_asked_on_this_cpu():
    assert backend.gpu_devices() == []
    assert backend.use_mixed_precision("auto") is False and backend.use_mixed_precision("on") is True
    for setting in ("auto", "none"):
        assert backend.make_strategy(setting).num_replicas_in_sync == 1


@pytest.mark.slow
@pytest.mark.small_network      # its subject is the split over devices: the tests' small EfficientNet
@pytest.mark.skipif(not ON_JAX, reason="JAX's DataParallel; TensorFlow's MirroredStrategy is test_distribution.py")
def test_mirrored_under_jax_trains_over_two_host_devices_without_tensorflow(tmp_path, fixture_data_dir):
    import jax
    if len(jax.devices()) < 2:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=2 (make test-jax sets it)")
    from core.jobs.scheduler import JobManager
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    run_id = manager.start(TrainConfig(distribution="mirrored", epochs=1, batch_size=16, train_limit=100,
                                       val_fraction=0.2, lr_schedule="cosine", warmup_epochs=0))
    assert manager.wait(900)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "completed", status
    # Global batch = per-device batch x devices: 100 training images at 32 a step are 3 whole steps
    # (on one device they would be 6).
    assert run.read_progress()["batches"] == 3
    assert [row["epoch"] for row in run.read_metrics()] == [1]
    assert run.has_predictions() and status["test_images"] == 100
    assert "tensorflow" not in sys.modules
