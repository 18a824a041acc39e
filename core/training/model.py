"""Builds the network from a TrainConfig, in the named phases of the Keras fine-tuning guide.

`build_model(config)` makes input pipeline + base + head and freezes the base when asked;
`unfreeze(model, ...)` opens the top blocks for fine-tuning while every BatchNormalization stays
frozen; `compile_model` is called again after unfreezing, at the lower fine-tuning rate. With a
frozen base, `fold_frozen_batchnorm` folds the BatchNorm of every convolution no phase trains into
that convolution: the same network, faster on a CPU.

The model takes CIFAR's own 32 px images (uint8, or floats in 0..255): augmentation and the
resize to `image_size` are its first layers, so they run on the accelerator inside the compiled
step and the host ships 3 KB per image instead of a float32 tensor at `image_size`. Checkpoints
written before that change take `image_size` floats resized on the host: `host_preprocessing`
says what the host must do for any model, old or new.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from core.data.augment import Augment
from core.data.cifar10 import IMAGE_SHAPE, NUM_CLASSES
from core.errors import CheckpointError
from core.settings.config import TrainConfig
from core.settings.variants import get_variant
from core.training import backend
from core.training.weights import WeightsUnavailableError, resolve_weights, weights_error

HEAD_LAYER_PREFIX = "head_"
PREP_LAYER_PREFIX = "prep_"               # the in-model input pipeline: augment, resize
SEED_HEAD_UNITS = (1024, 512, 256, 128)   # the original notebook's Dense stack


def build_model(config: TrainConfig) -> keras.Model:
    """The EfficientNet base (flattened into one functional model) plus the chosen head.

    The base's layers live directly in the returned model (Keras guide: `input_tensor=`), so
    freezing, fine-tuning by block and Grad-CAM can all address them by name.
    """
    variant = get_variant(config.variant)
    constructor = getattr(keras.applications, variant.keras_constructor)
    inputs = keras.Input(IMAGE_SHAPE, name="image")     # float32: uint8 batches are cast in the graph
    x = _input_pipeline(inputs, config)
    try:
        base = constructor(include_top=False, weights=resolve_weights(config), input_tensor=x)
    except Exception as exc:  # Keras raises a bare Exception for URL failures
        if config.weights == "imagenet":
            raise weights_error(config, exc) from exc
        if config.weights != "none":
            raise WeightsUnavailableError(
                f"weights: {config.weights} could not be loaded into EfficientNet{variant.name.upper()} "
                f"without its top ({type(exc).__name__}: {str(exc)[:160]}). Give a Keras weights file "
                "of the same variant saved without the top, or use 'imagenet' or 'none'.") from exc
        raise
    _set_batchnorm_momentum(base, config.bn_momentum)
    _set_drop_connect_rate(base, config.drop_connect_rate)
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
        if config.fine_tune_from_start:
            unfreeze(model, config.fine_tune_from_block, depthwise=config.fine_tune_depthwise)
        if config.fold_frozen_batchnorm:
            model = fold_frozen_batchnorm(model, config)
    return model


def _set_batchnorm_momentum(base: keras.Model, momentum: float) -> None:
    # Keras' EfficientNet builds every BatchNormalization with momentum 0.99: from scratch, a few
    # hundred steps leave the moving statistics far from the batches' and validation at chance.
    # Read at call time and saved in each layer's config, so it holds for fit and checkpoints.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


KERAS_DROP_CONNECT_RATE = 0.2   # what keras.applications builds EfficientNet B0-B7 with


def _set_drop_connect_rate(base: keras.Model, rate: float) -> None:
    # Keras gives block b of n the rate 0.2 * b / n (Dropout layers named "block4a_drop" with
    # noise_shape (None, 1, 1, 1): a whole residual branch at a time), and its constructors do not
    # take another: rescale each. Read at call time and saved in the layer's config, like momentum.
    for layer in base.layers:
        if isinstance(layer, keras.layers.Dropout) and layer.name.endswith("_drop"):
            layer.rate = layer.rate * rate / KERAS_DROP_CONNECT_RATE


def _input_pipeline(inputs, config: TrainConfig):
    """Augment (training only) at the source size, then resize: what the host pipeline once did."""
    x = inputs
    if config.augment_flip or config.augment_crop_padding:
        x = Augment(flip=config.augment_flip, pad=config.augment_crop_padding, seed=config.seed,
                    name=f"{PREP_LAYER_PREFIX}augment")(x)
    if config.image_size != IMAGE_SHAPE[0]:
        x = keras.layers.Resizing(config.image_size, config.image_size, interpolation="bilinear",
                                  name=f"{PREP_LAYER_PREFIX}resize")(x)
    return x


def resize_layer(model: keras.Model) -> keras.layers.Resizing | None:
    """The in-model resize to `image_size`; None where the model takes CIFAR's 32 px as they are."""
    for layer in model.layers:
        if layer.name == f"{PREP_LAYER_PREFIX}resize":
            return layer
    return None


