"""The executors behind one interface (core/jobs/executors/, issue 30): the thread executor (default) and
the process executor (EFFLAB_EXECUTOR=process, each run in its own `python -m core work` process),
tested as one where they promise the same, and the process executor's own promise apart: a worker
killed with SIGKILL takes down neither the manager nor the other run, its run reads `interrupted`
at once (not after its lease), and a resume completes it. The runs train the tests' small
EfficientNet (tests/small_efficientnet.py): the subject is where a run trains, not B0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, read_status_file, run_folders, wait_for
from core.jobs.executors import EXECUTOR_ENV, executor_name, where_trained
from core.jobs.executors.process import ended_how
from core.jobs.scheduler import JobManager
from core.settings.config import TrainConfig
from core.settings.env_settings import EnvSettingError

TINY = dict(batch_size=16, train_limit=200, val_fraction=0.2, seed=3, learning_rate=3e-3)


def _is_worker_of(pid: int, run_id: str) -> bool:
    """Whether `pid` is a `python -m core work RUN_ID` process (the process executor's worker)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"work" in argv and run_id.encode() in argv


@pytest.mark.slow
@pytest.mark.small_network
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_run_trains_to_completion_wherever_its_executor_puts_it(executor, tmp_path, fixture_data_dir, monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, executor)
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=1)
    assert manager.executor.name == executor and manager.trains_here and not manager.problem
    run_id = manager.start(TrainConfig(epochs=2, **TINY), name="Ana")
    assert manager.active_run_ids == [run_id]
    assert manager.wait(300)
    run = manager.store.get(run_id)
    status = run.read_status()
    assert status["state"] == "completed", status
    assert status["executor"] == executor
    assert (status["pid"] == os.getpid()) == (executor == "thread")
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    y_true, y_prob = run.read_predictions()
    assert y_prob.shape == (100, 10) and status["test_accuracy"] is not None
    assert manager.progress(run_id)["state"] == "completed"
    assert manager.active_run_ids == []
    where = where_trained(status)
    assert where == "" if executor == "thread" else where == f"Trained in worker process {status['pid']} on {status['host']}"


@pytest.mark.slow
@pytest.mark.small_network
@pytest.mark.timeout(600)
def test_a_killed_worker_leaves_the_manager_and_the_other_run_up_and_its_run_interrupted_then_resumed(
        tmp_path, fixture_data_dir, monkeypatch):
    """Two runs in two worker processes; SIGKILL one after its first epoch. The other keeps training
    and stops on request (through the run store, as every Stop); the killed one reads `interrupted`
    within seconds (the lease would take 10 s here, 60 by default), saying it was killed, and a
    resume finishes it with every epoch exactly once."""
    monkeypatch.setenv(EXECUTOR_ENV, "process")
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=2)
    doomed = manager.start(TrainConfig(epochs=400, **TINY), name="killed")
    other = manager.start(TrainConfig(epochs=400, **{**TINY, "seed": 4}), name="survivor")
    assert manager.active_run_ids == [doomed, other]
    run, survivor = manager.store.get(doomed), manager.store.get(other)
    wait_for(lambda: run.read_status().get("checkpoint_epoch", 0) >= 1, 300, "the first epoch's checkpoint")
    worker = run.read_status()["pid"]
    assert worker != os.getpid() and _is_worker_of(worker, doomed)
    before = survivor.read_progress().get("batch", 0), survivor.read_progress().get("epoch", 0)

    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: run.read_status()["state"] == "interrupted", 8, "the killed run to read interrupted")
    assert time.monotonic() - killed_at < 5       # from the pid, not from the lease
    status = run.live_status()
    assert "SIGKILL" in status["error"] and "resume" in status["error"], status
    wait_for(lambda: manager.active_run_ids == [other], 5, "the killed run's slot to free")
    # The other run trains on, in its own worker: its progress moves after the kill.
    wait_for(lambda: (survivor.read_progress().get("batch", 0), survivor.read_progress().get("epoch", 0)) != before,
             120, "the survivor to go on training")
    assert manager.stop(other)
    assert manager.wait(180, run_id=other)
    assert survivor.read_status()["state"] == "stopped"

    kept = status["checkpoint_epoch"]
    manager.resume(doomed, epochs=kept + 1)
    assert manager.wait(300)
    done = run.read_status()
    assert done["state"] == "completed", done
    assert done["pid"] != worker and done["executor"] == "process"
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, kept + 2))
    assert (run.path / "worker.log").stat().st_size > 0


