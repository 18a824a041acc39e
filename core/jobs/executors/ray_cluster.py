"""The Ray cluster runs train on (EFFLAB_RAY_ADDRESS, or the CLI's --ray-address): connection, what a
run asks for, the task itself, and a loopback head for tests. core/jobs/executors/ray.py submits to it.

Ray decides where each run trains; we never schedule nodes ourselves. The run store is the contract
between the nodes: every node sees the same runs folder at the same path (shared storage), and the
task calls the same train_run as the in-process trainer, in a Ray worker process, so the run folder,
live progress file, heartbeat and stop request work as they do for a CLI run on another machine.

Code: by default every node has the same checkout and Python environment at the same path (the
checkout goes on the workers' PYTHONPATH); with EFFLAB_RAY_SHIP_CODE=1 Ray's runtime_env working_dir
ships this checkout instead (the Python packages must still be on every node). Data: the driver's
data folder when that path exists on the node, else the node's own EFFLAB_DATA_DIR.

Ray is imported only here and only when an address is set: it is an optional extra
(requirements-ray.txt). Nothing in this module imports it at load time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import SelfExplainedError
from core.estimates.memory import estimate_peak_bytes
from core.jobs.executors.base import train_claimed
from core.settings.config import TrainConfig
from core.store.runs import TRAINING_STATES, RunStore, trainer_identity
from core.store.states import RunState
from core.training.progress import Progress

RAY_ADDRESS_ENV = "EFFLAB_RAY_ADDRESS"
SHIP_CODE_ENV = "EFFLAB_RAY_SHIP_CODE"
CPUS_ENV = "EFFLAB_RAY_CPUS"            # CPUs one run asks for on a cluster without GPUs
DEFAULT_CPUS_PER_RUN = 1
RUNS_PER_GPU = 4                        # a small run asks for 1/4 of a GPU: four share one
SMALL_RUN_GPU_BYTES = 3 * 1024**3       # "small": estimated peak under this (core/jobs/slots.py's figure)
PROBE_SECONDS = 3.0                     # a TCP connect to the head: an unreachable one fails fast
CONNECT_SECONDS = 60.0                  # ray.init against a live port that never answers
CAPACITY_SECONDS = 10.0                 # how long the cluster's size is taken as known
CHECKOUT = Path(__file__).resolve().parents[3]
# What working_dir leaves behind (Ray also skips what .gitignore names): the environment, runs, images.
SHIP_EXCLUDES = [".git", ".venv", "runs", "test-artifacts", "docs/screenshots", "*.keras", "*.npz"]
# Runs sharing a GPU: without these TensorFlow and JAX each take all of its memory at start.
SHARED_GPU_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
NAMESPACE = "efficientnet-lab"
# Ray swaps 127.0.0.1 for the machine's network address unless this is in the environment of the
# head and of every driver (DESIGN.md, measured facts): a loopback cluster needs it everywhere.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
HEAD_START_SECONDS = 90
# A Ray driver whose head is gone ends its own process after 60 s (measured: "Failed to connect to
# GCS within 60 seconds ... The program will terminate"). A dashboard must outlive its cluster: it
# keeps serving, says the cluster cannot be reached, and its queue waits.
OUTLIVE_HEAD_ENV = {"RAY_gcs_rpc_server_reconnect_timeout_s": str(10 * 365 * 24 * 3600)}


class ClusterUnreachable(SelfExplainedError, RuntimeError):
    """The Ray cluster cannot be reached; the message names the address and what to check."""


def ray_address(environ: dict[str, str] | None = None) -> str | None:
    """EFFLAB_RAY_ADDRESS when set (not blank), else None: runs train in this process."""
    environ = os.environ if environ is None else environ
    return environ.get(RAY_ADDRESS_ENV, "").strip() or None


def split_address(address: str) -> tuple[str, int]:
    """("10.0.0.5", 6379) from "10.0.0.5:6379" (the head's GCS address that `ray start --head` prints).

    Raises:
        ClusterUnreachable: anything else, with the form that is expected.
    """
    host, _, port = address.strip().rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536 and "/" not in host:
        return host.strip("[]"), int(port)
    raise ClusterUnreachable(f"Ray address: expected HOST:PORT of the head node, as `ray start --head` "
                             f"prints it (e.g. 10.0.0.5:6379); got {address!r}")


def unreachable_message(address: str, reason: str) -> str:
    """One line: the address, why, and what to check."""
    return (f"the Ray cluster at {address} cannot be reached ({reason}); check that `ray start --head` "
            f"runs there, that this machine reaches that port, and that both have the same Ray version "
            f"(`ray status --address {address}`).")


def cpus_per_run(environ: dict[str, str] | None = None) -> int:
    """EFFLAB_RAY_CPUS, else 1 (TensorFlow still uses every core a node lets it have)."""
    environ = os.environ if environ is None else environ
    text = environ.get(CPUS_ENV, "").strip()
    if not text:
        return DEFAULT_CPUS_PER_RUN
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise ClusterUnreachable(f"{CPUS_ENV}: expected a whole number of CPUs in [1, 1024]; got {text!r}")
    return int(text)


@dataclass(frozen=True)
class TaskShape:
    """The resources one run asks Ray for."""

    num_cpus: float
    num_gpus: float

    def runs_in(self, cluster: dict[str, float]) -> int:
        """How many runs of this shape the cluster's totals hold at once (0: none fits anywhere)."""
        fits = [cluster.get("CPU", 0.0) / self.num_cpus] if self.num_cpus else []
        if self.num_gpus:
            fits.append(cluster.get("GPU", 0.0) / self.num_gpus)
        return int(math.floor(min(fits) + 1e-9)) if fits else 0


def task_shape(config: TrainConfig, cluster_gpus: float, cpus: int = DEFAULT_CPUS_PER_RUN) -> TaskShape:
    """What a run of `config` asks for: on a cluster with GPUs a quarter of one when its estimated
    peak is small (several class runs share a GPU), else a whole GPU; without GPUs, `cpus` CPUs."""
    if cluster_gpus <= 0:
        return TaskShape(num_cpus=cpus, num_gpus=0)
    small = estimate_peak_bytes(config, device="gpu") <= SMALL_RUN_GPU_BYTES
    return TaskShape(num_cpus=1, num_gpus=1 / RUNS_PER_GPU if small else 1)


def runtime_env(ship_code: bool) -> dict[str, Any]:
    """Same checkout on every node: its path on the workers' PYTHONPATH. Shipped: Ray's working_dir."""
    env: dict[str, Any] = {"env_vars": dict(SHARED_GPU_ENV)}
    if ship_code:
        env.update(working_dir=str(CHECKOUT), excludes=list(SHIP_EXCLUDES))
    else:
        env["env_vars"]["PYTHONPATH"] = f"{CHECKOUT}:${{PYTHONPATH}}"
    return env


class RayCluster:
    """Connects to one cluster (lazily, once) and submits runs to it as Ray tasks."""

    def __init__(self, address: str, runs_dir: Path, data_dir: str | None, *,
                 ship_code: bool | None = None, outlive_head: bool = False):
        self.address = address
        self.outlive_head = outlive_head      # the dashboard: yes; the CLI: ends with its cluster
        self.runs_dir = Path(runs_dir).resolve()      # the same path on every node
        self.data_dir = str(Path(data_dir).resolve()) if data_dir else None
        self.ship_code = os.environ.get(SHIP_CODE_ENV) == "1" if ship_code is None else ship_code
        self._lock = threading.Lock()
        self._connected = False
        self._cluster: dict[str, float] = {}
        self._cluster_at = 0.0
        self._task = None

    # --- the connection ----------------------------------------------------------------------
    def connect(self) -> None:
        """Connects this process to the cluster once; later calls only check that its head answers.

        Raises:
            ClusterUnreachable: the address is malformed, its port does not answer within
                PROBE_SECONDS, or Ray could not connect within CONNECT_SECONDS.
        """
        with self._lock:
            host, port = split_address(self.address)
            try:   # ray.init waits minutes for a head that is not there: ask the port first
                socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            except OSError as exc:
                if self._connected:   # Ray cannot reconnect this process to a restarted head
                    raise ClusterUnreachable(unreachable_message(
                        self.address, f"{_reason(exc)}, after this process had connected; once the head is "
                        "back, restart this process to connect again")) from None
                raise ClusterUnreachable(unreachable_message(self.address, _reason(exc))) from None
            if self._connected:
                return
            outcome: dict[str, BaseException | None] = {}
            # In a thread: a port that accepts but never speaks Ray must not hang a page or the CLI.
            thread = threading.Thread(target=self._init, args=(outcome,), name="ray-connect", daemon=True)
            thread.start()
            thread.join(CONNECT_SECONDS)
            if "error" not in outcome:
                raise ClusterUnreachable(unreachable_message(
                    self.address, f"no answer from Ray within {CONNECT_SECONDS:.0f} s"))
            if outcome["error"] is not None:
                error = outcome["error"]
                raise ClusterUnreachable(unreachable_message(
                    self.address, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"))
            self._connected = True

    def _init(self, outcome: dict) -> None:
        try:
            if self.outlive_head:
                os.environ.update(OUTLIVE_HEAD_ENV)   # read by Ray's core worker as it starts
            import ray
            if not ray.is_initialized():
                ray.init(address=self.address, namespace=NAMESPACE, runtime_env=runtime_env(self.ship_code),
                         logging_level=logging.WARNING, log_to_driver=False)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported as the cluster's problem, in one line
            outcome["error"] = exc

    def cluster(self) -> dict[str, float]:
        """The cluster's total resources (CPU, GPU, memory), asked at most every CAPACITY_SECONDS."""
        import ray
        if time.monotonic() - self._cluster_at > CAPACITY_SECONDS:
            self._cluster, self._cluster_at = dict(ray.cluster_resources()), time.monotonic()
        return self._cluster

    def shape(self, config: TrainConfig) -> TaskShape:
        return task_shape(config, self.cluster().get("GPU", 0.0), cpus_per_run())

    def capacity(self) -> int:
        """How many default-sized runs the cluster trains at once: the queue's number of slots."""
        return max(1, task_shape(TrainConfig(), self.cluster().get("GPU", 0.0), cpus_per_run())
                   .runs_in(self.cluster()))

    # --- tasks -------------------------------------------------------------------------------
    def submit(self, run_id: str, target_epochs: int, claimed_at: float, config: TrainConfig):
        """Sends one claimed run to the cluster; returns its ObjectRef (see `wait`).

        Raises:
            ClusterUnreachable: no node of the cluster has the resources the run asks for.
        """
        import ray
        shape = self.shape(config)
        if shape.runs_in(self.cluster()) < 1:
            raise ClusterUnreachable(
                f"the Ray cluster at {self.address} has no room for this run: it asks for "
                f"{shape.num_cpus:g} CPU(s) and {shape.num_gpus:g} GPU(s), the cluster has "
                f"{self.cluster().get('CPU', 0):g} and {self.cluster().get('GPU', 0):g}"
                + (f" (lower {CPUS_ENV})" if not shape.num_gpus else ""))
        if self._task is None:
            # A lost run becomes `interrupted` and is resumed on purpose: Ray must not start it again
            # behind the store's back. One run per worker process: TensorFlow never frees its memory.
            self._task = ray.remote(max_retries=0, max_calls=1)(train_in_worker)
        task = self._task.options(name=f"efflab-train-{run_id}", num_cpus=shape.num_cpus,
                                  num_gpus=shape.num_gpus)
        return task.remote(str(self.runs_dir), run_id, target_epochs, claimed_at, self.data_dir)

    @staticmethod
    def wait(ref, timeout: float) -> bool:
        """True when the task has ended (well or not) within `timeout` seconds."""
        import ray
        ready, _ = ray.wait([ref], timeout=timeout)
        return bool(ready)

    @staticmethod
    def outcome(ref) -> tuple[dict[str, Any] | None, str]:
        """(the task's result, "") or (None, why it was lost: the worker or node died, ...)."""
        import ray
        try:
            return ray.get(ref), ""
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return None, f"{type(exc).__name__}: {first[:300]}"


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return f"no answer within {PROBE_SECONDS:.0f} s"
    return exc.strerror or type(exc).__name__


def train_in_worker(runs_dir: str, run_id: str, target_epochs: int, claimed_at: float,
                    data_dir: str | None) -> dict[str, Any]:
    """The Ray task: trains the run in this worker process, as the in-process trainer would.

    Never raises for a training failure (train_run records it in the run folder); returns what
    happened, with this process's pid and node, for the driver.
    """
    import ray

    run = RunStore(runs_dir).get(run_id)
    status = run.read_status()
    # A task that starts late (its driver gone, the run marked interrupted and resumed elsewhere)
    # must not train a run that is no longer its own; one that may takes over the claim's lease.
    if status.get("state") not in TRAINING_STATES or not run.adopt_lease(claimed_at):
        return {"state": "skipped", "pid": os.getpid()}
    context = ray.get_runtime_context()
    where = {"executor": "ray", "ray_node_id": context.get_node_id(),
             "node_ip": ray.util.get_node_ip_address(), "code_dir": str(CHECKOUT), **trainer_identity()}
    run.write_status(if_state=TRAINING_STATES, **where)
    if data_dir and not Path(data_dir).exists():
        data_dir = os.environ.get("EFFLAB_DATA_DIR") or None
    progress = Progress(state=RunState.RUNNING, phase=f"starting on {where['host']}", run_id=run_id, epoch=0,
                        epochs=target_epochs, batch=0, batches=0, error="")
    run.write_progress(progress.snapshot())
    outcome = train_claimed(run, target_epochs, threading.Event(), progress, data_dir)
    return {"state": outcome.state, "error": outcome.error, **where}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_head(num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """A Ray head on 127.0.0.1 (no dashboard, its own temp folder and ports) for tests, benchmarks
    and trying Ray on one machine; yields its address. Drivers need LOOPBACK_ENV too.

    It runs in a session of its own and is ended by killing that process group: `ray stop` would
    end every Ray process on the machine, other people's included.
    """
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        raise FileNotFoundError(f"{ray_cli}: Ray is not installed; pip install -r requirements-ray.txt")
    temp_dir = tempfile.mkdtemp(prefix="efflab-ray-", dir="/tmp")    # short: Ray's socket paths are long
    port = _free_port()
    command = [str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--num-cpus", str(num_cpus), "--include-dashboard", "false", "--disable-usage-stats",
               "--temp-dir", temp_dir,
               # Their fixed defaults (10001, 52365) would collide with another Ray on this machine.
               "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port())]
    log_path = Path(temp_dir) / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(command, env={**os.environ, **(env or {}), **LOOPBACK_ENV}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START_SECONDS
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:   # `ray start --block` can take longer to go on TERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        shutil.rmtree(temp_dir, ignore_errors=True)
