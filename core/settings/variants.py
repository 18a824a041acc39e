"""EfficientNet B0–B7 as one table of data.

Keras keeps eight near-identical constructor functions; we keep one row per variant and one
builder (`core.training.model`) that reads it. The scaling coefficients are Keras's own
(`keras/src/applications/efficientnet.py`); the ImageNet figures are from Tan & Le,
"EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019 (arXiv:1905.11946), Table 2;
params and layer counts of the no-top base were measured with keras.applications 3.15
(tests/test_variants.py re-checks them).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Tan & Le, ICML 2019, arXiv:1905.11946, Table 2"


@dataclass(frozen=True)
class Variant:
    """One EfficientNet variant: how Keras builds it and the facts the pages show."""

    name: str                 # "b0" … "b7", the value TrainConfig.variant takes
    width: float              # channel multiplier
    depth: float              # layer-repeat multiplier
    resolution: int           # native input size in pixels (ImageNet training resolution)
    dropout: float            # dropout before the classifier, as Keras uses it
    base_params: int          # parameters of the base without its ImageNet top
    base_layers: int          # len(model.layers) of the base without top
    imagenet_top1: float      # percent, single crop, from the paper
    paper_params_m: float     # millions, with the 1000-class top, from the paper
    paper_flops_b: float      # billions of FLOPs at native resolution, from the paper

    @property
    def label(self) -> str:
        return f"EfficientNet-{self.name.upper()}"

    @property
    def keras_constructor(self) -> str:
        return f"EfficientNet{self.name.upper()}"

    @property
    def weights_file(self) -> str:
        """Name Keras gives the downloaded no-top ImageNet weights of this variant."""
        return f"efficientnet{self.name}_notop.h5"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("b0", 1.0, 1.0, 224, 0.2, 4_049_571, 237, 77.1, 5.3, 0.39),
        Variant("b1", 1.0, 1.1, 240, 0.2, 6_575_239, 339, 79.1, 7.8, 0.70),
        Variant("b2", 1.1, 1.2, 260, 0.3, 7_768_569, 339, 80.1, 9.2, 1.0),
        Variant("b3", 1.2, 1.4, 300, 0.3, 10_783_535, 384, 81.6, 12.0, 1.8),
        Variant("b4", 1.4, 1.8, 380, 0.4, 17_673_823, 474, 82.9, 19.0, 4.2),
        Variant("b5", 1.6, 2.2, 456, 0.4, 28_513_527, 576, 83.6, 30.0, 9.9),
        Variant("b6", 1.8, 2.6, 528, 0.5, 40_960_143, 666, 84.0, 43.0, 19.0),
        Variant("b7", 2.0, 3.1, 600, 0.5, 64_097_687, 813, 84.3, 66.0, 37.0),
    )
}

VARIANT_NAMES: tuple[str, ...] = tuple(VARIANTS)


def get_variant(name: str) -> Variant:
    """Returns the variant called `name` ("b0" … "b7", case-insensitive).

    Raises:
        KeyError: with the allowed names, when `name` is not a variant.
    """
    try:
        return VARIANTS[name.lower()]
    except (KeyError, AttributeError):
        raise KeyError(f"variant must be one of {', '.join(VARIANT_NAMES)}; got {name!r}") from None
