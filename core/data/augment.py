"""Augmentation as a layer inside the model, so it runs on the accelerator in the compiled step.

`Augment` is the host pipeline's old flip + "reflect-pad by N px, random-crop back" moved into
the graph, written in `keras.ops` (so it runs under TensorFlow and JAX). Keras's own
`RandomTranslation` would do the translate, but it sets `supports_jit = False`, and one such layer
makes Keras silently compile the whole model without XLA; this layer is one gather, which XLA
compiles. Both augmentations happen at the source resolution, before the resize, as they did on
the host. The layer is active only when called with `training=True` (fit); predict, evaluate,
saliency and try-your-own-image see the image unchanged.

Registered with Keras's serialisation, so a saved model reloads under `safe_mode=True` wherever
this module has been imported (core.training.model imports it).
"""

from __future__ import annotations

import keras
from keras import ops


def _reflect(index, size: int):
    """numpy's "reflect" padding as index arithmetic: -1 -> 1, size -> size - 2."""
    last = size - 1
    return last - ops.abs(last - ops.abs(index))


@keras.saving.register_keras_serializable(package="efflab")
class Augment(keras.layers.Layer):
    """Random horizontal flip and random translate by up to `pad` px (reflect-padded), per image.

    Args:
        flip: Mirror each image left-right with probability 1/2.
        pad: Shift each image by an integer in [-pad, pad] px on each axis, filling what comes
            in with the reflection of the edge (the old pad + random crop, exactly).
        seed: Seeds the layer's random stream: the same seed gives the same augmentations.
    """

    def __init__(self, flip: bool = True, pad: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(pad) < 0:
            raise ValueError(f"pad: expected a whole number >= 0; got {pad!r}")
        self.flip, self.pad, self.seed = bool(flip), int(pad), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not (self.flip or self.pad):
            return images
        shape = ops.shape(images)
        n, height, width = shape[0], images.shape[1], images.shape[2]
        u = keras.random.uniform((n, 3), seed=self.seed_generator)
        rows = ops.broadcast_to(ops.arange(height, dtype="int32")[None, :], (n, height))
        cols = ops.broadcast_to(ops.arange(width, dtype="int32")[None, :], (n, width))
        if self.pad:
            shift = ops.minimum(ops.cast(u[:, 1:] * (2 * self.pad + 1), "int32"), 2 * self.pad) - self.pad
            rows = _reflect(rows + shift[:, :1], height)
            cols = _reflect(cols + shift[:, 1:], width)
        if self.flip:
            cols = ops.where(u[:, :1] < 0.5, ops.flip(cols, axis=1), cols)
        channels = images.shape[3]
        images = ops.take_along_axis(
            images, ops.broadcast_to(rows[:, :, None, None], (n, height, width, channels)), axis=1)
        return ops.take_along_axis(
            images, ops.broadcast_to(cols[:, None, :, None], (n, height, width, channels)), axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "pad": self.pad, "seed": self.seed}
