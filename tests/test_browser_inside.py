"""Inside the network in a real browser (the shared trained run, real `streamlit run`, Debian's
Chromium): a link with ?image=N opens that test image, every stage's heat-map grid is drawn, a
mistake can be picked, and a photo can be uploaded. Screenshots: test-artifacts/browser/inside-*.png."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from browser import CHROMIUM, chromium_page, exceptions_shown, screenshot, settle, streamlit_server
from test_pages_classroom import SAMPLE_PHOTO

pytestmark = pytest.mark.slow
CHARTS = 12          # probabilities, map sizes, stem + seven blocks + top, pooled vector


def _wait_for_stages(page) -> None:
    page.get_by_text("Stage by stage").wait_for(timeout=180_000)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {CHARTS}",
                           timeout=120_000)
    settle(page, 2)
    assert not exceptions_shown(page), exceptions_shown(page)


def test_inside_the_network_in_the_browser(trained_run, fixture_data_dir, tmp_path):
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir}
    with streamlit_server(env, tmp_path / "server.log") as url, chromium_page(1400, 1000) as page:
        page.goto(f"{url}/inside?run={trained_run.run_id}&image=5")
        page.get_by_role("heading", name="Inside the network").wait_for()
        _wait_for_stages(page)
        assert page.locator(".js-plotly-plot").count() == CHARTS
        # 9 heat-map grids of 8 channels each, every one drawn by Plotly.
        assert page.locator(".js-plotly-plot .heatmaplayer image").count() >= 9 * 8 - 8
        assert page.get_by_text("1×1 from block 6 on").count() >= 1
        assert page.get_by_text("CIFAR-10 test image #5").count() >= 1
        assert page.get_by_text(re.compile(r"Block 2 \(layer block2b_add\): 8×8 × 24 channels")).count() >= 1
        images = page.evaluate("() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
                               ".map(i => i.complete && i.naturalWidth > 0)")
        assert images == [True, True]
        screenshot(page, "inside-test-image")

        page.get_by_text("One of the run's mistakes").click()
        page.get_by_text(re.compile(r"most confident mistakes")).wait_for(timeout=60_000)
        _wait_for_stages(page)
        assert "image=" in page.url

        page.get_by_text("Upload a photo").click()
        settle(page)
        photo = tmp_path / "my-photo.jpg"
        shutil.copy(SAMPLE_PHOTO, photo)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
        page.get_by_text("my-photo.jpg (centre square)").wait_for(timeout=180_000)
        _wait_for_stages(page)
        screenshot(page, "inside-upload")
