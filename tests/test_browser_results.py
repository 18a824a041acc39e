"""The result pages in a real browser (real `streamlit run`, Debian's Chromium), all on one server
over the shared trained run and a copy of it (one runs folder that nothing here trains into, apart
from the learning-rate finder's tool job), one Chromium for the module, a fresh page per test:

- the "done when" path: a confusion cell clicked opens its gallery (Plotly heat maps emit no
  selection events, streamlit#8760: the invisible picker layer turns the click into the trip), an
  image inspected with its saliency map, then the history page;
- the classroom: presentation mode from a link on a 1280×720 "projector", every slide with the
  buttons and the arrow keys, left and entered again with the sidebar toggle; a student's photo
  (and a file that is not one) on try-your-own-image; the HTML report exported and rendered offline;
- inside the network: ?image=N opens that test image with every stage's heat-map grid, a mistake
  picked, a photo uploaded;
- teaching: "Find a learning rate" runs the range test (queued like a run, a tool job that the
  run table leaves out), draws its curve with the suggestion, and "Use this rate" fills the form;
  the report page's model download loads in plain Keras (an interpreter that cannot import this
  lab, safe_mode=True) and predicts what the run predicted, and the snippet the page shows
  classifies a photo with it; the Runs page's button gives the same file; every page with charts
  is readable at a projector's 1280×720 (browser.chart_problems).

Training it from the Train page is test_browser_train.py. The finder builds the tests' small
EfficientNet (its subject is the finder's plumbing and page; its curve on real data and B0 is
test_lr_find.py). Screenshots: test-artifacts/browser/{results,classroom,inside,teaching,projector}-*.png.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TRAINING_IMAGES, chart_problems, exceptions_shown,
                     screenshot, set_number, settle, streamlit_server)
from conftest import wait_for
from core.analysis.evaluate import mistakes
from core.store.runs import RunStore
from core.training.lr_find import END_RATE, START_RATE
from dashboard.report import MISTAKES_SHOWN
from dashboard.slides import SLIDES
from small_efficientnet import ENV as SMALL_NETWORK_ENV
from test_pages_classroom import SAMPLE_PHOTO
from test_report import check_report_renders_offline

pytestmark = [pytest.mark.slow, pytest.mark.full]
PROJECTOR = (1280, 720)
CHARTS = 12          # Inside: probabilities, map sizes, stem + seven blocks + top, pooled vector
SUGGESTED = re.compile(r"Suggested rate (\d\.\de[-+]\d\d)")
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
# Run by a fresh `python -I` in the download's folder: neither this repository nor PYTHONPATH is
# importable there, so the file must stand on plain Keras alone.
PLAIN_KERAS_CHECK = '''\
import importlib.util, sys
import keras, numpy as np
assert importlib.util.find_spec("core") is None, "the lab's own code is importable here"
model = keras.models.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]).astype("float32"), verbose=0))
'''


@pytest.fixture(scope="module")
def results_runs(trained_run, tmp_path_factory):
    """The runs folder the server shows: the trained run and a copy of it (a second run, for Compare)."""
    runs = tmp_path_factory.mktemp("results-runs")
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    other_id = trained_run.run_id[:-4] + ("beef" if not trained_run.run_id.endswith("beef") else "cafe")
    shutil.copytree(trained_run.path, runs / other_id)
    return runs, RunStore(runs).get(trained_run.run_id), other_id


@pytest.fixture(scope="module")
def url(results_runs, fixture_data_dir, tmp_path_factory):
    """One dashboard server for every test of the module."""
    runs, _, _ = results_runs
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": fixture_data_dir, SMALL_NETWORK_ENV: "small"}
    with streamlit_server(env, tmp_path_factory.mktemp("server") / "server.log") as address:
        yield address


@pytest.fixture(scope="module")
def chromium():
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _page(chromium, width: int, height: int):
    context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    return context, page


@pytest.fixture
def open_page(chromium):
    """open_page(width, height) -> a page in a fresh browser context, closed after the test."""
    contexts = []

    def make(width: int = 1400, height: int = 1000):
        context, page = _page(chromium, width, height)
        contexts.append(context)
        return page
    yield make
    for context in contexts:
        context.close()


# --- the "done when" path ---------------------------------------------------------------------------
def test_done_when_path(url, results_runs, open_page):
    """Open the run, click a confusion cell, inspect an image with its saliency map, then history."""
    from core.analysis.evaluate import evaluate
    _, trained_run, _ = results_runs
    y_true, y_prob = trained_run.read_predictions()
    ev = evaluate(y_true, y_prob)
    if ev.confused_pairs.empty:
        pytest.skip("the trained run made no mistakes")
    pair = ev.confused_pairs.iloc[0]
    page = open_page(1600, 1100)
    page.goto(f"{url}/confusion?run={trained_run.run_id}")
    page.wait_for_selector(".js-plotly-plot")
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')._fullLayout")
    settle(page)
    screenshot(page, "results-01-confusion")
    x, y = page.evaluate("""([predicted, truth]) => {
        const gd = document.querySelector('.js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(predicted) + 5, r.top + ya._offset + ya.d2p(truth) + 5];
    }""", [pair.predicted, pair.true])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function("() => location.pathname.endsWith('/mistakes')")
    href = page.evaluate("location.href")
    assert f"true={pair.true}" in href and f"pred={pair.predicted}" in href
    page.get_by_text(f"misclassified {pair.true} images predicted as {pair.predicted}").wait_for()
    settle(page)
    assert page.get_by_text(f"{pair.true} → {pair.predicted} (").count() >= 1
    screenshot(page, "results-02-gallery")
    page.get_by_role("button", name="Inspect").first.click()
    page.get_by_text("What the model looked at for").wait_for(timeout=120_000)
    settle(page)
    assert not exceptions_shown(page)
    screenshot(page, "results-03-detail")
    page.get_by_role("link", name="CNN history").click()
    page.get_by_text("Your CIFAR-10 runs").first.wait_for()
    settle(page)
    assert page.get_by_text("AlexNet").count() >= 1 and not exceptions_shown(page)
    screenshot(page, "results-04-history")


# --- the classroom -------------------------------------------------------------------------------
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


def test_teacher_flow(url, results_runs, open_page, chromium, tmp_path):
    _, run, _ = results_runs
    run_id = run.run_id
    y_true, y_prob = run.read_predictions()
    page = open_page(*PROJECTOR)
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
    assert f"slide={len(SLIDES)}" in page.url
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
                                 "classroom-report-downloaded", chromium=chromium)


# --- inside the network --------------------------------------------------------------------------
def _wait_for_stages(page) -> None:
    page.get_by_text("Stage by stage").wait_for(timeout=180_000)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {CHARTS}",
                           timeout=120_000)
    settle(page, 2)
    assert not exceptions_shown(page), exceptions_shown(page)


def test_inside_the_network(url, results_runs, open_page, tmp_path):
    _, trained_run, _ = results_runs
    page = open_page(1400, 1000)
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


# --- teaching: the learning-rate finder, the model taken home, projector-sized charts -----------
def _plain_python(args, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-I", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
                                            "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _find_a_learning_rate(page, url: str, runs: Path) -> None:
    store = RunStore(runs)
    runs_before = store.list()
    page.goto(url)
    settle(page)
    page.get_by_text("Data and augmentation").click()
    settle(page, 0.5)
    set_number(page, TRAINING_IMAGES, 200)
    set_number(page, "Batch size (per device)", 16)
    rate_box = page.get_by_role("spinbutton", name="Learning rate", exact=True)
    assert float(rate_box.input_value()) == pytest.approx(1e-3)     # the form shows "1.0e-3"
    page.get_by_role("button", name=re.compile("Find a learning rate")).click()
    # Queued like a run, then about a hundred batches (fewer when the loss explodes).
    caption = page.get_by_text(SUGGESTED)
    caption.wait_for(timeout=600_000)
    settle(page, 2)
    assert not exceptions_shown(page), exceptions_shown(page)
    suggestion = SUGGESTED.search(caption.inner_text()).group(1)
    # A tool job in the runs folder, which the run table leaves out.
    (job,) = [s for s in store.list(kinds=None) if s.kind == "lr_find"]
    assert job.state == "completed" and store.list() == runs_before
    finding = store.get(job.run_id).read_lr_finding()
    assert len(finding["rates"]) == len(finding["smoothed"]) > 10
    assert f"{finding['suggestion']:.1e}" == suggestion
    # Within the rates tried, even when a lucky first batch has the lowest loss of the curve
    # (core.training.lr_find.suggest, tests/test_lr_find.py).
    assert START_RATE <= float(suggestion) <= END_RATE

    chart = page.locator(".js-plotly-plot", has_text="Learning-rate finder")
    assert chart.count() == 1
    assert chart.locator(".gtitle").text_content() == f"Learning-rate finder: suggested rate {suggestion}"
    assert chart.locator(".xtitle").text_content() == "learning rate (log scale)"
    assert chart.locator(".ytitle").text_content() == "training loss (cross-entropy)"
    assert chart.locator(".scatterlayer .trace").count() == 3    # raw loss, smoothed loss, suggestion
    assert chart.locator(".scatterlayer .trace .point").count() == 1
    assert not chart_problems(page), chart_problems(page)        # at 1280×720, as on a projector
    screenshot(page, "teaching-lr-finder")

    page.get_by_role("button", name=f"Use this rate ({suggestion})").click()
    # The button lives in a fragment, which reruns the whole page to redraw the form (two script runs),
    # and on a busy machine the page may still read "not running" before the first has begun: CI once
    # read the old rate a second after the click. So wait for the rate itself.
    wait_for(lambda: float(rate_box.input_value()) == pytest.approx(float(suggestion)), 60,
             "the suggested rate in the form's learning-rate box")
    settle(page, 1)
    assert float(rate_box.input_value()) == pytest.approx(float(suggestion))
    assert not exceptions_shown(page), exceptions_shown(page)


def _take_the_model_home(page, url: str, run, x_test, home: Path) -> None:
    from core.analysis.export import download_name
    page.goto(f"{url}/report?run={run.run_id}")
    button = page.get_by_role("button", name=re.compile("Download the trained model"))
    button.wait_for(timeout=180_000)
    settle(page)
    with page.expect_download(timeout=300_000) as download:
        button.click()
    assert download.value.suggested_filename == download_name(run.run_id, "last")
    model_file = home / download.value.suggested_filename
    download.value.save_as(model_file)
    screenshot(page, "teaching-take-home")

    np.save(home / "x.npy", x_test)
    (home / "check.py").write_text(PLAIN_KERAS_CHECK)
    _plain_python(["check.py", model_file.name, "x.npy", "probs.npy"], home)
    probs = np.load(home / "probs.npy")
    y_true, y_prob = run.read_predictions()      # what the run predicted at the end of training
    assert probs.shape == y_prob.shape == (len(y_true), 10)
    np.testing.assert_allclose(probs, y_prob.astype(np.float64), atol=2e-3)

    code = next(c.inner_text() for c in page.locator('[data-testid="stCode"]').all() if "load_model" in c.inner_text())
    assert f'load_model("{model_file.name}", safe_mode=True)' in code
    (home / "classify.py").write_text(code)
    shutil.copy(SAMPLE_PHOTO, home / "photo.jpg")
    printed = _plain_python(["classify.py", "photo.jpg"], home).strip().splitlines()[-1]
    assert re.fullmatch(rf"({'|'.join(CLASSES)}) \d+\.\d%", printed), printed


def _runs_page_download(page, url: str, run_ids: set[str], home: Path) -> None:
    """The Runs page offers the same file: select a row (its left edge), then "Model (.keras)"."""
    from core.analysis.export import download_name
    page.goto(f"{url}/runs")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    settle(page, 1)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    button = page.get_by_role("button", name=re.compile(r"Model \(\.keras\)"))
    for attempt in range(4):
        # The grid is a canvas: the click lands on the first row's selection box only once the
        # grid has drawn its rows, which on a loaded machine may be after `settle`. Click again.
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)    # the first row's selection box
        try:
            button.wait_for(timeout=60_000 if attempt == 0 else 30_000)
            break
        except PlaywrightTimeout:
            if attempt == 3:
                raise
            settle(page, 3)
    with page.expect_download(timeout=300_000) as download:
        button.click()
    assert download.value.suggested_filename in {download_name(r, "last") for r in run_ids}
    saved = home / "from-runs-page.keras"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:                    # a .keras file: config and weights
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())


def _readable_at_projector_size(page, url: str, run_id: str, other_id: str) -> None:
    """Every chart of every results page (and the slides that carry charts) at 1280×720."""
    pages = {"curves": f"curves?runs={run_id},{other_id}", "confusion": f"confusion?run={run_id}",
             "compare": f"compare?runs={run_id},{other_id}", "history": "history",
             "inside": f"inside?run={run_id}&image=5",
             **{f"slide-{n}": f"present?present=1&run={run_id}&slide={n}" for n in (2, 3, 5, 6)}}
    charts_expected = {"curves": 4, "confusion": 3, "compare": 4, "history": 2, "inside": 12,
                       "slide-2": 1, "slide-3": 1, "slide-5": 1, "slide-6": 1}
    problems = {}
    for name, path in pages.items():
        page.set_viewport_size({"width": 1280, "height": 720})
        page.goto(f"{url}/{path}")
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts_expected[name]}",
                               timeout=240_000)
        settle(page, 2)
        assert not exceptions_shown(page), (name, exceptions_shown(page))
        problems[name] = chart_problems(page)
        screenshot(page, f"projector-{name}")
    assert not any(problems.values()), {name: found for name, found in problems.items() if found}


def test_find_a_learning_rate_and_take_the_model_home(url, results_runs, fixture_data_dir, open_page, tmp_path):
    from core.data.cifar10 import load_cifar10
    runs, run, other_id = results_runs
    home = tmp_path / "home"
    home.mkdir()
    x_test = load_cifar10(fixture_data_dir, allow_download=False).x_test
    page = open_page(*PROJECTOR)
    _find_a_learning_rate(page, url, runs)
    _take_the_model_home(page, url, run, x_test, home)
    _runs_page_download(page, url, {run.run_id, other_id}, home)
    _readable_at_projector_size(page, url, run.run_id, other_id)
