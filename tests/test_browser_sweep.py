"""Issue 31's "done when", in a real browser (real `streamlit run`, Debian's Chromium at 1280×720):
a person sets up a 6-trial grid sweep on the Sweep page, Starts it, watches its trials queue and
train, the server is killed (its process group, by the pid this test started) in the middle of the
sweep and started again on the same runs folder, the sweep finishes every trial by itself, one
trial ends pruned, and the person reads the parallel coordinates, the importance sentence and the
class board.

Learning rate × batch size rather than × fine-tune block: the tests have no ImageNet weights, and
from random weights (the From scratch preset) the fine-tune block changes nothing. Pruning is made
certain, not likely: a learning rate of 1e-6 cannot learn the fixture's colours, so its trials stay
near chance while 1e-3 at batch 8 reaches ~100% validation accuracy by epoch 2 of 3; the grid's
order (GridSampler, seeded by the preset's seed) trains 1e-3 × 8 first and a 1e-6 trial second, so
from the third trial on the median pruner has its two completed trials, and the second 1e-6 trial
is behind their median by epoch 2 at the latest (their median there is about (1.0 + 0.1) / 2).
Plumbing, not the network: the tests' small EfficientNet, 240 fixture images, 3 epochs (epoch 1's
validation is near chance for every trial: BatchNorm's statistics have not settled).
Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, chart_problems, exceptions_shown, screenshot, set_number,
                     settle, streamlit_process)
from conftest import wait_for
from dashboard import control
from dashboard.slides import SLIDES

pytestmark = [pytest.mark.slow, pytest.mark.small_network]
SWEEP = "class lr x batch"
RATES, BATCHES = "0.001, 0.000001, 0.0003", "8, 4"
TRIALS = 6
PROJECTOR = (1280, 720)


def _trials(runs: Path):
    """The sweep's trials as the Sweep page reads them (state, value, run), from the database."""
    from core.store.runs import RunStore
    from core.sweeps.results import trial_results
    from core.sweeps.study import Sweep
    return trial_results(Sweep.open(RunStore(runs), SWEEP))


def _set_up_the_sweep(page, url: str) -> None:
    """The Sweep page's form, as a person fills it in: name, recipe, what varies and how, the data."""
    page.goto(f"{url}/sweep")
    settle(page)
    box = page.get_by_role("textbox", name="Sweep name")
    box.fill(SWEEP)
    box.press("Enter")
    settle(page, 0.5)
    _choose(page, "Start every trial from", "from-scratch")
    # Instead of the fine-tune block (no effect from random weights), the batch size.
    page.get_by_role("button", name=re.compile("Remove Unfreeze from block")).click()
    settle(page, 0.5)
    page.get_by_role("combobox", name=re.compile("Settings to vary")).click()
    page.get_by_role("option", name="Batch size (per device)").click()
    page.keyboard.press("Escape")
    settle(page, 0.5)
    for label, values in (("Learning rate", RATES), ("Batch size (per device)", BATCHES)):
        _choose(page, label, "values")
        field = page.get_by_role("textbox", name=f"{label}: values, separated by commas")
        field.fill(values)
        field.press("Enter")
        settle(page, 0.5)
    set_number(page, "Epochs per trial", 3)
    set_number(page, "Training images (0 = all)", 240)
    set_number(page, "Validation share", 0.2)
    _choose(page, "Method", "grid")
    assert page.get_by_role("spinbutton", name="Trials").input_value() == str(TRIALS)


def _shot(page, name: str) -> None:
    """A full-page screenshot (browser.screenshot), then back to the 1280×720 screen it resized."""
    screenshot(page, name)
    page.set_viewport_size({"width": PROJECTOR[0], "height": PROJECTOR[1]})


