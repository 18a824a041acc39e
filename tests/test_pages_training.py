"""AppTests of the training pages (Train, Live curves, Runs) with real short jobs on fixture data;
nothing in core is mocked."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP, ended, plotly_values, run_folders, training_here
from core.jobs.scheduler import JobManager
from dashboard import control

TRAIN, CURVES, RUNS = "../pages/train.py", "../pages/curves.py", "../pages/runs.py"

pytestmark = pytest.mark.slow


@pytest.fixture
def app(app_factory, tmp_path):
    """make(page, runs_dir=..., **query) -> an AppTest that has run that page (runs in tmp_path)."""
    return app_factory(tmp_path / "runs")


def _button(at, text):
    return next(b for b in at.button if text in b.label)


def _manager() -> JobManager:
    from dashboard.state import job_manager
    return job_manager()


def _wait(predicate, timeout=300):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_presets_fill_the_form(app):
    at = app(TRAIN)
    from dashboard import train_form
    cards = [p for p in train_form.presets()
             if not p.cannot_run_here(imagenet_available=train_form.imagenet_available(), on_gpu=False)]
    # Each card's Details loads its recipe into the form (the card's own Start starts it at once).
    for preset in reversed(cards):
        _preset(at, preset.name).click().run()
        shown = {name: at.session_state[f"cfg_{name}"] for name in ("variant", "image_size", "epochs", "optimizer",
                                                                     "batch_size", "learning_rate")}
        assert shown == {name: preset.settings.get(name, shown[name]) for name in shown}, preset.name
    # The Quick demo last: 64 px with ImageNet weights; the From scratch recipe's size where they cannot be had.
    from core.settings.presets import FROM_SCRATCH, QUICK_DEMO
    sizes = (QUICK_DEMO.settings["image_size"], FROM_SCRATCH.settings["image_size"])
    assert at.session_state["cfg_variant"] == "b0" and at.session_state["cfg_image_size"] in sizes
    # The variant's facts and a whole-run estimate are shown, with its parts.
    labels = {m.label: m.value for m in at.metric}
    assert labels["Layers"] == "237" and labels["ImageNet top-1"] == "77.1%"
    estimate = next(m for m in at.metric if m.label == "Est. whole run")
    assert " per epoch on " in estimate.proto.help and " predicting the test set" in estimate.proto.help
    # The GPU recipe is no card on a CPU: one line says why, and nothing offers to start it.
    from core.settings.presets import TRANSFER_GPU
    why = TRANSFER_GPU.cannot_run_here(imagenet_available=train_form.imagenet_available(), on_gpu=False)
    assert why and any("Transfer learning (GPU)" in c.value and why in c.value for c in at.caption)
    assert not [b for b in at.button if b.key in ("start_transfer-gpu", "preset_transfer-gpu")]
    # Every card's figure is this machine's estimate beside the measured accuracy.
    figures = [m.value for m in at.markdown if m.value.startswith("##### ≈ ")]
    assert len(figures) == len(cards) and all(f.endswith(" min") for f in figures), figures
    assert figures[0].startswith(f"##### ≈ {100 * cards[0].expected_accuracy:.0f}% · "), figures


def _preset(at, name):
    return next(b for b in at.button if b.key == f"preset_{name}")


def test_missing_data_is_explained_before_start(app, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    at = app(TRAIN, data_dir=empty)
    assert any("CIFAR-10 is not available" in e.value and "EFFLAB_DATA_DIR" in e.value for e in at.error)
    assert any("No NVIDIA GPU found" in c.value for c in at.caption)   # which device trains, said up front
    assert _button(at, "Start training").disabled


@pytest.mark.small_network
def test_start_queue_a_second_cancel_it_and_stop(app, tmp_path):
    at = app(TRAIN)
    for key, value in {"cfg_train_limit": 200, "cfg_epochs": 300, "cfg_batch_size": 16,
                       "cfg_val_fraction": 0.2, "run_name": "Ana — lr 1e-3"}.items():
        at.session_state[key] = value
    at.run()
    _button(at, "Start training").click().run()
    assert not at.exception
    manager = _manager()
    run_id = manager.active_run_id
    assert run_id and (tmp_path / "runs" / run_id / "config.json").exists()
    assert not _button(at, "Start training").disabled          # a queue, not a refusal
    # A double click (or one click dispatched twice by a busy server) starts one run, and says so.
    _button(at, "Start training").click().run()
    assert [p.name for p in run_folders(tmp_path / "runs")] == [run_id]
    assert any(run_id in t.value and "one run, not two" in t.value for t in at.toast), [t.value for t in at.toast]

    # A second tab on the same server sees the training run and queues its own behind it.
    other = AppTest.from_file(APP, default_timeout=120)
    other.switch_page(TRAIN)
    other.session_state["cfg_train_limit"] = 100
    other.run()
    rows = [t.value for t in other.text]
    assert any(run_id in row and "Ana — lr 1e-3" in row for row in rows), rows
    _button(other, "Start training").click().run()
    assert not other.exception
    queued_id = other.session_state["my_runs"][-1]
    assert manager.store.get(queued_id).read_status()["state"] == "queued"
    assert any("1st in line" in m.value for m in other.markdown)
    # The first tab's browser did not queue it: it sees it, but may not cancel it ...
    at.run()
    assert [b.disabled for b in at.button if b.key and b.key.endswith(f"cancel_{queued_id}")] == [True]
    assert control.LOCKED_HELP in next(b.help for b in at.button if b.key and b.key.endswith(f"cancel_{queued_id}"))
    # ... but its owner can.
    _button(other, "Cancel").click().run()
    assert manager.store.get(queued_id).read_status()["state"] == "cancelled"

    _wait(lambda: manager.progress(run_id).get("batch", 0) >= 2)
    _button(at, "Stop").click().run()
    assert manager.wait(120)
    assert manager.store.get(run_id).read_status()["state"] == "stopped"
    at.run()   # the fragment shows the final state after a rerun
    assert any("Stopped — run" in m.value for m in at.markdown)


def test_engine_errors_render_as_messages(app, fixture_data_dir, tmp_path):
    # Every batch file is present (so the form has nothing to object to), but one is garbage:
    # only the engine finds out, and the page says why.
    data_dir = tmp_path / "data"
    shutil.copytree(fixture_data_dir, data_dir)
    (batch,) = data_dir.rglob("data_batch_1")
    batch.write_bytes(b"not a pickle")
    at = app(TRAIN, data_dir=data_dir)
    _button(at, "Start training").click().run()
    manager = _manager()
    _wait(lambda: manager.active_run_id is None, timeout=120)
    at.run()
    assert any("The run failed" in e.value and "data_batch_1" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert not at.exception


def test_more_training_images_than_the_data_holds_are_refused_before_start(app):
    at = app(TRAIN)
    at.session_state["cfg_train_limit"] = 5000   # the fixture leaves 270 after validation
    at.run()
    assert any("train_limit: expected 0 (all) or at most 270" in e.value and "got 5000" in e.value
               for e in at.error), [e.value for e in at.error]
    assert _button(at, "Start training").disabled
    assert not at.exception


def test_curves_page_overlays_runs(app, trained_run):
    at = app(CURVES, runs_dir=trained_run.path.parent)
    charts = at.get("plotly_chart")
    assert len(charts) >= 5
    # A one-epoch run's curves are its batches: they come first, loss and accuracy, a point per batch.
    first, second = (json.loads(chart.proto.spec) for chart in charts[:2])
    assert first["layout"]["title"]["text"] == "Training loss per batch"
    assert len(plotly_values(first["data"][0]["x"])) == trained_run.read_progress()["batches"]
    assert second["layout"]["title"]["text"] == "Training accuracy per batch"
    assert len(plotly_values(second["data"][0]["x"])) == trained_run.read_progress()["batches"]
    assert at.multiselect[0].value == [trained_run.run_id]
    assert at.query_params["runs"] == [trained_run.run_id] or at.query_params["runs"] == trained_run.run_id


def test_a_one_epoch_run_in_training_leads_with_its_running_batches(app, trained_run, tmp_path):
    """Its epoch charts stay empty until the epoch ends: the running epoch's batches come first."""
    from core.store.runs import RunStore, mark_active
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    run = RunStore(runs).get(trained_run.run_id)
    run.reconcile_metrics(0)                      # back before its first epoch: no rows, no batches
    run = training_here(run, epochs=1)
    run.write_progress({"phase": "training", "epoch": 1, "epochs": 1, "batch": 3, "batches": 5,
                        "batch_losses": [[1, 2.5], [2, 2.4], [3, 2.2]],
                        "batch_accuracies": [[1, 0.1], [2, 0.15], [3, 0.2]]})
    mark_active(run.run_id, True)
    try:
        at = app(CURVES, runs_dir=runs)
        assert not at.exception, [e.value for e in at.exception]
        figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        titles = [figure["layout"]["title"]["text"] for figure in figures]
        assert titles[:4] == ["Training loss in epoch 1 (per batch)", "Training accuracy in epoch 1 (per batch)",
                              "Loss per epoch", "Accuracy per epoch"]
        running_mean = next(t for t in figures[1]["data"] if t["name"].startswith("running mean"))
        assert list(plotly_values(running_mean["y"])) == pytest.approx([10.0, 15.0, 20.0])   # in percent
        assert "Training loss per batch" not in titles                 # no finished epoch to draw
        # A trainer from before the accuracy was reported per batch: the loss alone, full width.
        run.write_progress({"phase": "training", "epoch": 1, "epochs": 1, "batch": 3, "batches": 5,
                            "batch_losses": [[1, 2.5], [2, 2.4], [3, 2.2]]})
        at = app(CURVES, runs_dir=runs)
        titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
        assert titles[:2] == ["Training loss in epoch 1 (per batch)", "Loss per epoch"]
    finally:
        mark_active(run.run_id, False)


