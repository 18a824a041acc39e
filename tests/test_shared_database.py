"""Issue 29's "done when": two dashboards and a CLI in separate processes, standing in for machines
that share one PostgreSQL database and one runs folder, see one queue and one set of runs.

Real parts: a PostgreSQL server (Debian's, on loopback, stopped by its pid: tests/postgres.py), two
`streamlit run` servers with one slot each, Chromium, and `python -m core` as a third process.
A student starts a long run on dashboard 1 and queues a second one there; dashboard 1's slot is
busy, so dashboard 2's scheduler takes it from the shared queue: both train at once, in different
processes. Dashboard 2 lists both runs; the CLI lists both and stops both; both dashboards then show
them stopped. Plumbing: the tests' small EfficientNet (tests/small_efficientnet.py)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys

import pytest

from browser import CHROMIUM, CHROMIUM_ARGS, ROOT, exceptions_shown, screenshot, settle, start_training_from_the_ui, \
    streamlit_server
from conftest import read_status_file, wait_for
from dashboard import control

pytestmark = [pytest.mark.slow, pytest.mark.small_network, pytest.mark.full, pytest.mark.timeout(900)]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_two_dashboards_and_a_cli_share_one_queue_and_one_set_of_runs(tmp_path, fixture_data_dir, postgres_server,
                                                                       monkeypatch):
    import postgres
    from playwright.sync_api import sync_playwright

    from core.store.database import DB_URL_ENV, forget_databases
    url = postgres.create_database(postgres_server, f"two_dashboards_{secrets.token_hex(4)}")
    monkeypatch.setenv(DB_URL_ENV, url)          # this process reads the same database (read_status_file)
    forget_databases()
    runs = tmp_path / "runs"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, "EFFLAB_DB_URL": url,
           "EFFLAB_SLOTS": "1", control.TOKEN_ENV: ""}
    with streamlit_server(env, tmp_path / "dashboard-1.log") as one, \
            streamlit_server(env, tmp_path / "dashboard-2.log") as two, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            start_training_from_the_ui(page, one, images=200, epochs=500, batch=8, name="Ana — long")
            start_training_from_the_ui(page, one, images=200, epochs=500, batch=8, name="Ana — second")
            listed = json.loads("[" + ",".join(_cli("runs", "--json", env=env).stdout.splitlines()) + "]")
            by_name = {r["name"]: r for r in listed}
            assert set(by_name) == {"Ana — long", "Ana — second"}, listed
            first, second = by_name["Ana — long"]["run_id"], by_name["Ana — second"]["run_id"]

            # Dashboard 1's one slot is busy: dashboard 2 takes the second run from the shared queue.
            wait_for(lambda: read_status_file(runs / second)["state"] == "running", 90,
                     "dashboard 2 to take the queued run")
            a, b = read_status_file(runs / first), read_status_file(runs / second)
            assert a["state"] == "running" and a["pid"] != b["pid"], (a, b)

            # Dashboard 2 shows both training (one queue) and lists both runs (one set of runs).
            other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            other.set_default_timeout(60_000)
            other.goto(two)
            settle(other, 2)
            for run_id, name in ((first, "Ana — long"), (second, "Ana — second")):
                other.get_by_text(re.compile(f"{run_id} +{name}")).first.wait_for()
            screenshot(other, "shared-db-01-dashboard-2-trains-the-second")
            other.goto(f"{two}/runs")
            settle(other, 2)
            for name in ("Ana — long", "Ana — second"):      # the table's cells are drawn on a canvas
                other.get_by_text(name).first.wait_for(state="attached")
            assert not exceptions_shown(other)

            # The CLI stops both, wherever they train.
            for run_id in (first, second):
                stopped = _cli("stop", run_id, env=env)
                assert stopped.returncode == 0, stopped.stderr
            for run_id in (first, second):
                wait_for(lambda rid=run_id: read_status_file(runs / rid)["state"] == "stopped", 120,
                         f"run {run_id} to stop")
            other.reload()
            settle(other, 2)
            assert other.get_by_text("stopped", exact=True).count() == 2
            screenshot(other, "shared-db-02-stopped-from-the-cli")
        finally:
            browser.close()
    states = {r["run_id"]: r["state"] for r in map(json.loads, _cli("runs", "--json", env=env).stdout.splitlines())}
    assert states == {first: "stopped", second: "stopped"}
    assert not (runs / "lab.db").exists()        # nobody fell back to a SQLite file of their own
    forget_databases()
