"""Inside the network: what each stage of a run's EfficientNet computes for one image.

One forward pass through a multi-output view of the trained model returns, for one uint8 32×32
image: the input as the network's first convolution receives it (after any resizing, rescaling
and normalisation inside the model), the stem, the output of each of the seven blocks (the last
layer of each block, e.g. `block2b_add` or `block1a_project_bn`), the top convolution, the pooled
vector and the probabilities. For each feature map it keeps the size, the channel count and the
few most active channels, which is what the "Inside the network" page draws.

`core.training.model.build_model` puts the Keras EfficientNet's layers directly in the run's model
(`input_tensor=`), so the stages are found by Keras's own layer names: `stem_activation`,
`block{1..7}{a,b,...}_*`, `top_activation`, then our `head_*` layers.

`feature_map_sizes` is the same lesson without a model: the side of each stage's map for an input
size. At CIFAR's 32 px the maps are 2×2 by block 4 and 1×1 from block 6 on; at the variant's
native 224 px they are still 7×7 at the end, which is why resolution is one of the three things
compound scaling grows. TensorFlow/Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from core.analysis.saliency import input_size, prepare_image
from core.settings.variants import get_variant

TOP_CHANNELS = 8                 # the most active channels shown per stage
BLOCKS = 7
# EfficientNet-B0's baseline (Tan & Le, Table 1; keras applications/efficientnet.py DEFAULT_BLOCKS_ARGS):
# stride and output channels of the stem, of each of the seven blocks and of the top convolution.
STEM_STRIDE, STEM_CHANNELS = 2, 32
BLOCK_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BLOCK_CHANNELS = (16, 24, 40, 80, 112, 192, 320)
TOP_CHANNELS_BASE = 1280
_BLOCK_NAME = re.compile(r"^block(\d)[a-z]_")


@dataclass(frozen=True)
class StageSize:
    """One stage's feature map for an input size: side × side × channels."""

    key: str        # "stem", "block1" … "block7", "top"
    side: int       # height = width of the map, px
    channels: int


@dataclass(frozen=True, eq=False)
class Stage:
    """What one stage computed for the image."""

    key: str                        # "input", "stem", "block1" … "block7", "top", "pooled", "probabilities"
    title: str                      # "Block 3"
    layer: str                      # the Keras layer whose output this is
    shape: tuple[int, ...]          # (h, w, channels) for maps, (n,) for vectors
    top_channels: tuple[int, ...]   # channel indices, most active first (maps only)
    maps: np.ndarray                # float32 (k, h, w): those channels' maps; the vector itself for vectors
    channel_means: np.ndarray       # float32 (channels,): each channel's mean activation

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    @property
    def caption(self) -> str:
        """"16×16 × 24 channels", or "1280 values" for a vector."""
        if self.is_map:
            return f"{self.shape[0]}×{self.shape[1]} × {self.shape[2]} channels"
        return f"{self.shape[0]} values"


