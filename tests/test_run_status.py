"""The Train page's status panel values and the queue's waits, as pure functions: every field
formatted, NaN and missing values shown as "—", places said as people say them."""

from __future__ import annotations

import math
import time

from core.estimates.startup import startup_record, typical_startup
from core.jobs.queue import QueueEntry, estimated_run_seconds, ordinal, queue_entries
from core.settings.config import TrainConfig
from core.store.runs import RunStore, mark_active
from core.training.progress import Progress
from dashboard.run_status import status_display, wait_text


def test_a_running_run_shows_its_numbers_and_unknowns_as_dashes():
    shown = status_display({"phase": "training head (base frozen)", "epoch": 2, "epochs": 3, "batch": 40,
                            "batches": 80, "eta_seconds": 125.4, "images_per_second": 301.7,
                            "loss": 1.23456, "accuracy": 0.4567}, "running")
    assert shown.headline == "Training head (base frozen)" and shown.icon == ":material/directions_run:"
    assert shown.fraction == 0.5 and shown.bar_text == "epoch 2 of 3 · batch 40 of 80 · 2:05 left"
    assert (shown.eta, shown.images_per_second, shown.loss, shown.accuracy) == ("2:05", "302", "1.2346", "45.7%")
    blank = status_display({"loss": math.nan, "accuracy": None, "images_per_second": math.inf}, "running")
    assert (blank.loss, blank.accuracy, blank.images_per_second, blank.fraction) == ("—", "—", "—", 0.0)
    compiling = status_display({"phase": "compiling first step"}, "running")
    assert compiling.headline == "Compiling the model" and "≈ 25 s (estimate)" in compiling.note
    assert status_display({"phase": "stopped"}, "stopped").eta == "—"


def test_a_queued_run_says_its_place_and_wait():
    entry = QueueEntry("20261130-101010-b0-aaaa", "queued", 3, "Ana", 12 * 60, 300)
    shown = status_display({}, "queued", entry)
    assert shown.headline == "3rd in line, about 12 min" and shown.icon == ":material/schedule:"
    assert status_display({}, "queued", QueueEntry("x", "queued", 1, "", 20, 60)).headline == "1st in line, starts in under a minute"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
    assert (wait_text(20), wait_text(12 * 60), wait_text(65 * 60)) == ("under a minute", "about 12 min", "about 1 h 05 min")


def test_queue_waits_add_up_over_the_slots(tmp_path):
    store = RunStore(tmp_path / "runs")
    training = store.claim(store.create(TrainConfig(epochs=2, train_limit=3000)).run_id)
    mark_active(training.run_id, True)          # as the trainer thread marks it
    queued = [store.create(TrainConfig(epochs=1, train_limit=3000), name=f"s{i}") for i in range(3)]
    progress = {training.run_id: {"eta_seconds": 100.0}}
    entries = queue_entries(store, 1, lambda rid: progress.get(rid, {}))
    assert [(e.run_id, e.place) for e in entries] == [(training.run_id, 0)] + [(q.run_id, i) for i, q in enumerate(queued, 1)]
    one_run = estimated_run_seconds(store.queue()[0])
    waits = [e.wait_seconds for e in entries[1:]]
    assert waits == [100.0, 100.0 + one_run, 100.0 + 2 * one_run]   # one slot: one after another
    # Two slots, one busy for 100 s more: each queued run takes the slot that frees first.
    two = queue_entries(store, 2, lambda rid: progress.get(rid, {}))
    free, expected = [0.0, 100.0], []
    for _ in queued:
        start = min(free)
        expected.append(start)
        free[free.index(start)] = start + one_run
    assert [e.wait_seconds for e in two[1:]] == expected and expected[0] == 0.0
    assert entries[1].label == "s0"
    mark_active(training.run_id, False)


def test_start_up_phases_say_how_long_so_far_and_how_long_usually_here(tmp_path):
    """Issue 32: "compiling the model, ≈ 25 s here" from this machine's own earlier runs (the
    median of the same variant and size), the estimate only until one has compiled here."""
    store = RunStore(tmp_path / "runs")
    timings = [(TrainConfig(epochs=1), {"starting": 6.0, "loading data": 1.5, "building model": 3.0,
                                        "compiling first step": 30.0}),
               (TrainConfig(epochs=1), {"starting": 8.0, "compiling first step": 20.0}),
               (TrainConfig(epochs=1, image_size=64), {"starting": 7.0, "compiling first step": 90.0})]
    for config, timing in timings:
        run = store.claim(store.create(config).run_id)
        run.write_status(startup_seconds=timing)
    typical = typical_startup(store, "b0", 32)
    assert typical == {"starting": 7.0, "loading data": 1.5, "building model": 3.0, "compiling first step": 25.0}
    assert typical_startup(store, "b0", 32, host="another-machine") == {}

    compiling = status_display({"phase": "compiling first step", "phase_started": 1000.0}, "running",
                               typical=typical, now=1012.4)
    assert compiling.note.endswith("12 s so far · usually ≈ 25 s here.")
    starting = status_display({"phase": "starting JAX", "phase_started": 1000.0}, "running", typical=typical,
                              now=1003.0)
    assert starting.headline == "Starting JAX" and starting.note == "3 s so far · usually ≈ 7 s here"
    training = status_display({"phase": "training", "phase_started": 1000.0, "epoch": 1, "epochs": 3,
                               "batch": 0, "batches": 10}, "running", typical=typical, now=1100.0)
    assert training.note == ""                # a training phase has its ETA, not a start-up time


def test_progress_times_each_phase_and_the_run_records_its_start_up():
    progress = Progress(phase="starting TensorFlow")
    for phase in ("loading data", "building model", "compiling first step", "training", "validating", "training"):
        time.sleep(0.01)
        progress.update(phase=phase)
    progress.update(batch=3)                  # no new phase: nothing closes
    spent = progress.snapshot()["phase_seconds"]
    assert list(spent) == ["starting TensorFlow", "loading data", "building model", "compiling first step",
                           "training", "validating"] and all(seconds >= 0.009 for seconds in spent.values())
    record = startup_record(spent)
    assert set(record) == {"starting", "loading data", "building model", "compiling first step"}