def test_a_bad_executor_is_named_with_what_is_allowed_and_what_was_given(tmp_path, monkeypatch, capsys):
    assert executor_name({}) == "thread" and executor_name({EXECUTOR_ENV: " Process "}) == "process"
    assert executor_name({"EFFLAB_RAY_ADDRESS": "10.0.0.5:6379"}) == "ray"
    assert executor_name({}, ray_address_given="10.0.0.5:6379") == "ray"
    with pytest.raises(EnvSettingError, match=re.escape("EFFLAB_EXECUTOR: expected one of thread, process, ray; "
                                                        "got 'processes'")):
        executor_name({EXECUTOR_ENV: "processes"})
    with pytest.raises(EnvSettingError, match="EFFLAB_EXECUTOR: ray needs the cluster's address in EFFLAB_RAY_ADDRESS"):
        executor_name({EXECUTOR_ENV: "ray"})
    with pytest.raises(EnvSettingError, match="EFFLAB_EXECUTOR: expected ray .* while EFFLAB_RAY_ADDRESS is set; "
                                              "got 'process'"):
        executor_name({EXECUTOR_ENV: "process", "EFFLAB_RAY_ADDRESS": "10.0.0.5:6379"})
    # The server refuses to start with it, saying the same (dashboard/serve.py makes the manager first).
    monkeypatch.setenv(EXECUTOR_ENV, "forked")
    with pytest.raises(EnvSettingError, match="EFFLAB_EXECUTOR: expected one of thread, process, ray; got 'forked'"):
        JobManager(runs_dir=tmp_path / "runs", drain_queue=False)
    # The command line says it in one line too, exit 2, no traceback.
    from core.__main__ import EXIT_INPUT, main
    capsys.readouterr()
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs"]) == EXIT_INPUT
    assert capsys.readouterr().err == "error: EFFLAB_EXECUTOR: expected one of thread, process, ray; got 'forked'\n"


