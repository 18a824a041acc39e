"""Does watching slow training down? Training images/s of a run in the dashboard server with nobody
watching, against the same run watched live by N viewers of the Live curves page or the Train
page's status panel (a benchmark, not a test).

Two kinds of viewer:
- `ws`: light clients that speak Streamlit's websocket protocol as a browser tab does (open the
  page, then ask for the live fragment's rerun each time the server's auto-rerun timer says so).
  The server does exactly the work it does for a real tab, and the clients cost next to nothing:
  this is a classroom, where the browsers run on the students' laptops, not on the server.
- `browser`: N headless Chromium tabs on this same machine. On a small machine their rendering
  (a Plotly redraw every few seconds in every tab) competes with training for the CPU, which says more
  about the machine than about the server; reported for completeness.

Each measured run: a fresh server, one headless tab sets a small run (B0 at 32 px, batch 128, real
CIFAR-10) and presses Start, then closes; the viewers connect while the first step compiles, so
every epoch is watched. Throughput is metrics.csv's images_per_second (training phase, first step
excluded), averaged over the epochs. Every viewer must keep updating: its live caption's batch
counter must change during each epoch it watches. The server's average CPU use over the run is
printed as well (its JSON line); it includes evaluation and start-up, so it is too noisy to
subtract, but a runaway viewer cost shows there. Run it on an otherwise idle machine, with an
unwatched run first and last: their agreement says how far to trust the difference.

    python bench/viewers.py [--viewers 20] [--kinds none,ws,ws@train,browser,none] [--images 10000] [--epochs 3]

Needs real CIFAR-10 in EFFLAB_DATA_DIR (or --data-dir) and Debian's Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, CHROMIUM_ARGS, start_training_from_the_ui, streamlit_server  # noqa: E402

from core.store.runs import Run  # noqa: E402

# The live batch counter: Live curves' caption ("epoch 2 of 3, batch 40 of 79") or the Train
# page's progress bar ("epoch 2 of 3 · batch 40 of 79").
LIVE_CAPTION = re.compile(r"epoch (\d+) of \d+(?:,| ·) batch (\d+) of \d+")
PAGES = {"curves": "Live curves", "train": "Train"}   # url path -> title


# --- starting a run through the UI ---------------------------------------------------------------
def start_run(playwright, url: str, images: int, epochs: int, batch: int) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        start_training_from_the_ui(page, url, images=images, epochs=epochs, batch=batch)
    finally:
        browser.close()


# --- light websocket viewers ---------------------------------------------------------------------
async def ws_viewer(port: int, page: str, seen: list, stop: threading.Event) -> None:
    """One tab's worth of protocol: open the page, then rerun the live fragment when told to."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page_hash, timers = "", {}

    def rerun(fragment_id: str = "") -> bytes:
        message = BackMsg()
        state = message.rerun_script
        state.page_name, state.page_script_hash = page, page_hash
        state.widget_states.SetInParent()
        if fragment_id:
            state.fragment_id, state.is_auto_rerun = fragment_id, True
        return message.SerializeToString()

    async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None) as ws:
        await ws.send(rerun())
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(ws.recv(), 0.2)
            except TimeoutError:
                data = None
            if data:
                message = ForwardMsg.FromString(data)
                kind = message.WhichOneof("type")
                if kind == "navigation":
                    # The page shown (a browser sends its hash back): with the app's script hash
                    # instead, a server-side st.rerun() from a fragment would land on the default page.
                    page_hash = message.navigation.page_script_hash
                elif kind == "new_session":
                    if not message.metadata.run.fragment_ids:   # a full run re-registers every fragment
                        timers.clear()
                elif kind == "stop_auto_rerun":
                    for fragment_id in message.stop_auto_rerun.fragment_ids:
                        timers.pop(fragment_id, None)
                elif kind == "auto_rerun":
                    timers[message.auto_rerun.fragment_id] = [message.auto_rerun.interval,
                                                              time.monotonic() + message.auto_rerun.interval]
                elif kind == "delta" and message.delta.new_element.WhichOneof("type") in ("markdown", "progress"):
                    element = message.delta.new_element
                    found = LIVE_CAPTION.search(element.markdown.body or element.progress.text)
                    if found:
                        seen.append((time.time(), int(found.group(1)), int(found.group(2))))
            now = time.monotonic()
            for fragment_id, timer in timers.items():
                if now >= timer[1]:
                    timer[1] = now + timer[0]
                    await ws.send(rerun(fragment_id))


def run_ws_viewers(port: int, page: str, n: int, stop: threading.Event) -> tuple[threading.Thread, list[list]]:
    seen: list[list] = [[] for _ in range(n)]

    def loop():
        async def main():
            await asyncio.gather(*(ws_viewer(port, page, seen[i], stop) for i in range(n)))
        asyncio.run(main())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, seen


# --- browser viewers -----------------------------------------------------------------------------
def run_browser_viewers(playwright, url: str, page_path: str, n: int):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    pages = []
    for _ in range(n):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/{page_path}")
        pages.append(page)
    return browser, pages


def sample_browser_pages(pages, seen: list[list]) -> None:
    for page, log in zip(pages, seen):
        try:
            text = page.locator('[data-testid="stCaptionContainer"], [data-testid="stProgress"]').all_inner_texts()
        except Exception:  # noqa: BLE001 - a page mid-redraw: try again next time
            continue
        for caption in text:
            found = LIVE_CAPTION.search(caption)
            if found:
                log.append((time.time(), int(found.group(1)), int(found.group(2))))


