"""What the model looked at: Grad-CAM on a feature map, or SmoothGrad on the input pixels.

Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391) weights the channels of one convolutional
feature map by the spatial mean of the class score's gradient and keeps the positive part. It needs
a feature map that still has spatial extent: an EfficientNet at CIFAR's 32 px is 1×1 from block 6
on, and 2×2 in blocks 4b-5, which says no more than "which quadrant". So `grad_cam_layer` picks
the *last* layer whose output is at least `MIN_CAM_SIZE` pixels on a side and that every path from
input to output passes through (a cut of the graph: a map inside a residual block would miss what
its skip connection carries). For B0 at 32 px that is `block4a_expand_activation`, 4×4×240; at
64 px `block6a_expand_activation`, 4×4×672; at 224 px `top_activation`, 7×7×1280. The model's own
input layers (augment, resize) are skipped; maps come back at the model's input size (32 px for
models that resize inside, `image_size` for older checkpoints).

SmoothGrad (Smilkov et al., 2017, arXiv:1706.03825) averages the input gradient over noisy copies
of the image: per-pixel detail at the input's own resolution, with no layer to choose. `explain`
uses Grad-CAM when a layer qualifies and SmoothGrad otherwise.

The class score is the logit (pre-softmax) when the model ends in a softmax Dense layer, as in
the Grad-CAM paper, so a confident prediction does not saturate the gradient; otherwise it is the
model's output for the class. Everything runs in inference mode (dropout off, BatchNorm frozen)
and SmoothGrad's noise is seeded, so the same call gives the same map.
TensorFlow is imported inside the functions: it costs seconds, and importing this module is free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CAM_SIZE = 4            # px per side of the Grad-CAM feature map; 2×2 says only "which quadrant"
SMOOTHGRAD_SAMPLES = 24
SMOOTHGRAD_NOISE = 0.15     # noise std as a fraction of the input range (0..255), as in the paper
METHODS = ("auto", "grad-cam", "smoothgrad")
# Input plumbing, not features: padding, dropout, scaling, and the model's own augment and resize.
_SKIPPED_LAYER_TYPES = ("InputLayer", "ZeroPadding2D", "Dropout", "SpatialDropout2D",
                        "Rescaling", "Normalization", "Augment", "Resizing")


@dataclass(frozen=True, eq=False)
class Saliency:
    """A heat map over the model's input image and how it was made."""

    heatmap: np.ndarray      # float32 (H, W) in [0, 1] at the model's input size; 1 = most important
    method: str              # "grad-cam" or "smoothgrad"
    class_index: int         # the class whose score was explained
    layer: str | None        # Grad-CAM's layer name (None for SmoothGrad)
    layer_shape: tuple[int, ...] | None  # (h, w, channels) of that layer's output
    description: str         # one sentence for the page


def input_size(model) -> tuple[int, int]:
    """(height, width) the model takes."""
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[2])


