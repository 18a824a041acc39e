"""core.content.history: sources present, the notebook's slips absent, EfficientNet facts per DESIGN.md."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from core.content.history import (ARCHITECTURES, COMPOUND_SCALING, Architecture, compound_scaling,
                                  history_frame)

BY_NAME = {a.name: a for a in ARCHITECTURES}

# DESIGN.md, "Reference facts": Tan & Le 2019 Table 2 (top-1 %, params M, FLOPs B).
EFFICIENTNET_DESIGN = {
    "B0": (77.1, 5.3, 0.39), "B1": (79.1, 7.8, 0.70), "B2": (80.1, 9.2, 1.0),
    "B3": (81.6, 12, 1.8), "B4": (82.9, 19, 4.2), "B5": (83.6, 30, 9.9),
    "B6": (84.0, 43, 19), "B7": (84.3, 66, 37),
}


def test_expected_rows_present_and_unique():
    names = [a.name for a in ARCHITECTURES]
    assert len(names) == len(set(names))
    expected = {"LeNet-5", "AlexNet", "ZFNet", "GoogLeNet", "VGG-16", "ResNet-50", "ResNet-152",
                "Inception-v3", "DenseNet-121", "DenseNet-201"}
    expected |= {f"EfficientNet-{v}" for v in EFFICIENTNET_DESIGN}
    assert set(names) == expected


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_every_row_has_a_source(arch: Architecture):
    assert re.fullmatch(r"(arXiv:\d{4}\.\d{4,5}|doi:10\.\d{4,}/\S+)", arch.paper_id)
    assert arch.url.startswith("https://")
    assert arch.paper_id.split(":", 1)[1] in arch.url
    for field in ("authors", "paper", "venue", "key_idea", "notes", "figures_source"):
        assert getattr(arch, field).strip(), field
    assert arch.family in ("EfficientNet", "classic")
    assert (arch.family == "EfficientNet") == arch.name.startswith("EfficientNet")
    if arch.imagenet_top1 is not None and "keras" not in arch.figures_source.lower():
        assert "paper" in arch.figures_source
    for value in (arch.ilsvrc_top5_error, arch.imagenet_top1, arch.imagenet_top5):
        assert value is None or 0 < value < 100
    if arch.imagenet_top1 is not None and arch.imagenet_top5 is not None:
        assert arch.imagenet_top5 > arch.imagenet_top1
    assert arch.params_millions is None or arch.params_millions > 0


def test_notebook_slips_are_not_repeated():
    googlenet = BY_NAME["GoogLeNet"]
    assert googlenet.params_millions != 4 and 5 <= googlenet.params_millions <= 7
    assert googlenet.ilsvrc_top5_error == 6.67 and googlenet.depth_layers == 22
    assert BY_NAME["ResNet-152"].ilsvrc_top5_error == 3.57
    assert "ensemble" in BY_NAME["ResNet-152"].notes


def test_classic_figures():
    alexnet = BY_NAME["AlexNet"]
    assert (alexnet.year, alexnet.ilsvrc_top5_error, alexnet.params_millions,
            alexnet.depth_layers) == (2012, 15.3, 60, 8)
    assert (BY_NAME["ZFNet"].year, BY_NAME["ZFNet"].ilsvrc_top5_error) == (2013, 14.8)
    vgg = BY_NAME["VGG-16"]
    assert (vgg.year, vgg.ilsvrc_top5_error, round(vgg.params_millions), vgg.depth_layers) == \
        (2014, 7.3, 138, 16)
    assert "2nd place" in vgg.notes
    assert round(BY_NAME["ResNet-50"].params_millions, 1) == 25.6
    assert round(BY_NAME["ResNet-152"].params_millions) == 60
    assert BY_NAME["ResNet-152"].depth_layers == 152 and BY_NAME["ResNet-152"].year == 2015
    lenet = BY_NAME["LeNet-5"]
    assert lenet.year == 1998 and lenet.params_millions == pytest.approx(0.06)
    assert lenet.ilsvrc_top5_error is None and "MNIST" in lenet.notes
    inception = BY_NAME["Inception-v3"]
    assert (inception.imagenet_top1, inception.imagenet_top5) == (78.8, 94.4)
    assert "paper" in inception.figures_source
    for name, top1, params in (("DenseNet-121", 75.0, 8.0), ("DenseNet-201", 77.3, 20.2)):
        assert BY_NAME[name].imagenet_top1 == top1
        assert BY_NAME[name].params_millions == pytest.approx(params, abs=0.1)
        assert "keras.io/api/applications" in BY_NAME[name].figures_source


@pytest.mark.parametrize("variant", EFFICIENTNET_DESIGN)
def test_efficientnet_rows_match_design(variant):
    arch = BY_NAME[f"EfficientNet-{variant}"]
    top1, params, flops = EFFICIENTNET_DESIGN[variant]
    assert (arch.imagenet_top1, arch.params_millions, arch.flops_billions) == (top1, params, flops)
    assert arch.year == 2019 and arch.paper_id == "arXiv:1905.11946"
    assert arch.ilsvrc_top5_error is None


def test_efficientnet_rows_agree_with_core_variants():
    variants = pytest.importorskip("core.settings.variants")
    for name, v in variants.VARIANTS.items():
        arch = BY_NAME[f"EfficientNet-{name.upper()}"]
        assert arch.imagenet_top1 == v.imagenet_top1
        assert arch.params_millions == v.paper_params_m
        assert arch.flops_billions == v.paper_flops_b
        assert f"{v.resolution} px" in arch.notes


def test_cifar10_transfer_facts():
    assert "98.1%" in BY_NAME["EfficientNet-B0"].notes
    assert "98.9%" in BY_NAME["EfficientNet-B7"].notes


def test_rows_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ARCHITECTURES[0].year = 2000


def test_history_frame_sorted_by_year():
    frame = history_frame()
    assert len(frame) == len(ARCHITECTURES)
    assert list(frame.columns) == [f.name for f in dataclasses.fields(Architecture)]
    assert frame["year"].is_monotonic_increasing
    assert frame["name"].iloc[0] == "LeNet-5"
    assert frame["figures_source"].str.len().min() > 0
    assert frame.loc[frame["name"] == "LeNet-5", "ilsvrc_top5_error"].isna().all()


def test_compound_scaling():
    assert COMPOUND_SCALING == {"alpha": 1.2, "beta": 1.1, "gamma": 1.15}
    base = compound_scaling(0)
    assert base == {"phi": 0.0, "depth": 1.0, "width": 1.0, "resolution": 1.0,
                    "resolution_px": 224, "flops": 1.0}
    a, b, g = COMPOUND_SCALING["alpha"], COMPOUND_SCALING["beta"], COMPOUND_SCALING["gamma"]
    assert a * b**2 * g**2 == pytest.approx(1.92, abs=0.005)
    one = compound_scaling(1)
    assert one["flops"] == pytest.approx(1.92, abs=0.005)
    assert (one["depth"], one["width"], one["resolution"]) == pytest.approx((1.2, 1.1, 1.15))
    assert one["resolution_px"] == 258
    two = compound_scaling(2.0)
    assert two["flops"] == pytest.approx(two["depth"] * two["width"] ** 2 * two["resolution"] ** 2)
    assert two["flops"] == pytest.approx(2 ** 2, rel=0.1)  # "≈ 2^φ"
    for bad in (math.nan, math.inf, "1", None, True):
        with pytest.raises(ValueError):
            compound_scaling(bad)
