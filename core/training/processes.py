"""One run over several processes (machines): Keras 3's multi-process distribution on JAX.

The same `python -m core train ...` line runs on every machine, with Keras's own variables
telling each process where it stands (keras.distribution.initialize reads them):

    KERAS_BACKEND=jax
    KERAS_DISTRIBUTION_JOB_ADDRESSES=10.0.0.5:29500,10.0.0.6:29500   (process 0's first)
    KERAS_DISTRIBUTION_NUM_PROCESSES=2
    KERAS_DISTRIBUTION_PROCESS_ID=0        (1 on the second machine)

Process 0 writes the run folder; the others train their share of every batch and write nothing
(core.store.runs.FollowerRun). When a process is lost, JAX's coordination service ends the others once
its heartbeat has been missing for 100 s; EFFLAB_PROCESS_HEARTBEAT_SECONDS=N shortens (or
lengthens) that wait, the same on every process. This module reads the variables only, without importing Keras, so the
CLI can tell a follower from process 0 before paying for it.
"""

from __future__ import annotations

import os

from core.errors import UserInputError

ADDRESSES, COUNT, INDEX = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                           "KERAS_DISTRIBUTION_PROCESS_ID")
HEARTBEAT = "EFFLAB_PROCESS_HEARTBEAT_SECONDS"
MAX_HEARTBEAT_SECONDS = 3600


def _whole(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"{name}: expected a whole number; got {text!r}") from None


def process_count() -> int:
    """How many processes share the run (1 without the variables)."""
    return max(1, _whole(COUNT, 1))


def process_index() -> int:
    """This process's place among them; 0 writes the run folder."""
    return _whole(INDEX, 0)


def several() -> bool:
    return process_count() > 1


def heartbeat_seconds() -> int | None:
    """How long a lost process may stay silent before the others end (EFFLAB_PROCESS_HEARTBEAT_SECONDS);
    None: JAX's own default (100 s)."""
    if not os.environ.get(HEARTBEAT, "").strip():
        return None
    seconds = _whole(HEARTBEAT, 0)
    if not 1 <= seconds <= MAX_HEARTBEAT_SECONDS:
        raise UserInputError(f"{HEARTBEAT}: expected a whole number of seconds from 1 to "
                             f"{MAX_HEARTBEAT_SECONDS}; got {seconds}")
    return seconds


def check(backend: str, distribution: str) -> None:
    """Refuses what cannot work before anything starts: several processes need the JAX backend
    (Keras 3 does not support tf.distribute's multi-worker strategy), all three variables, and a
    distribution that spreads the run (auto or mirrored).

    Raises:
        UserInputError: naming the variable or setting, what is allowed and what was given.
    """
    if not several():
        return
    if backend != "jax":
        raise UserInputError(
            f"{COUNT}={process_count()} asks for one run over several processes, which needs the JAX "
            f"backend (Keras 3 does not support TensorFlow's multi-worker strategy); the backend is "
            f"{backend}. Run every process with KERAS_BACKEND=jax")
    count, index = process_count(), process_index()
    if not 0 <= index < count:
        raise UserInputError(f"{INDEX}: expected a whole number from 0 to {count - 1}; got {index}")
    addresses = [a for a in os.environ.get(ADDRESSES, "").split(",") if a.strip()]
    if not addresses:
        raise UserInputError(f"{ADDRESSES}: expected host:port of process 0 (then of the others, "
                             "comma-separated); it is not set")
    if distribution not in ("auto", "mirrored"):
        raise UserInputError(f"distribution: expected auto or mirrored for a run over {count} processes; "
                             f"got {distribution}")
    heartbeat_seconds()
