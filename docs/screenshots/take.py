"""Retakes README's screenshots from real runs: the dashboard started as `make run` starts it, driven
in Debian's Chromium as the browser tests drive it (tests/browser.py).

    EFFLAB_DATA_DIR=... EFFLAB_WEIGHTS_DIR=... python docs/screenshots/take.py RUNS_DIR

RUNS_DIR holds the finished runs to show (the README's came from `bench/recipes.py --recipe
quick-demo` and `--recipe best-cpu`, named "Quick demo" and "Best on a laptop"); the newest run is
the one the result pages open on, and Live curves shows them all. Each picture is the first screen
of its page at 1400 x 1000, what a person sees before scrolling. Exits non-zero if a page shows an
exception.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))    # the browser tests' helpers
sys.path.insert(0, str(ROOT))

from browser import chromium_page, exceptions_shown, settle, streamlit_server  # noqa: E402
from core.store.runs import RunStore  # noqa: E402

WIDTH, HEIGHT = 1400, 1000


def _train_with_quick_demo(page) -> None:
    page.get_by_role("button", name=re.compile("Quick demo")).first.click()
    settle(page, 2)


# file name -> (page url path, what to do there before the picture); {runs}: every run, comma-separated
SHOTS = {
    "train": ("", _train_with_quick_demo),
    "curves": ("curves?runs={runs}", None),
    "confusion": ("confusion", None),
    "mistakes": ("mistakes", None),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    failures = []
    env = {"EFFLAB_RUNS_DIR": str(args.runs_dir.resolve())}
    every_run = ",".join(RunStore(args.runs_dir).run_ids())
    with streamlit_server(env, args.out / "server.log") as url, chromium_page(WIDTH, HEIGHT) as page:
        for name, (path, prepare) in SHOTS.items():
            page.goto(f"{url}/{path.format(runs=every_run)}")
            settle(page, 3)
            if prepare:
                prepare(page)
            page.mouse.move(0, 0)             # no hover tooltip in the picture
            page.screenshot(path=str(args.out / f"{name}.png"))
            problems = exceptions_shown(page)
            print(f"{name}.png: {'EXCEPTION ' + ' | '.join(problems) if problems else 'ok'}")
            failures += problems
    (args.out / "server.log").unlink(missing_ok=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