def _slide_shot(page, name: str) -> None:
    """The slide exactly as a 1280×720 projector shows it (no resizing to the content)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert page.viewport_size == {"width": PROJECTOR[0], "height": PROJECTOR[1]}
    page.mouse.move(2, PROJECTOR[1] - 2)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _choose(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    box.scroll_into_view_if_needed()          # at 720 px a list opened near the bottom stays shut
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page, 0.5)


@pytest.mark.full
@pytest.mark.timeout(900)
def test_a_class_sweep_survives_a_killed_server_prunes_and_lands_on_the_board(tmp_path, fixture_data_dir):
    from playwright.sync_api import sync_playwright
    runs = tmp_path / "runs"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, "EFFLAB_SLOTS": "1",
           control.TOKEN_ENV: ""}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": PROJECTOR[0], "height": PROJECTOR[1]})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            # 1. Server 1: set up, Start, watch the trials queue and train; killed mid-sweep.
            with streamlit_process(env, tmp_path / "server-1.log", own_session=True) as (server, url):
                _set_up_the_sweep(page, url)
                _shot(page, "sweep-01-set-up")
                page.get_by_role("button", name="Start sweep").click()
                page.get_by_text(f"Sweep '{SWEEP}': {TRIALS} trial(s) queued.").wait_for()
                assert [t.state for t in _trials(runs)].count("queued") >= TRIALS - 1
                page.get_by_text(re.compile(rf"{SWEEP}: running")).wait_for()
                wait_for(lambda: "running" in [t.state for t in _trials(runs)], 120, "a trial to train")
                settle(page, 3)                       # the results panel redraws every 3 s
                _shot(page, "sweep-02-queued-and-training")
                assert not exceptions_shown(page), exceptions_shown(page)
                wait_for(lambda: sum(t.state in ("complete", "pruned") for t in _trials(runs)) >= 2
                         and "running" in [t.state for t in _trials(runs)], 600, "two trials done, a third training")
                killed = next(t for t in _trials(runs) if t.state == "running")
                os.killpg(server.pid, signal.SIGKILL)      # the whole server, its training thread with it
                server.wait(30)

            # 2. Server 2 on the same folder: the killed trial resumes, the rest drain, the sweep ends.
            with streamlit_process(env, tmp_path / "server-2.log", own_session=True) as (server, url):
                wait_for(lambda: all(t.state in ("complete", "pruned", "fail") for t in _trials(runs))
                         and len(_trials(runs)) == TRIALS, 600, "the sweep to finish after the restart")
                page.goto(f"{url}/sweep")
                page.get_by_text(re.compile(rf"{SWEEP}: finished")).wait_for()
                page.get_by_text(re.compile("explains")).first.wait_for()
                page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4")
                settle(page, 2)
                assert page.locator(".js-plotly-plot .parcoords").count() == 1
                # What the person reads: a trial pruned, in the table and greyed in the chart's title.
                page.get_by_text("pruned", exact=True).first.wait_for(state="attached")
                assert page.get_by_text(re.compile(r"\(\d pruned or failed in grey\)")).count() == 1
                _shot(page, "sweep-03-finished-after-restart")
                assert not exceptions_shown(page), exceptions_shown(page)
                assert not chart_problems(page), chart_problems(page)
                page.get_by_role("link", name=re.compile("This sweep on the class board")).click()
                page.get_by_role("heading", name="Class board").wait_for()
                page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 1")
                settle(page, 2)
                _shot(page, "sweep-04-class-board")
                assert page.get_by_text(re.compile(r"On the front: ")).count() == 1
                assert not exceptions_shown(page) and not chart_problems(page), chart_problems(page)
                # The same sweep on the projector: its slide, then the class board's.
                keys = [s.key for s in SLIDES]
                page.set_viewport_size({"width": PROJECTOR[0], "height": PROJECTOR[1]})
                for key in ("sweep", "board"):
                    page.goto(f"{url}/present?present=1&slide={keys.index(key) + 1}")
                    page.get_by_role("heading", name=SLIDES[keys.index(key)].title).wait_for()
                    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 1")
                    settle(page, 2)
                    _slide_shot(page, f"sweep-05-slide-{key}")
                    assert not exceptions_shown(page) and not chart_problems(page), chart_problems(page)
                    overflow = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                                        return m.scrollHeight - m.clientHeight; }""")
                    assert overflow <= 2, f"the {key} slide needs scrolling at 1280×720 ({overflow} px too tall)"
                    if key == "sweep":                 # the newest sweep, with what mattered beside it
                        assert page.get_by_text(re.compile(r"explains .* spread")).count() == 1
        finally:
            browser.close()
    trials = _trials(runs)
    states = [t.state for t in trials]
    assert len(trials) == TRIALS and "fail" not in states and states.count("pruned") >= 1, states
    pruned = [t for t in trials if t.state == "pruned"]
    assert any(t.params["learning_rate"] == 0.000001 for t in pruned), [(t.params, t.state) for t in trials]
    assert trials[0].state == "complete" and trials[0].value >= 0.5, trials[0]    # what the median stands on
    from core.store.runs import RunStore
    store = RunStore(runs)
    resumed = store.get(killed.run_id)
    epochs = [m["epoch"] for m in resumed.read_metrics()]
    assert epochs == list(range(1, len(epochs) + 1)) and resumed.read_status()["state"] in ("completed", "pruned")
    assert {s.name for s in store.list()} == {f"{SWEEP} · trial {n}" for n in range(1, TRIALS + 1)}
