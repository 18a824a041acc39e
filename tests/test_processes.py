"""One run over several processes (core/training/processes.py): Keras 3's multi-process distribution on
JAX, proved with two processes on loopback (JAX's CPU collectives: gloo), as on two machines.

Each process is `python -m core ...` with Keras's KERAS_DISTRIBUTION_* variables, as a user
starts it on each machine; only process 0 writes the run folder. One process is killed mid-run (a
machine lost), and the run resumes on two processes. The two-process test runs in `make test-all`'s
JAX part; the refusals run everywhere. It trains the tests' small EfficientNet (its subject is the
processes, not B0), and the survivor of the kill is told of it after 15 s of silence, not JAX's
default 100 (EFFLAB_PROCESS_HEARTBEAT_SECONDS).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from conftest import read_status_file, run_folders, wait_for

from core.errors import UserInputError
from core.store.runs import METRIC_COLUMNS, RunStore
from core.training import processes

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--train-limit", "200", "--val-fraction", "0.2", "--batch-size", "16"]
HEARTBEAT_SECONDS = 15


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _variables(count: int, index: int, port: int) -> dict:
    return {processes.ADDRESSES: f"127.0.0.1:{port}", processes.COUNT: str(count), processes.INDEX: str(index)}


def _start_two(logs: Path, *args: str) -> list[subprocess.Popen]:
    """The same command line in two processes joined on loopback, as on two machines; their
    output goes to files in `logs` (a pipe nobody reads could fill and stall a process)."""
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for index in (0, 1):
        env = {**os.environ, "KERAS_BACKEND": "jax", **_variables(2, index, port),
               processes.HEARTBEAT: str(HEARTBEAT_SECONDS)}
        env.pop("XLA_FLAGS", None)    # one CPU device per process, as one GPU per machine
        with open(logs / f"{index}.out", "w") as out, open(logs / f"{index}.err", "w") as err:
            started.append(subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env,
                                            text=True, stdout=out, stderr=err))
    return started


def _finish(started: list[subprocess.Popen], logs: Path) -> list[subprocess.CompletedProcess]:
    for process in started:
        process.wait(timeout=1500)
    return [subprocess.CompletedProcess(process.args, process.returncode, (logs / f"{index}.out").read_text(),
                                        (logs / f"{index}.err").read_text())
            for index, process in enumerate(started)]


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.small_network
@pytest.mark.timeout(3200)
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="several processes need the JAX backend (make test-jax)")
def test_one_run_over_two_processes_survives_a_killed_process_and_resumes(tmp_path, fixture_data_dir):
    runs = tmp_path / "runs"
    where = ["--runs-dir", str(runs), "--data-dir", fixture_data_dir]
    first, second = _start_two(tmp_path / "train", "train", *QUICK, "--epochs", "3", *where)
    wait_for(lambda: any(runs.glob("*/checkpoints/last.keras")) and
             read_status_file(run_folders(runs)[0]).get("checkpoint_epoch", 0) >= 1, 900, "epoch 1 of 3")
    second.kill()                                   # a machine lost mid-run
    killed_at = time.monotonic()
    assert first.wait(timeout=600) != 0             # JAX's coordination service ends process 0 too
    assert time.monotonic() - killed_at < 60        # told by the 15 s heartbeat (JAX alone: 75-100 s)

    (run_dir,) = run_folders(runs)                 # process 1 created nothing
    run = RunStore(runs).get(run_dir.name)
    status = run.live_status()
    assert status["state"] in ("failed", "interrupted"), status
    assert status["processes"] == 2 and status["devices"] == 2
    done = status["checkpoint_epoch"]
    assert 1 <= done < 3 and [row["epoch"] for row in run.read_metrics()] == list(range(1, done + 1))

    logs = tmp_path / "resume"
    first, second = _finish(_start_two(logs, "resume", run_dir.name, "--epochs", "3", *where), logs)
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "completed: test accuracy" in first.stdout and "process 1 of 2: completed" in second.stdout
    status = run.read_status()
    assert status["state"] == "completed" and status["checkpoint_epoch"] == 3
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2, 3]   # nothing lost, nothing twice
    # The global batch is 16 per device x 2 devices: 200 training images make 6 whole steps, not 12.
    assert run.read_progress()["batches"] == 6
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(METRIC_COLUMNS)           # the same file a one-process run writes
    assert run.has_predictions() and status["test_images"] == 100


def test_several_processes_on_tensorflow_are_refused_before_a_run_exists(tmp_path, fixture_data_dir):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", **_variables(2, 0, _free_port())}
    result = subprocess.run([sys.executable, "-m", "core", "train", *QUICK, "--epochs", "1", "--runs-dir",
                             str(tmp_path / "runs"), "--data-dir", fixture_data_dir], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "needs the JAX backend" in result.stderr and "KERAS_BACKEND=jax" in result.stderr
    assert not run_folders(tmp_path / "runs")


@pytest.mark.parametrize("variables, distribution, words", [
    ({processes.COUNT: "2", processes.INDEX: "2", processes.ADDRESSES: "h:1"}, "auto", "from 0 to 1; got 2"),
    ({processes.COUNT: "2", processes.INDEX: "0"}, "auto", "KERAS_DISTRIBUTION_JOB_ADDRESSES"),
    ({processes.COUNT: "two"}, "auto", "KERAS_DISTRIBUTION_NUM_PROCESSES: expected a whole number; got 'two'"),
    ({processes.COUNT: "2", processes.INDEX: "1", processes.ADDRESSES: "h:1"}, "none", "expected auto or mirrored"),
])
def test_process_variables_are_checked_naming_the_variable(monkeypatch, variables, distribution, words):
    for name in (processes.ADDRESSES, processes.COUNT, processes.INDEX):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserInputError) as caught:
        processes.check("jax", distribution)
    assert words in str(caught.value)


@pytest.mark.parametrize("value, words", [("ten", "expected a whole number; got 'ten'"),
                                          ("0", "from 1 to 3600; got 0"), ("7200", "from 1 to 3600; got 7200")])
def test_the_heartbeat_is_checked_naming_the_variable(monkeypatch, value, words):
    monkeypatch.setenv(processes.COUNT, "2")
    monkeypatch.setenv(processes.INDEX, "0")
    monkeypatch.setenv(processes.ADDRESSES, "127.0.0.1:1")
    monkeypatch.setenv(processes.HEARTBEAT, value)
    with pytest.raises(UserInputError, match=processes.HEARTBEAT) as caught:
        processes.check("jax", "auto")
    assert words in str(caught.value)
    monkeypatch.setenv(processes.HEARTBEAT, "15")
    processes.check("jax", "auto")
    assert processes.heartbeat_seconds() == 15
    monkeypatch.delenv(processes.HEARTBEAT)
    assert processes.heartbeat_seconds() is None       # JAX's own default


def test_one_process_needs_nothing(monkeypatch):
    for name in (processes.ADDRESSES, processes.COUNT, processes.INDEX):
        monkeypatch.delenv(name, raising=False)
    assert not processes.several() and processes.process_index() == 0
    processes.check("tensorflow", "auto")          # nothing to refuse