def prepare_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 (h, w, 3) image as the model saw it in evaluation: float32 0..255 with a batch axis.

    Models built by core.training.model take CIFAR's 32 px and resize inside, so a 32 px image passes
    unchanged; for a checkpoint from before that (input = its image_size) the image is resized
    bilinearly to `size`, as the host pipeline fed it (core.data.cifar10.make_dataset)."""
    import tensorflow as tf
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one (h, w, 3) image, got shape {image.shape}")
    x = tf.cast(tf.convert_to_tensor(image)[None], tf.float32)
    if tuple(image.shape[:2]) != tuple(size):
        x = tf.image.resize(x, size, method="bilinear")
    return x.numpy()


def _positions(model) -> tuple[list, dict[int, int]]:
    layers = list(model.layers)
    return layers, {id(layer): i for i, layer in enumerate(layers)}


def _inbound(layer) -> list:
    sources = []
    for node in getattr(layer, "_inbound_nodes", []):
        for tensor in node.input_tensors:
            history = getattr(tensor, "_keras_history", None)
            if history is not None:
                sources.append(history[0])
    return sources


def _cut_positions(model) -> set[int]:
    """Positions (in topological order) of the layers every input-to-output path goes through.

    In a topological order a layer is on every path exactly when no edge jumps over it: an edge
    u -> v with pos(u) < pos(layer) < pos(v) is a path around it, and without one every path
    must step onto it.
    """
    layers, pos = _positions(model)
    jumped = np.zeros(len(layers) + 1, dtype=np.int64)   # difference array of jumped-over spans
    for i, layer in enumerate(layers):
        for source in _inbound(layer):
            j = pos.get(id(source))
            if j is not None and i - j > 1:
                jumped[j + 1] += 1
                jumped[i] -= 1
    covered = np.cumsum(jumped)[:len(layers)]
    return {i for i in range(len(layers)) if covered[i] == 0}


def grad_cam_layer(model, min_size: int = MIN_CAM_SIZE) -> str | None:
    """Name of the layer Grad-CAM should use, or None when no layer qualifies.

    The last layer (in topological order) whose output is a 4-D feature map at least `min_size`
    on each side and that every path from input to output passes through. Padding, dropout and
    input-scaling layers are skipped.
    """
    layers, _ = _positions(model)
    cuts = _cut_positions(model)
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        if i not in cuts or type(layer).__name__ in _SKIPPED_LAYER_TYPES:
            continue
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] is not None and shape[2] is not None \
                and min(int(shape[1]), int(shape[2])) >= min_size:
            return layer.name
    return None


def _score_model(model, layer_name: str | None):
    """A model giving (feature map or None, class scores); scores are logits when it can."""
    import keras
    last = model.layers[-1]
    use_logits = isinstance(last, keras.layers.Dense) and \
        getattr(last.activation, "__name__", "") == "softmax"
    score_tensor = last.input if use_logits else model.outputs[0]
    outputs = [score_tensor] if layer_name is None else [model.get_layer(layer_name).output, score_tensor]
    sub = keras.Model(model.inputs, outputs)
    return sub, (last if use_logits else None)


def _class_scores(score, dense):
    import tensorflow as tf
    score = tf.cast(score, tf.float32)
    if dense is None:
        return score
    return tf.matmul(score, tf.cast(dense.kernel, tf.float32)) + tf.cast(dense.bias, tf.float32)


def _normalised(heat: np.ndarray) -> np.ndarray:
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heat = np.maximum(heat, 0.0)
    top = float(heat.max())
    return (heat / top).astype(np.float32) if top > 0 else np.zeros_like(heat, dtype=np.float32)


def _check_class(model, class_index: int) -> int:
    n = int(model.outputs[0].shape[-1])
    if isinstance(class_index, bool) or not 0 <= int(class_index) < n:
        raise ValueError(f"class_index must be in 0..{n - 1}, got {class_index!r}")
    return int(class_index)


def grad_cam(model, image: np.ndarray, class_index: int, layer_name: str | None = None) -> Saliency:
    """Grad-CAM for one image and one class.

    Args:
        model: A Keras functional model (a run's checkpoint, or any image classifier).
        image: uint8 (h, w, 3); resized to the model's input as in evaluation.
        class_index: The class whose evidence to show (e.g. the predicted one).
        layer_name: The feature map to use; default `grad_cam_layer(model)`.

    Returns:
        A `Saliency` whose heatmap is upsampled (bilinear) to the model's input size. An all-zero
        map means no part of the feature map argued *for* the class (`explain` then falls back
        to SmoothGrad).

    Raises:
        ValueError: When no layer has spatial extent (use `smoothgrad`), or on a bad class.
    """
    import tensorflow as tf
    class_index = _check_class(model, class_index)
    layer_name = layer_name or grad_cam_layer(model)
    if layer_name is None:
        raise ValueError(f"no feature map of at least {MIN_CAM_SIZE}×{MIN_CAM_SIZE} in this model "
                         "at its input size; use smoothgrad")
    size = input_size(model)
    x = tf.convert_to_tensor(prepare_image(image, size))
    sub, dense = _score_model(model, layer_name)
    with tf.GradientTape() as tape:
        features, score = sub(x, training=False)
        target = _class_scores(score, dense)[:, class_index]
    # The gradient is taken at the layer's own output: under mixed precision that is float16, and a
    # float32 copy made here would lie off the path to the score (its gradient would be None).
    grads = tf.cast(tape.gradient(target, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)           # (1, 1, 1, C)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]  # (1, h, w, 1)
    cam = tf.image.resize(cam, size, method="bilinear")[0, ..., 0].numpy()
    shape = tuple(int(d) for d in features.shape[1:])
    heat = _normalised(cam)
    empty = "" if heat.any() else (": no region argues for this class, so the map is empty "
                                   "(SmoothGrad still shows which pixels move its score)")
    return Saliency(
        heatmap=heat, method="grad-cam", class_index=class_index, layer=layer_name,
        layer_shape=shape,
        description=f"Grad-CAM on {layer_name} ({shape[0]}×{shape[1]}×{shape[2]}), the last "
                    f"feature map at least {MIN_CAM_SIZE}×{MIN_CAM_SIZE} that all the evidence "
                    f"passes through, upsampled to the input{empty}")


def smoothgrad(model, image: np.ndarray, class_index: int, *, samples: int = SMOOTHGRAD_SAMPLES,
               noise: float = SMOOTHGRAD_NOISE, seed: int = 0) -> Saliency:
    """SmoothGrad: the mean absolute input gradient over `samples` noisy copies of the image.

    Args:
        model, image, class_index: As for `grad_cam`.
        samples: Noisy copies, evaluated as one batch.
        noise: Standard deviation of the Gaussian noise, as a fraction of 255.
        seed: Seeds the noise, so a call is repeatable.

    Returns:
        A `Saliency` at the model's input size (largest channel magnitude per pixel).
    """
    import tensorflow as tf
    class_index = _check_class(model, class_index)
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    size = input_size(model)
    x = prepare_image(image, size)
    rng = np.random.default_rng(seed)
    batch = x + rng.normal(0.0, noise * 255.0, size=(samples, *x.shape[1:])).astype(np.float32)
    batch = tf.convert_to_tensor(np.clip(batch, 0.0, 255.0))
    sub, dense = _score_model(model, None)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        score = sub(batch, training=False)
        target = tf.reduce_sum(_class_scores(score, dense)[:, class_index])
    grads = tape.gradient(target, batch).numpy()                   # (samples, H, W, 3)
    heat = np.abs(grads).mean(axis=0).max(axis=-1)
    return Saliency(
        heatmap=_normalised(heat), method="smoothgrad", class_index=class_index, layer=None,
        layer_shape=None,
        description=f"SmoothGrad: how much each input pixel moves the class score, averaged over "
                    f"{samples} noisy copies of the image (noise σ = {noise:.0%} of the range)")


def explain(model, image: np.ndarray, class_index: int, method: str = "auto") -> Saliency:
    """A saliency map by `method`; "auto" is Grad-CAM when the model has a feature map with
    spatial extent and some region argues for the class, and SmoothGrad otherwise."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "smoothgrad" or (method == "auto" and grad_cam_layer(model) is None):
        return smoothgrad(model, image, class_index)
    result = grad_cam(model, image, class_index)
    if method == "auto" and not result.heatmap.any():
        return smoothgrad(model, image, class_index)
    return result
