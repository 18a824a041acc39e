"""Transfer learning from EFFLAB_WEIGHTS_DIR: the frozen phase trains only the head; fine-tuning
opens the base but keeps every BatchNormalization frozen; a missing weights file is named."""

import h5py
import keras
import numpy as np
import pytest

from core.settings.config import TrainConfig
from core.training.model import base_layers, build_model, unfreeze
from core.training.weights import WeightsUnavailableError, resolve_weights, weights_status

pytestmark = pytest.mark.slow


def _trainable_kinds(model):
    trainable = [l for l in model.layers if l.trainable and l.weights]
    return ({l.name for l in trainable if l.name.startswith("head_")},
            [l for l in trainable if not l.name.startswith("head_")])


def test_imagenet_weights_come_from_the_weights_dir(monkeypatch, weights_dir):
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    config = TrainConfig(weights="imagenet", freeze_base=True)
    assert resolve_weights(config).endswith("efficientnetb0_notop.h5")
    assert weights_status(config)[0] is True
    model = build_model(config)
    # The stem kernel equals the file's: the weights were really loaded, not random.
    with h5py.File(resolve_weights(config), "r") as h5:
        stem = np.asarray(h5["stem_conv/stem_conv/kernel"])
    np.testing.assert_allclose(model.get_layer("stem_conv").kernel.numpy(), stem, rtol=1e-6)


def test_frozen_phase_then_fine_tune_keeps_batchnorm_frozen(monkeypatch, weights_dir):
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    model = build_model(TrainConfig(weights="imagenet", freeze_base=True, fine_tune_at_epoch=1, epochs=2))
    heads, base = _trainable_kinds(model)
    assert heads == {"head_predictions"} and base == []

    unfreeze(model, from_block=1)
    heads, base = _trainable_kinds(model)
    assert heads == {"head_predictions"}
    assert base and not any(isinstance(l, keras.layers.BatchNormalization) for l in base)
    assert all(not l.trainable for l in base_layers(model) if isinstance(l, keras.layers.BatchNormalization))
    assert model.get_layer("stem_conv").trainable and model.get_layer("top_conv").trainable

    unfreeze(model, from_block=6)
    opened = {l.name for l in base_layers(model) if l.trainable and l.weights}
    assert opened and all(n.startswith(("block6", "block7", "top_")) for n in opened)


def test_fine_tune_from_start_opens_the_top_blocks_at_once_and_a_checkpoint_keeps_them(
        tmp_path, monkeypatch, weights_dir):
    """The quick-demo shape: no head phase, blocks 4..7 (depthwise kernels kept) train from the
    first step, and a checkpoint reloads with the same layers open, so a resume trains the same."""
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    from core.training.model import load_checkpoint
    from core.training.train import _phases
    config = TrainConfig(weights="imagenet", freeze_base=True, fine_tune_from_start=True,
                         fine_tune_from_block=4, fine_tune_depthwise=False, epochs=1)
    model = build_model(config)
    heads, base = _trainable_kinds(model)
    assert heads == {"head_predictions"}
    opened = {l.name for l in base}
    assert {"block4a_expand_conv", "block7a_project_conv", "top_conv"} <= opened
    assert all(n.startswith(("block4", "block5", "block6", "block7", "top_")) for n in opened)
    assert not any(isinstance(l, (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D)) for l in base)
    assert _phases(config, 1) == [("fine-tuning (BatchNorm frozen)", 1)]
    path = tmp_path / "last.keras"
    model.save(path)
    assert {l.name for l in _trainable_kinds(load_checkpoint(path))[1]} == opened
    # With the depthwise kernels in, block 4's depthwise convolution opens too.
    with_depthwise = build_model(config.replace(fine_tune_depthwise=True))
    assert with_depthwise.get_layer("block4a_dwconv").trainable


@pytest.mark.full
def test_two_phase_run_trains_head_then_fine_tunes(tmp_path, monkeypatch, weights_dir, fixture_data_dir):
    """A real two-phase run: epoch 1 head only on the frozen ImageNet base, epoch 2 fine-tuning at
    the lower rate with BatchNorm frozen; the saved checkpoint carries the unfrozen state."""
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", weights_dir)
    from core.jobs.scheduler import JobManager
    from core.training.model import load_checkpoint
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir)
    config = TrainConfig(weights="imagenet", freeze_base=True, fine_tune_at_epoch=1, epochs=2,
                         fine_tune_learning_rate=1e-4, batch_size=32, train_limit=200, val_fraction=0.2)
    run_id = manager.start(config)
    assert manager.wait(600)
    run = manager.store.get(run_id)
    assert run.read_status()["state"] == "completed", run.read_status()
    rates = [r["learning_rate"] for r in run.read_metrics()]
    assert rates == pytest.approx([1e-3, 1e-4])
    model = load_checkpoint(run.checkpoint("last"))
    _, base = _trainable_kinds(model)
    assert base and not any(isinstance(l, keras.layers.BatchNormalization) for l in base)
    # ImageNet features separate the fixture's colours at once: far above chance on its test set.
    assert run.read_status()["test_accuracy"] > 0.3


def test_missing_weights_error_names_the_file_and_folders(tmp_path, monkeypatch):
    # Only the network is simulated: Keras's download cannot happen on these offline machines,
    # and we make sure it fails fast instead of hanging on a URL.
    monkeypatch.setenv("EFFLAB_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", no_network)
    config = TrainConfig(weights="imagenet", variant="b1")
    assert weights_status(config)[0] is None
    with pytest.raises(WeightsUnavailableError) as caught:
        build_model(config)
    message = str(caught.value)
    assert "efficientnetb1_notop.h5" in message and str(tmp_path / "empty") in message
    assert "keras-home" in message
