"""Presets (core/settings/presets.py): valid settings, honest figures, the CLI's --preset and `presets`, the
from-scratch BatchNorm momentum, and bench/recipes.py --smoke so the benchmark cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.__main__ import build_parser, config_from_args, main
from core.settings.config import ConfigError, TrainConfig
from core.settings.presets import (FROM_SCRATCH, NOT_MEASURED, PRESET_NAMES, PRESETS, QUICK_DEMO, RECIPES_DOC,
                                   dashboard_presets, get_preset, quick_demo)
from conftest import run_folders

ROOT = Path(__file__).resolve().parents[1]


def test_every_preset_validates_and_says_what_it_reached():
    assert {"quick-demo", "best-cpu", "from-scratch", "notebook"} <= set(PRESET_NAMES)
    assert len(set(PRESET_NAMES)) == len(PRESETS)
    for preset in PRESETS:
        config = preset.config()
        assert all(getattr(config, name) == value for name, value in preset.settings.items()), preset.name
        assert preset.description.endswith(".") and preset.label, preset.name
        if preset.measured:
            for m in preset.measured:
                assert 0 < m.test_accuracy <= 1 and m.minutes > 0 and m.machine and m.through, preset.name
            assert preset.figure_text().startswith(f"{100 * preset.measured[0].test_accuracy:.1f}% test accuracy")
        else:
            assert preset.figure_text() == NOT_MEASURED
        assert preset.expectation.endswith(f"Measured: {preset.figure_text()}.")


def test_quick_demo_is_one_pass_from_imagenet_weights_at_64_px_and_best_cpu_the_same_at_128():
    c = QUICK_DEMO.config()
    assert (c.variant, c.weights, c.image_size, c.epochs) == ("b0", "imagenet", 64, 1)
    # No head epoch: blocks 4-7 (depthwise kernels kept) and the head train from the first step.
    assert c.freeze_base and c.fine_tune_from_start and not c.has_fine_tune_phase_within(c.epochs)
    assert (c.fine_tune_from_block, c.fine_tune_depthwise) == (4, False)
    assert (c.lr_schedule, c.label_smoothing, c.train_limit, c.val_fraction) == ("cosine", 0.1, 0, 0.0)
    assert c.test_time_flip and c.test_time_flip_below == 0.85          # the unsure images only
    from core.training.train import cosine_rate
    assert cosine_rate(c, 0.0) == pytest.approx(3e-4, rel=0.01)
    best = get_preset("best-cpu").config()
    assert best.image_size == 120 and best.replace(image_size=64) == c
    assert c.augment_flip and c.augment_crop_padding == 0   # one pass: flip, no translate


def test_an_unknown_preset_names_the_allowed_ones():
    with pytest.raises(ConfigError) as caught:
        get_preset("fastest")
    assert caught.value.field == "preset"
    assert all(name in str(caught.value) for name in PRESET_NAMES) and "'fastest'" in str(caught.value)


def test_without_imagenet_weights_the_quick_demo_trains_from_scratch_and_says_so():
    offline = dashboard_presets(imagenet_available=False)
    quick = offline[0]
    assert quick.name == "quick-demo" and "Quick demo" in quick.label
    assert quick.config().weights == "none" and quick.settings == FROM_SCRATCH.settings
    assert "not available" in quick.expectation and FROM_SCRATCH.figure_text() in quick.expectation
    assert not any(p.name == "from-scratch" for p in offline)     # not offered twice
    online = dashboard_presets(imagenet_available=True)
    assert online[0] is QUICK_DEMO and quick_demo(True).config().weights == "imagenet"
    assert [p.name for p in online] == list(PRESET_NAMES)


def _parsed(*argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_cli_preset_then_config_file_then_flags(tmp_path):
    assert _parsed("--preset", "best-cpu") == get_preset("best-cpu").config()
    settings = tmp_path / "mine.json"
    settings.write_text(json.dumps({"image_size": 96, "epochs": 3}))
    config = _parsed("--preset", "quick-demo", "--config", str(settings), "--epochs", "4")
    # The file overrides only what it names; the flag overrides the file.
    assert (config.image_size, config.epochs, config.weights, config.label_smoothing) == (96, 4, "imagenet", 0.1)
    assert _parsed("--config", str(settings)) == TrainConfig(image_size=96, epochs=3)   # no preset: defaults


def test_cli_unknown_preset_is_one_line_exit_2(tmp_path, capsys):
    code = main(["--runs-dir", str(tmp_path), "train", "--preset", "nope"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: preset:") and all(name in err for name in PRESET_NAMES)
    assert not run_folders(tmp_path)      # nothing was created


def test_cli_presets_lists_each_with_its_figure(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path), "presets"]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS:
        assert f"{preset.name}\n" in out and preset.figure_text() in out
    assert "--image-size 64" in out and "--freeze-base" in out and "--no-augment-flip" in out


def test_recipes_doc_exists_and_quotes_the_presets_figures():
    text = RECIPES_DOC.read_text(encoding="utf-8")
    for preset in PRESETS:
        for m in preset.measured:
            assert f"{100 * m.test_accuracy:.1f}%" in text, preset.name


@pytest.mark.parametrize("settings, field", [
    (dict(fine_tune_from_start=True), "fine_tune_from_start"),                     # nothing frozen to skip
    (dict(freeze_base=True, fine_tune_from_start=True, fine_tune_at_epoch=1, epochs=2), "fine_tune_at_epoch"),
])
def test_fine_tune_from_start_refuses_settings_that_contradict_it(settings, field):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**settings)
    assert caught.value.field == field


def test_drop_connect_rate_scales_every_residual_dropout_of_the_base():
    import keras

    from core.training.model import build_model

    def rates(config):
        return [layer.rate for layer in build_model(config).layers
                if isinstance(layer, keras.layers.Dropout) and layer.name.endswith("_drop")]

    keras_own = rates(TrainConfig())
    assert len(keras_own) > 5 and max(keras_own) < 0.2 and keras_own == sorted(keras_own)   # deeper: more
    assert rates(TrainConfig(drop_connect_rate=0.0)) == [0.0] * len(keras_own)
    assert rates(TrainConfig(drop_connect_rate=0.4)) == pytest.approx([2 * r for r in keras_own])


def test_test_time_flip_averages_each_test_image_with_its_mirror_or_only_the_unsure_ones():
    import keras
    import numpy as np

    from core.data.cifar10 import Cifar10
    from core.training.progress import Progress
    from core.training.train import predict_test_set
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
    cifar = Cifar10(x, np.zeros(37, int), x, np.arange(37) % 10, "test")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))   # sees left from right
    plain = TrainConfig(augment_flip=False, augment_crop_padding=0)
    once = predict_test_set(model, plain, cifar, Progress(), batch_size=16)
    mirrored = predict_test_set(model, plain, Cifar10(x, cifar.y_train, x[:, :, ::-1], cifar.y_test, "test"),
                                Progress(), batch_size=16)
    both = predict_test_set(model, plain.replace(test_time_flip=True), cifar, Progress(), batch_size=16)
    assert np.abs(once - mirrored).max() > 1e-3      # the model tells a mirror apart: the test can fail
    np.testing.assert_allclose(both, (once + mirrored) / 2, atol=1e-6)

    # Only below a confidence: the unsure images are averaged with their mirrors, the others keep
    # their own probabilities, and the mirror pass sees the unsure ones alone.
    below = float(np.median(once.max(axis=1)))
    unsure = once.max(axis=1) < below
    assert 0 < unsure.sum() < len(x)
    progress = Progress()
    some = predict_test_set(model, plain.replace(test_time_flip=True, test_time_flip_below=below), cifar,
                            progress, batch_size=16)
    assert progress.snapshot()["mirror_pass_images"] == int(unsure.sum())   # the mirror pass saw those alone
    np.testing.assert_allclose(some[unsure], both[unsure], atol=1e-6)
    np.testing.assert_allclose(some[~unsure], once[~unsure], atol=1e-6)


def test_bn_momentum_sets_every_batchnorm_layer_of_the_base():
    import keras

    from core.training.model import build_model

    def momenta(config):
        return {layer.momentum for layer in build_model(config).layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(TrainConfig()) == {0.99}                        # Keras' own: today's behaviour
    assert momenta(TrainConfig(bn_momentum=0.9)) == {0.9}
    with pytest.raises(ConfigError, match="bn_momentum"):
        TrainConfig(bn_momentum=1.0)


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.small_network      # the subject is the script, not the recipe's network
def test_bench_recipes_smoke_trains_through_the_engine(tmp_path, fixture_data_dir):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Without the preset's test-time flip, so that the script's own mirrored pass runs too.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "recipes.py"), "--recipe", "from-scratch",
                           "--smoke", "--set", "test_time_flip=false", "--data-dir", fixture_data_dir,
                           "--runs-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["recipe"], result["state"], result["smoke"]) == ("from-scratch", "completed", True)
    assert 0 <= result["test_accuracy"] <= 1 and 0 <= result["mirror_test_accuracy"] <= 1
    assert result["minutes"] > 0 and result["machine"]["cores"] >= 1 and result["machine"]["cpu"] is not None
    steal = result["machine"]["steal_percent"]
    assert steal is None or 0 <= steal <= 100
    assert result["training_images"] == 200 and result["settings"]["bn_momentum"] == 0.9
    assert Path(result["run"]).parent == tmp_path


def test_bench_recipes_steal_is_the_hosts_share_of_cpu_time():
    from bench.recipes import steal_percent
    # /proc/stat's first eight counters: user, nice, system, idle, iowait, irq, softirq, steal.
    before = [100, 0, 10, 50, 0, 0, 0, 40, 7, 0]
    after = [250, 0, 30, 80, 0, 0, 0, 140, 9, 0]    # 300 ticks passed, 100 of them stolen
    assert steal_percent(before, after) == 33.3
    assert steal_percent([], after) is None and steal_percent(before, before) is None


def test_train_page_offers_the_presets_and_what_we_tried(app_factory, tmp_path):
    at = app_factory(tmp_path / "runs")("../pages/train.py")
    from dashboard.train_form import imagenet_available, presets
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for preset in presets():
        if preset.cannot_run_here(imagenet_available=imagenet_available(), on_gpu=False):
            line = preset.cannot_run_here(imagenet_available=imagenet_available(), on_gpu=False)
            assert any(preset.label.split(": ", 1)[1] in c.value and line in c.value for c in at.caption), \
                (preset.name, [c.value for c in at.caption])
        else:   # a card: its name, and in its Details the recipe with what it measured
            assert f"**{preset.label}**" in shown and preset.expectation in shown, preset.name
    tried = next(e for e in at.expander if "What we tried" in e.label)
    shown = tried.markdown[0].value
    assert "# Recipes: accuracy per minute" in shown and "## D. Through the engine, this lab's machine idle" in shown


def test_each_card_says_in_a_few_words_what_it_shows_and_where_it_cannot_run():
    """Issue 32: a card's line is read at a glance; a preset this machine cannot run says why."""
    from core.settings.presets import SUMMARY_MAX_WORDS, TRANSFER_GPU
    for preset in (*PRESETS, quick_demo(imagenet_available=False)):
        assert preset.summary and len(preset.summary.split()) <= SUMMARY_MAX_WORDS, preset.name
    assert quick_demo(imagenet_available=False).summary != QUICK_DEMO.summary      # it says what it does instead
    assert get_preset("best-cpu").cannot_run_here(imagenet_available=False, on_gpu=True).startswith("needs ImageNet")
    assert TRANSFER_GPU.cannot_run_here(imagenet_available=True, on_gpu=False).startswith("made for a GPU")
    assert TRANSFER_GPU.cannot_run_here(imagenet_available=True, on_gpu=True) == ""
    assert QUICK_DEMO.expected_accuracy == QUICK_DEMO.measured[0].test_accuracy
    assert get_preset("notebook").expected_accuracy is None              # never a figure it cannot reach
