"""Presentation mode picks its run through state.select_run, like every other page: a run id from
the URL is refused the same way, and the choice survives moving between slides."""

from __future__ import annotations

import pytest

from core.settings.config import TrainConfig
from core.store.runs import RunStore
from dashboard import slides
from conftest import ended

PRESENT = "../pages/present.py"


@pytest.fixture
def two_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    ids = []
    for variant in ("b0", "b1"):
        run = store.create(TrainConfig(variant=variant, epochs=1))
        ended(run, "completed", checkpoint_epoch=1)
        ids.append(run.run_id)
    return tmp_path / "runs", ids


def _title(at) -> str:
    return at.title[0].value


def _url_run(at) -> str:
    value = at.query_params["run"]
    return value[0] if isinstance(value, list) else value


def test_a_bad_run_id_in_the_url_is_refused_as_on_every_page(app_factory, two_runs):
    runs, ids = two_runs
    at = app_factory(runs)(PRESENT, present="1", run="[x](http://evil.example)")
    warnings = [w.value for w in at.warning if "There is no run" in w.value]
    assert len(warnings) == 1 and "](" not in warnings[0]
    shown = at.selectbox(key="present_run").value
    assert shown in ids and _url_run(at) == shown          # a real run instead, and the URL says which


def test_the_chosen_run_stays_from_slide_to_slide(app_factory, two_runs):
    runs, ids = two_runs
    at = app_factory(runs)(PRESENT, present="1", run=ids[0])
    assert at.selectbox(key="present_run").value == ids[0]
    at.selectbox(key="present_run").set_value(ids[1]).run()
    for number in range(2, 5):                   # to the settings slide
        at.button(key="slide_next").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert _title(at) == slides.SLIDES[number - 1].title
        assert at.sidebar.selectbox(key="present_run").value == ids[1]    # hidden on a projector
        assert _url_run(at) == ids[1]
    assert slides.SLIDES[3].key == "config" and f"Run {ids[1]}" in [c.value for c in at.caption]
