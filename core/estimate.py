"""Rough time-per-epoch estimates, from a table of figures we measured, without importing TensorFlow.

Measured on the 2-core CPU of DESIGN.md (TensorFlow 2.21, B0, batch 128/32): 300 images/s at
32 px and 10 images/s at 224 px. Throughput falls with FLOPs per image roughly as a power law;
fitting those two points gives the exponent, and FLOPs per image come from the paper's figure at
the native resolution scaled by (size / native)². GPUs: no figure of ours yet, so a GPU estimate
is the CPU one divided by GPU_SPEEDUP and labelled as a guess.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

from core.variants import VARIANT_NAMES, get_variant

# (GFLOPs per image, images/s), both measured here: B0 @32 px and B0 @224 px on 2 CPU cores.
CPU_ANCHORS = ((0.39 * (32 / 224) ** 2, 300.0), (0.39, 10.0))
CPU_CORES_MEASURED = 2
GPU_SPEEDUP = 30.0           # a guess for a recent NVIDIA GPU against those 2 cores; not measured
FIRST_STEP_SECONDS = 25.0    # graph tracing before the first batch (B7: ~90 s)


def gflops_per_image(variant: str, image_size: int) -> float:
    v = get_variant(variant)
    return v.paper_flops_b * (image_size / v.resolution) ** 2


def _cpu_images_per_second(gflops: float) -> float:
    (f1, t1), (f2, t2) = CPU_ANCHORS
    exponent = math.log(t1 / t2) / math.log(f2 / f1)
    return t1 * (f1 / gflops) ** exponent


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


def epoch_seconds(variant: str, image_size: int, n_images: int, device: dict | None = None) -> float:
    """Seconds for one epoch over `n_images` training images (validation not included)."""
    return n_images / images_per_second(variant, image_size, device)


def estimate_table(image_size: int, n_images: int, device: dict | None = None) -> list[dict]:
    """One row per variant: variant label, images/s and seconds per epoch at `image_size`."""
    return [{"variant": name.upper(), "images_per_second": images_per_second(name, image_size, device),
             "seconds_per_epoch": epoch_seconds(name, image_size, n_images, device)}
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
