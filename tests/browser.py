"""Helpers for browser tests: a real `streamlit run` on a free port, and Debian's Chromium driven
by Playwright. Screenshots go to test-artifacts/browser/ so people can look at them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
TRAINING_IMAGES = re.compile(r"^Training images")   # its label says how many "all" is
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_process(env: dict[str, str], log_path: Path, *, own_session: bool = False):
    """Starts the dashboard as `make run` does; yields (its process, its URL); stops it afterwards
    if it still runs. `own_session`: in a process group of its own, so that a test can kill the
    server and all it started by the pid it holds (os.killpg), as a crash would."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/serve.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_session)
        url = f"http://127.0.0.1:{port}"
        try:
            started = time.time()
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                    break
                except OSError:
                    if server.poll() is not None or time.time() - started > 90:
                        raise RuntimeError(f"streamlit did not start; see {log_path}")
                    time.sleep(0.2)
            yield server, url
        finally:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(15)


@contextmanager
def streamlit_server(env: dict[str, str], log_path: Path):
    """Starts the dashboard as `make run` does; yields its URL; stops it afterwards."""
    with streamlit_process(env, log_path) as (_, url):
        yield url


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def settle(page, seconds: float = 1.0) -> None:
    """Waits (up to a minute) until Streamlit reports it is not running a script, then a little
    longer. The app's script state must read "notRunning": a page just opened reads "initial" until
    its first run starts, and shows no status widget before that run nor in its first moments (on a
    busy machine the page was read blank). Fragments that redraw every second run now and then, so
    the state is polled rather than awaited once."""
    app = page.locator('[data-testid="stApp"]')
    app.wait_for()
    deadline = time.time() + 60
    while time.time() < deadline:
        if app.get_attribute("data-test-script-state") == "notRunning" \
                and page.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        time.sleep(0.2)
    time.sleep(seconds)


def open_when_up(page, url: str, server: subprocess.Popen | None = None, seconds: float = 90) -> None:
    """Opens `url` once a server started in the background answers (for tests that start and kill
    their own servers); fails at once if `server` has exited, or after `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            page.goto(url)
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            if (server is not None and server.poll() is not None) or time.time() > deadline:
                raise
            time.sleep(0.5)
    settle(page)


def screenshot(page, name: str) -> Path:
    """A full screenshot: the page is resized to its content so nothing scrolls out of view."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('section.main, [data-testid=\"stMain\"], "
        "[data-testid=\"stAppViewContainer\"]')].map(e => e.scrollHeight), document.body.scrollHeight)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(max(int(height), 800), 6000)})
    time.sleep(0.5)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": 1000})
    return path


def exceptions_shown(page) -> list[str]:
    return [e.inner_text()[:500] for e in page.locator('[data-testid="stException"]').all()]


def set_number(page, label, value: int) -> None:
    """Types a value into the number input with this label (text, or a compiled pattern) and
    commits it, as a user does."""
    box = page.get_by_role("spinbutton", name=label, exact=True) if isinstance(label, str) \
        else page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    settle(page, 0.5)


def start_training_from_the_ui(page, url: str, *, images: int, epochs: int, batch: int | None = None,
                               name: str | None = None) -> None:
    """On the Train page: sets the training images, epochs, (given them) the batch size and the run's
    name, presses Start and waits until the status panel names a run."""
    page.goto(url)
    settle(page)
    page.get_by_text("Data and augmentation").click()
    settle(page, 0.5)
    set_number(page, TRAINING_IMAGES, images)
    set_number(page, "Epochs", epochs)
    if batch is not None:
        set_number(page, "Batch size (per device)", batch)
    if name is not None:
        box = page.get_by_role("textbox", name="Run name (optional)")
        box.fill(name)
        box.press("Enter")
        settle(page, 0.5)
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_text(re.compile(r" — run \d{8}-")).first.wait_for(timeout=120_000)


# What makes a chart unreadable on a projector, measured on the drawn page: every visible Plotly
# chart needs a title, a title on each axis that has tick labels, text no smaller than MIN_CHART_FONT_PX
# as drawn (Plotly shrinks bar labels that do not fit), and no text running out of the chart's box
# (a long legend entry is clipped there, not wrapped).
MIN_CHART_FONT_PX = 12
_CHART_PROBLEMS_JS = """(minPx) => {
  const problems = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const box = plot.getBoundingClientRect();
    if (!box.width || !box.height) continue;                    // in a closed expander
    const title = plot.querySelector('.gtitle');
    const name = title && title.textContent.trim() ? title.textContent.trim().slice(0, 50) : '(untitled)';
    if (name === '(untitled)') problems.push('a chart has no title');
    for (const axis of ['x', 'y']) {
      const ticks = [...plot.querySelectorAll(`.${axis}tick text`)].filter(t => t.textContent.trim());
      const titles = [...plot.querySelectorAll('.infolayer text')].filter(
        t => new RegExp(`^${axis}\\\\d*title$`).test(t.getAttribute('class') || '') && t.textContent.trim());
      if (ticks.length && !titles.length) problems.push(`${name}: its ${axis} axis has no title`);
    }
    for (const t of plot.querySelectorAll('svg text')) {
      const text = t.textContent.trim();
      if (!text || getComputedStyle(t).display === 'none' || getComputedStyle(t).opacity === '0') continue;
      const m = t.getScreenCTM();
      const size = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
      if (size < minPx - 0.05) problems.push(`${name}: "${text.slice(0, 30)}" is ${size.toFixed(1)} px`);
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 2 || r.right > box.right + 2 || r.top < box.top - 2 || r.bottom > box.bottom + 2)
        problems.push(`${name}: "${text.slice(0, 30)}" runs out of the chart`);
    }
  }
  return problems;
}"""


def chart_problems(page, min_font_px: float = MIN_CHART_FONT_PX) -> list[str]:
    """Readability problems of the charts drawn on this page (see _CHART_PROBLEMS_JS); [] when none."""
    return page.evaluate(_CHART_PROBLEMS_JS, min_font_px)
