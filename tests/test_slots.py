"""Several runs in one process: the slot count (EFFLAB_SLOTS, or what the machine holds), and two
runs that fit alone but not together waiting for memory. Two runs training at once in their own
threads, with different variants and one under mixed precision, each ending with its own correct
metrics, checkpoints and predictions (Keras 3's global state, the dtype policy among it, is per
thread), is test_gpu_branches.py's mixed-precision cycle, which trains a B1 beside it."""

from __future__ import annotations

import pytest

from core.jobs.queue import queue_entries
from core.jobs.scheduler import JobManager
from core.jobs.slots import SlotsError, default_slots, parse_slots, slots_explained
from core.settings.config import TrainConfig


def test_slots_come_from_the_environment_or_the_machine():
    assert default_slots({"EFFLAB_SLOTS": "3"}) == 3
    assert default_slots({}) == 1                       # this machine has no GPU: one run at a time
    for bad in ("0", "-1", "two", "65", "1.5", ""):
        if bad == "":
            continue
        with pytest.raises(SlotsError, match=rf"EFFLAB_SLOTS: expected a whole number in \[1, 64\]; got '{bad}'"):
            parse_slots(bad)
    assert "set by EFFLAB_SLOTS" in slots_explained(3, {"EFFLAB_SLOTS": "3"})
    assert "on a CPU one run uses every core" in slots_explained(1, {})


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.small_network
def test_two_runs_that_fit_alone_but_not_together_train_one_after_the_other(tmp_path, fixture_data_dir,
                                                                              monkeypatch):
    """Issue 29: with two slots, two runs that each fit were launched together into memory that
    held one. Now the second waits at its place, saying why, and starts when the first ends."""
    from core.jobs.admission import MEMORY_LIMIT_ENV
    from core.estimates.memory import USABLE_FRACTION
    manager = JobManager(runs_dir=tmp_path / "runs", data_dir=fixture_data_dir, slots=2)
    config = TrainConfig(epochs=1, batch_size=16, train_limit=100, val_fraction=0.2, seed=7)
    one, two = manager.memory.needed([config]), manager.memory.needed([config, config])
    room = (one + two) / 2 / USABLE_FRACTION       # one run and a half
    monkeypatch.setenv(MEMORY_LIMIT_ENV, f"{room / 2 ** 30:.4f}")
    first = manager.start(config, name="first")
    second = manager.start(config, name="second")
    assert manager.active_run_ids == [first]
    reason = manager.memory_waits[second]
    assert reason.startswith("waiting for memory: it needs about") and "beside the 1 run training here" in reason \
        and f"of {MEMORY_LIMIT_ENV}=" in reason, reason
    entries = queue_entries(manager.store, manager.slots, manager.progress, manager.memory_waits)
    assert [(e.run_id, bool(e.memory_wait)) for e in entries] == [(first, False), (second, True)]
    assert manager.wait(600)
    a, b = (manager.store.get(run_id).read_status() for run_id in (first, second))
    assert a["state"] == b["state"] == "completed", (a, b)
    assert a["ended_at"] <= b["claimed_at"]                   # one after the other
    assert second not in manager.memory_waits
