"""A class on one server, in a real browser: two students press Start, the second waits in line and
is told its place, both runs complete in order with one slot (side by side with two slots: proved by
their status files in test_slots.py, without a browser, to keep the suite's time); a server
killed with one run training and two queued comes back with the queue intact; and the teacher stops
a run that the command line is training. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import (CHROMIUM, CHROMIUM_ARGS, ROOT, chromium_page, exceptions_shown, free_port, open_when_up,
                     screenshot, settle, start_training_from_the_ui, streamlit_server)
from conftest import read_status_file, wait_mid_epoch
from core.config import TrainConfig
from core.runs import RunStore

pytestmark = pytest.mark.slow


def _run_ids(runs: Path) -> set[str]:
    return {p.name for p in runs.iterdir() if not p.name.startswith(".")} if runs.is_dir() else set()


def _queue_a_run(page, url: str, runs: Path, *, name: str, images: int = 100, epochs: int = 1) -> str:
    """A student's Start: small settings, a name, Start; returns the id of the run it created,
    once the status panel names it."""
    before = _run_ids(runs)
    start_training_from_the_ui(page, url, images=images, epochs=epochs, batch=16, name=name)
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


def _two_students(tmp_path, fixture_data_dir, slots: int, tag: str) -> tuple[dict, dict]:
    from playwright.sync_api import sync_playwright
    runs = tmp_path / f"runs-{slots}"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, "EFFLAB_SLOTS": str(slots)}
    with streamlit_server(env, tmp_path / f"server-{slots}.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ana, ben = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
            for page in (ana, ben):
                page.set_default_timeout(60_000)
            first = _queue_a_run(ana, url, runs, name="Ana — lr 1e-3")
            second = _queue_a_run(ben, url, runs, name="Ben — batch 16")
            if slots == 1:
                ben.get_by_text(re.compile(r"1st in line")).first.wait_for(timeout=30_000)
                assert read_status_file(runs / second)["state"] == "queued"
                screenshot(ben, f"queue-{tag}-second-in-line")
            # Each student finds the other's run, by name, in the list of everyone's runs.
            ana.get_by_text(re.compile("Ben — batch 16")).first.wait_for(timeout=30_000)
            screenshot(ana, f"queue-{tag}-both")
            a = _wait_for_state(runs, first, ("completed", "failed"))
            b = _wait_for_state(runs, second, ("completed", "failed"))
            ben.get_by_text(re.compile(r"Completed — run")).first.wait_for(timeout=60_000)
            assert not exceptions_shown(ana) and not exceptions_shown(ben)
        finally:
            browser.close()
    assert a["state"] == b["state"] == "completed", (a.get("error"), b.get("error"))
    return a, b


@pytest.mark.timeout(1500)
def test_two_students_with_one_slot_train_in_order(tmp_path, fixture_data_dir):
    a, b = _two_students(tmp_path, fixture_data_dir, slots=1, tag="1slot")
    assert a["ended_at"] <= b["claimed_at"]               # one slot: the second began when the first ended




def _server(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, **env}, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.timeout(1800)
def test_the_queue_survives_a_killed_server(tmp_path, fixture_data_dir):
    """SIGKILL with one run training and two queued: after a restart the training run reads as
    interrupted (not requeued: the teacher decides), and the two queued runs train and complete."""
    runs = tmp_path / "runs"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, "EFFLAB_SLOTS": "1"}
    server, url = _server(env, tmp_path / "server-1.log")
    try:
        with chromium_page() as page:
            open_when_up(page, url)
            long_run = _queue_a_run(page, url, runs, name="long", images=200, epochs=30)
            queued = [_queue_a_run(page, url, runs, name=f"queued {i}") for i in (1, 2)]
            wait_mid_epoch(runs / long_run, after_epoch=1, min_batch=1, timeout=420)
        assert [read_status_file(runs / rid)["state"] for rid in queued] == ["queued", "queued"]
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)

    server, url = _server(env, tmp_path / "server-2.log")
    try:
        with chromium_page() as page:
            open_when_up(page, url)        # the new server drains the queue it finds
            first, second = (_wait_for_state(runs, rid, ("completed", "failed")) for rid in queued)
            assert first["state"] == second["state"] == "completed", (first, second)
            assert first["ended_at"] <= second["claimed_at"]       # in their order
            interrupted = RunStore(runs).get(long_run).live_status()
            assert interrupted["state"] == "interrupted" and interrupted["checkpoint_epoch"] >= 1
            page.get_by_role("link", name="Runs", exact=True).click()
            settle(page, 2)
            screenshot(page, "queue-after-restart-runs")
            assert not exceptions_shown(page)
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.timeout(1500)
def test_the_teacher_stops_a_command_line_run_from_the_dashboard(tmp_path, fixture_data_dir):
    runs = tmp_path / "runs"
    config = tmp_path / "long.json"
    config.write_text(TrainConfig(epochs=30, batch_size=16, train_limit=200, val_fraction=0.2, seed=2).to_json())
    cli = subprocess.Popen([sys.executable, "-m", "core", "--runs-dir", str(runs), "--data-dir", fixture_data_dir,
                            "train", "--config", str(config), "--name", "from the terminal"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (runs.is_dir() and [p for p in runs.iterdir() if not p.name.startswith(".")]):
            assert time.time() < deadline and cli.poll() is None
            time.sleep(0.2)
        (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
        wait_mid_epoch(run_dir, after_epoch=1, min_batch=1, trainer=cli, timeout=420)
        env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir}
        with streamlit_server(env, tmp_path / "server.log") as url, chromium_page() as page:
            open_when_up(page, url)
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
