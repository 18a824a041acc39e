"""Epoch-time estimates (core/estimates/timing.py): they pass through the speeds we measured, and a run that
trains only part of the network is estimated faster by what we measured for that part."""

import pytest

from core.data.cifar10 import training_images
from core.estimates.timing import (DEPTHWISE_KEPT_SPEEDUP, FINE_TUNE_SPEEDUP, FIRST_STEP_SECONDS, FOLDED_PREDICT_SPEEDUP,
                                   FOLDED_TRAINING_SPEEDUP, HEAD_ONLY_SPEEDUP, PREDICT_SPEEDUP, TEST_IMAGES, UNSURE_SHARE,
                                   epoch_seconds, folds_batchnorm, images_per_second, run_estimate, training_speedup)
from core.settings.config import TrainConfig
from core.settings.presets import BEST_CPU, FROM_SCRATCH, QUICK_DEMO, THIS_MACHINE_IDLE

TWO_CORES = {"kind": "cpu", "name": "CPU, 2 cores", "count": 2}


def test_the_estimate_passes_through_the_measured_speeds():
    for size, measured in ((32, 300.0), (64, 193.0), (224, 10.0)):
        assert images_per_second("b0", size, TWO_CORES) == pytest.approx(measured)
    speeds = [images_per_second("b0", size, TWO_CORES) for size in (16, 32, 48, 64, 128, 224, 600)]
    assert speeds == sorted(speeds, reverse=True)             # larger images: slower, everywhere


def test_what_trains_sets_the_speedup():
    assert training_speedup(TrainConfig().to_dict()) == 1.0   # the whole network
    # The speed-ups by what trains were measured before frozen BatchNorm was folded.
    unfolded = dict(weights="imagenet", freeze_base=True, fold_frozen_batchnorm=False)
    head_only = TrainConfig(**unfolded, epochs=3).to_dict()
    assert training_speedup(head_only) == pytest.approx(HEAD_ONLY_SPEEDUP)
    two_phases = TrainConfig(**unfolded, fine_tune_at_epoch=1, epochs=2).to_dict()
    assert training_speedup(two_phases) == pytest.approx(2 / (1 / HEAD_ONLY_SPEEDUP + 1))
    assert training_speedup(QUICK_DEMO.config(fold_frozen_batchnorm=False).to_dict()) == \
        pytest.approx(FINE_TUNE_SPEEDUP[4] * DEPTHWISE_KEPT_SPEEDUP)
    assert training_speedup({"freeze_base": True, "epochs": None}) == 1.0   # a half-filled form


def test_folding_frozen_batchnorm_speeds_up_the_runs_that_fold():
    quick = QUICK_DEMO.config()
    assert folds_batchnorm(quick.to_dict())
    assert training_speedup(quick.to_dict()) == pytest.approx(
        FINE_TUNE_SPEEDUP[4] * DEPTHWISE_KEPT_SPEEDUP * FOLDED_TRAINING_SPEEDUP)
    plain = run_estimate(quick.replace(fold_frozen_batchnorm=False).to_dict(), 50_000, TWO_CORES)
    folded = run_estimate(quick.to_dict(), 50_000, TWO_CORES)
    assert folded.test == pytest.approx(plain.test / FOLDED_PREDICT_SPEEDUP)
    # Nothing folds where nothing stays frozen: the whole base fine-tunes, or the base trains.
    assert not folds_batchnorm(TrainConfig(weights="imagenet", freeze_base=True, fine_tune_from_start=True).to_dict())
    assert not folds_batchnorm(TrainConfig(weights="imagenet").to_dict())
    assert not folds_batchnorm(FROM_SCRATCH.config().to_dict())
    # A frozen base that never fine-tunes, or one whose depthwise kernels stay, folds.
    assert folds_batchnorm(TrainConfig(weights="imagenet", freeze_base=True).to_dict())
    assert folds_batchnorm(TrainConfig(weights="imagenet", freeze_base=True, fine_tune_from_start=True,
                                       fine_tune_depthwise=False).to_dict())


