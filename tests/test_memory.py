"""core/estimates/memory.py: the peak-memory estimate against the points it was fitted to, the checks the
issue asks for on this machine, and the boundaries (largest batch, prediction batch) it names."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.estimates import memory
from core.settings.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
GIB = 2 ** 30


def _config(variant="b0", image_size=32, batch_size=128, **more) -> TrainConfig:
    return TrainConfig(variant=variant, image_size=image_size, batch_size=batch_size, **more)


def test_b7_at_600_px_with_batch_186_is_refused_here_naming_the_largest_batch():
    config = _config("b7", 600, 186)
    with pytest.raises(ConfigError) as caught:
        memory.check_fits(config)                           # this machine's MemAvailable
    error, text = caught.value, str(caught.value)
    assert error.field == "batch_size" and text.startswith("batch_size: expected ")
    assert "got 186" in text and "MemAvailable in /proc/meminfo" in text
    estimate, free = (float(x.replace(",", "")) for x in re.findall(r"([\d,]+\.\d) GB", text)[:2])
    assert estimate > free
    largest = re.search(r"at most (\d+) for B7 at 600 px", text)
    if largest:                                              # named, and a batch that truly fits
        assert 1 <= int(largest.group(1)) < 186
    else:                                                    # or, on a small machine, said that none does
        assert "no batch_size fits" in text


def test_b0_at_32_px_with_batch_128_is_accepted_here():
    plan = memory.check_fits(_config("b0", 32, 128))
    assert plan.fits and plan.needed < plan.usable and plan.predict_batch == 256
    assert plan.largest_batch >= 128


def _loaded() -> bool:
    """What budget() assumes: once TensorFlow is imported (earlier tests in the same process),
    its own memory is already in use and no longer counted as still needed."""
    return "tensorflow" in sys.modules


def test_the_largest_batch_named_is_the_boundary():
    config = _config("b0", 224, 256)
    available = 8 * GIB
    with pytest.raises(ConfigError, match=r"at most (\d+) for B0 at 224 px") as caught:
        memory.check_fits(config, available, device="cpu")
    largest = int(re.search(r"at most (\d+)", str(caught.value)).group(1))
    usable = int(available * memory.USABLE_FRACTION)
    at = functools.partial(memory.estimate_peak_bytes, config, predict_batch=1, device="cpu", runtime_loaded=_loaded())
    assert at(batch_size=largest) <= usable
    assert at(batch_size=largest + 1) > usable
    plan = memory.check_fits(config.replace(batch_size=largest), available, device="cpu")
    assert plan.fits and 1 <= plan.predict_batch <= 256        # prediction batch lowered to fit beside it


def test_nothing_fits_says_so():
    with pytest.raises(ConfigError, match="no batch_size fits B7 at 600 px") as caught:
        memory.check_fits(_config("b7", 600, 8), 2 * GIB, device="cpu")
    assert "Even batch 1 does not fit" in str(caught.value)


def test_prediction_at_256_images_is_part_of_the_budget():
    """Validation and test prediction run max(batch, 256) images at once: for B0 at 224 px that
    costs more than training a batch of 8, so a small batch cannot hide it."""
    config = _config("b0", 224, 8)
    default = memory.estimate_peak_bytes(config, device="cpu")
    assert default == memory.estimate_peak_bytes(config, predict_batch=256, device="cpu")
    assert default > memory.estimate_peak_bytes(config, predict_batch=8, device="cpu")
    tight = memory.estimate_peak_bytes(config, predict_batch=64, device="cpu", runtime_loaded=_loaded())
    plan = memory.check_fits(config, int(tight / memory.USABLE_FRACTION) + 1, device="cpu")
    assert plan.predict_batch == 64


def test_the_estimate_reproduces_the_measured_points():
    """Within 12% of every peak RSS bench/memory_fit.py measured (the fit's own residuals are <10%)."""
    for variant, size, batch, peak_mib in memory.MEASURED_POINTS:
        estimate = memory.estimate_peak_bytes(_config(variant, size, batch), device="cpu") / 2 ** 20
        assert estimate == pytest.approx(peak_mib, rel=0.12), (variant, size, batch)


def test_the_estimate_grows_as_the_activations_do():
    base = memory.estimate_peak_bytes(_config("b0", 64, 32), device="cpu")
    assert memory.estimate_peak_bytes(_config("b0", 64, 64), device="cpu") > base
    assert memory.estimate_peak_bytes(_config("b0", 96, 32), device="cpu") > base
    assert memory.estimate_peak_bytes(_config("b3", 64, 32), device="cpu") > base
    ordered = [memory.estimate_peak_bytes(_config(v, 224, 16), device="cpu") for v in memory.ACTIVATIONS_PER_PIXEL]
    assert ordered == sorted(ordered)
    assert (memory.estimate_peak_bytes(_config("b0", 224, 32, mixed_precision="on"), device="cpu")
            < memory.estimate_peak_bytes(_config("b0", 224, 32, mixed_precision="off"), device="cpu"))
    # Already-imported TensorFlow is in use, not still needed.
    assert (memory.estimate_peak_bytes(_config(), device="cpu")
            - memory.estimate_peak_bytes(_config(), device="cpu", runtime_loaded=True)) == memory.RUNTIME_BYTES


def test_a_gpu_is_checked_against_its_own_free_memory():
    config = _config("b0", 224, 64)
    on_gpu = memory.estimate_peak_bytes(config, device="gpu")      # mixed precision "auto": on, on a GPU
    assert on_gpu < memory.estimate_peak_bytes(config, device="cpu")
    with pytest.raises(ConfigError, match="as given"):
        memory.check_fits(config, on_gpu // 2, device="gpu")


def test_activation_counts_match_the_keras_models():
    """The table is what bench/memory_fit.py --count measures; re-count B0 and B2 from Keras."""
    import keras
    for name in ("b0", "b2"):
        constructor = getattr(keras.applications, f"EfficientNet{name.upper()}")
        base = constructor(include_top=False, weights=None, input_shape=(224, 224, 3))
        floats = sum(int(__import__("math").prod(layer.output.shape[1:])) for layer in base.layers[1:])
        assert floats / 224 ** 2 == pytest.approx(memory.ACTIVATIONS_PER_PIXEL[name], abs=0.1)


def test_predict_batch_agrees_with_the_engine():
    from core.training.train import PREDICT_BATCH
    assert memory.PREDICT_BATCH == PREDICT_BATCH


def test_a_cpu_predicts_fewer_images_at_once_the_larger_they_are():
    # Past the caches a CPU predicts slower per image (docs/RECIPES.md, table H); memory caps it too.
    from core.training.train import cpu_predict_batch
    assert [cpu_predict_batch(size) for size in (32, 64, 120, 224, 600)] == [256, 112, 32, 16, 16]


def test_meminfo_parsing(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684544 kB\nMemFree:         1000 kB\nMemAvailable:   19000000 kB\n")
    assert memory.host_available_bytes(str(meminfo)) == 19_000_000 * 1024
    meminfo.write_text("MemTotal: 5 kB\n")
    assert memory.host_available_bytes(str(meminfo)) is None
    assert memory.host_available_bytes(str(tmp_path / "absent")) is None


def test_no_tensorflow_is_imported():
    code = ("import sys; from core.estimates import memory; from core.settings.config import TrainConfig; "
            "memory.budget(TrainConfig()); print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_b0_at_600_px_with_batch_128_is_refused_on_a_laptop():
    """The issue's second example: 8 GB free, as on a laptop."""
    with pytest.raises(ConfigError, match=r"at most (\d+) for B0 at 600 px") as caught:
        memory.check_fits(_config("b0", 600, 128), 8 * GIB, device="cpu")
    assert 1 <= int(re.search(r"at most (\d+)", str(caught.value)).group(1)) < 128
