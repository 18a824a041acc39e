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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import UserInputError
from core.settings.variants import VARIANT_NAMES, get_variant

# The form's sections, in the order it draws them: the first lesson's few settings first, the rest
# in collapsed sections (dashboard/train_form.py).
GROUPS = ("basics", "optimisation", "data", "fine_tuning", "model", "hardware")
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

    @property
    def plain_help(self) -> str:
        """The help as plain text, for a terminal: "[Keras guide](https://…)" becomes "Keras guide
        (https://…)" and *emphasis* loses its stars (the dashboard renders the Markdown)."""
        return re.sub(r"\*([^*]+)\*", r"\1", re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", self.help))

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

    # --- the first lesson: what a student changes first (the form shows these before the rest)
    variant: str = setting("b0", "EfficientNet variant", "Which size of network: B0 is the smallest and fastest; "
                           "each step up to B7 is wider, deeper and made for larger images "
                           "([EfficientNet paper](https://arxiv.org/abs/1905.11946)).", "basics",
                           choices=VARIANT_NAMES)
    weights: str = setting("none", "Initial weights", "Where the network starts: random numbers, so it learns "
                           "everything from CIFAR-10, or weights already trained on ImageNet's photos, which it "
                           "adapts: *transfer learning* ([Keras guide](https://keras.io/guides/transfer_learning/)). "
                           "A file: a Keras .h5 file of this variant without its top, such as "
                           "efficientnetb0_notop.h5.", "basics",
                           choices=WEIGHTS_CHOICES, path_allowed=True,
                           choice_labels={"none": "random (from scratch)", "imagenet": "ImageNet-trained"})
    image_size: int = setting(32, "Image size (px)", "CIFAR-10's photos are 32×32 pixels; a larger size enlarges "
                              "them before the network sees them: more detail for its layers to work with, and "
                              "more time per image.", "basics", low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE, step=32)
    progressive_start_size: int = setting(0, "Progressive resizing: start at (px, 0 = off)", "Train the first "
                                          "part of the run on smaller images, then at the image size, which "
                                          "validation and test always use: faster, for a little accuracy "
                                          "(*progressive learning*, [EfficientNetV2 paper]"
                                          "(https://arxiv.org/abs/2104.00298)). It must differ from the image "
                                          "size by a multiple of 32.", "model", low=0, high=MAX_IMAGE_SIZE - 32,
                                          step=8)
    progressive_start_fraction: float = setting(0.5, "Progressive resizing: share at the start size", "The share "
                                                "of the training steps taken at the start size; the rest run at "
                                                "the image size. 1 trains at the start size throughout and only "
                                                "tests at the image size.", "model", low=0.0, high=1.0,
                                                low_open=True, step=0.05,
                                                no_effect_when=("progressive_start_size", (0,)))
    head: str = setting("gap", "Head", "The layers on top of the network that pick one of the ten classes. *Global "
                        "average pooling* ([Keras](https://keras.io/api/layers/pooling_layers/global_average_pooling2d/)) "
                        "stays small at any image size; the notebook's Flatten head grows with it.", "model",
                        choices=HEADS,
                        choice_labels={"gap": "global average pooling + dropout + dense",
                                       "seed": "Flatten + Dense 1024-512-256-128 (notebook)"})
    dropout: float = setting(-1.0, "Dropout before classifier (-1 = variant's)", "While training, switch off this "
                             "share of the features before the classifier at random, so the network cannot lean "
                             "on a few of them: *dropout* ([paper](https://jmlr.org/papers/v15/srivastava14a.html)). "
                             "-1 uses the variant's own rate (0.2 for B0 up to 0.5 for B7).", "model",
                             low=0.0, high=0.9, special=-1.0, special_text="the variant's own", step=0.1)
    freeze_base: bool = setting(False, "Freeze the base (train the head only)", "Keep the ImageNet-trained "
                                "network fixed and train only the new head on top: the first step of *transfer "
                                "learning* ([Keras guide](https://keras.io/guides/transfer_learning/)).",
                                "fine_tuning")
    fine_tune_at_epoch: int = setting(0, "Fine-tune after epoch (0 = never)", "After this many epochs the frozen "
                                      "network opens up and learns too, gently, at the fine-tuning learning rate: "
                                      "*fine-tuning* ([Keras guide](https://keras.io/guides/transfer_learning/"
                                      "#finetuning)). Beyond the epochs it happens when the run is resumed that "
                                      "far.", "fine_tuning", low=0, high=MAX_EPOCHS,
                                      only_when=("freeze_base", (True,)))
    fine_tune_from_block: int = setting(1, "Unfreeze from block", "Which part of the network fine-tuning opens: "
                                        "blocks N to 7 and the last convolution learn, the earlier ones keep their "
                                        "ImageNet values. 1 opens the whole network; 6 only its last two blocks.",
                                        "fine_tuning", low=1, high=7, slider=True, only_when=("freeze_base", (True,)))
    fine_tune_from_start: bool = setting(False, "Skip the head phase", "No head-only phase: the opened blocks and "
                                         "a fresh head learn together from the first step, at the learning rate "
                                         "(not the fine-tuning one).", "fine_tuning",
                                         only_when=("freeze_base", (True,)))
    fine_tune_depthwise: bool = setting(True, "Tune depthwise kernels", "Also fine-tune the *depthwise "
                                        "convolutions* ([MobileNet paper](https://arxiv.org/abs/1704.04861)) of the "
                                        "opened blocks. Off, they keep their ImageNet values and each step is "
                                        "faster on a CPU.", "fine_tuning", only_when=("freeze_base", (True,)))
    fine_tune_learning_rate: float = setting(1e-4, "Fine-tuning learning rate", "The step size while fine-tuning: "
                                             "usually ten times lower than the head's, so the ImageNet features "
                                             "change gently ([Keras guide](https://keras.io/guides/"
                                             "transfer_learning/#finetuning)).", "fine_tuning", low=0.0,
                                             high=10.0, low_open=True, format="%.1e",
                                             only_when=("freeze_base", (True,)),
                                             no_effect_when=("fine_tune_from_start", (True,)))
    bn_momentum: float = setting(0.99, "BatchNorm momentum (base)", "How slowly *batch normalization*'s running "
                                 "averages, used at validation and test, follow the training batches "
                                 "([paper](https://arxiv.org/abs/1502.03167)). Lower follows faster: from scratch, "
                                 "Keras' 0.99 can leave validation at chance for the first hundreds of steps. No "
                                 "effect while BatchNorm is frozen.", "model", low=0.0, high=0.999, step=0.01)
    drop_connect_rate: float = setting(0.2, "Stochastic depth (base)", "While training, skip whole blocks at "
                                       "random, the deepest most often, so the network cannot rely on any single "
                                       "one: *stochastic depth* ([paper](https://arxiv.org/abs/1603.09382)). "
                                       "Keras' EfficientNet uses 0.2.", "model", low=0.0, high=0.9, step=0.05)
    # --- optimisation
    optimizer: str = setting("adam", "Optimizer", "The rule that turns each batch's gradient into a change of the "
                             "weights: *SGD* with momentum, *Adam*, or *AdamW*, Adam with decoupled weight decay "
                             "([Keras optimizers](https://keras.io/api/optimizers/)).", "optimisation",
                             choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Learning rate", "How big a step the optimizer takes after each batch "
                                   "(the head's, while the base is frozen): too small learns slowly, too large "
                                   "makes the loss jump or explode. *Find a learning rate* tries a range for you "
                                   "([ML glossary](https://developers.google.com/machine-learning/glossary"
                                   "#learning-rate)).", "basics", low=0.0, high=10.0, low_open=True, format="%.1e")
    momentum: float = setting(0.9, "Momentum (SGD)", "How much of its previous step SGD keeps in the next, which "
                              "smooths its path ([Why momentum really works](https://distill.pub/2017/momentum/)); "
                              "the other optimizers ignore it.", "optimisation", low=0.0, high=0.999, step=0.05,
                              only_when=("optimizer", ("sgd",)))
    weight_decay: float = setting(0.0, "Weight decay (AdamW)", "AdamW pulls every weight a little towards zero at "
                                  "each step, which keeps the network simpler ([AdamW paper]"
                                  "(https://arxiv.org/abs/1711.05101)); the other optimizers ignore it.",
                                  "optimisation", low=0.0, high=1.0, format="%.1e",
                                  only_when=("optimizer", ("adamw",)))
    batch_size: int = setting(128, "Batch size (per device)", "How many images the network sees before each "
                              "change of its weights: larger batches take more memory and make fewer, steadier "
                              "steps ([ML glossary](https://developers.google.com/machine-learning/glossary"
                              "#batch-size)). With several GPUs, each gets this many.", "basics", low=1,
                              high=MAX_BATCH_SIZE)
    epochs: int = setting(4, "Epochs", "How many times training goes through all the training images "
                          "([ML glossary](https://developers.google.com/machine-learning/glossary#epoch)).",
                          "basics", low=1, high=MAX_EPOCHS)
    # --- schedule (drawn with the optimisation settings)
    lr_schedule: str = setting("constant", "Learning-rate schedule", "How the learning rate changes during the "
                               "run: constant, lowered when validation accuracy stops improving, or decayed along "
                               "a cosine curve ([Keras schedules](https://keras.io/api/optimizers/"
                               "learning_rate_schedules/)).", "optimisation", choices=LR_SCHEDULES,
                               choice_labels={"constant": "constant", "plateau": "reduce on plateau (val_accuracy)",
                                              "cosine": "cosine decay (+ warm-up)"})
    plateau_factor: float = setting(0.5, "Plateau factor", "When validation accuracy stops improving, multiply the "
                                    "learning rate by this ([Keras ReduceLROnPlateau](https://keras.io/api/"
                                    "callbacks/reduce_lr_on_plateau/)).", "optimisation", low=0.0, high=0.99,
                                    low_open=True, step=0.05, only_when=("lr_schedule", ("plateau",)))
    plateau_patience: int = setting(1, "Plateau patience (epochs)", "How many epochs without a better validation "
                                    "accuracy before the rate is lowered.", "optimisation", low=0, high=100,
                                    only_when=("lr_schedule", ("plateau",)))
    min_learning_rate: float = setting(1e-6, "Minimum learning rate", "The lowest the plateau and cosine "
                                       "schedules take the learning rate.", "optimisation", low=0.0, high=1.0,
                                       format="%.1e")
    warmup_epochs: int = setting(0, "Warm-up epochs (cosine)", "Start from a tiny learning rate and raise it over "
                                 "this many epochs before the cosine decay, so a fresh network's first steps do "
                                 "not explode: *warm-up* ([paper](https://arxiv.org/abs/1706.02677)).",
                                 "optimisation", low=0, high=MAX_EPOCHS, only_when=("lr_schedule", ("cosine",)))
    early_stopping_patience: int = setting(0, "Early stopping patience (0 = off)", "End the run when validation "
                                           "accuracy has not improved for this many epochs: *early stopping* "
                                           "([Keras EarlyStopping](https://keras.io/api/callbacks/early_stopping/)).",
                                           "optimisation", low=0, high=MAX_EPOCHS)
    # --- data and augmentation
    augment_flip: bool = setting(True, "Random horizontal flip", "Show each training photo mirrored left-right half "
                                 "the time, so the network learns that a cat facing left is still a cat: *data "
                                 "augmentation* ([TensorFlow tutorial](https://www.tensorflow.org/tutorials/images/"
                                 "data_augmentation)).", "data")
    augment_crop_padding: int = setting(4, "Random translate (px of padding)", "Shift each training photo by up to "
                                        "this many pixels in a random direction (pad, then crop back to 32×32), so "
                                        "where the object sits matters less. 0: off.", "data", low=0, high=16)
    label_smoothing: float = setting(0.0, "Label smoothing", "Train towards 90% sure of the right class instead of "
                                     "100% (at 0.1), which makes the network less overconfident: *label "
                                     "smoothing* ([paper](https://arxiv.org/abs/1512.00567)).", "optimisation",
                                     low=0.0, high=0.5, step=0.05)
    train_limit: int = setting(0, "Training images (0 = all)", "Train on fewer photos for a quicker run, the same "
                               "number of each class; 0 uses every photo the validation split leaves.", "data",
                               low=0, high=CIFAR_TRAIN_IMAGES, step=500)
    val_fraction: float = setting(0.1, "Validation fraction", "The share of each class kept aside to check the "
                                  "network on photos it has not trained on: the *validation set* ([ML glossary]"
                                  "(https://developers.google.com/machine-learning/glossary#validation-set)).",
                                  "data", low=0.0, high=0.5, step=0.05)
    test_time_flip: bool = setting(False, "Test-time flip", "At test time, also show the network each photo "
                                   "mirrored and average the two answers: *test-time augmentation* "
                                   "([fastai](https://docs.fast.ai/learner.html#learner.tta)). One more pass over "
                                   "the test set, for a little accuracy.", "data")
    test_time_flip_below: float = setting(1.0, "Mirror only below confidence", "Mirror only the test photos whose "
                                          "top class the network gives less than this probability; the sure ones "
                                          "were right either way. 1 mirrors every photo.", "data", low=0.0,
                                          high=1.0, low_open=True, step=0.05,
                                          only_when=("test_time_flip", (True,)))
    seed: int = setting(42, "Seed", "The number behind every random choice (the split, the order, the initial "
                        "head): the same seed gives the same run.", "data", low=0, high=2**31 - 1)
    # --- hardware
    mixed_precision: str = setting("auto", "Mixed precision", "Compute in 16-bit numbers where that is safe, much "
                                   "faster on recent NVIDIA GPUs ([Keras mixed precision](https://keras.io/api/"
                                   "mixed_precision/)). auto: on only for NVIDIA GPUs of compute capability 7.0 or "
                                   "newer.", "hardware", choices=MIXED_PRECISION)
    distribution: str = setting("auto", "Distribution", "How several GPUs share the work: auto splits each batch "
                                "over every GPU it sees ([TensorFlow guide](https://www.tensorflow.org/guide/"
                                "distributed_training)), and under JAX over several processes when "
                                "KERAS_DISTRIBUTION_* is set (README). multi_worker, which Keras 3 does not "
                                "support, is refused with that advice.", "hardware",
                                choices=DISTRIBUTIONS, form_choices=("auto", "none", "mirrored"))
    fold_frozen_batchnorm: bool = setting(True, "Fold frozen BatchNorm", "Merge each frozen batch normalization "
                                          "into the frozen convolution before it: the same answers from fewer "
                                          "passes over the activations ([folding](https://arxiv.org/abs/"
                                          "1712.05877)). Only layers that no phase of the run trains are "
                                          "folded.", "hardware", only_when=("freeze_base", (True,)))
    jit_compile: str = setting("auto", "XLA compilation", "Compile the training step into one fused program with "
                               "*XLA* ([OpenXLA](https://openxla.org/xla)): faster on GPUs, slower under "
                               "TensorFlow on a CPU. auto: on GPUs, and always under the JAX backend.", "hardware",
                               choices=JIT_COMPILE)

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