@dataclass(frozen=True, eq=False)
class Inside:
    """The whole forward pass of one image."""

    image: np.ndarray               # float32 (h, w, 3) in [0, 1]: the input as the network sees it, for display
    input_range: tuple[float, float]  # min and max of that input before display scaling
    stages: tuple[Stage, ...]       # stem, block1..block7, top, pooled (feature maps, then the vector)
    probabilities: np.ndarray       # float64 (10,)

    def stage(self, key: str) -> Stage:
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise KeyError(f"no stage {key!r}; stages are {[s.key for s in self.stages]}")


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels after width scaling, rounded as Keras's EfficientNet rounds them."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:      # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def feature_map_sizes(image_size: int, variant: str = "b0") -> list[StageSize]:
    """The feature map of every stage for a square input of `image_size` px.

    Every strided convolution in EfficientNet pads "same"-style (ZeroPadding2D with Keras's
    `correct_pad`, then a valid convolution), so a stride-2 stage gives ceil(side / 2). Depth
    scaling repeats layers inside a block and never changes the strides; width scaling changes
    the channels.

    Args:
        image_size: The model's input side in pixels (1 or more).
        variant: "b0" … "b7"; sets the channel counts.

    Returns:
        StageSize for "stem", "block1" … "block7" and "top", in order.

    Raises:
        ValueError: image_size is not a positive integer, or the variant is unknown.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number of pixels; got {image_size!r}")
    width = get_variant(variant).width
    side = math.ceil(int(image_size) / STEM_STRIDE)
    sizes = [StageSize("stem", side, round_filters(STEM_CHANNELS, width))]
    for number, (stride, channels) in enumerate(zip(BLOCK_STRIDES, BLOCK_CHANNELS), start=1):
        side = math.ceil(side / stride)
        sizes.append(StageSize(f"block{number}", side, round_filters(channels, width)))
    sizes.append(StageSize("top", side, round_filters(TOP_CHANNELS_BASE, width)))
    return sizes


def first_block_at_1x1(image_size: int, variant: str = "b0") -> int | None:
    """The first block whose map is 1×1 at this input size, or None when none is."""
    for size in feature_map_sizes(image_size, variant):
        if size.key.startswith("block") and size.side == 1:
            return int(size.key[5:])
    return None


def stage_layers(model) -> list[tuple[str, str, str]]:
    """(key, title, layer name) of each stage of a run's model, in forward order.

    Raises:
        ValueError: The model is not an EfficientNet built by core.training.model (a layer is missing).
    """
    names = [layer.name for layer in model.layers]
    last_of_block: dict[int, str] = {}
    for name in names:          # model.layers is in topological order: the last one seen wins
        match = _BLOCK_NAME.match(name)
        if match:
            last_of_block[int(match.group(1))] = name
    missing = [n for n in ("stem_activation", "top_activation") if n not in names]
    missing += [f"block{n}" for n in range(1, BLOCKS + 1) if n not in last_of_block]
    if missing:
        raise ValueError(f"this model has no {', '.join(missing)} layer: it is not an EfficientNet "
                         "built by this lab, so its stages cannot be shown")
    stages = [("stem", "Stem", "stem_activation")]
    stages += [(f"block{n}", f"Block {n}", last_of_block[n]) for n in range(1, BLOCKS + 1)]
    stages.append(("top", "Top convolution", "top_activation"))
    pooled = _pooled_layer(model)
    if pooled is not None:
        stages.append(("pooled", "Pooled vector", pooled))
    return stages


def _pooled_layer(model) -> str | None:
    """The layer that turns the last map into a vector: global average pooling, or Flatten."""
    import keras
    for kind in (keras.layers.GlobalAveragePooling2D, keras.layers.Flatten):
        for layer in model.layers:
            if isinstance(layer, kind) and not layer.name.startswith("block"):
                return layer.name
    return None


def _input_layer_name(model) -> str:
    """The first layer of the stem; its input is the image after the model's own preprocessing."""
    names = {layer.name for layer in model.layers}
    for name in ("stem_conv_pad", "stem_conv"):
        if name in names:
            return name
    raise ValueError("this model has no stem_conv layer: it is not an EfficientNet built by this lab")


def probe_model(model):
    """A keras.Model sharing `model`'s weights whose outputs are [stem input, *stages, probabilities]."""
    import keras
    tensors = [model.get_layer(_input_layer_name(model)).input]
    tensors += [model.get_layer(layer).output for _, _, layer in stage_layers(model)]
    tensors.append(model.outputs[0])
    return keras.Model(model.inputs, tensors, name=f"{model.name}_inside")


def _stage(key: str, title: str, layer: str, value: np.ndarray, top: int) -> Stage:
    value = np.asarray(value, dtype=np.float32)
    if value.ndim == 3:
        means = value.mean(axis=(0, 1))
        order = np.argsort(-means, kind="stable")[:top]
        maps = np.moveaxis(value[:, :, order], -1, 0)
        return Stage(key, title, layer, tuple(int(d) for d in value.shape), tuple(int(c) for c in order),
                     np.ascontiguousarray(maps), means)
    return Stage(key, title, layer, (int(value.shape[0]),), (), value, value)


def _display_image(x: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    low, high = float(x.min()), float(x.max())
    scaled = (x - low) / (high - low) if high > low else np.zeros_like(x)
    return scaled.astype(np.float32), (low, high)


def look_inside(model, image: np.ndarray, top: int = TOP_CHANNELS) -> Inside:
    """One forward pass of one image through a run's model, stage by stage.

    Args:
        model: A Keras model built by core.training.model (as loaded from a run's checkpoint).
        image: uint8 (32, 32, 3), a CIFAR-10 image; it is prepared exactly as a test image is
            (core.analysis.saliency.prepare_image: resized bilinearly to the model's input).
        top: How many of the most active channels to keep per feature map.

    Returns:
        An `Inside` with the displayable input, the stages and the probabilities.

    Raises:
        ValueError: The image is not (h, w, 3), `top` is below 1, or the model is not an
            EfficientNet built by this lab.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be one (height, width, 3) picture; got shape {image.shape}")
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a whole number of channels, 1 or more; got {top!r}")
    probe = probe_model(model)
    outputs = probe([prepare_image(image.astype(np.uint8), input_size(model))], training=False)
    values = [np.asarray(output)[0] for output in outputs]
    shown, value_range = _display_image(values[0])
    stages = tuple(_stage(key, title, layer, value, int(top))
                   for (key, title, layer), value in zip(stage_layers(model), values[1:-1]))
    return Inside(shown, value_range, stages, np.asarray(values[-1], dtype=np.float64))
