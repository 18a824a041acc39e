"""A class on one server, in a real browser (real `streamlit run`, Debian's Chromium), as one chained
flow: two students press Start, the second waits in line and is told its place, each finds the
other's run by name; the server is SIGKILLed mid-epoch with one run training and two queued; a new
server on the same runs folder drains the queue in order from the moment it is up, lists the killed
run as interrupted (not requeued: its owner decides) to its owner's browser only, and she resumes
it from the Train page to completion with every epoch exactly once. Then the teacher stops a run that the command line is
training. Two runs side by side with two slots are proved by their status files in
test_gpu_branches.py (a mixed-precision B0 and a float32 B1).

Plumbing, not the network: these runs build the tests' small EfficientNet (tests/small_efficientnet.py).
Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import (CHROMIUM, CHROMIUM_ARGS, ROOT, chromium_page, exceptions_shown, screenshot, settle,
                     start_training_from_the_ui, streamlit_server)
from conftest import read_status_file, run_folders, wait_for, wait_mid_epoch
from core.settings.config import TrainConfig
from core.store.runs import RunStore
from dashboard import control

pytestmark = [pytest.mark.slow, pytest.mark.small_network]


def _run_ids(runs: Path) -> set[str]:
    return {p.name for p in run_folders(runs)}


def _queue_a_run(page, url: str, runs: Path, *, name: str, images: int = 100, epochs: int = 1,
                 batch: int = 16) -> str:
    """A student's Start: small settings, a name, Start; returns the id of the run it created,
    once the status panel names it."""
    before = _run_ids(runs)
    start_training_from_the_ui(page, url, images=images, epochs=epochs, batch=batch, name=name)
    deadline = time.time() + 60
    while not (_run_ids(runs) - before):
        assert time.time() < deadline, "Start created no run"
        time.sleep(0.2)
    (run_id,) = _run_ids(runs) - before
    page.get_by_text(re.compile(rf" — run {run_id}")).first.wait_for(timeout=120_000)
    return run_id


def _wait_for_state(runs: Path, run_id: str, states: tuple[str, ...], timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_status_file(runs / run_id)
        if status.get("state") in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never reached {states}: {read_status_file(runs / run_id)}")


def _epochs_in_metrics(run_dir: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]


@pytest.mark.full
@pytest.mark.timeout(1800)
def test_a_class_queues_loses_its_server_mid_epoch_and_carries_on(tmp_path, fixture_data_dir):
    from playwright.sync_api import sync_playwright
    runs = tmp_path / "runs"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, "EFFLAB_SLOTS": "1",
           control.TOKEN_ENV: ""}

    # 1. Server 1: Ana starts a long run; Ben's two Starts wait in line, and he is told his place.
    with streamlit_server(env, tmp_path / "server-1.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ana, ben = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
            for page in (ana, ben):
                page.set_default_timeout(60_000)
            # Long enough to be training still when the server dies: on the small network an
            # epoch of the fixture takes about a second.
            long_run = _queue_a_run(ana, url, runs, name="Ana — lr 1e-3", images=200, epochs=500, batch=8)
            first_queued = _queue_a_run(ben, url, runs, name="Ben — batch 16")
            ben.get_by_text(re.compile(r"1st in line")).first.wait_for(timeout=30_000)
            screenshot(ben, "queue-01-second-in-line")
            second_queued = _queue_a_run(ben, url, runs, name="Ben — again")
            # Each student finds the other's run, by name, in the list of everyone's runs.
            ana.get_by_text(re.compile("Ben — batch 16")).first.wait_for(timeout=30_000)
            ben.get_by_text(re.compile("Ana — lr 1e-3")).first.wait_for(timeout=30_000)
            screenshot(ana, "queue-02-everyone-s-runs")
            assert not exceptions_shown(ana) and not exceptions_shown(ben)

            # 2. SIGKILL mid-epoch: the run trains in a thread of the server process itself.
            wait_mid_epoch(runs / long_run, after_epoch=1, min_batch=2, timeout=420)
            assert [read_status_file(runs / rid)["state"] for rid in (first_queued, second_queued)] \
                == ["queued", "queued"]
            server_pid = read_status_file(runs / long_run)["pid"]
            os.kill(server_pid, signal.SIGKILL)
            # Ana's browser keeps who she is in a cookie (dashboard/identity.py): her run stays hers.
            anas_browser = ana.context.storage_state()
            assert "efflab_owner" in [c["name"] for c in anas_browser["cookies"]], anas_browser
        finally:
            browser.close()
    killed = read_status_file(runs / long_run)        # what it was doing when it died
    assert killed["state"] in ("running", "stopping") and killed["pid"] == server_pid
    done = killed["checkpoint_epoch"]
    assert done >= 1 and _epochs_in_metrics(runs / long_run) == list(range(1, done + 1))

    # 3. Server 2 on the same folder: the killed run reads interrupted and is resumed from the
    #    Train page; the queue drains in its order, the resumed run joining its end.
    # The killed server's lease on the run lapses 10 s (EFFLAB_LEASE_SECONDS here) after its last
    # heartbeat; then whoever looks finds the run interrupted.
    wait_for(lambda: RunStore(runs).get(long_run).live_status()["state"] == "interrupted", 60,
             "the killed run's lease to lapse")
    with streamlit_server(env, tmp_path / "server-2.log") as url, sync_playwright() as playwright:
        # The queue drains from the moment the server is up: nobody has opened a page yet.
        wait_for(lambda: read_status_file(runs / first_queued)["state"] != "queued", 90,
                 "the restarted server to start the first queued run by itself")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Someone else's browser is not offered Ana's run to resume ...
        stranger = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        stranger.goto(url)
        settle(stranger, 2)
        stranger.get_by_text(re.compile("Your stopped, interrupted, failed")).wait_for()
        assert stranger.get_by_role("combobox", name="Run", exact=True).count() == 0
        # ... hers is, after the server's restart.
        page = browser.new_context(storage_state=anas_browser, viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        settle(page, 2)
        picked = page.get_by_role("combobox", name="Run", exact=True)
        picked.wait_for()
        if long_run not in picked.input_value():      # a queued run may have finished meanwhile
            picked.click()
            page.get_by_role("option", name=re.compile(long_run)).click()
            settle(page, 1)
        assert picked.input_value().endswith(f"{long_run} · B0 32px · interrupted · {done}/500 epochs"), \
            picked.input_value()
        screenshot(page, "queue-03-interrupted-after-sigkill")
        page.get_by_role("button", name=re.compile("Resume")).click()    # to done + 1 epochs (the default)
        first, second, resumed = (_wait_for_state(runs, rid, ("completed", "failed"))
                                  for rid in (first_queued, second_queued, long_run))
        page.get_by_text(re.compile(rf"Completed — run {long_run}")).wait_for(timeout=120_000)
        settle(page)
        screenshot(page, "queue-04-resumed-and-completed")
        page.get_by_role("link", name="Runs", exact=True).click()
        settle(page, 2)
        screenshot(page, "queue-05-runs-after-restart")
        assert not exceptions_shown(page)
        browser.close()
    assert first["state"] == second["state"] == resumed["state"] == "completed", (first, second, resumed)
    assert first["ended_at"] <= second["claimed_at"]         # one slot: in their order ...
    assert second["ended_at"] <= resumed["claimed_at"]       # ... the resume behind them
    assert resumed["checkpoint_epoch"] == done + 1
    assert _epochs_in_metrics(runs / long_run) == list(range(1, done + 2))   # nothing lost, nothing twice


@pytest.mark.full
@pytest.mark.timeout(1500)
def test_the_teacher_stops_a_command_line_run_from_the_dashboard(tmp_path, fixture_data_dir):
    runs = tmp_path / "runs"
    config = tmp_path / "long.json"
    config.write_text(TrainConfig(epochs=500, batch_size=16, train_limit=200, val_fraction=0.2, seed=2).to_json())
    cli = subprocess.Popen([sys.executable, "-m", "core", "--runs-dir", str(runs), "--data-dir", fixture_data_dir,
                            "train", "--config", str(config), "--name", "from the terminal"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not run_folders(runs):
            assert time.time() < deadline and cli.poll() is None
            time.sleep(0.2)
        (run_dir,) = run_folders(runs)
        wait_mid_epoch(run_dir, after_epoch=1, min_batch=1, trainer=cli, timeout=420)
        env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir}
        with streamlit_server(env, tmp_path / "server.log") as url, chromium_page() as page:
            page.goto(url)
            settle(page)
            row = page.get_by_text(re.compile(rf"{run_dir.name}\s+from the terminal"))
            row.first.wait_for(timeout=60_000)
            screenshot(page, "queue-cli-run-listed")
            page.get_by_role("button", name=re.compile("Stop")).first.click()
            out, err = cli.communicate(timeout=120)     # stops within a few seconds of the request
        assert cli.returncode == 130, err[-2000:]
        status = read_status_file(run_dir)
        assert status["state"] == "stopped" and status["checkpoint_epoch"] >= 1
        assert (run_dir / "checkpoints" / "last.keras").is_file()
        done = status["checkpoint_epoch"]
        resumed = subprocess.run([sys.executable, "-m", "core", "--runs-dir", str(runs), "--data-dir",
                                  fixture_data_dir, "resume", run_dir.name, "--epochs", str(done + 1)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert [r["epoch"] for r in RunStore(runs).get(run_dir.name).read_metrics()] == list(range(1, done + 2))
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
