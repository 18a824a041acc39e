"""Slowest test files first, so that `make test`'s two workers finish together.

pytest-xdist's `--dist loadfile` hands each worker a whole file at a time, in the order the files
arrive (the Makefile turns off its own reordering, which puts the files with the most tests first:
the quick ones). Sent out last, a file of long tests keeps one worker busy for its length while the
other has nothing left to do; sent out first, the quick files fill the gaps around it. With the
seconds of one whole run, simulating xdist's hand-out ended the two workers at 3,932 and 3,442 s
most-tests-first and at 3,687 and 3,687 slowest-first.

The order comes from tests/file_seconds.json: one recording per Keras backend (the JAX part runs
some files again under JAX, at other costs) of the whole suite as CI runs it, `make test-all`,
with when and where it was recorded and each file's seconds (setup, call and teardown of all its
tests, under two workers: the neighbour's load is in them) split by tier: "quick" for its tests
in `make test`, "full" for those marked `full`. Each test is counted once, so a backend's numbers
add up to what its part of CI spends in tests; `make test` orders its files by their quick
seconds. Files it does not know yet go first: a new quick file there costs nothing, a new slow one
at the end would cost its whole length. Refresh after a change of costs:

    EFFLAB_RECORD_FILE_SECONDS=1 make test-all

(a run of some files refreshes those; a `make test` run refreshes the quick seconds only).
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
QUICK, FULL = "quick", "full"          # a file's seconds in `make test`, and in `make test-all` only
_measured: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


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


def _tiers(config) -> tuple[str, ...]:
    """The tiers this run holds: both for `make test-all`, the quick one for `make test` (and for
    any other selection, which is ordered like the whole suite)."""
    return (QUICK,) if config.option.markexpr == "not full" else (QUICK, FULL)


def pytest_collection_modifyitems(config, items) -> None:
    seconds = _known().get(_BACKEND, {}).get("seconds", {})
    tiers = _tiers(config)

    def slowest_first(item) -> float:
        known = seconds.get(item.nodeid.split("::")[0])
        return -sum(known.get(tier, 0.0) for tier in tiers) if known else -float("inf")

    items.sort(key=slowest_first)       # stable: each file's own tests keep their order


def pytest_runtest_logreport(report) -> None:
    # Under xdist the controller sees every worker's reports (their markers among the keywords);
    # without it, this process's own.
    if _RECORD:
        _measured[report.nodeid.split("::")[0]][FULL if "full" in report.keywords else QUICK] += report.duration


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _RECORD or hasattr(session.config, "workerinput") or not _measured:
        return                          # only the controller writes, once
    # A run of a few files refreshes those, a `make test` run their quick seconds; files that no
    # longer exist drop out.
    root = Path(str(session.config.rootpath))
    everything = _known()
    seconds = everything.get(_BACKEND, {}).get("seconds", {})
    for name, measured in _measured.items():
        seconds[name] = {tier: round(measured.get(tier, 0.0) if tier in _tiers(session.config)
                                     else seconds.get(name, {}).get(tier, 0.0), 1) for tier in (QUICK, FULL)}
    seconds = dict(sorted(((name, tiers) for name, tiers in seconds.items() if (root / name).exists()),
                          key=lambda kv: -sum(kv[1].values())))
    workers = getattr(session.config.option, "numprocesses", None) or 0
    everything[_BACKEND] = {
        "recorded": f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core {_cpu()}, {workers} workers",
        "seconds": seconds,
    }
    FILE_SECONDS.write_text(json.dumps(everything, indent=1) + "\n")
