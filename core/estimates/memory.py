"""Will a training config fit in memory? An estimate of its peak, checked before anything is allocated.

Training runs inside the dashboard's process, so a config that cannot fit does not just fail: the
out-of-memory killer takes the dashboard down with it. `check_fits` refuses such a config up front,
naming the estimate, what is free and the largest batch that fits.

The estimate is a fit to peak RSS measured here (bench/memory_fit.py; figures in bench/README.md):
short fits of B0 at 32-96 px and batch 32-96 and B2 at 64 px, one process per point, each
predicting one validation batch and then training, as an epoch does. With P = the prediction batch
(the engine's max(batch, 256)) and a(v, s) = image_size² × ACTIVATIONS_PER_PIXEL[variant]:

    peak ≈ runtime + BYTES_PER_PARAM × params
           + PREDICT_BYTES_PER_ACTIVATION × P × a(v, s) + BYTES_PER_ACTIVATION × batch × a(v, s)

ACTIVATIONS_PER_PIXEL counts the floats all layers of the base output per input pixel, from the
Keras model's shapes (`bench/memory_fit.py --count`): B7 holds 5.8× B0's per pixel, about its
width × depth (2.0 × 3.1). The fit is within 10% of every measured point; beyond them it
extrapolates (B7 at 600 px: ~4 GB per training image, ~0.3 GB per predicted one).

Prediction can cost more than training: 256 images of B7 at 600 px at once need ~70 GB. So
`budget` also gives the largest prediction batch, up to max(batch, 256), that fits beside the
run; the engine predicts in batches of that size (`MemoryBudget.predict_batch`) and a config is
refused only when training itself, with a prediction batch of 1, cannot fit.

No TensorFlow import here: this runs in the form, before Start. Not measured here (no GPU):
mixed precision is assumed to halve activation memory, and a GPU's memory is checked against
params, activations and a CUDA context (the runtime itself lives in host memory).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from core.estimates.timing import detect_device
from core.settings.config import MAX_BATCH_SIZE, ConfigError, TrainConfig
from core.settings.variants import get_variant

# Floats output per input pixel by all layers of the base (bench/memory_fit.py --count, at 224 px).
ACTIVATIONS_PER_PIXEL = {"b0": 497.5, "b1": 685.0, "b2": 717.2, "b3": 949.8, "b4": 1234.7,
                         "b5": 1691.1, "b6": 2160.4, "b7": 2883.2}
# The fit (bench/memory_fit.py, 2026-11-30, TensorFlow 2.21 on the shared 2-core CPU of DESIGN.md).
RUNTIME_BYTES = 828 * 2 ** 20                # TensorFlow, Keras and the engine imported
BYTES_PER_PARAM = 144.0                      # weights, gradients, optimizer slots, traced step
BYTES_PER_ACTIVATION = 4.38                  # per layer-output float of each training image
PREDICT_BYTES_PER_ACTIVATION = 0.295         # prediction keeps only the live tensors
# The measured points the fit came from: (variant, image_size, batch, peak RSS in MiB).
MEASURED_POINTS = (("b0", 32, 32, 1646), ("b0", 64, 32, 1911), ("b0", 96, 32, 2362),
                   ("b0", 64, 96, 2348), ("b2", 64, 32, 2343))
MIXED_PRECISION_ACTIVATION_FACTOR = 0.5      # float16 activations; assumed, not measured (no GPU here)
GPU_CONTEXT_BYTES = 600 * 2 ** 20            # CUDA context and cuDNN workspaces; assumed
PREDICT_BATCH = 256                          # core.training.train.PREDICT_BATCH (a test checks they agree)
USABLE_FRACTION = 0.9                        # leave a tenth of what is free to everything else
MEMINFO = "/proc/meminfo"
GPU_QUERY_SECONDS = 5.0
_gpu_query: list = [-GPU_QUERY_SECONDS, None]  # (when, free bytes) of the last nvidia-smi query


@dataclass(frozen=True)
class MemoryBudget:
    """What a config is estimated to need and what the device has free, in bytes."""

    needed: int               # estimated peak for this config (training or prediction, the larger)
    free: int                 # what is free on the device that will hold the activations
    usable: int               # the part of `free` a run may take (USABLE_FRACTION)
    where: str                # "host memory (MemAvailable in /proc/meminfo)", "GPU memory (nvidia-smi)", ...
    largest_batch: int        # the largest batch_size whose estimate fits `usable` (0: none)
    predict_batch: int        # the largest prediction batch, up to max(batch, 256), that fits (0: none)

    @property
    def fits(self) -> bool:
        return self.needed <= self.usable


def uses_gpu(device: str | None) -> bool:
    if device is not None:
        return device == "gpu"
    return detect_device()["kind"] == "gpu"


def _mixed(config: TrainConfig, on_gpu: bool) -> bool:
    return config.mixed_precision == "on" or (config.mixed_precision == "auto" and on_gpu)


def _activations(config: TrainConfig, batch: int) -> float:
    return batch * config.image_size ** 2 * ACTIVATIONS_PER_PIXEL[get_variant(config.variant).name]


def estimate_peak_bytes(config: TrainConfig, *, batch_size: int | None = None, predict_batch: int | None = None,
                        device: str | None = None, runtime_loaded: bool = False) -> int:
    """Estimated peak memory of training `config` and predicting with it, in bytes.

    Args:
        config: The settings (variant, image_size, batch_size, mixed_precision count).
        batch_size: Estimate for this batch instead of config.batch_size (per GPU on GPUs).
        predict_batch: Images predicted at once (validation, test); default max(batch, 256).
        device: "cpu" or "gpu"; default: a GPU when nvidia-smi lists one.
        runtime_loaded: TensorFlow is already imported in this process (its memory is in use,
            so not part of what is free nor of what is still needed).

    Returns:
        Bytes: host memory on the CPU (runtime included unless loaded), one GPU's memory on a GPU.
    """
    batch = config.batch_size if batch_size is None else batch_size
    predicted = max(batch, PREDICT_BATCH) if predict_batch is None else predict_batch
    on_gpu = uses_gpu(device)
    scale = MIXED_PRECISION_ACTIVATION_FACTOR if _mixed(config, on_gpu) else 1.0
    activations = scale * (BYTES_PER_ACTIVATION * _activations(config, batch)
                           + PREDICT_BYTES_PER_ACTIVATION * _activations(config, predicted))
    fixed = GPU_CONTEXT_BYTES if on_gpu else (0 if runtime_loaded else RUNTIME_BYTES)
    return int(fixed + BYTES_PER_PARAM * get_variant(config.variant).base_params + activations)


def host_available_bytes(meminfo: str = MEMINFO) -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where there is no such file (not Linux)."""
    return proc_kib_field(meminfo, "MemAvailable:")