def set_training_size(model: keras.Model, size: int) -> None:
    """Makes the in-model resize produce `size` px from the next trace of a step on: progressive
    resizing (core.training.train.ProgressiveResize). Convolutions and global pooling do not care about the
    size, and the functional graph runs its layers on whatever shape arrives; checkpoints save the
    layer's size, so it must be back at `image_size` whenever one is written."""
    layer = resize_layer(model)
    layer.height = layer.width = int(size)


def host_preprocessing(model: keras.Model, config: TrainConfig) -> dict:
    """What the host pipeline (core.data.cifar10.make_dataset) must do for `model`, as keyword arguments.

    Nothing for a model built by this code: it augments and resizes itself. A checkpoint written
    before augmentation and resizing moved into the model takes images at `image_size`, so the
    host resizes them (and augments them, as it did when that checkpoint was trained).
    """
    side = int(model.inputs[0].shape[1])
    layer_names = {layer.name for layer in model.layers}
    augments_itself = f"{PREP_LAYER_PREFIX}augment" in layer_names
    builds_own_input = side == IMAGE_SHAPE[0] and (augments_itself or not (
        config.augment_flip or config.augment_crop_padding))
    if builds_own_input:
        return {}
    return {"image_size": side, "augment_flip": config.augment_flip and not augments_itself,
            "crop_padding": 0 if augments_itself else config.augment_crop_padding}


def base_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers
            if not layer.name.startswith((HEAD_LAYER_PREFIX, PREP_LAYER_PREFIX))
            and not isinstance(layer, keras.layers.InputLayer)]


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    for layer in base_layers(model):
        layer.trainable = trainable


def _block_number(layer_name: str) -> int | None:
    # EfficientNet names its layers stem_*, block{1..7}{a..}_*, top_*.
    if layer_name.startswith("block") and layer_name[5:6].isdigit():
        return int(layer_name[5])
    return None


def unfreeze(model: keras.Model, from_block: int = 1, depthwise: bool = True) -> None:
    """Opens blocks `from_block`..7 and the top conv for fine-tuning; BatchNorm stays frozen, and
    so do the depthwise kernels unless `depthwise` (TensorFlow's CPU gradients for them cost more
    than the whole forward pass: docs/RECIPES.md).

    BatchNormalization stays in inference mode because its moving statistics were learnt on
    ImageNet: small CIFAR batches would overwrite them in a few steps and undo what the base
    knows (Keras fine-tuning guide). With our converted B0 weights BN is folded, which makes
    this mandatory rather than merely wise.
    """
    for layer in base_layers(model):
        layer.trainable = _opened_by_unfreeze(layer, from_block, depthwise)


def _opened_by_unfreeze(layer: keras.layers.Layer, from_block: int, depthwise: bool) -> bool:
    block = _block_number(layer.name)
    in_range = (block is not None and block >= from_block) or layer.name.startswith("top_") \
        or (from_block == 1 and layer.name.startswith("stem_"))
    is_bn = isinstance(layer, keras.layers.BatchNormalization)
    kept = not depthwise and isinstance(layer, keras.layers.DepthwiseConv2D)
    return in_range and not is_bn and not kept


