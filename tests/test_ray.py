"""Runs on a Ray cluster, proved on loopback (issue 12 §1).

One local Ray head (127.0.0.1, 2 CPUs, no dashboard) serves the module: a run trained through the
CLI in a Ray worker, that worker killed mid-run (the run reads `interrupted`) and the run resumed to
completion; a run started from the dashboard in a real browser, its code shipped by Ray's
working_dir; an unreachable cluster (CLI and dashboard: one line, the run stays queued); and
without the variable, no Ray import at all.

Ray swaps 127.0.0.1 for the machine's network address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is
in the environment of the head and of every driver (DESIGN.md, measured facts): set for all here.
The head runs in its own session and is stopped by killing that process group, never `ray stop`
(which ends every Ray process on the machine). The runs train the tests' small EfficientNet
(tests/small_efficientnet.py).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from browser import (CHROMIUM, CHROMIUM_ARGS, ROOT, exceptions_shown, free_port, open_when_up, screenshot,
                     settle, start_training_from_the_ui)
from conftest import read_status_file, run_folders, wait_for
from core.jobs.executors.ray_cluster import LOOPBACK_ENV

TINY = ["--variant", "b0", "--image-size", "32", "--batch-size", "32", "--train-limit", "200",
        "--val-fraction", "0.2", "--weights", "none", "--learning-rate", "0.003", "--seed", "1"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs, started once for the module; yields its address. Its
    workers build the tests' small EfficientNet (they inherit the head's environment): the subject
    here is Ray, not B0."""
    from core.jobs.executors.ray_cluster import loopback_head
    from small_efficientnet import ENV
    with loopback_head(num_cpus=2, env={ENV: "small"}) as address:
        yield address


