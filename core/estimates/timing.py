"""Rough time-per-epoch and whole-run estimates, from figures we measured, without importing TensorFlow.

Measured on 2-core CPUs (TensorFlow 2.21, B0 training its whole network, batch 128/32): 300
images/s at 32 px and 10 images/s at 224 px on the first CPU of DESIGN.md, 193 at 64 px on the
lab's Xeon. Throughput falls with FLOPs per image roughly as a power law; between neighbouring
anchors (and beyond the outer ones) the estimate follows the line through them in log-log, and
FLOPs per image come from the paper's figure at the native resolution scaled by (size / native)².
A run that trains only part of the network, or part of its steps at a smaller size (progressive
resizing), is faster by `training_speedup`. A whole run (`run_estimate`) adds the validation passes,
the test set with its mirror pass, and the first step's tracing. GPUs: no figure of ours yet, so a
GPU estimate is the CPU one divided by GPU_SPEEDUP and labelled as a guess.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from core.settings.variants import VARIANT_NAMES, get_variant

# (GFLOPs per image, images/s), measured: B0 @32, @64 and @224 px on 2 CPU cores, in FLOPs order.
CPU_ANCHORS = ((0.39 * (32 / 224) ** 2, 300.0), (0.39 * (64 / 224) ** 2, 193.0), (0.39, 10.0))
# How much faster an epoch runs when only part of the network trains, against all of it: B0 @64 px
# on the lab's 2-core Xeon, 2026-11-30 (docs/RECIPES.md, table E: the whole base 193 images/s,
# blocks 4-7 206, blocks 6-7 303, blocks 4-7 with their depthwise kernels kept 280, the head alone
# 534). Blocks 2, 3, 5 and 7 are our interpolation between the measured ones.
HEAD_ONLY_SPEEDUP = 534 / 193
FINE_TUNE_SPEEDUP = {1: 1.0, 2: 1.0, 3: 1.03, 4: 206 / 193, 5: 1.3, 6: 303 / 193, 7: 303 / 193}
DEPTHWISE_KEPT_SPEEDUP = 280 / 206
# Frozen BatchNorm folded into its frozen convolution (core.training.model.fold_frozen_batchnorm): best-cpu's
# epoch took 468 s instead of 521 on one 2-core AMD EPYC in one hour, and the same model predicted
# 224 images/s instead of 192 (docs/RECIPES.md, table M).
FOLDED_TRAINING_SPEEDUP = 521 / 468
FOLDED_PREDICT_SPEEDUP = 224 / 192
CPU_CORES_MEASURED = 2
GPU_SPEEDUP = 30.0           # a guess for a recent NVIDIA GPU against those 2 cores; not measured
FIRST_STEP_SECONDS = 25.0    # graph tracing before the first batch (B7: ~90 s)
# Predicting (validation, the test set) against training the whole network: B0 @64 px on the lab's
# Xeon, 576 images/s predicting against 193 training (docs/RECIPES.md, table E).
PREDICT_SPEEDUP = 576 / 193
TEST_IMAGES = 10_000         # CIFAR-10's test set, predicted once at the end of every run
# The share of the test images a test-time flip below a confidence threshold mirrors: 14-37% at
# 0.80-0.85 for the presets' checkpoints (docs/RECIPES.md, table I).
UNSURE_SHARE = 0.3
# An evaluation job's start before its first test batch: starting TensorFlow, loading the checkpoint
# and CIFAR-10 (bench/README.md, "Evaluate now through the queue").
EVALUATION_START_SECONDS = 6.0


def gflops_per_image(variant: str, image_size: int) -> float:
    v = get_variant(variant)
    return v.paper_flops_b * (image_size / v.resolution) ** 2


def _cpu_images_per_second(gflops: float) -> float:
    # The segment between the two anchors around `gflops` (the outer segment beyond either end).
    segment = next((i for i in range(len(CPU_ANCHORS) - 2) if gflops <= CPU_ANCHORS[i + 1][0]),
                   len(CPU_ANCHORS) - 2)
    (f1, t1), (f2, t2) = CPU_ANCHORS[segment], CPU_ANCHORS[segment + 1]
    exponent = math.log(t1 / t2) / math.log(f2 / f1)
    return t1 * (f1 / gflops) ** exponent


def training_speedup(config: Mapping) -> float:
    """How much faster than training the whole network a run's epochs go on average, from the
    settings (a TrainConfig's dict): the head alone on a frozen base, then fine-tuning from a block
    (its depthwise kernels kept or not), or fine-tuning from the first step."""
    try:
        return _training_speedup(config)
    except (TypeError, ValueError):   # a half-filled form or an odd config file: no speed-up claimed
        return 1.0


def _training_speedup(config: Mapping) -> float:
    folded = FOLDED_TRAINING_SPEEDUP if folds_batchnorm(config) else 1.0
    return _trainable_part_speedup(config) * _progressive_speedup(config) * folded


def folds_batchnorm(config: Mapping) -> bool:
    """Whether core.training.model folds some frozen BatchNorm of a run of these settings: a frozen base,
    and some convolution no phase opens (below the fine-tuning block, or a kept depthwise kernel)."""
    if not config.get("freeze_base") or not config.get("fold_frozen_batchnorm", True):
        return False
    fine_tunes = config.get("fine_tune_from_start") or int(config.get("fine_tune_at_epoch", 0)) > 0
    opens_everything = int(config.get("fine_tune_from_block", 1)) == 1 and config.get("fine_tune_depthwise", True)
    return not (fine_tunes and opens_everything)


def relative_cost(variant: str, size: int, other_size: int) -> float:
    """Seconds per image at `size` over seconds per image at `other_size` (the CPU power law)."""
    return (_cpu_images_per_second(gflops_per_image(variant, other_size))
            / _cpu_images_per_second(gflops_per_image(variant, size)))


def _progressive_speedup(config: Mapping) -> float:
    # Progressive resizing: a share of the steps at a smaller size, each that much cheaper.
    start = int(config.get("progressive_start_size") or 0)
    if not start:
        return 1.0
    variant, size = str(config.get("variant", "b0")), int(config["image_size"])
    share = float(config.get("progressive_start_fraction", 0.5))
    return 1 / (share * relative_cost(variant, start, size) + 1 - share)


def _trainable_part_speedup(config: Mapping) -> float:
    if not config.get("freeze_base"):
        return 1.0
    fine_tune = FINE_TUNE_SPEEDUP.get(int(config.get("fine_tune_from_block", 1)), 1.0)
    if not config.get("fine_tune_depthwise", True):
        fine_tune *= DEPTHWISE_KEPT_SPEEDUP
    epochs = max(1, int(config.get("epochs", 1)))
    # Epochs on the head alone: none when fine-tuning from the start, all when it never fine-tunes.
    head_epochs = 0 if config.get("fine_tune_from_start") else \
        min(int(config.get("fine_tune_at_epoch", 0)) or epochs, epochs)
    relative_time = head_epochs / HEAD_ONLY_SPEEDUP + (epochs - head_epochs) / fine_tune
    return epochs / relative_time


@lru_cache(maxsize=1)
def detect_device() -> dict:
    """{"kind": "gpu"|"cpu", "name": ..., "count": n} without importing TensorFlow (nvidia-smi)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                return {"kind": "gpu", "name": out[0], "count": len(out)}
        except (OSError, subprocess.SubprocessError):
            pass
    return {"kind": "cpu", "name": f"CPU, {os.cpu_count()} cores", "count": os.cpu_count() or 1}


def images_per_second(variant: str, image_size: int, device: dict | None = None) -> float:
    device = device or detect_device()
    rate = _cpu_images_per_second(gflops_per_image(variant, image_size))
    if device["kind"] == "gpu":
        return rate * GPU_SPEEDUP * device["count"]
    return rate * max(1, device["count"]) / CPU_CORES_MEASURED   # more cores help, roughly linearly


def epoch_seconds(variant: str, image_size: int, n_images: int, device: dict | None = None,
                  speedup: float = 1.0) -> float:
    """Seconds for one epoch over `n_images` training images (validation not included), training
    the whole network, or `speedup` times faster (`training_speedup`)."""
    return n_images / (images_per_second(variant, image_size, device) * speedup)


@dataclass(frozen=True)
class RunEstimate:
    """Seconds a whole run should take, by part (rough: the same measured speeds as epoch_seconds)."""

    training: float      # every epoch's training steps
    validation: float    # every epoch's pass over the validation images
    test: float          # the test set at the end, and its mirror pass where the test-time flip is on
    tracing: float       # the graph tracing before the first step

    @property
    def total(self) -> float:
        return self.training + self.validation + self.test + self.tracing


def run_estimate(config: Mapping, n_train: int, device: dict | None = None,
                 n_test: int = TEST_IMAGES) -> RunEstimate:
    """The whole run of these settings (a TrainConfig's dict) on `n_train` training images: the
    validation images are the share val_fraction holds out beside them (core.data.cifar10.split_train_val),
    every image is predicted PREDICT_SPEEDUP times faster than it trains (FOLDED_PREDICT_SPEEDUP
    times more with frozen BatchNorm folded)."""
    rate = images_per_second(str(config.get("variant", "b0")), int(config["image_size"]), device)
    epochs = max(1, int(config.get("epochs", 1)))
    val_fraction = float(config.get("val_fraction", 0.0))
    n_val = round(n_train * val_fraction / (1 - val_fraction)) if val_fraction < 1 else 0
    mirrored = 0.0
    if config.get("test_time_flip"):
        mirrored = 1.0 if float(config.get("test_time_flip_below", 1.0)) >= 1 else UNSURE_SHARE
    predict_rate = rate * PREDICT_SPEEDUP * (FOLDED_PREDICT_SPEEDUP if folds_batchnorm(config) else 1.0)
    return RunEstimate(training=epochs * n_train / (rate * training_speedup(config)),
                       validation=epochs * n_val / predict_rate,
                       test=n_test * (1 + mirrored) / predict_rate, tracing=FIRST_STEP_SECONDS)


def evaluation_seconds(config: Mapping, device: dict | None = None) -> float:
    """About how long an evaluation job ("Evaluate now") of a run with these settings takes."""
    return EVALUATION_START_SECONDS + run_estimate(config, 0, device).test


def estimate_table(image_size: int, n_images: int, device: dict | None = None,
                   speedup: float = 1.0) -> list[dict]:
    """One row per variant: variant label, images/s and seconds per epoch at `image_size`."""
    return [{"variant": name.upper(), "images_per_second": images_per_second(name, image_size, device) * speedup,
             "seconds_per_epoch": epoch_seconds(name, image_size, n_images, device, speedup)}
            for name in VARIANT_NAMES]


# --- which devices TensorFlow sees, and what to do when it misses a GPU ----------------------------
TF_PROBE_SECONDS = 60        # importing TensorFlow with CUDA can take a while on first use
_TF_PROBE = ("import json, tensorflow as tf; print(json.dumps({'version': tf.__version__, "
             "'cuda': tf.test.is_built_with_cuda(), "
             "'gpus': [d.name for d in tf.config.list_physical_devices('GPU')]}))")


@dataclass(frozen=True)
class DeviceReport:
    """What the machine has and what TensorFlow can use of it, in words for the Train page."""

    nvidia_gpus: tuple[str, ...]           # names `nvidia-smi -L` lists (empty: none, or no driver)
    tensorflow_gpus: tuple[str, ...] | None  # GPUs TensorFlow sees; None when TensorFlow was not asked
    tensorflow_version: str | None
    message: str                           # one or two sentences
    fix_command: str | None                # the one command that fixes it, when something needs fixing

    @property
    def gpu_unused(self) -> bool:
        """An NVIDIA GPU is present and TensorFlow was asked and cannot use it."""
        return bool(self.nvidia_gpus) and self.tensorflow_gpus == ()


def nvidia_gpu_names() -> tuple[str, ...]:
    """GPU names from `nvidia-smi -L` ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: ...)"); () without one."""
    if platform.system() != "Linux" or not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.split(":", 1)[1].split("(UUID")[0].strip()
                 for line in out.splitlines() if line.startswith("GPU ") and ":" in line)