# Keras' EfficientNet names each BatchNormalization after the convolution it follows.
_BN_SUFFIX_AFTER_CONV = (("expand_bn", "expand_conv"), ("project_bn", "project_conv"),
                         ("stem_bn", "stem_conv"), ("top_bn", "top_conv"), ("_bn", "_dwconv"))
_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _convolution_before(bn_name: str) -> str | None:
    for bn_suffix, conv_suffix in _BN_SUFFIX_AFTER_CONV:
        if bn_name.endswith(bn_suffix):
            return bn_name[: -len(bn_suffix)] + conv_suffix
    return None


def _stays_frozen(layer: keras.layers.Layer, config: TrainConfig) -> bool:
    """Whether a base layer of a `freeze_base` run is frozen in every phase the run can reach."""
    fine_tunes = config.fine_tune_from_start or config.fine_tune_at_epoch > 0
    return not (fine_tunes and _opened_by_unfreeze(layer, config.fine_tune_from_block, config.fine_tune_depthwise))


def fold_frozen_batchnorm(model: keras.Model, config: TrainConfig) -> keras.Model:
    """The same network with each frozen BatchNormalization folded into the frozen convolution
    before it: the convolution's kernel takes the scale and a new bias the shift, and the
    BatchNormalization becomes an Identity of the same name. The outputs are the same (to float
    rounding); training and prediction are faster.

    Frozen BatchNorm is an affine map per channel, y = conv(x) * s + (beta - mean * s) with
    s = gamma / sqrt(variance + epsilon), which TensorFlow's CPU kernels run as two passes over
    every activation map (a Mul and an Add): at 120 px they were a tenth of a training step and a
    fifth of a prediction (docs/RECIPES.md, table M). Only convolutions that no phase of the run
    trains are folded: a trainable kernel with the scale inside it would take other Adam steps.
    Layer names stay, so fine-tuning by block, Grad-CAM and the Inside page find what they look for.
    """
    layers = {layer.name: layer for layer in model.layers}
    conv_of_bn = {}
    for layer in base_layers(model):
        conv = layers.get(_convolution_before(layer.name) or "")
        if isinstance(layer, keras.layers.BatchNormalization) and isinstance(conv, _CONVOLUTIONS) \
                and _stays_frozen(conv, config):
            conv_of_bn[layer.name] = conv
    if not conv_of_bn:
        return model
    bn_of_conv = {conv.name: layers[bn] for bn, conv in conv_of_bn.items()}

    def clone(layer):
        if layer.name in conv_of_bn:
            return keras.layers.Identity(name=layer.name)
        layer_config = layer.get_config()
        if layer.name in bn_of_conv:
            layer_config["use_bias"] = True
        return layer.__class__.from_config(layer_config)

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Identity):
            kwargs.pop("mask", None)     # the graph recorded BatchNormalization's call, which takes one
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in folded.layers:
        original = layers[layer.name]
        if layer.name in bn_of_conv:
            layer.set_weights(_folded_weights(original, bn_of_conv[layer.name]))
        elif layer.weights:
            layer.set_weights(original.get_weights())
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()   # its mean and variance are read from the weights only here
        layer.trainable = original.trainable
    return folded


def _folded_weights(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> list:
    value = keras.ops.convert_to_numpy
    gamma = value(bn.gamma) if bn.scale else 1.0
    beta = value(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(value(bn.moving_variance) + bn.epsilon)
    kernel = conv.get_weights()[0]
    # Conv2D kernels are (h, w, in, out); DepthwiseConv2D's (h, w, channels, multiplier=1).
    per_channel = (1, 1, -1, 1) if isinstance(conv, keras.layers.DepthwiseConv2D) else (1, 1, 1, -1)
    return [kernel * scale.reshape(per_channel), beta - value(bn.moving_mean) * scale]


def make_optimizer(config: TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def use_jit_compile(setting: str) -> bool:
    """XLA for the train step: "on", "off", or "auto" = on a GPU, and always under JAX.

    TensorFlow on this 2-core CPU ran 4.7x slower with XLA (DESIGN.md), so auto leaves it off
    there. JAX has no graph mode of its own: without jit every op is dispatched one by one.
    """
    if setting != "auto":
        return setting == "on"
    return backend.name() == "jax" or bool(backend.gpu_devices())


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
