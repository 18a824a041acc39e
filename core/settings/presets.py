"""Presets: named recipes as data, each with the figure measured for it (or "not yet measured").

A preset is a set of TrainConfig values plus what it is for and what it reached, on which
machine, on which date and through what (this engine, or a plain Keras script). The CLI
(`python -m core train --preset NAME`, `python -m core presets`) and the Train page read this
table; bench/recipes.py measures a preset through the engine and docs/RECIPES.md keeps every
figure, losers included. A figure is only ever a measurement: a preset nobody has measured says so.

How the recipes map onto TrainConfig: "head N epochs, then fine-tune" is `freeze_base=True`,
`fine_tune_at_epoch=N` (BatchNorm stays frozen while fine-tuning, core.training.model.unfreeze); "one pass,
the top blocks and the head from the first step" is `freeze_base=True, fine_tune_from_start=True`
with `fine_tune_from_block`, and `fine_tune_depthwise=False` keeps the depthwise kernels frozen.
The engine's cosine schedule spans the whole run from `learning_rate` (it overrides the
fine-tuning rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from core.settings.config import ConfigError, TrainConfig

# The machines figures were measured on (DESIGN.md names them; bench/recipes.py prints its own).
THIS_MACHINE_IDLE = "the lab's 2-core Intel Xeon (AVX-512), no GPU, idle apart from the benchmark"
SLOWER_EPYC_IDLE = ("a 2-core AMD EPYC without AVX-512, about half the Xeon's speed at 120 px, no GPU, idle "
                    "apart from the benchmark")
FASTER_EPYC_IDLE = ("the same 2-core AMD EPYC in a faster hour, at the Xeon's speed (97 images/s at 120 px), no GPU, "
                    "idle apart from the benchmark")
AVX512_EPYC_IDLE = ("a 2-core AMD EPYC with AVX-512 (100 images/s at 120 px before BatchNorm folding), no GPU, "
                    "idle apart from the benchmark")
NOT_MEASURED = "not yet measured"
SUMMARY_MAX_WORDS = 20        # a card's line, read at a glance (issue 32)
RECIPES_DOC = Path(__file__).resolve().parents[2] / "docs" / "RECIPES.md"   # every figure, losers included


@dataclass(frozen=True)
class Measurement:
    """One measured outcome of a recipe on real CIFAR-10 (10,000 test images).

    Attributes:
        test_accuracy: Top-1 on the test set, 0..1.
        minutes: Wall minutes of the whole run: data, compile, training, validation, test prediction.
        date: When (YYYY-MM-DD), or "" where the source did not record it.
        machine: Which machine, in words, and how busy it was.
        through: "this engine" (the CLI or dashboard) or "plain Keras" (a script of its own).
        mirror_accuracy: Test accuracy averaging each image's prediction with its mirror's, if measured.
        note: How the measured run differed from the preset, if it did.
    """

    test_accuracy: float
    minutes: float
    date: str
    machine: str
    through: str
    mirror_accuracy: float | None = None
    note: str = ""

    def text(self) -> str:
        """"89.6% test accuracy (90.4% with the mirror) in 5.0 min, <date>: <through> on <machine>; <note>"."""
        mirror = f" ({100 * self.mirror_accuracy:.1f}% with the mirror)" if self.mirror_accuracy else ""
        when = f", {self.date}" if self.date else ""
        note = f"; {self.note}" if self.note else ""
        return (f"{100 * self.test_accuracy:.1f}% test accuracy{mirror} in {self.minutes:.1f} min{when}: "
                f"{self.through} on {self.machine}{note}")


@dataclass(frozen=True)
class Preset:
    """A named recipe.

    Attributes:
        name: What the CLI takes (`--preset quick-demo`).
        label: What the Train page's button says.
        description: What it does and what to expect, in a sentence or three.
        settings: TrainConfig values; everything else keeps its default.
        measured: Figures measured for exactly these settings, most relevant first; empty: none yet.
        summary: What it shows a student, in plain words (at most SUMMARY_MAX_WORDS): the card's line.
        gpu_only: Hours on a CPU: the Train page offers it only where a GPU trains.
    """

    name: str
    label: str
    description: str
    settings: Mapping[str, object]
    measured: tuple[Measurement, ...] = field(default=())
    summary: str = ""
    gpu_only: bool = False

    def config(self, **overrides: object) -> TrainConfig:
        """The validated TrainConfig of this preset, with `overrides` on top."""
        return TrainConfig.from_dict({**self.settings, **overrides})

    @property
    def needs_imagenet(self) -> bool:
        return self.settings.get("weights") == "imagenet"

    def figure_text(self) -> str:
        """The first measured figure in words, or "not yet measured"."""
        return self.measured[0].text() if self.measured else NOT_MEASURED

    @property
    def expected_accuracy(self) -> float | None:
        """The test accuracy measured for it (the most relevant measurement); None: not measured."""
        return self.measured[0].test_accuracy if self.measured else None

    def cannot_run_here(self, *, imagenet_available: bool, on_gpu: bool) -> str:
        """Why this machine cannot run it, in one line ("" when it can)."""
        if self.needs_imagenet and not imagenet_available:
            return "needs ImageNet weights, which this machine cannot get."
        if self.gpu_only and not on_gpu:
            return "made for a GPU: hours on this CPU."
        return ""

    @property
    def expectation(self) -> str:
        """The description followed by the figure measured for it: what the Train page shows."""
        return f"{self.description} Measured: {self.figure_text()}."


def _settings(**values: object) -> Mapping[str, object]:
    TrainConfig.from_dict(dict(values))     # a preset that does not validate fails at import, in tests
    return MappingProxyType(values)


# One pass over the data, the top blocks and a fresh head training together from the first step:
# the two-phase recipe before it spent 220 of its 586 s of training on the head epoch (RECIPES.md, C).
# No translate: with each image seen once there is nothing to overfit, and at 64 px it cost 0.8
# points (RECIPES.md, G); the flip is kept, and the test-time flip pairs with it, for the test images
# below 0.85 confidence only: a fifth to a third of them, and the whole gain (RECIPES.md, I).
# The frozen stem, blocks 1-3 and depthwise kernels have their BatchNorm folded in: the same
# network, a tenth faster to train and a sixth faster to predict (RECIPES.md, M).
_IMAGENET_ONE_PASS = dict(
    variant="b0", weights="imagenet", head="gap", freeze_base=True, fine_tune_from_start=True,
    fine_tune_at_epoch=0, fine_tune_from_block=4, fine_tune_depthwise=False, optimizer="adam",
    learning_rate=3e-4, lr_schedule="cosine", warmup_epochs=0, epochs=1, batch_size=128,
    label_smoothing=0.1, augment_flip=True, augment_crop_padding=0, train_limit=0, val_fraction=0.0,
    test_time_flip=True, test_time_flip_below=0.85, fold_frozen_batchnorm=True)

QUICK_DEMO = Preset(
    "quick-demo", ":material/bolt: Quick demo",
    "B0 from ImageNet weights at 64 px, one pass over all 50,000 training images: blocks 4-7 (depthwise "
    "kernels kept) and a fresh head train together from the first step (BatchNorm frozen, Adam on a "
    "cosine from 3e-4, label smoothing 0.1, flip but no translate); each test image the model is unsure of "
    "(top class below 0.85) is averaged with its mirror.",
    _settings(**{**_IMAGENET_ONE_PASS, "image_size": 64}),
    summary="A network pretrained on ImageNet learns CIFAR-10 in one pass.",
    measured=(
        Measurement(0.8990, 4.0, "2026-12-02", AVX512_EPYC_IDLE, "this engine (bench/recipes.py)",
                    note="frozen BatchNorm folded: the epoch 170 s (322 images/s); three more runs that hour, "
                         "89.73-89.85% in 3.5-4.6 min, the minutes moved by the time after the epoch "
                         "(RECIPES.md, M)"),
        Measurement(0.8983, 3.8, "2026-12-01", THIS_MACHINE_IDLE, "this engine (bench/recipes.py)",
                    note="before BatchNorm folding: the epoch 187 s; this machine's minutes swing up to 1.5x "
                         "from hour to hour; every test image mirrored then"),
        Measurement(0.8990, 10.5, "2026-12-02", SLOWER_EPYC_IDLE, "this engine (bench/recipes.py)",
                    note="before BatchNorm folding: the epoch 496 s (107 images/s); 36% of the test images "
                         "mirrored, the same 89.9% as mirroring all of them (RECIPES.md, I)"),
    ))

BEST_CPU = Preset(
    "best-cpu", ":material/trophy: Best on a laptop",
    "The Quick demo's recipe at 120 px: 95% on a CPU, for two to three times the Quick demo's time.",
    # 120 px, not 128: 0.88x the pixels for the same 95% (RECIPES.md, G); 112 px stays at 94.3%, and
    # 42,000 of the 50,000 images was no quicker in a slower hour, and less accurate (D).
    _settings(**{**_IMAGENET_ONE_PASS, "image_size": 120}),
    summary="The Quick demo on larger images: slower, more accurate.",
    measured=(
        Measurement(0.9514, 8.9, "2026-12-02", AVX512_EPYC_IDLE, "this engine (bench/recipes.py)",
                    note="the preset as committed, frozen BatchNorm folded: the epoch 468 s (110 images/s); "
                         "with seed 7 right after, 95.22% in 8.7 min; unfolded an hour before, 94.98% in 10.5 "
                         "min (RECIPES.md, M)"),
        Measurement(0.9503, 11.1, "2026-12-01", THIS_MACHINE_IDLE, "this engine (bench/recipes.py)",
                    note="before BatchNorm folding: the epoch 521 s (100 images/s); in the faster hour of "
                         "RECIPES.md table D, 128 px ran 106 images/s; every test image mirrored then"),
        Measurement(0.9520, 23.8, "2026-12-01", SLOWER_EPYC_IDLE, "this engine (bench/recipes.py)",
                    note="before BatchNorm folding: the epoch 1,221 s (42 images/s); test passes 32 images at "
                         "a time (RECIPES.md, H), every image mirrored; mirroring the 20% below 0.85 gave the "
                         "same 95.2% on this checkpoint, the test passes 166 s instead of 237 (RECIPES.md, I)"),
        Measurement(0.9502, 11.4, "2026-12-02", FASTER_EPYC_IDLE, "this engine (bench/recipes.py)",
                    note="before BatchNorm folding, the mirror pass below 0.85: the epoch 528 s (97 images/s), "
                         "the test passes and the rest 149 s (RECIPES.md, L)"),
    ))

FROM_SCRATCH = Preset(
    "from-scratch", ":material/psychiatry: From scratch",
    "For when ImageNet weights cannot be had: B0 from random weights at 40 px (at 32 px its last feature map "
    "is 1x1), 3 epochs of AdamW 3e-3 on a cosine, BatchNorm momentum 0.9 (Keras' 0.99 leaves validation at "
    "chance for hundreds of steps), no dropout, stochastic depth or translate (3 epochs underfit), flip and "
    "label smoothing 0.1; each test image is averaged with its mirror. Expect about 63%.",
    _settings(variant="b0", weights="none", image_size=40, head="gap", dropout=0.0, freeze_base=False,
              fine_tune_at_epoch=0, optimizer="adamw", learning_rate=3e-3, weight_decay=0.05,
              lr_schedule="cosine", warmup_epochs=0, epochs=3, batch_size=128, bn_momentum=0.9,
              drop_connect_rate=0.0, label_smoothing=0.1, augment_flip=True, augment_crop_padding=0,
              train_limit=0, val_fraction=0.1, test_time_flip=True),
    summary="No pretraining: a network learns from random weights.",
    measured=(
        Measurement(0.6309, 12.6, "2026-12-01", THIS_MACHINE_IDLE, "this engine (bench/recipes.py)",
                    note="45,000 training images, the flip included"),
        Measurement(0.6136, 13.0, "2026-12-01", THIS_MACHINE_IDLE, "this engine (bench/recipes.py)",
                    mirror_accuracy=0.6322, note="without the test-time flip, an hour earlier"),
    ))

NOTEBOOK = Preset(
    "notebook", ":material/menu_book: Notebook replica",
    "The original student notebook: B2 at 32 px, ImageNet weights, Flatten + Dense 1024-512-256-128 "
    "head, SGD 1e-3 momentum 0.9, batch 100, 4 epochs, plateau schedule on val_accuracy. The notebook "
    "itself reported 53.3% after 4 epochs on a GPU; without ImageNet weights this recipe stays at "
    "chance (10.7% in 13 min, plain Keras, as we measured).",
    _settings(variant="b2", image_size=32, weights="imagenet", head="seed", optimizer="sgd",
              learning_rate=0.001, momentum=0.9, batch_size=100, epochs=4, lr_schedule="plateau",
              plateau_factor=0.5, plateau_patience=1, augment_flip=False, augment_crop_padding=0,
              freeze_base=False, fine_tune_at_epoch=0, train_limit=0),
    summary="The original student notebook's settings, for comparison.")

TRANSFER_GPU = Preset(
    "transfer-gpu", ":material/school: Transfer learning (GPU)",
    "EfficientNet at its ImageNet resolution (224 px): head on a frozen base for 2 epochs, then "
    "fine-tuning with BatchNorm frozen. Around 10 images/s on a CPU: a GPU job.",
    _settings(variant="b0", image_size=224, weights="imagenet", head="gap", freeze_base=True,
              fine_tune_at_epoch=2, fine_tune_from_block=1, fine_tune_learning_rate=1e-4,
              optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=5, lr_schedule="constant",
              train_limit=0, augment_flip=True, augment_crop_padding=4),
    summary="The textbook recipe at ImageNet's resolution: the head first, then fine-tuning.", gpu_only=True)

PRESETS: tuple[Preset, ...] = (QUICK_DEMO, BEST_CPU, FROM_SCRATCH, NOTEBOOK, TRANSFER_GPU)
PRESET_NAMES: tuple[str, ...] = tuple(p.name for p in PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called `name`.

    Raises:
        ConfigError: No preset has that name; the message lists the names there are.
    """
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise ConfigError("preset", f"one of {', '.join(PRESET_NAMES)}", name)


def quick_demo(imagenet_available: bool) -> Preset:
    """The Quick demo for this machine: the ImageNet recipe, or, when ImageNet weights can be neither
    found nor downloaded, the from-scratch recipe under the Quick demo's name, saying what it reaches."""
    if imagenet_available:
        return QUICK_DEMO
    return Preset(
        QUICK_DEMO.name, QUICK_DEMO.label,
        "ImageNet weights are not available on this machine, so the Quick demo trains from scratch "
        "(the From scratch recipe): " + FROM_SCRATCH.description.split(": ", 1)[1],
        FROM_SCRATCH.settings, FROM_SCRATCH.measured,
        summary="No ImageNet weights here: a network learns from random weights.")


def dashboard_presets(imagenet_available: bool) -> list[Preset]:
    """The Train page's presets, in order. The Quick demo adapts to `imagenet_available`; when it
    has become the from-scratch recipe, From scratch is not offered twice."""
    quick = quick_demo(imagenet_available)
    return [quick, *(p for p in PRESETS if p is not QUICK_DEMO and p.settings is not quick.settings)]
