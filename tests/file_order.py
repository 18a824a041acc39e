"""Slowest test files first, so that `make test`'s two workers finish together.

pytest-xdist's `--dist loadfile` hands each worker a whole file at a time, in the order the files
arrive (the Makefile turns off its own reordering, which puts the files with the most tests first:
the quick ones). Sent out last, a file of long tests keeps one worker busy for its length while the
other has nothing left to do; sent out first, the quick files fill the gaps around it. With the
seconds of one whole run, simulating xdist's hand-out ended the two workers at 3,932 and 3,442 s
most-tests-first and at 3,687 and 3,687 slowest-first.

The order comes from tests/file_seconds.json: per Keras backend (the JAX part runs some files
again under JAX, at other costs) and tier (`make test` leaves out the tests marked `full`, so a
file costs less there than in `make test-all`), when and where it was recorded, and each file's
seconds (setup, call and teardown of all its tests, under two workers: the neighbour's load is in
them). Files it does not know yet go first: a new quick file there costs nothing, a new slow one at
the end would cost its whole length. Refresh both tiers after a change of costs:

    EFFLAB_RECORD_FILE_SECONDS=1 make test test-all
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

FILE_SECONDS = Path(__file__).resolve().parent / "file_seconds.json"
_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
_RECORD = bool(os.environ.get("EFFLAB_RECORD_FILE_SECONDS"))
_measured: dict[str, float] = defaultdict(float)


def _known() -> dict[str, dict]:
    try:
        return json.loads(FILE_SECONDS.read_text())
    except (OSError, ValueError):
        return {}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _recording(config) -> str:
    """The name this backend and tier's seconds go under: "tensorflow, make test", "jax, make test-all"."""
    marks = config.option.markexpr
    tier = {"": "make test-all", "not full": "make test"}.get(marks, f"-m '{marks}'")
    return f"{_BACKEND}, {tier}"


def pytest_collection_modifyitems(config, items) -> None:
    seconds = _known().get(_recording(config), {}).get("seconds", {})

    def slowest_first(item) -> float:
        return -seconds.get(item.nodeid.split("::")[0], float("inf"))

    items.sort(key=slowest_first)       # stable: each file's own tests keep their order


def pytest_runtest_logreport(report) -> None:
    # Under xdist the controller sees every worker's reports; without it, this process's own.
    if _RECORD:
        _measured[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _RECORD or hasattr(session.config, "workerinput") or not _measured:
        return                          # only the controller writes, once
    # A run of a few files refreshes those; files that no longer exist drop out.
    root = Path(str(session.config.rootpath))
    everything = _known()
    name = _recording(session.config)
    seconds = {**everything.get(name, {}).get("seconds", {}), **_measured}
    seconds = {name: round(value, 1) for name, value in sorted(seconds.items(), key=lambda kv: -kv[1])
               if (root / name).exists()}
    workers = getattr(session.config.option, "numprocesses", None) or 0
    everything[name] = {
        "recorded": f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core {_cpu()}, {workers} workers",
        "seconds": seconds,
    }
    FILE_SECONDS.write_text(json.dumps(everything, indent=1) + "\n")
