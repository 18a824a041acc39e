"""Builds the network from a TrainConfig, in the named phases of the Keras fine-tuning guide.

`build_model(config)` makes base + head and freezes the base when asked; `unfreeze(model, ...)`
opens the top blocks for fine-tuning while every BatchNormalization stays frozen; `compile_model`
is called again after unfreezing, at the lower fine-tuning rate.
"""

from __future__ import annotations

import os

import keras

from core.config import TrainConfig
from core.data import NUM_CLASSES
from core.variants import get_variant
from core.runs import CheckpointError
from core.weights import WeightsUnavailableError, resolve_weights, weights_error

HEAD_LAYER_PREFIX = "head_"
SEED_HEAD_UNITS = (1024, 512, 256, 128)   # the original notebook's Dense stack


def build_model(config: TrainConfig) -> keras.Model:
    """The EfficientNet base (flattened into one functional model) plus the chosen head.

    The base's layers live directly in the returned model (Keras guide: `input_tensor=`), so
    freezing, fine-tuning by block and Grad-CAM can all address them by name.
    """
    variant = get_variant(config.variant)
    constructor = getattr(keras.applications, variant.keras_constructor)
    inputs = keras.Input((config.image_size, config.image_size, 3), name="image")
    try:
        base = constructor(include_top=False, weights=resolve_weights(config), input_tensor=inputs)
    except Exception as exc:  # Keras raises a bare Exception for URL failures
        if config.weights == "imagenet":
            raise weights_error(config, exc) from exc
        if config.weights != "none":
            raise WeightsUnavailableError(
                f"weights: {config.weights} could not be loaded into EfficientNet{variant.name.upper()} "
                f"without its top ({type(exc).__name__}: {str(exc)[:160]}). Give a Keras weights file "
                "of the same variant saved without the top, or use 'imagenet' or 'none'.") from exc
        raise
    x = base.output
    if config.head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = keras.layers.Dropout(config.classifier_dropout, name="head_dropout")(x)
    else:
        x = keras.layers.Flatten(name="head_flatten")(x)
        for units in SEED_HEAD_UNITS:
            x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{units}")(x)
    # float32 output keeps softmax and the loss stable under mixed precision.
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32",
                                 name="head_predictions")(x)
    model = keras.Model(inputs, outputs, name=f"efficientnet_{variant.name}_cifar10")
    if config.freeze_base:
        set_base_trainable(model, False)
    return model


def base_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers
            if not layer.name.startswith(HEAD_LAYER_PREFIX) and not isinstance(layer, keras.layers.InputLayer)]


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    for layer in base_layers(model):
        layer.trainable = trainable


def _block_number(layer_name: str) -> int | None:
    # EfficientNet names its layers stem_*, block{1..7}{a..}_*, top_*.
    if layer_name.startswith("block") and layer_name[5:6].isdigit():
        return int(layer_name[5])
    return None


def unfreeze(model: keras.Model, from_block: int = 1) -> None:
    """Opens blocks `from_block`..7 and the top conv for fine-tuning; BatchNorm stays frozen.

    BatchNormalization stays in inference mode because its moving statistics were learnt on
    ImageNet: small CIFAR batches would overwrite them in a few steps and undo what the base
    knows (Keras fine-tuning guide). With our converted B0 weights BN is folded, which makes
    this mandatory rather than merely wise.
    """
    for layer in base_layers(model):
        block = _block_number(layer.name)
        in_range = (block is not None and block >= from_block) or layer.name.startswith("top_") \
            or (from_block == 1 and layer.name.startswith("stem_"))
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = in_range and not is_bn


def make_optimizer(config: TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def compile_model(model: keras.Model, config: TrainConfig, learning_rate: float,
                  jit_compile: bool = False) -> None:
    # Keyword arguments only: compile's third positional argument is loss_weights, not metrics.
    model.compile(
        optimizer=make_optimizer(config, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def load_checkpoint(path: str | os.PathLike) -> keras.Model:
    """Loads a run's .keras checkpoint with optimizer state; safe_mode refuses embedded code.

    Raises:
        CheckpointError: The file is missing, damaged, or not a Keras model this code can build
            (including one that safe_mode refuses); the message names the file and the reason.
    """
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises anything from BadZipFile to KeyError
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {name} cannot be loaded ({type(exc).__name__}: {reason}); it is "
                              "damaged or was not written by this lab. Start a new run, or restore the file "
                              "from a copy.") from exc


def trainable_summary(model: keras.Model) -> dict[str, int]:
    """Counts of trainable weights and layers, for tests and the status panel."""
    trainable_layers = [layer for layer in model.layers if layer.trainable and layer.weights]
    return {
        "trainable_params": int(sum(keras.ops.size(w) for w in model.trainable_weights)),
        "frozen_params": int(sum(keras.ops.size(w) for w in model.non_trainable_weights)),
        "trainable_layers": len(trainable_layers),
    }
