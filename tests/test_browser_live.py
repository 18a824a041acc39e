"""Watching a run live in a real browser: a tab left open on Live curves, never reloaded, sees the
running epoch's batch counter move, each new epoch's point appear on the loss chart, and the page
settle into its finished form when the run ends. Screenshots go to test-artifacts/browser/."""

import json
import re
import time

import pytest

from browser import chromium_page, exceptions_shown, screenshot, settle, start_training_from_the_ui, streamlit_server

pytestmark = [pytest.mark.slow, pytest.mark.full]

LIVE_CAPTION = re.compile(r"epoch (\d+) of \d+, batch (\d+) of \d+")
EPOCHS = 3


def _loss_points(page) -> int:
    """Points on the loss chart (the page's first chart): its longest trace's length, as Plotly
    drew it (its data may arrive as typed arrays, which it decodes into _fullData)."""
    return page.locator(".js-plotly-plot").first.evaluate(
        "el => Math.max(0, ...(el._fullData || []).map(t => t._length || (t.x || []).length || 0))")


def _live_caption(page) -> tuple[int, int] | None:
    for text in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts():
        found = LIVE_CAPTION.search(text)
        if found:
            return int(found.group(1)), int(found.group(2))
    return None


def test_an_open_curves_tab_follows_the_run_without_reloading(tmp_path, fixture_data_dir):
    env = {"EFFLAB_RUNS_DIR": str(tmp_path / "runs"), "EFFLAB_DATA_DIR": fixture_data_dir,
           "EFFLAB_CONTROL_TOKEN": ""}
    with streamlit_server(env, tmp_path / "server.log") as url, chromium_page() as page:
        # From scratch on the fixture (270 images after validation), tiny batches: 120 steps an
        # epoch, many seconds even on a fast, idle machine (the tab redraws every 3 s), so the batch
        # counter is seen moving within each epoch and every epoch lands while the tab watches.
        start_training_from_the_ui(page, url, images=240, epochs=EPOCHS, batch=2)

        page.get_by_role("link", name="Live curves", exact=True).click()
        settle(page, 2)
        # From here on the tab is only watched: no click, no reload.
        captions, points_seen, deadline = set(), [], time.time() + 600
        while time.time() < deadline:
            caption = _live_caption(page)
            if caption:
                captions.add(caption)
            points = _loss_points(page)
            if points_seen and points < points_seen[-1]:
                # Caught mid-redraw: Streamlit swaps the chart in place and, on a loaded machine, the
                # poll can land on the new plot before Plotly has drawn its traces. Look again.
                time.sleep(0.5)
                continue
            if not points_seen or points != points_seen[-1]:
                points_seen.append(points)
                if points == 1:
                    screenshot(page, "live-01-curves-after-first-epoch")
            if points == EPOCHS and caption is None:
                break
            (status_file,) = (tmp_path / "runs").glob("*/status.json")
            assert json.loads(status_file.read_text())["state"] not in ("failed", "stopped")
            time.sleep(0.5)
        assert points_seen[-1] == EPOCHS, f"the loss chart went through {points_seen} points"
        # Each epoch arrived on its own redraw, in order, while the tab stayed open.
        assert points_seen == sorted(points_seen) and len(points_seen) >= EPOCHS
        # The batch counter moved within an epoch, in more than one epoch.
        epochs_with_moving_batches = {e for e, _ in captions if len({b for e2, b in captions if e2 == e}) >= 2}
        assert len(epochs_with_moving_batches) >= 2, sorted(captions)
        # Finished: the live caption is gone and the page shows the whole run.
        settle(page, 1)
        assert _live_caption(page) is None
        assert page.locator(".js-plotly-plot").count() >= 4
        assert not exceptions_shown(page)
        screenshot(page, "live-02-curves-finished")
