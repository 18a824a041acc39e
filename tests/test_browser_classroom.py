"""The classroom flow in a real browser, on the shared trained run (training it from the Train page
is test_browser_train.py): open presentation mode from a link on a 1280×720 "projector", step
through every slide with the buttons and the arrow keys, leave it, enter it again with the sidebar
toggle; a student uploads a photo on the try-your-own-image page (and a file that is not one);
the teacher exports the HTML report and it renders offline. Screenshots: test-artifacts/browser/
classroom-*.png."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from browser import ARTIFACTS, CHROMIUM, chromium_page, exceptions_shown, screenshot, settle, streamlit_server
from core.evaluate import mistakes
from dashboard.report import MISTAKES_SHOWN
from dashboard.slides import SLIDES
from test_pages_classroom import SAMPLE_PHOTO
from test_report import check_report_renders_offline

pytestmark = pytest.mark.slow
PROJECTOR = (1280, 720)


def _slide_shot(page, name: str) -> Path:
    """The slide exactly as a 1280×720 projector shows it (no resizing to the content)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.mouse.move(2, PROJECTOR[1] - 2)                 # no hover effects on the buttons
    page.screenshot(path=str(path))
    return path


def _on_slide(page, number: int) -> None:
    """Waits for slide `number` (1-based) and checks it fits the projector without scrolling."""
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('slide') === '{number}'")
    page.get_by_role("heading", name=SLIDES[number - 1].title).wait_for()
    settle(page, 1.0)
    if SLIDES[number - 1].key == "saliency":
        page.get_by_text("Bright: the regions").wait_for(timeout=120_000)
        settle(page, 1.0)
    assert not exceptions_shown(page), exceptions_shown(page)
    overflow = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                        return m.scrollHeight - m.clientHeight; }""")
    assert overflow <= 2, f"slide {number} needs scrolling at 1280×720 ({overflow} px too tall)"
    assert page.locator('[data-testid="stSidebar"]').evaluate_all(
        "els => els.every(e => e.offsetParent === null)"), "the sidebar shows in presentation mode"


def test_teacher_flow(trained_run, fixture_data_dir, tmp_path):
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    run_id = trained_run.run_id
    y_true, y_prob = trained_run.read_predictions()
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir}
    with streamlit_server(env, tmp_path / "server.log") as url, chromium_page(*PROJECTOR) as page:
        # 1. The projector opens a link straight into presentation mode.
        page.goto(f"{url}/?present=1&run={run_id}")
        _on_slide(page, 1)
        assert page.get_by_text("Test accuracy").count() == 1
        _slide_shot(page, "classroom-slide-1-title")
        page.get_by_role("button", name=re.compile("^Next")).click()
        _on_slide(page, 2)
        _slide_shot(page, "classroom-slide-2-history")
        for number in range(3, len(SLIDES) + 1):            # the arrow keys from here on
            page.keyboard.press("ArrowRight")
            _on_slide(page, number)
            _slide_shot(page, f"classroom-slide-{number}-{SLIDES[number - 1].key}")
        page.keyboard.press("ArrowRight")                    # already on the last slide: stays
        time.sleep(1)
        assert "slide=8" in page.url
        page.keyboard.press("ArrowLeft")
        _on_slide(page, len(SLIDES) - 1)
        page.get_by_role("button", name=re.compile("^Previous")).click()
        _on_slide(page, len(SLIDES) - 2)

        # 2. Leaving it, and coming back with the sidebar toggle from the confusion page.
        page.get_by_role("button", name=re.compile("Exit")).click()
        page.wait_for_function("() => !location.search.includes('present=1')")
        settle(page)
        page.goto(f"{url}/confusion?run={run_id}")
        page.get_by_role("heading", name="Confusion matrix").wait_for()
        settle(page)
        page.get_by_text("Presentation mode").click()
        _on_slide(page, 1)
        assert "present=1" in page.url and f"run={run_id}" in page.url
        page.get_by_role("button", name=re.compile("Exit")).click()
        page.wait_for_function("() => location.pathname.endsWith('/confusion')")
        page.get_by_role("heading", name="Confusion matrix").wait_for()
        settle(page)
        assert not exceptions_shown(page)

        # 3. A student tries a photo of their own (and a file that is not a picture).
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(f"{url}/try_image?run={run_id}")
        page.get_by_role("heading", name="Try your own image").wait_for()
        settle(page)
        not_a_photo = tmp_path / "homework.png"
        not_a_photo.write_text("these are my notes, not a picture\n" * 20)
        uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        uploader.set_input_files(str(not_a_photo))
        page.get_by_text("homework.png cannot be used").wait_for(timeout=60_000)
        assert page.get_by_text("not an image file").count() == 1
        settle(page)
        screenshot(page, "classroom-try-rejected")
        photo = tmp_path / "my-photo.jpg"
        shutil.copy(SAMPLE_PHOTO, photo)
        uploader.set_input_files(str(photo))
        page.get_by_text("The model says:").wait_for(timeout=180_000)
        settle(page, 2)
        assert page.get_by_text("What the model sees: 32×32 pixels").count() == 1
        assert page.locator(".js-plotly-plot .barlayer .point").count() == 5         # top-5 bars
        images = page.evaluate("() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
                               ".map(i => i.complete && i.naturalWidth > 0)")
        assert images == [True, True, True]
        assert not exceptions_shown(page)
        screenshot(page, "classroom-try-photo")

        # 4. The teacher exports the report, and it opens offline.
        page.goto(f"{url}/report?run={run_id}")
        page.get_by_role("button", name="Download the HTML report").wait_for(timeout=120_000)
        settle(page)
        screenshot(page, "classroom-report-page")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the HTML report").click()
        report = tmp_path / download.value.suggested_filename
        download.value.save_as(report)
        assert report.name == f"efficientnet-lab-report-{run_id}.html"
        with page.expect_download() as download:
            page.get_by_role("button", name="Download per-class metrics (CSV)").click()
        csv = tmp_path / download.value.suggested_filename
        download.value.save_as(csv)
        assert csv.read_text().splitlines()[0] == "class,precision,recall,f1,support,correct,errors,error_rate"
    check_report_renders_offline(report, min(MISTAKES_SHOWN, len(mistakes(y_true, y_prob))),
                                 "classroom-report-downloaded")
