"""The learning-rate finder on the Train page, for real: the button queues the range test like a
run (fixture data, a real B0), the page shows its curve and suggestion, and "Use this rate" fills
the form's learning rate."""

from __future__ import annotations

import pytest

from core.runs import RunStore

TRAIN = "../pages/train.py"
pytestmark = pytest.mark.slow


@pytest.fixture
def app(app_factory, tmp_path):
    return app_factory(tmp_path / "runs")


def test_find_a_learning_rate_then_use_it(app, tmp_path):
    at = app(TRAIN)
    for key, value in {"cfg_train_limit": 200, "cfg_batch_size": 16, "cfg_val_fraction": 0.2}.items():
        at.session_state[key] = value
    at.run()
    next(b for b in at.button if "Find a learning rate" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    job_id = at.session_state["lr_find_job"]
    store = RunStore(tmp_path / "runs")
    assert store.get(job_id).read_status()["kind"] == "lr_find"
    assert [s.run_id for s in store.list()] == []                 # a tool job, not a run in the table
    from dashboard.state import job_manager
    assert job_manager().wait(600)
    status = store.get(job_id).read_status()
    assert status["state"] == "completed", status
    finding = store.get(job_id).read_lr_finding()
    assert 1e-7 <= finding["suggestion"] <= 10 and len(finding["rates"]) == len(finding["smoothed"]) > 10
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Suggested rate" in c.value for c in at.caption)
    use = next(b for b in at.button if "Use this rate" in b.label)
    use.click().run()
    at.run()
    assert at.session_state["cfg_learning_rate"] == pytest.approx(float(f"{finding['suggestion']:.2g}"))