def test_progressive_resizing_speeds_up_by_the_share_of_steps_at_the_smaller_size():
    whole = TrainConfig(image_size=120).to_dict()
    cost_at_88 = images_per_second("b0", 120, TWO_CORES) / images_per_second("b0", 88, TWO_CORES)
    assert 0.4 < cost_at_88 < 0.8   # fewer pixels: cheaper, if not quite by the pixel count
    for share in (0.25, 0.6, 1.0):
        progressive = TrainConfig(image_size=120, progressive_start_size=88,
                                  progressive_start_fraction=share).to_dict()
        assert training_speedup(progressive) == pytest.approx(1 / (share * cost_at_88 + 1 - share))
    # It multiplies what fine-tuning part of the network saves.
    both = {**QUICK_DEMO.config().to_dict(), "image_size": 120, "progressive_start_size": 88,
            "progressive_start_fraction": 0.5}
    assert training_speedup(both) == pytest.approx(
        FINE_TUNE_SPEEDUP[4] * DEPTHWISE_KEPT_SPEEDUP * FOLDED_TRAINING_SPEEDUP / (0.5 * cost_at_88 + 0.5))
    assert training_speedup(whole) == 1.0


def test_the_quick_demo_estimate_is_near_what_it_measured():
    # Its one epoch took 139 to 218 s on the lab's 2-core Xeon (docs/RECIPES.md, tables D and G).
    quick = QUICK_DEMO.config()
    seconds = epoch_seconds("b0", quick.image_size, 50_000, TWO_CORES, training_speedup(quick.to_dict()))
    assert 139 / 1.5 < seconds < 218 * 1.5
    best = BEST_CPU.config()   # 521 s at 120 px (G); the 224 px anchor is an older, slower CPU's: within 2x
    assert 521 / 2 < epoch_seconds("b0", best.image_size, 50_000, TWO_CORES, training_speedup(best.to_dict())) < 521 * 2


def test_a_whole_run_adds_validation_the_test_set_and_its_mirror_and_tracing():
    config = TrainConfig(image_size=64, epochs=3, val_fraction=0.1, test_time_flip=False).to_dict()
    rate = images_per_second("b0", 64, TWO_CORES)
    estimate = run_estimate(config, 45_000, TWO_CORES)
    assert estimate.training == pytest.approx(3 * epoch_seconds("b0", 64, 45_000, TWO_CORES))
    assert estimate.validation == pytest.approx(3 * 5_000 / (rate * PREDICT_SPEEDUP))    # 10% held out, each epoch
    assert estimate.test == pytest.approx(TEST_IMAGES / (rate * PREDICT_SPEEDUP))
    assert estimate.tracing == FIRST_STEP_SECONDS
    assert estimate.total == pytest.approx(estimate.training + estimate.validation + estimate.test + FIRST_STEP_SECONDS)
    every_image = run_estimate({**config, "test_time_flip": True, "test_time_flip_below": 1.0}, 45_000, TWO_CORES)
    unsure_only = run_estimate({**config, "test_time_flip": True, "test_time_flip_below": 0.85}, 45_000, TWO_CORES)
    assert every_image.test == pytest.approx(2 * estimate.test)
    assert unsure_only.test == pytest.approx((1 + UNSURE_SHARE) * estimate.test)
    assert run_estimate({**config, "val_fraction": 0.0}, 45_000, TWO_CORES).validation == 0


def test_the_presets_whole_runs_are_near_what_they_measured():
    for preset in (QUICK_DEMO, BEST_CPU, FROM_SCRATCH):
        config = preset.config().to_dict()
        measured = next(m for m in preset.measured if m.machine == THIS_MACHINE_IDLE)    # the Xeon's minutes
        minutes = run_estimate(config, training_images(config["train_limit"], config["val_fraction"]),
                               TWO_CORES).total / 60
        assert measured.minutes / 1.4 < minutes < measured.minutes * 1.4, (preset.name, minutes, measured.minutes)
