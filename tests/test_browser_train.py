"""The first-run flow in a real browser, as a student meets it on a 1280x720 projector: the Train
page's first screen reads in seconds (its words are counted) and holds the Quick demo's own Start;
one click on it trains the preset on the fixture images, the status panel under the cards reaches
"completed", a curve on the curves page, the run in the runs table; then every page of the menu
(and presentation mode) opened on that run, each drawn without an exception. Screenshots are
saved under test-artifacts/browser/."""

import re

import pytest

from browser import ARTIFACTS, chromium_page, exceptions_shown, screenshot, settle, streamlit_server
from conftest import WEIGHTS_DIR
from dashboard.nav import SECTIONS

SECTION_PAGES = [stem for entries in SECTIONS.values() for stem, _, _ in entries]
FIRST_SCREEN_MAX_WORDS = 120     # issue 32: "at most ~120 words" in the first viewport
# Words of the main area drawn inside the viewport (the menu is not counted: it is the same on every
# page; nor are icons, which Material Symbols draws from words such as "play_arrow").
VISIBLE_WORDS = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  const words = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const range = document.createRange(); range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    const style = window.getComputedStyle(node.parentElement);
    if (box.width === 0 || box.bottom <= 0 || box.top >= window.innerHeight || style.visibility === 'hidden'
        || style.fontFamily.includes('Material')) continue;
    words.push(...node.textContent.split(/\s+/).filter(w => /[A-Za-z0-9%]/.test(w)));
  }
  return words;
}"""

pytestmark = pytest.mark.slow


def test_quick_demo_trains_and_shows_up_everywhere(tmp_path, fixture_data_dir):
    env = {"EFFLAB_RUNS_DIR": str(tmp_path / "runs"), "EFFLAB_DATA_DIR": fixture_data_dir}
    if WEIGHTS_DIR:
        env["EFFLAB_WEIGHTS_DIR"] = WEIGHTS_DIR
    with streamlit_server(env, tmp_path / "server.log") as url, chromium_page(1280, 720) as page:
        page.goto(url)
        settle(page)
        assert page.get_by_text("CIFAR-10 found at").count() == 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "01-train-first-screen.png"))   # the viewport, as a student sees it
        words = page.evaluate(VISIBLE_WORDS)
        assert len(words) <= FIRST_SCREEN_MAX_WORDS, (len(words), " ".join(words))
        start = page.get_by_role("button", name=re.compile("Start")).first     # the first card: Quick demo
        box = start.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720, box          # no scrolling to find it
        assert not exceptions_shown(page)

        start.click()
        # The status panel is a fragment that redraws itself every second. After a Start the view
        # follows the run: the panel leads the page, names each start-up phase with its time so far,
        # then shows the running epoch's loss from its first batches (issue 32).
        page.get_by_text(re.compile(r" — run \d{8}-")).first.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"\d+ s so far")).first.wait_for(timeout=120_000)
        headline = page.get_by_text(re.compile(r" — run \d{8}-")).first.bounding_box()
        assert headline is not None and headline["y"] + headline["height"] <= 720, headline
        screenshot(page, "02-train-starting")
        page.get_by_text("Every curve of this run").first.wait_for(timeout=300_000)
        screenshot(page, "02-train-running")
        page.get_by_text(re.compile(r"(Completed|Failed|Stopped) — run")).wait_for(timeout=600_000)
        settle(page)
        assert page.get_by_text(re.compile(r"Completed — run")).count() == 1, exceptions_shown(page) or \
            [e.inner_text() for e in page.locator('[data-testid="stAlert"]').all()]
        assert page.get_by_text(re.compile(r"Test accuracy \d+\.\d%")).count() == 1
        screenshot(page, "03-train-completed")

        page.get_by_role("link", name="Live curves", exact=True).click()
        settle(page, 2)
        charts = page.locator(".js-plotly-plot")
        assert charts.count() >= 4
        # A curve was drawn: the loss chart has at least one trace with a data point.
        assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 1
        assert not exceptions_shown(page)
        screenshot(page, "04-curves")

        page.get_by_role("link", name="Runs", exact=True).click()
        settle(page, 2)
        assert page.get_by_text(re.compile(r"1 of 1 runs")).count() == 1
        assert not exceptions_shown(page)
        screenshot(page, "05-runs")

        # Every page once, from the menu's own links (presentation mode by its URL), on this run.
        links = page.eval_on_selector_all('a[data-testid="stSidebarNavLink"]',
                                          "els => [...new Set(els.map(e => e.href))]")
        names = [link.rstrip("/").removeprefix(url).strip("/") or "train" for link in links]
        assert set(SECTION_PAGES) <= set(names), names
        for link, name in [*zip(links, names), (f"{url}/present?present=1", "present")]:
            page.goto(link)
            page.locator('[data-testid="stHeading"], h1').first.wait_for(timeout=180_000)
            settle(page, 1)
            page.locator('[data-testid="stSpinner"]').first.wait_for(state="detached", timeout=180_000)
            assert page.get_by_text("Page not found").count() == 0, link
            assert not exceptions_shown(page), (name, exceptions_shown(page))
            screenshot(page, f"06-page-{name}")
