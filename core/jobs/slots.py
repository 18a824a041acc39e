"""How many runs one server trains at once: EFFLAB_SLOTS, or what the machine holds.

On a CPU the default is 1, so each run gets the whole machine and finishes soonest. It is not the
most a CPU can do: on our 2-core machine one B0 run at 32 px trained at 120 images/s, two at once at
105 each (211 in total, 1.76x), four at once 262 in total (bench/concurrent_runs.py, bench/README.md):
a class that cares about the total, not about the first result, sets EFFLAB_SLOTS=2. On GPUs the
default is what fits:
the free memory nvidia-smi reports, divided by what a small 32 px run takes on the device
(PER_RUN_GPU_BYTES, with room to spare), at most MAX_GPU_SLOTS per GPU: a class's 32 px runs are
far too small to fill a large GPU one at a time. A teacher overrides it with EFFLAB_SLOTS.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SLOTS_ENV = "EFFLAB_SLOTS"
MAX_SLOTS = 64
PER_RUN_GPU_BYTES = 3 * 1024**3
MAX_GPU_SLOTS = 8


class SlotsError(ValueError):
    """EFFLAB_SLOTS is not a whole number in range."""


def parse_slots(text: str) -> int:
    """The slot count EFFLAB_SLOTS asks for.

    Raises:
        SlotsError: naming the variable, the allowed range and the value given.
    """
    try:
        value = int(text.strip())
    except (ValueError, AttributeError):
        value = None
    if value is None or not 1 <= value <= MAX_SLOTS:
        raise SlotsError(f"{SLOTS_ENV}: expected a whole number in [1, {MAX_SLOTS}]; got {text!r}")
    return value


def gpu_free_bytes() -> list[int]:
    """Free memory of each NVIDIA GPU (nvidia-smi), [] without one. No TensorFlow import."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [int(float(line)) * 1024**2 for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def default_slots(environ: dict[str, str] | None = None) -> int:
    """EFFLAB_SLOTS when set; on GPUs what their free memory holds; 1 on a CPU."""
    environ = os.environ if environ is None else environ
    if environ.get(SLOTS_ENV, "").strip():
        return parse_slots(environ[SLOTS_ENV])
    free = gpu_free_bytes()
    if not free:
        return 1
    return max(1, sum(min(MAX_GPU_SLOTS, f // PER_RUN_GPU_BYTES) for f in free))


def slots_explained(slots: int, environ: dict[str, str] | None = None) -> str:
    """One line for the Runs page: how many, and why."""
    environ = os.environ if environ is None else environ
    if environ.get(SLOTS_ENV, "").strip():
        return f"{slots} at once (set by {SLOTS_ENV})"
    free = gpu_free_bytes()
    if free:
        return (f"{slots} at once: {sum(free) / 1024**3:.0f} GB free on {len(free)} GPU(s), about "
                f"{PER_RUN_GPU_BYTES / 1024**3:.0f} GB per run (override with {SLOTS_ENV})")
    return f"{slots} at once: on a CPU one run uses every core (override with {SLOTS_ENV})"
