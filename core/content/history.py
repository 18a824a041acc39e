"""The CNN history table, as data with sources.

One frozen `Architecture` per row; every figure names where it comes from (`figures_source`).
Conventions:
- `year`: when the work was first public (its ILSVRC entry, or its arXiv preprint); `venue`
  names the formal publication.
- `ilsvrc_top5_error`: the ILSVRC classification entry's top-5 test error in percent, usually
  an ensemble (see `notes`); None for networks that were not an ILSVRC entry.
- `imagenet_top1` / `imagenet_top5`: single-model ImageNet (ILSVRC-2012 validation) accuracy in
  percent, None where no single-model figure is published. Rows that Keras ships take the Keras
  applications table (https://keras.io/api/applications/, single center crop); the others take
  their paper. `params_millions` of Keras rows is `count_params()` of keras.applications 3.15
  with its 1000-class top (e.g. VGG16 138,357,544).
- `depth_layers`: layers with weights as the paper counts them (Keras's `len(model.layers)`
  counts every op and is not comparable); None for EfficientNets, whose depth is a multiplier.
The EfficientNet B0-B7 Keras build table (width, depth, resolution, dropout) is core.settings.variants.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import pandas as pd

KERAS_TABLE = "Keras applications table, https://keras.io/api/applications/"
KERAS_COUNT = "keras.applications count_params() with top"
COMPOUND_SCALING = dict(alpha=1.2, beta=1.1, gamma=1.15)
BASE_RESOLUTION = 224  # EfficientNet-B0's input size, px


@dataclass(frozen=True)
class Architecture:
    """One row of the history table."""

    name: str
    year: int
    authors: str
    paper: str                        # title
    venue: str
    paper_id: str                     # "arXiv:…" or "doi:…"
    url: str
    params_millions: float | None
    depth_layers: int | None
    ilsvrc_top5_error: float | None   # percent, the ILSVRC entry (often an ensemble)
    imagenet_top1: float | None       # percent, single model
    imagenet_top5: float | None       # percent, single model
    flops_billions: float | None
    key_idea: str
    notes: str
    family: str                       # "EfficientNet" or "classic"
    figures_source: str


_RESNET = dict(year=2015, authors="K. He, X. Zhang, S. Ren, J. Sun",
               paper="Deep Residual Learning for Image Recognition", venue="CVPR 2016",
               paper_id="arXiv:1512.03385", url="https://arxiv.org/abs/1512.03385",
               flops_billions=None, family="classic")
_DENSENET = dict(year=2016, authors="G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger",
                 paper="Densely Connected Convolutional Networks", venue="CVPR 2017",
                 paper_id="arXiv:1608.06993", url="https://arxiv.org/abs/1608.06993",
                 ilsvrc_top5_error=None, flops_billions=None, family="classic",
                 key_idea="Each layer takes the feature maps of all earlier layers in its block "
                          "(by concatenation), so features are reused with few parameters.",
                 notes="single model, 224 px center crop; not an ILSVRC entry",
                 figures_source=f"{KERAS_TABLE}; params: {KERAS_COUNT}; depth: paper")

_CLASSIC = (
    Architecture(
        name="LeNet-5", year=1998, authors="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner",
        paper="Gradient-Based Learning Applied to Document Recognition",
        venue="Proceedings of the IEEE 86(11), 1998", paper_id="doi:10.1109/5.726791",
        url="https://doi.org/10.1109/5.726791", params_millions=0.06, depth_layers=5,
        ilsvrc_top5_error=None, imagenet_top1=None, imagenet_top5=None, flops_billions=None,
        key_idea="Convolutions with shared weights and subsampling, trained end to end by "
                 "backpropagation, to read handwritten digits.",
        notes="MNIST digits, not ImageNet or ILSVRC; ~60k trainable parameters; 7 layers "
              "counting subsampling, 5 with weights",
        family="classic", figures_source="LeCun et al. 1998 (paper)"),
    Architecture(
        name="AlexNet", year=2012, authors="A. Krizhevsky, I. Sutskever, G. E. Hinton",
        paper="ImageNet Classification with Deep Convolutional Neural Networks",
        venue="NeurIPS 2012 (reprinted in Communications of the ACM, 2017)",
        paper_id="doi:10.1145/3065386", url="https://doi.org/10.1145/3065386",
        params_millions=60.0, depth_layers=8, ilsvrc_top5_error=15.3, imagenet_top1=59.3,
        imagenet_top5=81.8, flops_billions=None,
        key_idea="A deep CNN trained on two GPUs with ReLUs, dropout and data augmentation; "
                 "it won ILSVRC-2012 by a wide margin.",
        notes="1st place ILSVRC-2012; 15.3% is an ensemble of 7 CNNs (runner-up: 26.2%); "
              "accuracy: 1 CNN on ILSVRC-2012 val (40.7% / 18.2% error)",
        family="classic", figures_source="Krizhevsky et al. 2012 (paper, Table 2)"),
    Architecture(
        name="ZFNet", year=2013, authors="M. D. Zeiler, R. Fergus",
        paper="Visualizing and Understanding Convolutional Networks", venue="ECCV 2014",
        paper_id="arXiv:1311.2901", url="https://arxiv.org/abs/1311.2901",
        params_millions=None, depth_layers=8, ilsvrc_top5_error=14.8, imagenet_top1=None,
        imagenet_top5=None, flops_billions=None,
        key_idea="Deconvolution views of what each layer learns, used to retune AlexNet "
                 "(7×7 stride-2 first layer).",
        notes="ILSVRC-2013 era; 14.8% is the paper's ensemble on the ILSVRC-2012 test set "
              "(the 2013 contest itself was won by Zeiler's Clarifai entry); parameter count "
              "not stated in the paper (AlexNet-sized)",
        family="classic", figures_source="Zeiler & Fergus 2014 (paper, Table 2)"),
    Architecture(
        name="GoogLeNet", year=2014,
        authors="C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, "
                "V. Vanhoucke, A. Rabinovich",
        paper="Going Deeper with Convolutions", venue="CVPR 2015", paper_id="arXiv:1409.4842",
        url="https://arxiv.org/abs/1409.4842", params_millions=6.8, depth_layers=22,
        ilsvrc_top5_error=6.67, imagenet_top1=None, imagenet_top5=89.93, flops_billions=None,
        key_idea="Inception modules: parallel 1×1, 3×3 and 5×5 convolutions behind 1×1 "
                 "bottlenecks, for depth on a small parameter budget.",
        notes="1st place ILSVRC-2014; 6.67% is an ensemble of 7 models × 144 crops; top-5: "
              "1 model, 1 crop (10.07% error); ~6.8M params summing Table 1 (the text says 12× "
              "fewer than AlexNet, ~5M); 22 layers with weights, 27 with pooling",
        family="classic", figures_source="Szegedy et al. 2014 (paper, Tables 1 and 5)"),
    Architecture(
        name="VGG-16", year=2014, authors="K. Simonyan, A. Zisserman",
        paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
        venue="ICLR 2015", paper_id="arXiv:1409.1556", url="https://arxiv.org/abs/1409.1556",
        params_millions=138.36, depth_layers=16, ilsvrc_top5_error=7.3, imagenet_top1=71.3,
        imagenet_top5=90.1, flops_billions=None,
        key_idea="Depth from stacks of small 3×3 convolutions in a uniform 16–19 layer design.",
        notes="2nd place ILSVRC-2014 classification; 7.3% is an ensemble of 7 nets (6.8% with "
              "2 after the contest); accuracy: single model, 224 px center crop",
        family="classic",
        figures_source=f"Simonyan & Zisserman 2014 (ILSVRC entry); {KERAS_TABLE}; "
                       f"params: {KERAS_COUNT}"),
    Architecture(
        name="ResNet-50", **_RESNET, params_millions=25.64, depth_layers=50,
        ilsvrc_top5_error=None, imagenet_top1=74.9, imagenet_top5=92.1,
        key_idea="Identity shortcuts make very deep networks trainable; 50 layers of 1×1-3×3-1×1 "
                 "bottleneck blocks.",
        notes="single model, 224 px center crop; not a separate ILSVRC entry",
        figures_source=f"{KERAS_TABLE}; params: {KERAS_COUNT}; depth: paper"),
    Architecture(
        name="ResNet-152", **_RESNET, params_millions=60.42, depth_layers=152,
        ilsvrc_top5_error=3.57, imagenet_top1=76.6, imagenet_top5=93.1,
        key_idea="The same residual design at 152 layers, still with fewer FLOPs than VGG-16.",
        notes="1st place ILSVRC-2015; 3.57% is an ensemble of 6 models of different depths "
              "(two of them 152-layer); accuracy: single model, 224 px center crop",
        figures_source=f"He et al. 2015 (paper, Table 5); {KERAS_TABLE}; params: {KERAS_COUNT}"),
    Architecture(
        name="Inception-v3", year=2015,
        authors="C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna",
        paper="Rethinking the Inception Architecture for Computer Vision", venue="CVPR 2016",
        paper_id="arXiv:1512.00567", url="https://arxiv.org/abs/1512.00567",
        params_millions=23.85, depth_layers=42, ilsvrc_top5_error=None, imagenet_top1=78.8,
        imagenet_top5=94.4, flops_billions=None,
        key_idea="Factorised convolutions (n×1 then 1×n), efficient grid reduction, label "
                 "smoothing and a batch-normalised auxiliary classifier.",
        notes="single model, single 299 px crop per the paper (21.2% / 5.6% error; also quoted "
              "in EfficientNet's Table 2); the Keras table gives 77.9% / 93.7% for its weights",
        family="classic",
        figures_source=f"Szegedy et al. 2015 (paper); params: {KERAS_COUNT}"),
    Architecture(name="DenseNet-121", **_DENSENET, params_millions=8.06, depth_layers=121,
                 imagenet_top1=75.0, imagenet_top5=92.3),
    Architecture(name="DenseNet-201", **_DENSENET, params_millions=20.24, depth_layers=201,
                 imagenet_top1=77.3, imagenet_top5=93.6),
)

# Tan & Le 2019, Table 2: (top-1 %, top-5 %, params M, FLOPs B); input px as Keras builds them.
_EFFICIENTNET_TABLE2 = {
    "B0": (77.1, 93.3, 5.3, 0.39, 224), "B1": (79.1, 94.4, 7.8, 0.70, 240),
    "B2": (80.1, 94.9, 9.2, 1.0, 260), "B3": (81.6, 95.7, 12.0, 1.8, 300),
    "B4": (82.9, 96.4, 19.0, 4.2, 380), "B5": (83.6, 96.7, 30.0, 9.9, 456),
    "B6": (84.0, 96.8, 43.0, 19.0, 528), "B7": (84.3, 97.0, 66.0, 37.0, 600),
}
_CIFAR10_TRANSFER = {"B0": 98.1, "B7": 98.9}  # Table 5

_EFFICIENTNET = tuple(
    Architecture(
        name=f"EfficientNet-{v}", year=2019, authors="M. Tan, Q. V. Le",
        paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
        venue="ICML 2019", paper_id="arXiv:1905.11946", url="https://arxiv.org/abs/1905.11946",
        params_millions=params, depth_layers=None, ilsvrc_top5_error=None, imagenet_top1=top1,
        imagenet_top5=top5, flops_billions=flops,
        key_idea=("A small baseline found by neural architecture search: MBConv blocks with "
                  "squeeze-and-excitation." if v == "B0" else
                  "B0 grown by compound scaling: depth, width and resolution scaled together."),
        notes=f"single model, {px} px; not an ILSVRC entry"
              + (f"; {_CIFAR10_TRANSFER[v]}% on CIFAR-10 after transfer (Table 5)"
                 if v in _CIFAR10_TRANSFER else ""),
        family="EfficientNet", figures_source="Tan & Le 2019 (paper, Table 2)")
    for v, (top1, top5, params, flops, px) in _EFFICIENTNET_TABLE2.items()
)

ARCHITECTURES: tuple[Architecture, ...] = _CLASSIC + _EFFICIENTNET
COLUMNS = tuple(f.name for f in fields(Architecture))


def history_frame() -> pd.DataFrame:
    """The history table, one row per architecture, sorted by year (table order within a year).

    Returns:
        A DataFrame with one column per `Architecture` field; missing figures are NaN.
    """
    frame = pd.DataFrame([asdict(a) for a in ARCHITECTURES], columns=list(COLUMNS))
    return frame.sort_values("year", kind="stable").reset_index(drop=True)


def compound_scaling(phi: float) -> dict:
    """EfficientNet's compound scaling for a compound coefficient phi.

    Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    ICML 2019 (arXiv:1905.11946), eq. 3: depth d = α^φ, width w = β^φ, resolution r = γ^φ,
    with α = 1.2, β = 1.1, γ = 1.15 found by grid search so that α·β²·γ² ≈ 2. FLOPs grow with
    d·w²·r², so by (α·β²·γ²)^φ ≈ 2^φ. Keras's B1–B7 use rounded, hand-set coefficients
    (core.settings.variants) rather than these exact powers.

    Args:
        phi: The compound coefficient (0 = B0).

    Returns:
        dict with phi, depth, width, resolution (multipliers), resolution_px (224·γ^φ, rounded)
        and flops (multiplier).

    Raises:
        ValueError: If phi is not a finite number.
    """
    if isinstance(phi, bool) or not isinstance(phi, numbers.Real) or not math.isfinite(phi):
        raise ValueError(f"phi must be a finite number, got {phi!r}")
    a, b, g = COMPOUND_SCALING["alpha"], COMPOUND_SCALING["beta"], COMPOUND_SCALING["gamma"]
    return {
        "phi": float(phi),
        "depth": a ** phi,
        "width": b ** phi,
        "resolution": g ** phi,
        "resolution_px": round(BASE_RESOLUTION * g ** phi),
        "flops": (a * b * b * g * g) ** phi,
    }
