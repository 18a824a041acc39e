"""How long the result pages take with a full-size run (10,000 test predictions, real CIFAR-10):
the first view of the confusion matrix and of the misclassified-images gallery, and a rerun of
each after a click (what a user waits for). A benchmark, not a test: tests check that the
evaluation and the images are computed once; this says what a view costs.

Runs the pages in Streamlit's AppTest (the same script runs as in a server, without a browser's
drawing), in this process, so the first view includes loading the data.

    python bench/page_reruns.py --runs-dir DIR [--run RUN_ID] [--repeats 3]

DIR must hold a finished run with predictions (any `make run` training, e.g. the Quick demo);
EFFLAB_DATA_DIR (or --data-dir) the real CIFAR-10.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")


def timed(action) -> float:
    start = time.perf_counter()
    at = action()
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    return seconds


def one_round(run_id: str) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    from core.data import cifar10 as data
    data.clear_memory_cache()   # the first view pays for the data, as after a server start
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run_id
    figures = {}
    at.switch_page("../pages/confusion.py")
    figures["confusion: first view"] = timed(at.run)
    figures["confusion: toggle 'mistakes only'"] = timed(
        lambda: at.toggle(key="confusion_mistakes_only").set_value(True).run())
    at.switch_page("../pages/mistakes.py")
    figures["gallery: first view (24 images)"] = timed(at.run)
    figures["gallery: switch to smooth upscaling"] = timed(
        lambda: at.radio(key="gallery_method").set_value("smooth").run())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--run", help="run id (default: the newest run with predictions)")
    parser.add_argument("--data-dir", default=os.environ.get("EFFLAB_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("error: set EFFLAB_DATA_DIR (or --data-dir) to the real CIFAR-10")
    os.environ["EFFLAB_RUNS_DIR"], os.environ["EFFLAB_DATA_DIR"] = args.runs_dir, args.data_dir
    sys.path.insert(0, str(ROOT))
    from core.store.runs import RunStore

    store = RunStore(args.runs_dir)
    candidates = [s.run_id for s in store.list() if not s.damaged and store.get(s.run_id).has_predictions()]
    run_id = args.run or (candidates[0] if candidates else None)
    if run_id is None:
        sys.exit(f"error: no run with predictions in {args.runs_dir}")
    n = len(store.get(run_id).read_predictions()[0])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}")
    print(f"run {run_id}: {n:,} test predictions; {args.repeats} rounds")
    rounds = [one_round(run_id) for _ in range(args.repeats)]
    print(f"{'view':<40} {'median s':>9}  all rounds")
    for name in rounds[0]:
        times = [r[name] for r in rounds]
        print(f"{name:<40} {statistics.median(times):>9.3f}  {', '.join(f'{t:.3f}' for t in times)}")


if __name__ == "__main__":
    main()
