"""The Train page's settings form (dashboard/train_form.py): what only starting can check, and the
training-image count, under Streamlit's AppTest on fixture data (nothing mocked)."""

from __future__ import annotations

import pytest

from core.settings.config import TrainConfig
from core.store.runs import RunStore
from dashboard import control
from dashboard.train_form import WEIGHTS_NOT_CHECKED
from conftest import ended

TRAIN = "../pages/train.py"
TOKEN = "teacher-7f3a"


@pytest.fixture
def make(app_factory, tmp_path):
    return app_factory(tmp_path / "runs")


def _shown(at, path) -> list[tuple[str, str]]:
    """Everything the page says, with the typed path blanked out."""
    said = []
    for kind in ("error", "warning", "info", "success", "caption", "markdown"):
        said += [(kind, str(e.value).replace(str(path), "<path>")) for e in getattr(at, kind)]
    said += [("button", f"{b.label} disabled={b.disabled}") for b in at.button]
    return said


def _type_weights_path(at, path) -> None:
    at.session_state["cfg_weights"] = "file"
    at.run()
    at.text_input(key="weights_file").input(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]


def test_viewers_without_the_token_cannot_probe_the_servers_files(make, monkeypatch, tmp_path):
    """Issue 13 #3: the weights box said "missing" or nothing, so anyone could learn which files
    exist on the server. Without the control token both answers are now the same."""
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    existing, missing = tmp_path / "exists.h5", tmp_path / "missing.h5"
    existing.write_bytes(b"any bytes")
    pages = []
    for path in (existing, missing):
        at = make(TRAIN)
        _type_weights_path(at, path)
        pages.append(_shown(at, path))
    assert pages[0] == pages[1]
    assert ("caption", f":material/lock: {WEIGHTS_NOT_CHECKED}") in pages[0]
    assert not any("weights:" in text for _, text in pages[0])

    # Whoever holds the token is told, before Start.
    at = make(TRAIN)
    at.sidebar.text_input(key=control.INPUT_KEY).input(TOKEN).run()
    _type_weights_path(at, missing)
    assert any("weights: expected none, imagenet, or the path of an existing weights file" in e.value
               for e in at.error), [e.value for e in at.error]
    assert next(b for b in at.button if "Start training" in b.label).disabled
    at.text_input(key="weights_file").input(str(existing)).run()
    assert not any("weights:" in e.value for e in at.error)
    assert not any(WEIGHTS_NOT_CHECKED in c.value for c in at.caption)


def test_a_run_whose_weights_file_moved_is_listed_not_damaged(tmp_path):
    """Issue 13 #3: its config.json is read without asking whether the weights file exists."""
    weights = tmp_path / "efficientnetb0_notop.h5"
    weights.write_bytes(b"x")
    store = RunStore(tmp_path / "runs")
    run = store.create(TrainConfig(weights=str(weights), epochs=1))
    ended(run, "completed", checkpoint_epoch=1)
    weights.unlink()
    (summary,) = store.list()
    assert summary.run_id == run.run_id and not summary.damaged, summary.damaged
    assert summary.config["weights"] == str(weights)


def test_the_estimate_counts_the_images_the_split_leaves(make):
    """The time estimate is for the images the engine would train on: the fixture's 300 leave 270
    after a 10% split and 240 after 20%, and a limit is taken as it is."""
    at = make(TRAIN)

    def estimate_help():
        return next(m for m in at.metric if m.label == "Est. whole run").proto.help

    assert " on 270 images" in estimate_help()
    at.session_state["cfg_val_fraction"] = 0.2
    at.run()
    assert " on 240 images" in estimate_help()
    at.session_state["cfg_train_limit"] = 100
    at.run()
    assert " on 100 images" in estimate_help()
    limit_box = next(w for w in at.number_input if w.key == "cfg_train_limit")
    assert "All, here: 240 images" in limit_box.help