def test_the_resume_picker_says_a_stopped_epochs_batches_are_kept(app, trained_run, tmp_path):
    """A Stop in the middle of an epoch keeps its batches (checkpoints/partial.keras): the Resume
    section says so under the picker, whose own text a projector's width cuts short."""
    from core.store.runs import CHECKPOINT_DIR, PARTIAL_CHECKPOINT, RunStore
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    run = RunStore(runs).get(trained_run.run_id)
    done = run.summary().epochs_done
    shutil.copy(run.checkpoint("last"), run.path / CHECKPOINT_DIR / PARTIAL_CHECKPOINT)
    ended(training_here(run, epochs=done + 2), "stopped", checkpoint_batch=7)
    at = app(TRAIN, runs_dir=runs)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="resume_run").value == run.run_id
    assert f"Stopped 7 batches into epoch {done + 1}: Resume goes on from batch 8" in \
        " ".join(c.value for c in at.caption)


def test_curves_page_with_no_runs(app, tmp_path):
    at = app(CURVES, runs_dir=tmp_path / "empty-runs")
    assert any("No runs yet" in i.value for i in at.info)


def test_runs_page_lists_runs_and_damaged_ones(app, trained_run, tmp_path):
    runs = tmp_path / "runs-copy"
    shutil.copytree(trained_run.path, runs / trained_run.run_id)
    damaged = runs / "20200101-000000-b0-dead"
    shutil.copytree(trained_run.path, damaged)
    (damaged / "status.json").write_text("{broken")
    at = app(RUNS, runs_dir=runs)
    table = at.dataframe[0].value
    assert set(table["run"]) == {trained_run.run_id, damaged.name}
    row = table.set_index("run").loc[damaged.name]
    assert row["state"] == "damaged" and "status.json is unreadable" in row["note"]
    good = table.set_index("run").loc[trained_run.run_id]
    assert good["state"] == "completed" and good["variant"] == "B0"


def test_weights_file_path_is_validated_inline(app, tmp_path):
    at = app(TRAIN)
    at.session_state["cfg_weights"] = "file"
    at.run()
    at.text_input(key="weights_file").input(str(tmp_path / "missing.h5")).run()
    assert any("weights: expected none, imagenet, or the path of an existing weights file" in e.value
               for e in at.error)
    assert _button(at, "Start training").disabled
    real = tmp_path / "w.h5"
    real.write_bytes(b"not checked until training")
    at.text_input(key="weights_file").input(str(real)).run()
    assert not any("weights:" in e.value for e in at.error)
