"""The questions whose answer depends on Keras's backend: which GPUs it sees, whether mixed
precision pays, and how one run spreads over several devices.

TensorFlow stays the default (and the dashboard's backend); `KERAS_BACKEND=jax` runs the same
engine without importing TensorFlow, for machines that have CUDA for JAX but no TensorFlow. Each
function imports only the backend in use.

A "strategy" is what the engine builds a model under and asks how many replicas share a batch:
tf.distribute's strategies under TensorFlow; under JAX a `JaxDevices`, which offers the same two
members over Keras's own `keras.distribution.DataParallel`.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np

from core.errors import UserInputError
from core.training import processes

TENSOR_CORES = (7, 0)   # the compute capability from which float16 matmuls run on tensor cores


def name() -> str:
    return keras.backend.backend()


def gpu_devices() -> list:
    """The GPUs Keras's backend can use (device objects of that backend)."""
    if name() == "tensorflow":
        import tensorflow as tf
        return tf.config.list_physical_devices("GPU")
    if name() == "jax":
        import jax
        return [device for device in jax.devices() if device.platform == "gpu"]
    return []


def _compute_capability(device) -> tuple[int, ...] | None:
    if name() == "tensorflow":
        import tensorflow as tf
        capability = tf.config.experimental.get_device_details(device).get("compute_capability")
    else:   # a jax CUDA device says "9.0"
        capability = getattr(device, "compute_capability", None)
        capability = tuple(int(part) for part in str(capability).split(".")) if capability else None
    return tuple(capability) if capability else None


def use_mixed_precision(setting: str) -> bool:
    """auto: on only for NVIDIA GPUs of compute capability 7.0 or newer (tensor cores)."""
    if setting != "auto":
        return setting == "on"
    return any((_compute_capability(gpu) or (0,)) >= TENSOR_CORES for gpu in gpu_devices())


class JaxDevices:
    """Data parallelism under JAX, with the two members of a tf.distribute strategy the engine uses.

    Over one device it does nothing. Over several it sets Keras's distribution to `DataParallel`:
    variables are replicated on every device and each batch is split between them, inside `fit`,
    `evaluate` and `predict`. Keras keeps that setting per thread (as the dtype policy), so it holds
    for the job's own thread only: two runs at once do not see each other's.
    """

    def __init__(self, devices: list, shard: tuple[int, int] = (0, 1)):
        self.devices, self.shard = devices, shard   # shard: (this process, processes): its part of each batch
        self.distribution = None
        if len(devices) > 1:
            self.distribution = keras.distribution.DataParallel(devices=devices)
            # Several processes: each feeds its own part of every batch (core.data.batches), which
            # Keras assembles into the global batch; Keras's auto-sharding knows only tf.data.
            self.distribution.auto_shard_dataset = shard[1] == 1
            keras.distribution.set_distribution(self.distribution)

    @property
    def num_replicas_in_sync(self) -> int:
        return max(1, len(self.devices))

    def scope(self):
        return contextlib.nullcontext()


def make_strategy(setting: str):
    """The engine for one run over several devices: "auto" spreads over a machine's GPUs when it
    has more than one; "mirrored" spreads over every device of the machine (two logical CPUs in the
    tests). Under JAX with KERAS_DISTRIBUTION_* set (core/training/processes.py), every process's devices.
    "multi_worker" is refused: Keras 3 does not support tf.distribute's multi-worker strategy.
    """
    processes.check(name(), setting)
    if setting == "multi_worker":
        raise UserInputError(
            "distribution: multi_worker (TensorFlow's MultiWorkerMirroredStrategy) does not work with "
            "Keras 3. To train one run over several processes or machines, use the JAX backend "
            "(KERAS_BACKEND=jax) with Keras's KERAS_DISTRIBUTION_* variables; README says how")
    if name() == "jax":
        return _jax_strategy(setting)
    import tensorflow as tf
    if setting == "mirrored" or (setting == "auto" and len(gpu_devices()) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()   # the default, single-device strategy


def _jax_strategy(setting: str) -> JaxDevices:
    import jax
    if processes.several():
        join_processes()
        # jax.devices() now lists every process's devices; a batch is split over all of them.
        return JaxDevices(jax.devices(), shard=(jax.process_index(), jax.process_count()))
    gpus = gpu_devices()
    if setting == "mirrored":
        return JaxDevices(gpus or jax.devices())
    if setting == "auto" and len(gpus) > 1:
        return JaxDevices(gpus)
    return JaxDevices(jax.devices()[:1])


_joined = []


def join_processes() -> None:
    """Connects this process to the others (once: JAX allows it once per process). On CPUs the
    collectives go through gloo, which is how the tests run two processes on one machine."""
    if _joined:
        return
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    heartbeat = processes.heartbeat_seconds()
    if heartbeat is None:
        keras.distribution.initialize()     # reads KERAS_DISTRIBUTION_* (core/training/processes.py)
    else:
        # Keras passes JAX no heartbeat: lend its call JAX's own keyword for the length of it, so the
        # rest of Keras's set-up (one random seed agreed by every process) stays Keras's.
        initialize = jax.distributed.initialize
        jax.distributed.initialize = functools.partial(initialize, heartbeat_timeout_seconds=heartbeat)
        try:
            keras.distribution.initialize()
        finally:
            jax.distributed.initialize = initialize
    _joined.append(True)


def agree_with_process_0(flag: bool) -> bool:
    """Process 0's `flag`, on every process of a run over several processes (a collective: every
    process must call it at the same point); the flag itself in a run of one process. So a Stop,
    which only process 0 reads from the run folder, ends every process at the same batch."""
    return process_0_flags(flag)[0]


def process_0_flags(*flags: bool) -> tuple[bool, ...]:
    """agree_with_process_0 for several flags at once, in one collective (bits of one integer)."""
    if not processes.several():
        return tuple(bool(flag) for flag in flags)
    from jax.experimental import multihost_utils
    bits = int(multihost_utils.broadcast_one_to_all(np.int32(sum(bool(f) << i for i, f in enumerate(flags)))))
    return tuple(bool(bits >> i & 1) for i in range(len(flags)))
