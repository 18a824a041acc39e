"""The queue and the control token: with a token set, only its holder cancels a queued run (a
forged Cancel from a locked session changes nothing); the holder may cancel anyone's."""

from __future__ import annotations

import pytest

from core.store.runs import RunStore
from dashboard import control

TRAIN = "../pages/train.py"
TOKEN = "projector-7f3a"
pytestmark = pytest.mark.slow


@pytest.fixture
def app(app_factory, tmp_path):
    return app_factory(tmp_path / "runs")


def _cancel_buttons(at, run_id):
    return [b for b in at.button if b.key and b.key.endswith(f"cancel_{run_id}")]


def test_only_the_token_holder_cancels_a_queued_run(app, monkeypatch, tmp_path, tiny_config):
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    monkeypatch.setenv("EFFLAB_SLOTS", "1")
    runs = tmp_path / "runs"
    student = app(TRAIN, runs_dir=runs)
    from dashboard import state
    manager = state.job_manager()
    training = manager.start(tiny_config.replace(epochs=30))      # fills the only slot
    queued = manager.start(tiny_config, name="someone else's")
    try:
        assert RunStore(runs).get(queued).read_status()["state"] == "queued"
        student.run()
        [cancel] = _cancel_buttons(student, queued)
        assert cancel.disabled
        cancel._value = True           # a forged click, as a hand-written websocket message would send
        student.run()
        assert not student.exception
        assert RunStore(runs).get(queued).read_status()["state"] == "queued"

        student.sidebar.text_input(key=control.INPUT_KEY).input(TOKEN).run()   # now the teacher
        [cancel] = _cancel_buttons(student, queued)
        assert not cancel.disabled
        cancel.click().run()
        assert RunStore(runs).get(queued).read_status()["state"] == "cancelled"
    finally:
        manager.stop(training)
        assert manager.wait(300)