def _cli(*args: str, runs: Path, data_dir: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", "--runs-dir", str(runs), "--data-dir", data_dir, *args],
                            cwd=ROOT, env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _only_run(runs: Path) -> Path:
    folders = run_folders(runs)
    return folders[0] if len(folders) == 1 else None


def _is_ray_worker(pid: int) -> bool:
    """Ray names its worker processes "ray::<task>" (their command line is replaced)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
    except OSError:
        return False


def _assert_whole_run_folder(run_dir: Path, epochs: int) -> dict:
    from core.store.runs import RunStore
    run = RunStore(run_dir.parent).get(run_dir.name)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert [m["epoch"] for m in run.read_metrics()] == list(range(1, epochs + 1))
    assert run.checkpoint("last") and run.checkpoint("best")
    y_true, y_prob = run.read_predictions()
    assert y_prob.shape == (len(y_true), 10) and len(y_true) == 100     # the fixture's test set
    assert status["executor"] == "ray" and status["node_ip"] == "127.0.0.1" and status["ray_node_id"]
    return status


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
@pytest.mark.timeout(600)
def test_cli_run_trains_in_a_ray_worker_survives_its_death_and_resumes(ray_head, tmp_path, fixture_data_dir):
    """`train --ray-address`: the run trains in a Ray worker process; SIGKILL of that worker after
    the first epoch's checkpoint makes it `interrupted` (the CLI says so, exit 1); `resume
    --ray-address` finishes it in a new worker, with the whole run folder; `stop` stops the next
    resume in its worker."""
    runs = tmp_path / "runs"
    # A target far beyond the kill (on the small network an epoch takes about a second).
    cli = _cli("train", *TINY, "--epochs", "500", "--ray-address", ray_head, runs=runs, data_dir=fixture_data_dir)
    wait_for(lambda: cli.poll() is not None or _only_run(runs) is not None, 60, "the CLI to create the run")
    run_dir = _only_run(runs)
    assert run_dir is not None, cli.communicate()
    wait_for(lambda: cli.poll() is not None or read_status_file(run_dir).get("checkpoint_epoch", 0) >= 1,
             300, "the first epoch's checkpoint")
    status = read_status_file(run_dir)
    assert cli.poll() is None and status["state"] == "running", (status, cli.communicate())
    worker = status["pid"]
    assert worker != cli.pid and status["submitted_from"]["pid"] == cli.pid and _is_ray_worker(worker)
    assert status["executor"] == "ray" and status["ray_address"] == ray_head

    os.kill(worker, signal.SIGKILL)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 1 and "interrupted" in err and f"python -m core resume {run_dir.name}" in err, err
    from core.store.runs import RunStore
    interrupted = RunStore(runs).get(run_dir.name).live_status()
    kept = interrupted["checkpoint_epoch"]
    assert interrupted["state"] == "interrupted" and kept >= 1, interrupted

    resume = _cli("resume", run_dir.name, "--epochs", str(kept + 1), "--ray-address", ray_head, runs=runs,
                  data_dir=fixture_data_dir)
    out, err = resume.communicate(timeout=400)
    assert resume.returncode == 0, err[-3000:]
    assert "completed: test accuracy" in out
    done = _assert_whole_run_folder(run_dir, epochs=kept + 1)
    assert done["pid"] not in (resume.pid, worker) and done["submitted_from"]["pid"] == resume.pid
    assert done["code_dir"] == str(ROOT)          # the same checkout, found through PYTHONPATH

    # Stop reaches a Ray worker through the runs folder, as it reaches any other process.
    again = _cli("resume", run_dir.name, "--epochs", "500", "--ray-address", ray_head, runs=runs,
                 data_dir=fixture_data_dir)
    wait_for(lambda: again.poll() is not None or read_status_file(run_dir).get("pid") not in
             (None, again.pid, done["pid"]), 120, "a new Ray worker to take the run")
    stop = _cli("stop", run_dir.name, runs=runs, data_dir=fixture_data_dir)
    assert stop.wait(60) == 0, stop.communicate()
    out, err = again.communicate(timeout=180)
    stopped = read_status_file(run_dir)
    assert again.returncode == 130 and stopped["state"] == "stopped", err[-2000:]
    rows = RunStore(runs).get(run_dir.name).read_metrics()
    assert [r["epoch"] for r in rows] == list(range(1, stopped["checkpoint_epoch"] + 1))
    assert kept + 1 <= len(rows) < 500


@pytest.mark.timeout(120)
def test_an_unreachable_cluster_is_one_line_and_the_run_stays_queued(tmp_path, fixture_data_dir):
    runs, address = tmp_path / "runs", f"127.0.0.1:{_closed_port()}"
    cli = _cli("train", *TINY, "--epochs", "1", "--ray-address", address, runs=runs, data_dir=fixture_data_dir)
    out, err = cli.communicate(timeout=100)
    lines = [line for line in err.splitlines() if line.strip()]
    assert cli.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: the Ray cluster at " + address) and "ray start --head" in lines[0]
    assert "stays queued" in lines[0]
    assert read_status_file(_only_run(runs))["state"] == "queued"


def test_without_the_variable_ray_is_never_imported(tmp_path):
    """The engine, the CLI and the dashboard's state module, with a run queued: no `ray` module."""
    script = (
        "import sys, os\n"
        "from core.settings.config import TrainConfig\n"
        "from core.jobs.scheduler import JobManager\n"
        "import core.__main__ as cli, dashboard.state\n"
        f"m = JobManager(runs_dir={str(tmp_path / 'runs')!r}, drain_queue=False)\n"
        "m.start(TrainConfig(epochs=1))\n"
        f"assert cli.main(['--runs-dir', {str(tmp_path / 'runs')!r}, 'runs']) == 0\n"
        "assert m.trains_here and m.executor.name == 'thread'\n"
        "print(sorted(n for n in sys.modules if n == 'ray' or n.startswith('ray.')))\n")
    env = {k: v for k, v in os.environ.items() if k != "EFFLAB_RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
@pytest.mark.timeout(600)
def test_a_dashboard_start_trains_on_the_cluster(ray_head, tmp_path, fixture_data_dir):
    """EFFLAB_RAY_ADDRESS on the server (and EFFLAB_RAY_SHIP_CODE=1: the checkout travels as Ray's
    working_dir): a Start in the browser trains in a Ray worker, the page says where, and the run
    folder is whole."""
    from playwright.sync_api import sync_playwright
    runs = tmp_path / "runs"
    env = {**os.environ, **LOOPBACK_ENV, "EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir,
           "EFFLAB_RAY_ADDRESS": ray_head, "EFFLAB_RAY_SHIP_CODE": "1"}
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/serve.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                open_when_up(page, url, server)
                start_training_from_the_ui(page, url, images=200, epochs=1, batch=32, name="on Ray")
                run_dir = _only_run(runs)
                page.get_by_text(re.compile(r"Completed — run")).first.wait_for(timeout=400_000)
                settle(page)
                assert page.get_by_text(re.compile(r"Trained in a Ray worker on .*cluster " + re.escape(ray_head))) \
                    .count() == 1, [e.inner_text() for e in page.locator('[data-testid="stCaptionContainer"]').all()]
                screenshot(page, "ray-dashboard-run-completed")
                assert not exceptions_shown(page)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    status = _assert_whole_run_folder(run_dir, epochs=1)
    assert status["submitted_from"]["pid"] == server.pid and status["pid"] != server.pid
    # Shipped code: the worker imported the engine from Ray's unpacked copy, not this checkout.
    assert "_ray_pkg_" in status["code_dir"] and status["code_dir"] != str(ROOT)


def test_the_dashboard_says_when_the_cluster_cannot_be_reached(app_factory, tmp_path, monkeypatch):
    """Start with EFFLAB_RAY_ADDRESS on a port nobody answers: the run is queued, not lost, and the
    Train page says in one line which address and what to check."""
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("EFFLAB_RAY_ADDRESS", address)
    runs = tmp_path / "runs"
    at = app_factory(runs)("../pages/train.py")
    at.number_input(key="cfg_train_limit").set_value(100).run()
    next(b for b in at.button if "Start training" in b.label).click().run()
    errors = [e.value for e in at.error]
    assert any(f"the Ray cluster at {address} cannot be reached" in e and "ray start --head" in e for e in errors), errors
    run_dir = _only_run(runs)
    assert read_status_file(run_dir)["state"] == "queued"
    from core.store.runs import RunStore
    RunStore(runs).cancel(run_dir.name)     # the retry timer finds an empty queue and ends


# --- the pure parts: what a run asks Ray for, addresses, the page's words ---------------------------
def test_a_run_asks_for_a_share_of_a_gpu_when_small_a_whole_one_when_large_cpus_without_gpus():
    from core.settings.config import TrainConfig
    from core.jobs.executors.ray_cluster import RUNS_PER_GPU, TaskShape, task_shape
    small, large = TrainConfig(variant="b0", image_size=32), TrainConfig(variant="b3", image_size=224, batch_size=64)
    assert task_shape(small, cluster_gpus=2) == TaskShape(num_cpus=1, num_gpus=1 / RUNS_PER_GPU)
    assert task_shape(large, cluster_gpus=2) == TaskShape(num_cpus=1, num_gpus=1)
    assert task_shape(large, cluster_gpus=0, cpus=4) == TaskShape(num_cpus=4, num_gpus=0)
    # Three GPUs and 24 CPUs hold 12 small runs; 2 CPUs hold two 1-CPU runs and no 4-CPU one.
    assert TaskShape(1, 0.25).runs_in({"CPU": 24, "GPU": 3}) == 12
    assert TaskShape(1, 0).runs_in({"CPU": 2}) == 2 and TaskShape(4, 0).runs_in({"CPU": 2}) == 0


def test_addresses_and_cpu_counts_are_checked_with_the_expected_form():
    from core.jobs.executors.ray_cluster import ClusterUnreachable, cpus_per_run, ray_address, split_address
    assert split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    for bad in ("10.0.0.5", "ray://10.0.0.5:10001", "host:0", ":6379"):
        with pytest.raises(ClusterUnreachable, match="expected HOST:PORT"):
            split_address(bad)
    assert ray_address({"EFFLAB_RAY_ADDRESS": "  "}) is None and ray_address({}) is None
    assert cpus_per_run({}) == 1 and cpus_per_run({"EFFLAB_RAY_CPUS": "8"}) == 8
    with pytest.raises(ClusterUnreachable, match="EFFLAB_RAY_CPUS"):
        cpus_per_run({"EFFLAB_RAY_CPUS": "two"})


def test_the_status_panel_says_where_a_ray_run_trains():
    from dashboard.run_status import where_text
    sent = {"pid": 10, "host": "teacher"}
    base = {"executor": "ray", "ray_address": "10.0.0.5:6379", "submitted_from": sent}
    assert where_text({**base, "state": "running", "pid": 10, "host": "teacher"}) == \
        "Waiting for a node of the Ray cluster at 10.0.0.5:6379"
    assert where_text({**base, "state": "running", "pid": 77, "host": "gpu2", "node_ip": "10.0.0.7"}) == \
        "Training in a Ray worker on gpu2 (10.0.0.7), process 77, cluster 10.0.0.5:6379"
    assert where_text({**base, "state": "completed", "pid": 77, "host": "gpu2"}).startswith("Trained in a Ray worker on gpu2,")
    assert where_text({"executor": "thread", "state": "running"}) == ""