def proc_kib_field(path: str, field: str) -> int | None:
    """A "Field:  N kB" line of a /proc file, in bytes; None where the file or field is missing."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gpu_free_bytes() -> int | None:
    """Free memory of the fullest GPU (the smallest free figure), from nvidia-smi; remembered for
    GPU_QUERY_SECONDS, as the Train form asks on every rerun and nvidia-smi takes ~0.1 s."""
    now = time.monotonic()
    if now - _gpu_query[0] < GPU_QUERY_SECONDS:
        return _gpu_query[1]
    free = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout.split()
            free = min(int(float(value)) for value in out) * 2 ** 20 if out else None
        except (OSError, subprocess.SubprocessError, ValueError):
            free = None
    _gpu_query[:] = [now, free]
    return free


def _largest(fits, high: int) -> int:
    """The largest n in 1..high with fits(n), for fits true up to some n and false after; 0 if none."""
    if not fits(1):
        return 0
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def largest_batch(config: TrainConfig, usable: int, *, device: str, runtime_loaded: bool = False) -> int:
    """The largest batch_size (1..MAX_BATCH_SIZE) that fits `usable` bytes when predicting one image
    at a time; 0 if none does."""
    return _largest(lambda batch: estimate_peak_bytes(config, batch_size=batch, predict_batch=1, device=device,
                                                      runtime_loaded=runtime_loaded) <= usable, MAX_BATCH_SIZE)


def prediction_batch(config: TrainConfig, usable: int, *, device: str, runtime_loaded: bool = False) -> int:
    """The largest prediction batch, up to the engine's max(batch, 256), that fits `usable` bytes
    beside a training batch of config.batch_size; 0 if not even 1 does."""
    return _largest(lambda predicted: estimate_peak_bytes(config, predict_batch=predicted, device=device,
                                                          runtime_loaded=runtime_loaded) <= usable,
                    max(config.batch_size, PREDICT_BATCH))


def budget(config: TrainConfig, available_bytes: int | None = None, *, device: str | None = None,
           where: str = "as given") -> MemoryBudget:
    """The estimate for `config` against what is free (measured unless `available_bytes` is given;
    `where` says where that figure came from)."""
    on_gpu = uses_gpu(device)
    device = "gpu" if on_gpu else "cpu"
    runtime_loaded = not on_gpu and "tensorflow" in sys.modules
    if available_bytes is not None:
        free = int(available_bytes)
    elif on_gpu:
        free, where = gpu_free_bytes(), "GPU memory, per GPU: nvidia-smi memory.free"
    else:
        free, where = host_available_bytes(), "host memory: MemAvailable in /proc/meminfo"
    if free is None:                        # nothing to compare with: say it fits rather than guess
        free, where = 2 ** 62, "unknown (no /proc/meminfo or nvidia-smi): not checked"
    usable = int(free * USABLE_FRACTION)
    options = {"device": device, "runtime_loaded": runtime_loaded}
    predicted = prediction_batch(config, usable, **options)
    needed = estimate_peak_bytes(config, predict_batch=max(predicted, 1), **options)
    return MemoryBudget(needed=needed, free=free, usable=usable, where=where, predict_batch=predicted,
                        largest_batch=largest_batch(config, usable, **options))


def gb_text(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:,.1f} GB"


def check_fits(config: TrainConfig, available_bytes: int | None = None, *, device: str | None = None,
               where: str = "as given") -> MemoryBudget:
    """Refuses a config whose estimated peak memory exceeds what is free, before anything is allocated.

    The returned `predict_batch` is the prediction batch the estimate assumed: the engine must
    predict (validation, test) in batches of at most that many images.

    Args:
        config: The settings to check.
        available_bytes: What is free, in bytes; default: MemAvailable of /proc/meminfo on the CPU,
            nvidia-smi's free memory of the fullest GPU when a GPU trains.
        device: "cpu" or "gpu"; default: a GPU when nvidia-smi lists one.
        where: where `available_bytes` came from, for the message.

    Returns:
        The `MemoryBudget` (estimate, free memory, largest batch, prediction batch) when it fits.

    Raises:
        ConfigError: on "batch_size", naming the estimate, what is free and the largest batch that fits.
    """
    plan = budget(config, available_bytes, device=device, where=where)
    if plan.fits:
        return plan
    what = f"{config.variant.upper()} at {config.image_size} px with batch {config.batch_size}"
    if plan.largest_batch:
        allowed = f"at most {plan.largest_batch} for {config.variant.upper()} at {config.image_size} px here"
        advice = (f"Use batch_size {plan.largest_batch}" + (" or less" if plan.largest_batch > 1 else "")
                  + ", or a smaller image_size or variant")
    else:
        allowed = f"a smaller image_size or variant: no batch_size fits {config.variant.upper()} at {config.image_size} px here"
        advice = "Even batch 1 does not fit; lower image_size, or choose a smaller variant"
    raise ConfigError(
        "batch_size", allowed, config.batch_size,
        f"{what} needs an estimated {gb_text(plan.needed)} of memory at its peak, but {gb_text(plan.free)} is free "
        f"({plan.where}; a run may use {int(USABLE_FRACTION * 100)}% of it: {gb_text(plan.usable)}). {advice}. "
        "Estimate from peak memory measured on short fits (bench/memory_fit.py)")
