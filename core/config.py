"""TrainConfig: every setting of a training run, typed and validated.

nanoGPT's flat defaults plus checked overrides, minus its `exec`: a dataclass whose every field
is validated with a message that names the field, the allowed values and the value given, so
the CLI, the dashboard and a hand-edited JSON file all fail the same readable way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Any

from core.variants import VARIANT_NAMES

WEIGHTS_CHOICES = ("none", "imagenet")       # or a path to a weights file
HEADS = ("gap", "seed")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "plateau", "cosine")
MIXED_PRECISION = ("auto", "on", "off")
DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 600
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 1000
CIFAR_TRAIN_IMAGES = 50_000
# batch × pixels per image beyond which one step cannot fit any machine we target (B7 at 600 px
# with batch 4096 would need terabytes of activations): 64 Mi pixels is e.g. batch 186 at 600 px.
MAX_PIXELS_PER_BATCH = 64 * 1024 * 1024
# A `seed` head flattens the final feature map into a Dense(1024): beyond this many weights in that
# one layer the run is still allowed, but the form and CLI warn.
SEED_HEAD_WARN_WEIGHTS = 20_000_000


class ConfigError(ValueError):
    """A setting is invalid; `field` names it and the message says what is allowed."""

    def __init__(self, field: str, allowed: str, given: Any, hint: str = ""):
        self.field = field
        message = f"{field}: expected {allowed}; got {given!r}"
        super().__init__(message + (f". {hint}" if hint else ""))


@dataclass
class TrainConfig:
    """A training run's settings. Defaults give a quick, sound B0 run at CIFAR's native 32 px."""

    variant: str = "b0"
    weights: str = "none"              # none | imagenet | path to a .h5/.weights.h5 file
    image_size: int = 32               # images are resized to this in the input pipeline
    head: str = "gap"                  # gap: pool + dropout + dense; seed: the notebook's Flatten + MLP
    dropout: float = -1.0              # before the classifier; -1 = the variant's own rate
    freeze_base: bool = False          # train only the head on a frozen base ...
    fine_tune_at_epoch: int = 0        # ... until this many epochs are done, then unfreeze (0 = never;
                                       # beyond `epochs` it happens if the run is resumed that far)
    fine_tune_from_block: int = 1      # unfreeze blocks N..7 and the top conv (1 = the whole base)
    fine_tune_learning_rate: float = 1e-4
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9              # sgd only
    weight_decay: float = 0.0          # adamw's decoupled decay; L2-free for sgd/adam
    batch_size: int = 128
    epochs: int = 4
    lr_schedule: str = "constant"
    plateau_factor: float = 0.5        # plateau: multiply the rate by this ...
    plateau_patience: int = 1          # ... after this many epochs without a better val_accuracy
    min_learning_rate: float = 1e-6
    warmup_epochs: int = 0             # cosine: linear warm-up epochs before the decay
    early_stopping_patience: int = 0   # epochs without a better val_accuracy before stopping; 0 = off
    augment_flip: bool = True
    augment_crop_padding: int = 4      # pad by N px and random-crop back to 32 (a random translate)
    label_smoothing: float = 0.0
    train_limit: int = 0               # use only N training images, stratified; 0 = all
    val_fraction: float = 0.1
    seed: int = 42
    mixed_precision: str = "auto"      # auto = on only for NVIDIA GPUs of compute capability >= 7.0
    distribution: str = "auto"         # auto = MirroredStrategy when more than one GPU is visible

    def __post_init__(self) -> None:
        validate(self)

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Builds a config from a dict, rejecting unknown keys and wrong types by name."""
        if not isinstance(data, dict):
            raise ConfigError("config", "a JSON object of settings", type(data).__name__)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"one of the known settings ({', '.join(sorted(known))})",
                              data[unknown[0]], hint="unknown setting")
        return cls(**{k: _coerce(k, v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", "valid JSON", text[:60], hint=str(exc)) from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with `changes` applied (unknown names rejected like from_dict)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    # --- derived values ----------------------------------------------------------------------
    @property
    def classifier_dropout(self) -> float:
        from core.variants import get_variant
        return get_variant(self.variant).dropout if self.dropout < 0 else self.dropout

    @property
    def has_fine_tune_phase(self) -> bool:
        return self.has_fine_tune_phase_within(self.epochs)

    def has_fine_tune_phase_within(self, epochs: int) -> bool:
        """Whether a run trained (or resumed) to `epochs` in total reaches its fine-tuning phase."""
        return self.freeze_base and 0 < self.fine_tune_at_epoch < epochs

    def warnings(self) -> list[str]:
        """Settings that are allowed but probably not what the user wants."""
        notes = []
        feature = _final_feature_size(self.image_size)
        if self.head == "seed":
            flatten_weights = feature * feature * _top_channels(self.variant) * 1024
            if flatten_weights > SEED_HEAD_WARN_WEIGHTS:
                notes.append(
                    f"head 'seed' at {self.image_size} px flattens a {feature}×{feature} feature map "
                    f"into Dense(1024): {flatten_weights / 1e6:.0f}M weights in one layer; "
                    "use head 'gap' at this size")
        if self.weights == "none" and self.head == "seed":
            notes.append("the notebook's recipe (seed head, SGD) stays at chance (~10%) without "
                         "ImageNet weights, as we measured; use weights 'imagenet' or head 'gap'")
        if self.freeze_base and self.weights == "none":
            notes.append("freeze_base with random weights trains only the head on random features")
        if self.image_size > 64:
            notes.append(f"{self.image_size} px is GPU territory: B0 at 224 px trains ~10 images/s on a CPU")
        return notes


_INT_FIELDS = {f.name for f in fields(TrainConfig) if f.type == "int"}
_FLOAT_FIELDS = {f.name for f in fields(TrainConfig) if f.type == "float"}
_BOOL_FIELDS = {f.name for f in fields(TrainConfig) if f.type == "bool"}


def _coerce(name: str, value: Any) -> Any:
    """Accepts an int where a float is expected (JSON writes 1.0 as 1); nothing else is coerced."""
    if name in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _final_feature_size(image_size: int) -> int:
    # Five stride-2 stages with "same" padding: ceil(size / 32).
    return max(1, math.ceil(image_size / 32))


def _top_channels(variant: str) -> int:
    from core.variants import get_variant
    return int(round(1280 * get_variant(variant).width / 8) * 8) if variant in VARIANT_NAMES else 1280


def _check_type(config: TrainConfig, name: str) -> None:
    value = getattr(config, name)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ConfigError(name, "true or false", value)
    elif name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, "a whole number", value)
    elif name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(name, "a finite number", value)
    elif not isinstance(value, str):
        raise ConfigError(name, "text", value)


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ConfigError(name, f"a number in {bracket}{low:g}, {high:g}]", value)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"one of {', '.join(choices)}", value)


def validate(config: TrainConfig) -> None:
    """Raises ConfigError for the first invalid field, in declaration order, then combinations."""
    for f in fields(config):
        _check_type(config, f.name)
    c = config
    _check_choice("variant", c.variant, VARIANT_NAMES)
    if c.weights not in WEIGHTS_CHOICES and not os.path.isfile(c.weights):
        raise ConfigError("weights", "none, imagenet, or the path of an existing weights file", c.weights)
    _check_range("image_size", c.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    _check_choice("head", c.head, HEADS)
    if c.dropout != -1.0:
        _check_range("dropout", c.dropout, 0.0, 0.9)
    _check_range("fine_tune_at_epoch", c.fine_tune_at_epoch, 0, MAX_EPOCHS)
    _check_range("fine_tune_from_block", c.fine_tune_from_block, 1, 7)
    _check_range("fine_tune_learning_rate", c.fine_tune_learning_rate, 0.0, 10.0, low_open=True)
    _check_choice("optimizer", c.optimizer, OPTIMIZERS)
    _check_range("learning_rate", c.learning_rate, 0.0, 10.0, low_open=True)
    _check_range("momentum", c.momentum, 0.0, 0.999)
    _check_range("weight_decay", c.weight_decay, 0.0, 1.0)
    _check_range("batch_size", c.batch_size, 1, MAX_BATCH_SIZE)
    _check_range("epochs", c.epochs, 1, MAX_EPOCHS)
    _check_choice("lr_schedule", c.lr_schedule, LR_SCHEDULES)
    _check_range("plateau_factor", c.plateau_factor, 0.0, 0.99, low_open=True)
    _check_range("plateau_patience", c.plateau_patience, 0, 100)
    _check_range("min_learning_rate", c.min_learning_rate, 0.0, 1.0)
    _check_range("warmup_epochs", c.warmup_epochs, 0, MAX_EPOCHS)
    _check_range("early_stopping_patience", c.early_stopping_patience, 0, MAX_EPOCHS)
    _check_range("augment_crop_padding", c.augment_crop_padding, 0, 16)
    _check_range("label_smoothing", c.label_smoothing, 0.0, 0.5)
    _check_range("train_limit", c.train_limit, 0, CIFAR_TRAIN_IMAGES)
    _check_range("val_fraction", c.val_fraction, 0.0, 0.5)
    _check_range("seed", c.seed, 0, 2**31 - 1)
    _check_choice("mixed_precision", c.mixed_precision, MIXED_PRECISION)
    _check_choice("distribution", c.distribution, DISTRIBUTIONS)
    _validate_combinations(c)


def _validate_combinations(c: TrainConfig) -> None:
    if c.train_limit and c.train_limit < 10:
        raise ConfigError("train_limit", "0 (all images) or at least 10 (one per class)", c.train_limit)
    if c.fine_tune_at_epoch and not c.freeze_base:
        raise ConfigError("fine_tune_at_epoch", "0 unless freeze_base is true (nothing to unfreeze)",
                          c.fine_tune_at_epoch)
    if c.lr_schedule == "cosine" and c.warmup_epochs >= c.epochs:
        raise ConfigError("warmup_epochs", f"fewer than epochs ({c.epochs}) for a cosine schedule",
                          c.warmup_epochs)
    if c.early_stopping_patience and c.val_fraction == 0:
        raise ConfigError("early_stopping_patience", "0 when val_fraction is 0 (nothing to watch)",
                          c.early_stopping_patience)
    if c.lr_schedule == "plateau" and c.val_fraction == 0:
        raise ConfigError("lr_schedule", "constant or cosine when val_fraction is 0 (plateau watches "
                          "val_accuracy)", c.lr_schedule)
    pixels = c.batch_size * c.image_size * c.image_size
    if pixels > MAX_PIXELS_PER_BATCH:
        largest = MAX_PIXELS_PER_BATCH // (c.image_size * c.image_size)
        raise ConfigError("batch_size", f"at most {largest} at {c.image_size} px "
                          "(batch_size × image_size² must fit in memory)", c.batch_size)
