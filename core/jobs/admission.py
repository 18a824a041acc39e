"""Memory admission: the scheduler starts a queued run only when its estimated peak fits beside the
runs this process trains already.

Start checks one run against what is free (core/estimates/memory.py). That is not enough with several slots:
two runs that each fit were launched together, and together they did not (issue 29: 2 × 11.8 GB
into 19.8 GB). A run that has just started has not allocated its memory yet, so what is free now
says nothing about it; the ledger therefore counts what this process's runs are *estimated* to
need at their peak, against what they could have at most:

    capacity = MemAvailable now + what this process holds beyond its size before any run
               (its resident memory now minus at the start), capped by EFFLAB_MEMORY_GB

and admits the next run when the estimates of every run training here plus its own fit in
USABLE_FRACTION of that. Memory other processes take (a CLI run, another dashboard) is not in
MemAvailable, so they are counted too, once they have allocated. EFFLAB_MEMORY_GB is for the
person who runs the server: how much of the machine the lab's runs may use (a container's or a
shared server's share).

The queue keeps its order: a run that does not fit yet waits at its place ("waiting for memory")
and the runs behind it wait too, so a large run is never overtaken for ever by small ones. Cancel
takes it out of the line. On a GPU the estimates are checked against the GPU's free memory plus
the estimates of the runs training here (assumed: TensorFlow takes its memory as a run starts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from core.estimates.memory import (RUNTIME_BYTES, USABLE_FRACTION, estimate_peak_bytes, gb_text, gpu_free_bytes,
                                   host_available_bytes, proc_kib_field, uses_gpu)
from core.settings.config import TrainConfig
from core.settings.env_settings import number_from_env

MEMORY_LIMIT_ENV = "EFFLAB_MEMORY_GB"
PROC_STATUS = "/proc/self/status"


def memory_limit_bytes() -> int | None:
    """EFFLAB_MEMORY_GB in bytes (0.25 to 100,000 GB); None when unset."""
    gigabytes = number_from_env(MEMORY_LIMIT_ENV, None, 0.25, 100_000, "the memory the lab's runs may use, in GB")
    return None if gigabytes is None else int(gigabytes * 2 ** 30)


def resident_bytes(status_file: str = PROC_STATUS) -> int | None:
    """This process's resident memory (VmRSS); None where unknown (not Linux)."""
    return proc_kib_field(status_file, "VmRSS:")


def _runtime_loaded() -> bool:
    return "tensorflow" in sys.modules or "jax" in sys.modules


@dataclass
class MemoryLedger:
    """What this process's runs may use, measured against its size before any of them."""

    baseline_rss: int
    runtime_at_baseline: bool     # TensorFlow (or JAX) was imported before any run: not ours to count
    # Runs in worker processes of their own (EFFLAB_EXECUTOR=process): what they hold is the
    # workers' resident memory (this returns it; None: runs train inside this process), and each
    # worker loads its own runtime.
    workers_bytes: Callable[[], int | None] | None = None

    @classmethod
    def now(cls, workers_bytes: Callable[[], int | None] | None = None) -> MemoryLedger:
        return cls(resident_bytes() or 0, _runtime_loaded(), workers_bytes)

    def _in_workers(self) -> int | None:
        return None if self.workers_bytes is None else self.workers_bytes()

    def capacity(self, device: str | None = None, *, held_on_gpu: int = 0) -> tuple[int | None, str]:
        """(bytes this process's runs may have in all, where the figure comes from); None: unknown.
        `held_on_gpu`: what the runs training here are assumed to hold of the GPU's memory."""
        limit = memory_limit_bytes()
        if uses_gpu(device):
            free = gpu_free_bytes()
            measured, where = (None if free is None else free + held_on_gpu), "the GPU's memory"
        else:
            free, rss, in_workers = host_available_bytes(), resident_bytes(), self._in_workers()
            held = in_workers if in_workers is not None else max(0, (rss or 0) - self.baseline_rss)
            measured = None if free is None else free + held
            where = "free host memory plus what this server's runs hold"
        if limit is not None and (measured is None or limit < measured):
            return limit, f"{MEMORY_LIMIT_ENV}={limit / 2 ** 30:g}"
        return measured, where

    def needed(self, configs: list[TrainConfig], device: str | None = None) -> int:
        """The estimated peak of training `configs` side by side: in this process the runtime once, in
        worker processes once per worker."""
        on_gpu = uses_gpu(device)
        if self._in_workers() is not None and not on_gpu:      # a runtime in every worker
            return sum(estimate_peak_bytes(c, device="cpu", runtime_loaded=False) for c in configs)
        total = sum(estimate_peak_bytes(c, device="gpu" if on_gpu else "cpu", runtime_loaded=True) for c in configs)
        return total + (0 if on_gpu or self.runtime_at_baseline or not configs else RUNTIME_BYTES)

    def wait_reason(self, config: TrainConfig, training: list[TrainConfig], device: str | None = None) -> str:
        """"" when `config` may start beside `training`; else why it waits, in one line."""
        held = self.needed(training, device)
        capacity, where = self.capacity(device, held_on_gpu=held)
        if capacity is None:
            return ""                                # nothing to compare with: say it fits rather than guess
        usable = int(capacity * USABLE_FRACTION)
        needed = self.needed([*training, config], device)
        if needed <= usable:
            return ""
        beside = (f" beside the {len(training)} run{'s' if len(training) > 1 else ''} training here"
                  if training else "")
        return (f"waiting for memory: it needs about {gb_text(needed - held)}{beside}; {gb_text(usable)} may be "
                f"used ({int(USABLE_FRACTION * 100)}% of {where}). It starts when memory frees")