def test_a_worker_that_ended_early_is_explained_in_words(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("loading...\nModuleNotFoundError: No module named 'tensorflow'\n")
    assert ended_how(77, -9, log) == ("its worker process 77 was killed by SIGKILL (the kernel's out-of-memory "
                                      "killer sends it when memory runs out)")
    assert ended_how(77, -15, log) == "its worker process 77 was killed by SIGTERM"
    assert ended_how(77, 1, log) == "its worker process 77 exited with code 1: ModuleNotFoundError: No module named " \
                                    "'tensorflow'"
    assert ended_how(77, 3, tmp_path / "absent.log") == "its worker process 77 exited with code 3"


def test_where_a_run_trains_is_said_from_its_status_whatever_the_executor():
    server = {"pid": 10, "host": "classroom"}
    starting = {"executor": "process", "state": "running", **server, "submitted_from": server}
    assert where_trained(starting) == "Starting a worker process on classroom"
    assert where_trained({**starting, "pid": 42}) == "Training in worker process 42 on classroom"
    assert where_trained({**starting, "pid": 42, "state": "interrupted"}) == "Ran in worker process 42 on classroom"
    assert where_trained({**starting, "pid": 42, "state": "stopped"}) == "Trained in worker process 42 on classroom"
    assert where_trained({"executor": "thread", "state": "running", **server}) == ""
    assert where_trained({"state": "running"}) == ""        # a run from before executors were recorded


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
@pytest.mark.timeout(600)
def test_a_dashboard_run_in_a_worker_survives_kill_9_of_its_worker_then_of_its_server(tmp_path, fixture_data_dir):
    """Issue 30's "done when": with EFFLAB_EXECUTOR=process, a Start in the browser trains in a child
    process of the server; kill -9 of that child leaves the server serving and the run `interrupted`
    (the page says so). Then the other way round, on one server: the run queued again as another
    dashboard would, the server's scheduler trains it in a new worker, and the server is killed
    with SIGKILL by its pid; the worker does not train on unwatched, it stops at its next batch with
    a checkpoint (`stopped`, resumable) and ends. The command line resumes it to completion, also in
    a worker, with every epoch exactly once."""
    from browser import CHROMIUM, CHROMIUM_ARGS, exceptions_shown, screenshot, settle, start_training_from_the_ui, \
        streamlit_process
    from playwright.sync_api import sync_playwright

    from core.store.runs import RunStore
    from dashboard import control
    runs = tmp_path / "runs"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, EXECUTOR_ENV: "process",
           "EFFLAB_SLOTS": "1", control.TOKEN_ENV: ""}
    with streamlit_process(env, tmp_path / "server.log") as (server_process, url), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            start_training_from_the_ui(page, url, images=200, epochs=500, batch=8, name="in a worker")
            (run_dir,) = run_folders(runs)
            wait_for(lambda: read_status_file(run_dir).get("checkpoint_epoch", 0) >= 1, 300, "epoch 1's checkpoint")
            status = read_status_file(run_dir)
            worker, server = status["pid"], status["submitted_from"]["pid"]
            assert worker != server and _is_worker_of(worker, run_dir.name), status
            page.get_by_text(re.compile(rf"Training in worker process {worker} on ")).first.wait_for(timeout=30_000)

            os.kill(worker, signal.SIGKILL)
            wait_for(lambda: read_status_file(run_dir)["state"] == "interrupted", 8, "the run to read interrupted")
            page.get_by_text(re.compile(r"Interrupted — run")).first.wait_for(timeout=30_000)
            settle(page)
            assert page.get_by_text(re.compile("was killed by SIGKILL")).count() >= 1
            assert not exceptions_shown(page)
            screenshot(page, "process-executor-worker-killed")
            os.kill(server, 0)                     # the server is up, and still serves pages
            page.reload()
            settle(page)
            assert page.get_by_role("button", name=re.compile("Start training")).count() >= 1
            assert not exceptions_shown(page)
        finally:
            browser.close()

        # The other way round: the server dies while its run trains in a worker.
        kept = read_status_file(run_dir)["checkpoint_epoch"]
        store = RunStore(runs)
        assert store.enqueue(store.get(run_dir.name), 500)       # as another dashboard's Resume would
        wait_for(lambda: read_status_file(run_dir).get("checkpoint_epoch", 0) > kept, 300,
                 "the resumed run's next checkpoint, from a new worker")
        second_worker = read_status_file(run_dir)["pid"]
        assert second_worker not in (worker, server) and _is_worker_of(second_worker, run_dir.name)
        assert server_process.pid == server
        server_process.kill()
        server_process.wait(30)
    wait_for(lambda: read_status_file(run_dir)["state"] == "stopped", 60, "the orphaned worker to stop its run")
    wait_for(lambda: not _is_worker_of(second_worker, run_dir.name), 30, "the worker to end")
    run = store.get(run_dir.name)
    kept = run.checkpoint_epoch()
    assert kept >= 2 and run.live_status()["state"] == "stopped"

    resume = subprocess.run([sys.executable, "-m", "core", "--runs-dir", str(runs), "--data-dir", fixture_data_dir,
                             "resume", run_dir.name, "--epochs", str(kept + 1)], cwd=ROOT,
                            env={**os.environ, EXECUTOR_ENV: "process"}, capture_output=True, text=True, timeout=400)
    assert resume.returncode == 0 and "completed: test accuracy" in resume.stdout, resume.stderr[-3000:]
    done = read_status_file(run_dir)
    assert done["state"] == "completed" and done["executor"] == "process"
    assert done["pid"] not in (worker, second_worker, server)
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, kept + 2))