# --- one measured run ----------------------------------------------------------------------------
def _status(run_dir: Path) -> dict:
    try:
        return Run(run_dir).read_status()
    except (OSError, ValueError):
        return {}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(spec: str, args, workdir: Path) -> dict:
    """One run, watched as `spec` says: none, or KIND[@PAGE] with KIND ws or browser (page: curves)."""
    from playwright.sync_api import sync_playwright

    kind, _, page_path = spec.partition("@")
    page_path = page_path or "curves"
    if kind not in ("none", "ws", "browser") or page_path not in PAGES:
        sys.exit(f"error: --kinds: expected none or ws|browser[@{'|'.join(PAGES)}]; got {spec!r}")
    runs = workdir / f"runs-{kind}-{time.time_ns()}"
    env = {"EFFLAB_RUNS_DIR": str(runs), "EFFLAB_DATA_DIR": args.data_dir, "EFFLAB_CONTROL_TOKEN": ""}
    with streamlit_server(env, workdir / f"server-{kind}.log") as url, sync_playwright() as playwright:
        port = int(url.rsplit(":", 1)[1])
        start_run(playwright, url, args.images, args.epochs, args.batch)
        (run_dir,) = runs.iterdir()
        server_pid = _status(run_dir)["pid"]
        cpu_start, wall_start = _cpu_seconds(server_pid), time.time()
        stop = threading.Event()
        seen: list[list] = [[] for _ in range(args.viewers)]
        browser = pages = None
        if kind == "ws":
            thread, seen = run_ws_viewers(port, page_path, args.viewers, stop)
        elif kind == "browser":
            browser, pages = run_browser_viewers(playwright, url, page_path, args.viewers)
        load = os.getloadavg()[0]
        while _status(run_dir).get("state") in ("queued", "running", "stopping"):
            if pages and _status(run_dir).get("checkpoint_epoch", 0) < args.epochs:
                sample_browser_pages(pages, seen)
            time.sleep(2 if pages else 0.5)
        cpu, wall = _cpu_seconds(server_pid) - cpu_start, time.time() - wall_start
        stop.set()
        if browser is not None:
            browser.close()
        if kind == "ws":
            thread.join(10)
    status = _status(run_dir)
    rows = Run(run_dir).read_metrics()
    ips = [float(r["images_per_second"]) for r in rows]
    # Updating: each viewer saw the batch counter change within every epoch it watched.
    updating = [len({(e, b) for _, e, b in log}) >= 2 * args.epochs for log in seen] if kind != "none" else []
    return {"kind": kind, "page": None if kind == "none" else PAGES[page_path], "state": status.get("state"),
            "epochs": len(rows), "images_per_second": ips,
            "mean_images_per_second": statistics.mean(ips) if ips else float("nan"),
            "viewers": 0 if kind == "none" else args.viewers,
            "viewers_updating": sum(updating), "updates_per_viewer": [len(log) for log in seen] if updating else [],
            "load_average_at_start": round(load, 2), "server_cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1), "server_cores": round(cpu / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--kinds", default="none,ws,ws@train,none",
                        help="measured runs in order: none (unwatched), or ws|browser[@curves|@train] "
                             "(websocket clients or Chromium tabs on that page; curves by default)")
    parser.add_argument("--images", type=int, default=10_000, help="training images per run (train_limit)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: set EFFLAB_DATA_DIR (or --data-dir) to the real CIFAR-10")

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}")
    print(f"run: B0 at 32 px, batch {args.batch}, {args.images} training images, {args.epochs} epochs; "
          f"{args.viewers} viewers per watched run")
    results = []
    with tempfile.TemporaryDirectory(prefix="efflab-viewers-") as tmp:
        for spec in args.kinds.split(","):
            result = measure(spec, args, Path(tmp))
            results.append(result)
            print(json.dumps(result), flush=True)
    print_summary(results)


def print_summary(results: list[dict]) -> None:
    unwatched = [r["mean_images_per_second"] for r in results if r["kind"] == "none"]
    baseline = statistics.mean(unwatched) if unwatched else float("nan")
    print(f"\n{'viewers':<40} {'images/s':>9} {'vs unwatched':>13} {'updating':>9} {'redraws/viewer':>15}")
    for r in results:
        label = {"none": "none (unwatched)", "ws": f"{r['viewers']} websocket clients on {r['page']}",
                 "browser": f"{r['viewers']} Chromium tabs on {r['page']}"}[r["kind"]]
        updating = f"{r['viewers_updating']}/{r['viewers']}" if r["viewers"] else "-"
        redraws = (f"{min(r['updates_per_viewer'])}-{max(r['updates_per_viewer'])}"
                   if r["updates_per_viewer"] else "-")
        print(f"{label:<40} {r['mean_images_per_second']:>9.1f} "
              f"{100 * (r['mean_images_per_second'] / baseline - 1):>+12.1f}% {updating:>9} {redraws:>15}")
    print(f"\nunwatched runs: {', '.join(f'{x:.1f}' for x in unwatched)} images/s; "
          f"load average (1 min) at each start: {[r['load_average_at_start'] for r in results]}")


if __name__ == "__main__":
    main()