def _tensorflow_view() -> dict | None:
    """TensorFlow's own answer: in this process if it is already imported, else in a child process
    (importing TensorFlow costs seconds and most of a GB, which the dashboard does not pay for a label)."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf
        return {"version": tf.__version__, "cuda": tf.test.is_built_with_cuda(),
                "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}
    try:
        out = subprocess.run([sys.executable, "-c", _TF_PROBE], capture_output=True, text=True,
                             timeout=TF_PROBE_SECONDS, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def cuda_install_command(version: str) -> str:
    """The command that installs TensorFlow's CUDA build (and its CUDA libraries) into this Python."""
    return f'{sys.executable} -m pip install "tensorflow[and-cuda]=={version}"'


@lru_cache(maxsize=2)
def device_report(ask_tensorflow: bool = False) -> DeviceReport:
    """Which devices TensorFlow sees, and the fix when it misses an NVIDIA GPU that is there.

    Args:
        ask_tensorflow: Ask TensorFlow itself (in a child process unless it is already imported:
            a few seconds, once per process). Without it only nvidia-smi is consulted.
    """
    gpus = nvidia_gpu_names()
    listed = f"{len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''} ({', '.join(sorted(set(gpus)))})"
    cpu = f"the CPU ({os.cpu_count()} cores)"
    if not ask_tensorflow:
        return DeviceReport(gpus, None, None, f"{listed} found by nvidia-smi." if gpus else
                            f"No NVIDIA GPU found (nvidia-smi): training runs on {cpu}.", None)
    view = _tensorflow_view()
    if view is None:
        return DeviceReport(gpus, None, None, "TensorFlow could not be imported to ask which devices "
                            "it sees; run `make run` again to reinstall the requirements.", None)
    seen, version = tuple(view["gpus"]), view["version"]
    if seen:
        return DeviceReport(gpus, seen, version, f"TensorFlow {version} trains on {len(seen)} GPU"
                            f"{'s' if len(seen) > 1 else ''}" + (f": {listed}." if gpus else "."), None)
    if not gpus:
        return DeviceReport(gpus, seen, version, f"TensorFlow {version} trains on {cpu}; no NVIDIA GPU "
                            "found (nvidia-smi).", None)
    fix = cuda_install_command(version)
    if not view["cuda"]:
        why = f"this TensorFlow {version} is the CPU-only build"
    else:
        why = (f"TensorFlow {version} is built for CUDA but finds no usable GPU: its CUDA libraries "
               "are missing or the NVIDIA driver is older than they need (then update the driver)")
    return DeviceReport(gpus, seen, version, f"{listed} present, but {why}, so training runs on {cpu}. "
                        "Install TensorFlow's CUDA build with the command below, then restart the "
                        "dashboard.", fix)
