"""TrainConfig: every setting of a training run, declared once, typed and validated.

nanoGPT's flat defaults plus checked overrides, minus its `exec`: a dataclass whose every field
carries its declaration (`setting(...)`: type, bounds, choices, help text, group and widget
hints). Validation, the CLI's flags (core/__main__.py) and the dashboard's form
(dashboard/train_form.py) are generated from it, so adding a setting is one edit here, and the
CLI, the dashboard and a hand-edited JSON file all fail the same readable way.

What needs the machine (does the weights file exist?) is not part of reading a config: a run
copied to another machine must still be listed. `check_startable` checks it when a run starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import UserInputError
from core.variants import VARIANT_NAMES

GROUPS = ("model", "optimisation", "schedule", "data", "hardware")
WEIGHTS_CHOICES = ("none", "imagenet")       # or a path to a weights file
# What Keras's load_weights can read (keras/src/saving/saving_api.py); anything else could never
# have been trained, so it is refused when read, without asking the file system.
WEIGHTS_SUFFIXES = (".h5", ".hdf5", ".keras", ".weights.json")
HEADS = ("gap", "seed")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "plateau", "cosine")
MIXED_PRECISION = ("auto", "on", "off")
JIT_COMPILE = ("auto", "on", "off")
DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 600
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 1000
CIFAR_TRAIN_IMAGES = 50_000
CIFAR_CLASSES = 10
# batch × pixels per image beyond which one step cannot fit any machine we target (B7 at 600 px
# with batch 4096 would need terabytes of activations): 64 Mi pixels is e.g. batch 186 at 600 px.
MAX_PIXELS_PER_BATCH = 64 * 1024 * 1024
# A `seed` head flattens the final feature map into a Dense(1024): beyond this many weights in that
# one layer the run is still allowed, but the form and CLI warn.
SEED_HEAD_WARN_WEIGHTS = 20_000_000
# Settings are flat: no value needs more than a couple of levels. Deeper JSON is refused before
# json.loads recurses into it (RecursionError at about 1,000 levels).
MAX_JSON_DEPTH = 32
MAX_JSON_CHARS = 1_000_000  # a settings file is a few hundred bytes; this bounds the scan below
MAX_SHOWN_CHARS = 240       # longer values (a pasted novel) are shown as their start and length


def _shown(given: Any) -> str:
    try:
        text = repr(given)
    except RecursionError:
        return "a value nested too deeply to show"
    except ValueError:   # an int beyond Python's 4,300-digit conversion limit
        return "an integer of more than 4,300 digits"
    if len(text) > MAX_SHOWN_CHARS:
        return f"{text[:MAX_SHOWN_CHARS - 20]}… ({len(text):,} characters)"
    return text


class ConfigError(UserInputError, ValueError):
    """A setting is invalid; `field` names it and the message says what is allowed."""

    def __init__(self, field: str, allowed: str, given: Any, hint: str = ""):
        self.field = field
        message = f"{field}: expected {allowed}; got {_shown(given)}"
        super().__init__(message + (f". {hint}" if hint else ""))


# --- declarations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """How one TrainConfig field is checked, explained and drawn.

    `low`/`high` bound a number (`low_open`: the low end itself is refused); `special` is one value
    allowed outside them (dropout's -1), and `special_text` what it means ("the variant's own").
    `choices` are the allowed texts; `form_choices` the subset the dashboard offers (the rest need
    the command line); `path_allowed` also accepts a file path. `only_when` = (field, values): the
    setting has an effect only while that field holds one of them (the form greys it out
    otherwise); `no_effect_when` = (field, values): it has none while that field holds one of them.
    `step` and `format` are hints for the number box; `slider` draws a short whole-number range as
    a slider instead.
    """

    label: str
    help: str
    group: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    special: float | None = None
    special_text: str = ""
    choices: tuple[str, ...] = ()
    choice_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    form_choices: tuple[str, ...] = ()
    path_allowed: bool = False
    only_when: tuple[str, tuple[Any, ...]] | None = None
    no_effect_when: tuple[str, tuple[Any, ...]] | None = None
    step: float | None = None
    format: str | None = None
    slider: bool = False

    def in_effect(self, value_of: Callable[[str], Any]) -> bool:
        """Whether this setting changes anything, given `value_of(field)` for the other settings."""
        if self.only_when is not None and value_of(self.only_when[0]) not in self.only_when[1]:
            return False
        return self.no_effect_when is None or value_of(self.no_effect_when[0]) not in self.no_effect_when[1]

    def range_text(self) -> str:
        """"a number in (0, 10]" for messages and help texts."""
        bracket = "(" if self.low_open else "["
        return f"a number in {bracket}{self.low:g}, {self.high:g}]"

    def allowed_text(self) -> str:
        """What the setting accepts, in words (the CLI's help says it)."""
        if self.path_allowed:
            return f"{', '.join(self.choices)}, or the path of a weights file ({', '.join(WEIGHTS_SUFFIXES)})"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None:
            extra = f" or {self.special:g}" if self.special is not None else ""
            return self.range_text() + extra
        return "true or false"


def setting(default: Any, label: str, help: str, group: str, **declared: Any) -> Any:
    """A dataclass field whose metadata declares the setting (see `Setting`)."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    return field(default=default, metadata={"setting": Setting(label=label, help=help, group=group, **declared)})


def declaration(name: str) -> Setting:
    """The declaration of TrainConfig field `name`."""
    return _FIELDS[name].metadata["setting"]


def value_text(name: str, value: Any) -> str | None:
    """What a setting's special value means ("the variant's own" for dropout -1); None for any
    other value, and for names that are not settings."""
    if name not in _FIELDS or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    declared = declaration(name)
    if declared.special is None or value != declared.special:
        return None
    return declared.special_text or None


def with_meaning(name: str, value: Any, shown: str) -> str:
    """`shown` (the value as a page writes it) followed by what a special value means:
    "-1 (the variant's own)"; `shown` alone for any other value."""
    meaning = value_text(name, value)
    return f"{shown} ({meaning})" if meaning else shown


def declared_fields() -> list[dataclasses.Field]:
    """TrainConfig's fields in declaration order (each with `.metadata["setting"]`)."""
    return list(_FIELDS.values())


def field_type(name: str) -> str:
    """"int", "float", "bool" or "str" (annotations are strings under `from __future__`)."""
    return str(_FIELDS[name].type)


@dataclass
class TrainConfig:
    """A training run's settings. Defaults give a quick, sound B0 run at CIFAR's native 32 px."""

    # --- model
    variant: str = setting("b0", "EfficientNet variant", "B0 is the smallest; each step up is wider, deeper and "
                           "made for larger images.", "model", choices=VARIANT_NAMES)
    weights: str = setting("none", "Initial weights", "ImageNet weights make a huge difference at 32 px: 76.6% vs "
                           "41% in our measurements. A file: a Keras .h5 or .weights.h5 file for this variant "
                           "without its top, e.g. a downloaded efficientnetb0_notop.h5.", "model",
                           choices=WEIGHTS_CHOICES, path_allowed=True,
                           choice_labels={"none": "random (from scratch)", "imagenet": "ImageNet-trained"})
    image_size: int = setting(32, "Image size (px)", "CIFAR-10 images are 32×32; larger sizes are upscaled on the "
                              "fly in the input pipeline.", "model", low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE, step=32)
    progressive_start_size: int = setting(0, "Progressive resizing: start at (px, 0 = off)", "Train the first "
                                          "part of the run at this smaller size, then at the image size, which "
                                          "validation and test always use: most steps cost the small size's time "
                                          "and the last ones adapt the model to the size it is tested at "
                                          "(fastai's progressive resizing). It must differ from the image size "
                                          "by a multiple of 32, so that every stride-2 layer pads alike. On "
                                          "Best on a laptop it saved a third of the training time and cost "
                                          "0.4-0.7 points (docs/RECIPES.md, table H).",
                                          "model", low=0, high=MAX_IMAGE_SIZE - 32, step=8)
    progressive_start_fraction: float = setting(0.5, "Progressive resizing: share at the start size", "The share "
                                                "of the run's training steps taken at the start size; the rest "
                                                "run at the image size. 1 trains at the start size throughout "
                                                "and only tests at the image size.", "model", low=0.0, high=1.0,
                                                low_open=True, step=0.05,
                                                no_effect_when=("progressive_start_size", (0,)))
    head: str = setting("gap", "Head", "The notebook's 'seed' head flattens the final feature map: fine at 32 px, "
                        "huge at 224 px.", "model", choices=HEADS,
                        choice_labels={"gap": "global average pooling + dropout + dense",
                                       "seed": "Flatten + Dense 1024-512-256-128 (notebook)"})
    dropout: float = setting(-1.0, "Dropout before classifier (-1 = variant's)", "Dropout rate before the "
                             "classifier; -1 uses the variant's own rate (0.2 for B0 up to 0.5 for B7).", "model",
                             low=0.0, high=0.9, special=-1.0, special_text="the variant's own", step=0.1)
    freeze_base: bool = setting(False, "Freeze the base (train the head only)", "Transfer learning, phase 1: the "
                                "ImageNet features stay fixed while the new head learns.", "model")
    fine_tune_at_epoch: int = setting(0, "Fine-tune after epoch (0 = never)", "Phase 2 starts after this many "
                                      "epochs: the base is unfrozen (BatchNorm stays frozen) and training continues "
                                      "at the lower fine-tuning rate; beyond `epochs` it happens if the run is "
                                      "resumed that far.", "model", low=0, high=MAX_EPOCHS,
                                      only_when=("freeze_base", (True,)))
    fine_tune_from_block: int = setting(1, "Unfreeze from block", "Unfreeze blocks N..7 and the top convolution: "
                                        "1 opens the whole base; 6 opens only blocks 6–7.", "model", low=1, high=7,
                                        slider=True, only_when=("freeze_base", (True,)))
    fine_tune_from_start: bool = setting(False, "Skip the head phase", "Fine-tune from the first step: blocks "
                                         "N..7 and a fresh head train together at the learning rate (not the "
                                         "fine-tuning one), BatchNorm frozen. The Quick demo does this in its one "
                                         "epoch (docs/RECIPES.md, table D).", "model",
                                         only_when=("freeze_base", (True,)))
    fine_tune_depthwise: bool = setting(True, "Tune depthwise kernels", "Fine-tune the depthwise convolutions of "
                                        "blocks N..7 too. Off: their kernels keep their ImageNet values. Their "
                                        "gradients are the slowest part of a CPU step: blocks 4–7 at 64 px train "
                                        "at 280 instead of 206 images/s on our 2-core CPU.", "model",
                                        only_when=("freeze_base", (True,)))
    fine_tune_learning_rate: float = setting(1e-4, "Fine-tuning learning rate", "Usually 10× lower than the "
                                             "head's rate (Keras fine-tuning guide).", "model", low=0.0, high=10.0,
                                             low_open=True, format="%.1e", only_when=("freeze_base", (True,)),
                                             no_effect_when=("fine_tune_from_start", (True,)))
    bn_momentum: float = setting(0.99, "BatchNorm momentum (base)", "How slowly the base's BatchNorm moving "
                                 "statistics (used at validation and test) follow the training batches. Keras' "
                                 "EfficientNet uses 0.99: from scratch its statistics are still wrong after a few "
                                 "hundred steps and validation sits at chance; 0.9 catches up in tens of steps. No "
                                 "effect while BatchNorm is frozen (a frozen base, fine-tuning).", "model",
                                 low=0.0, high=0.999, step=0.01)
    drop_connect_rate: float = setting(0.2, "Stochastic depth (base)", "How often the deepest residual block "
                                       "of the base is skipped while training; shallower blocks are skipped "
                                       "less, in proportion, frozen ones included. Keras' EfficientNet uses "
                                       "0.2; the From scratch preset uses 0 (docs/RECIPES.md, tables D and K).",
                                       "model", low=0.0, high=0.9, step=0.05)
    # --- optimisation
    optimizer: str = setting("adam", "Optimizer", "The update rule.", "optimisation", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Learning rate", "The step size (of the head's phase when the base is "
                                   "frozen).", "optimisation", low=0.0, high=10.0, low_open=True, format="%.1e")
    momentum: float = setting(0.9, "Momentum (SGD)", "SGD's momentum; the other optimizers ignore it.",
                              "optimisation", low=0.0, high=0.999, step=0.05, only_when=("optimizer", ("sgd",)))
    weight_decay: float = setting(0.0, "Weight decay (AdamW)", "AdamW's decoupled weight decay; the other "
                                  "optimizers ignore it.", "optimisation", low=0.0, high=1.0, format="%.1e",
                                  only_when=("optimizer", ("adamw",)))
    batch_size: int = setting(128, "Batch size (per device)", "Images per step on each GPU; with several GPUs the "
                              "global batch is this × GPUs.", "optimisation", low=1, high=MAX_BATCH_SIZE)
    epochs: int = setting(4, "Epochs", "Passes over the training images.", "optimisation", low=1, high=MAX_EPOCHS)
    # --- schedule
    lr_schedule: str = setting("constant", "Learning-rate schedule", "How the rate changes over the epochs.",
                               "schedule", choices=LR_SCHEDULES,
                               choice_labels={"constant": "constant", "plateau": "reduce on plateau (val_accuracy)",
                                              "cosine": "cosine decay (+ warm-up)"})
    plateau_factor: float = setting(0.5, "Plateau factor", "Reduce on plateau: multiply the rate by this ...",
                                    "schedule", low=0.0, high=0.99, low_open=True, step=0.05,
                                    only_when=("lr_schedule", ("plateau",)))
    plateau_patience: int = setting(1, "Plateau patience (epochs)", "... after this many epochs without a better "
                                    "val_accuracy.", "schedule", low=0, high=100,
                                    only_when=("lr_schedule", ("plateau",)))
    min_learning_rate: float = setting(1e-6, "Minimum learning rate", "The floor of the plateau and cosine "
                                       "schedules.", "schedule", low=0.0, high=1.0, format="%.1e")
    warmup_epochs: int = setting(0, "Warm-up epochs (cosine)", "Cosine: linear warm-up epochs before the decay.",
                                 "schedule", low=0, high=MAX_EPOCHS, only_when=("lr_schedule", ("cosine",)))
    early_stopping_patience: int = setting(0, "Early stopping patience (0 = off)", "Stop when val_accuracy has not "
                                           "improved for this many epochs.", "schedule", low=0, high=MAX_EPOCHS)
    # --- data
    augment_flip: bool = setting(True, "Random horizontal flip", "Mirror each training image left-right at "
                                 "random.", "data")
    augment_crop_padding: int = setting(4, "Random translate (px of padding)", "Pad by this many pixels and crop "
                                        "back to 32×32 at a random place.", "data", low=0, high=16)
    label_smoothing: float = setting(0.0, "Label smoothing", "Soften the one-hot targets by this much.",
                                     "optimisation", low=0.0, high=0.5, step=0.05)
    train_limit: int = setting(0, "Training images (0 = all)", "A stratified subset for quick runs: equal numbers "
                               "per class; 0 uses every image the validation split leaves.", "data", low=0,
                               high=CIFAR_TRAIN_IMAGES, step=500)
    val_fraction: float = setting(0.1, "Validation fraction", "The share of each class held out to validate on.",
                                  "data", low=0.0, high=0.5, step=0.05)
    test_time_flip: bool = setting(False, "Test-time flip", "Average each test image's prediction with its "
                                   "mirror image's: one more pass over the test set, for a few tenths of a "
                                   "point of test accuracy (docs/RECIPES.md).", "data")
    test_time_flip_below: float = setting(1.0, "Mirror only below confidence", "Only the test images "
                                          "whose top class has a probability below this get the mirror pass; "
                                          "1 mirrors every image. The confident ones were right either way: at "
                                          "0.85, Best on a laptop mirrored a fifth of its test images and kept "
                                          "the whole gain (docs/RECIPES.md, table I).", "data", low=0.0,
                                          high=1.0, low_open=True, step=0.05,
                                          only_when=("test_time_flip", (True,)))
    seed: int = setting(42, "Seed", "The same seed gives the same split, order and initial head.", "data",
                        low=0, high=2**31 - 1)
    # --- hardware
    mixed_precision: str = setting("auto", "Mixed precision", "auto: on only for NVIDIA GPUs of compute "
                                   "capability 7.0 or newer.", "hardware", choices=MIXED_PRECISION)
    distribution: str = setting("auto", "Distribution", "auto: over every GPU when more than one is visible, "
                                "and over every process under JAX with KERAS_DISTRIBUTION_* set (README). multi_worker "
                                "(TensorFlow's, unsupported by Keras 3) is refused with that advice.", "hardware",
                                choices=DISTRIBUTIONS, form_choices=("auto", "none", "mirrored"))
    fold_frozen_batchnorm: bool = setting(True, "Fold frozen BatchNorm", "Fold each frozen BatchNormalization "
                                          "into the frozen convolution before it: the same outputs, fewer "
                                          "passes over the activations. Best on a laptop trained 10% and "
                                          "predicted 17% faster on our 2-core CPU (docs/RECIPES.md, table M). "
                                          "Only layers that no phase of the run trains are folded.", "hardware",
                                          only_when=("freeze_base", (True,)))
    jit_compile: str = setting("auto", "XLA compilation", "auto: XLA on GPUs, and always under the JAX "
                               "backend (TensorFlow on a CPU trained 4.7× slower with it in our measurements).", "hardware", choices=JIT_COMPILE)

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
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise ConfigError(str(unknown[0]), f"one of the known settings ({', '.join(sorted(known))})",
                              data[unknown[0]], hint="unknown setting")
        return cls(**{k: _coerce(k, v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """Parses and validates settings JSON; every failure is a ConfigError naming the field."""
        _check_nesting(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", "valid JSON", text[:60], hint=str(exc)) from None
        except (ValueError, RecursionError):   # an integer of over 4,300 digits; nesting missed above
            raise ConfigError("config", "valid JSON of plain setting values", text[:60],
                              hint="a number in it has too many digits, or it is nested too deeply") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with `changes` applied (unknown names rejected like from_dict)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    # --- derived values ----------------------------------------------------------------------
    @property
    def classifier_dropout(self) -> float:
        from core.variants import get_variant
        return get_variant(self.variant).dropout if self.dropout < 0 else self.dropout

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
        if self.image_size > 128:   # 120 px is the best-cpu preset's size: minutes, not hours, on a CPU
            notes.append(f"{self.image_size} px is GPU territory: B0 at 224 px trains ~10 images/s on a CPU")
        return notes


_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(TrainConfig)}


def check_startable(config: TrainConfig) -> None:
    """Checks what only starting needs: the weights file, when `weights` is a path, exists here.

    Call it when a run starts (and before offering Start), never when a config is read: a run
    copied elsewhere, or whose weights file moved, is still a readable run. It tells whether a
    path exists on this machine, so the dashboard asks it only for sessions holding the control
    token.

    Raises:
        ConfigError: field "weights", when the path is not an existing file.
    """
    if config.weights not in WEIGHTS_CHOICES and not os.path.isfile(config.weights):
        raise ConfigError("weights", "none, imagenet, or the path of an existing weights file", config.weights)


def training_images(train_limit: int, val_fraction: float, y_train: Any = None) -> int:
    """How many images a run with these settings trains on (core.data's split decides).

    Args:
        train_limit: The setting; 0 means every image the validation split leaves.
        val_fraction: The share of each class held out for validation.
        y_train: The training labels; default CIFAR-10's (5,000 per class).
    """
    import numpy as np

    from core.data import training_images_after_split
    if train_limit:
        return int(train_limit)
    if y_train is None:
        y_train = np.repeat(np.arange(CIFAR_CLASSES), CIFAR_TRAIN_IMAGES // CIFAR_CLASSES)
    return training_images_after_split(y_train, val_fraction)


# --- validation ----------------------------------------------------------------------------------
def _check_nesting(text: str) -> None:
    """Refuses JSON nested deeper than MAX_JSON_DEPTH, naming the top-level key it happens under,
    before json.loads would recurse into it."""
    if len(text) > MAX_JSON_CHARS:
        raise ConfigError("config", f"a settings file under {MAX_JSON_CHARS:,} characters", f"{len(text):,} characters")
    depth, in_string, escaped, key, last_string = 0, False, False, None, ""
    start = 0
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string, last_string = False, text[start:i]
        elif char == '"':
            in_string, start = True, i + 1
        elif char == ":" and depth == 1:
            key = last_string
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                name = key if key in _FIELDS else "config"
                raise ConfigError(name, f"a plain setting value, not JSON nested over {MAX_JSON_DEPTH} levels deep",
                                  text[i - MAX_JSON_DEPTH:i + 1] + "…")
        elif char in "]}":
            depth -= 1


def _coerce(name: str, value: Any) -> Any:
    """Accepts an int where a float is expected (JSON writes 1.0 as 1); nothing else is coerced."""
    if field_type(name) == "float" and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:   # a 309-digit integer
            raise ConfigError(name, declaration(name).range_text(), value) from None
    return value


def _final_feature_size(image_size: int) -> int:
    # Five stride-2 stages with "same" padding: ceil(size / 32).
    return max(1, math.ceil(image_size / 32))


def _top_channels(variant: str) -> int:
    from core.variants import get_variant
    return int(round(1280 * get_variant(variant).width / 8) * 8) if variant in VARIANT_NAMES else 1280


def _check_type(name: str, value: Any) -> None:
    kind = field_type(name)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(name, "true or false", value)
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, "a whole number", value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, "a finite number", value)
        if isinstance(value, float) and not math.isfinite(value):   # an int is finite (and may not fit a float)
            raise ConfigError(name, "a finite number", value)
    elif not isinstance(value, str):
        raise ConfigError(name, "text", value)


def _check_value(name: str, value: Any) -> None:
    """The declared choices, path form and bounds of one field."""
    s = declaration(name)
    if s.path_allowed and value not in s.choices:
        if not (value.strip() and value.lower().endswith(WEIGHTS_SUFFIXES) and "\x00" not in value):
            raise ConfigError(name, s.allowed_text(), value)
    elif s.choices and value not in s.choices:
        raise ConfigError(name, s.allowed_text(), value)
    elif s.low is not None and not (s.special is not None and value == s.special):
        too_low = value <= s.low if s.low_open else value < s.low
        if too_low or value > s.high:
            raise ConfigError(name, s.range_text(), value)


def validate(config: TrainConfig) -> None:
    """Raises ConfigError for the first invalid field: types, then each field's declared values,
    in declaration order, then the combinations."""
    for name in _FIELDS:
        _check_type(name, getattr(config, name))
    for name in _FIELDS:
        _check_value(name, getattr(config, name))
    _validate_combinations(config)


def _validate_combinations(c: TrainConfig) -> None:
    if c.train_limit and c.train_limit < CIFAR_CLASSES:
        raise ConfigError("train_limit", "0 (all images) or at least 10 (one per class)", c.train_limit)
    if c.fine_tune_at_epoch and not c.freeze_base:
        raise ConfigError("fine_tune_at_epoch", "0 unless freeze_base is true (nothing to unfreeze)",
                          c.fine_tune_at_epoch)
    if c.fine_tune_from_start and not c.freeze_base:
        raise ConfigError("fine_tune_from_start", "false unless freeze_base is true (with the whole base "
                          "training there is no phase to skip)", c.fine_tune_from_start)
    if c.fine_tune_from_start and c.fine_tune_at_epoch:
        raise ConfigError("fine_tune_at_epoch", "0 when fine_tune_from_start is true (there is no head phase "
                          "to end)", c.fine_tune_at_epoch)
    if c.lr_schedule == "cosine" and c.warmup_epochs >= c.epochs:
        raise ConfigError("warmup_epochs", f"fewer than epochs ({c.epochs}) for a cosine schedule",
                          c.warmup_epochs)
    if c.early_stopping_patience and c.val_fraction == 0:
        raise ConfigError("early_stopping_patience", "0 when val_fraction is 0 (nothing to watch)",
                          c.early_stopping_patience)
    if c.lr_schedule == "plateau" and c.val_fraction == 0:
        raise ConfigError("lr_schedule", "constant or cosine when val_fraction is 0 (plateau watches "
                          "val_accuracy)", c.lr_schedule)
    if c.progressive_start_size:
        _check_progressive_start_size(c)
    pixels = c.batch_size * c.image_size * c.image_size
    if pixels > MAX_PIXELS_PER_BATCH:
        largest = MAX_PIXELS_PER_BATCH // (c.image_size * c.image_size)
        raise ConfigError("batch_size", f"at most {largest} at {c.image_size} px "
                          "(batch_size × image_size² must fit in memory)", c.batch_size)


def progressive_start_sizes(image_size: int) -> list[int]:
    """The start sizes progressive resizing allows below `image_size`, largest first.

    EfficientNet pads each stride-2 layer by the parity of its input, fixed when the model is built
    at `image_size` (keras.applications' correct_pad). Every B0-B7 halves the input five times, so
    a size that differs by a multiple of 32 has the same parity at every stride-2 layer and the
    model computes at it exactly what it would have been built for: 88 for 120, not 96.
    """
    return list(range(image_size - 32, MIN_IMAGE_SIZE - 1, -32))


def _check_progressive_start_size(c: TrainConfig) -> None:
    allowed = progressive_start_sizes(c.image_size)
    if c.progressive_start_size not in allowed:
        sizes = (f"one of {', '.join(map(str, allowed))}" if allowed
                 else f"nothing else: image_size {c.image_size} leaves no smaller size of at least {MIN_IMAGE_SIZE}")
        raise ConfigError("progressive_start_size", f"0 (off) or a size below image_size ({c.image_size}) "
                          f"that differs from it by a multiple of 32: {sizes}", c.progressive_start_size)
