"""Rough time-per-epoch estimates, from a table of figures we measured, without importing TensorFlow.

Measured on the 2-core CPU of DESIGN.md (TensorFlow 2.21, B0, batch 128/32): 300 images/s at
32 px and 10 images/s at 224 px. Throughput falls with FLOPs per image roughly as a power law;
fitting those two points gives the exponent, and FLOPs per image come from the paper's figure at
the native resolution scaled by (size / native)². GPUs: no figure of ours yet, so a GPU estimate
is the CPU one divided by GPU_SPEEDUP and labelled as a guess.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
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
