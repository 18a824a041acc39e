"""Security: the server listens on localhost only, the classroom control token gates every action
but no view, Keras models load in safe_mode, and nothing is unpickled except through the
restricted unpickler."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import streamlit as st

from browser import free_port
from core.settings.config import TrainConfig
from core.store.runs import RunStore
from dashboard import control
from conftest import ended, run_folders

ROOT = Path(__file__).resolve().parents[1]
TRAIN, RUNS, CURVES, CONFUSION = "../pages/train.py", "../pages/runs.py", "../pages/curves.py", "../pages/confusion.py"
TOKEN = "projector-7f3a"


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """The control module's clock, moved by hand (a list: clock[0] = seconds), and no wrong
    guesses remembered from another test."""
    now = [1_000.0]
    monkeypatch.setattr(control, "clock", lambda: now[0])
    control.reset_guess_limits()
    yield now
    control.reset_guess_limits()


@pytest.fixture
def app(app_factory, tmp_path):
    """make(page, runs_dir=..., **query) -> an AppTest that has run that page (runs in tmp_path)."""
    return app_factory(tmp_path / "runs")


def _button(at, text):
    return next(b for b in at.button if text in b.label)


def _token_box(at):
    return [t for t in at.sidebar.text_input if t.label == "Control token"]


def _finished_run(runs_dir: Path) -> str:
    run = RunStore(runs_dir).create(TrainConfig(epochs=1))
    ended(run, "completed", checkpoint_epoch=1)
    run.append_metrics({"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2,
                        "learning_rate": 1e-3, "epoch_seconds": 5, "images_per_second": 40})
    return run.run_id


# --- localhost only ------------------------------------------------------------------------------
def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port`, from /proc/net/tcp{,6} (state 0A = LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_server_listens_on_localhost_only_by_default(tmp_path):
    # Started as `make run` starts it, without --server.address: .streamlit/config.toml decides.
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/serve.py", "--server.port", str(port),
         "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, "EFFLAB_RUNS_DIR": str(tmp_path / "runs")}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        addresses = _listening_addresses(port)
        # 0100007F is 127.0.0.1 in /proc's little-endian hex; an IPv6 loopback would be ...01000000.
        assert addresses and addresses <= {"0100007F", "00000000000000000000000001000000"}, addresses
    finally:
        server.terminate()
        server.wait(15)
        log.close()


# --- the control token ---------------------------------------------------------------------------
def test_without_a_token_everything_works_as_before(app):
    at = app(TRAIN)
    assert not _token_box(at)
    assert not _button(at, "Start training").disabled
    assert control.configured_token() is None   # and no secrets file is needed for that


def test_the_token_makes_the_teacher_and_everyone_may_start(app, monkeypatch, tmp_path):
    """Students start their own runs with a token set; only the token unlocks the runs that are not
    theirs (here one from the command line), on every page of the session."""
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    run_id = _finished_run(tmp_path / "runs")
    at = app(TRAIN)
    (box,) = _token_box(at)
    assert box.proto.type == box.proto.PASSWORD
    assert not _button(at, "Start training").disabled
    assert not any(run_id in o for sb in at.selectbox if sb.key == "resume_run" for o in sb.options)

    box.input("guess").run()
    assert any("not the control token" in w.value for w in at.sidebar.warning)

    _token_box(at)[0].input(TOKEN).run()
    assert any("unlocked" in c.value for c in at.sidebar.caption)
    assert any(run_id in o for o in at.selectbox(key="resume_run").options)   # the teacher resumes any run
    assert not _button(at, "Resume").disabled

    # The token is remembered across pages of the same browser session.
    at.switch_page(RUNS).run()
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert not _button(at, "Delete").disabled
    assert run_id in at.dataframe[0].value["run"].tolist()


def test_viewing_needs_no_token_but_acting_does(app, monkeypatch, tmp_path):
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    runs = tmp_path / "runs"
    run_id = _finished_run(runs)
    # Every viewing page renders fully without the token.
    curves = app(CURVES, runs_dir=runs)
    assert len(curves.get("plotly_chart")) >= 4
    runs_page = app(RUNS, runs_dir=runs)
    assert runs_page.dataframe[0].value["run"].tolist() == [run_id]
    runs_page.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    runs_page.run()
    assert _button(runs_page, "Delete").disabled
    assert _button(runs_page, "Compare").disabled is False     # looking is free
    train = app(TRAIN, runs_dir=runs)
    assert not [sb for sb in train.selectbox if sb.key == "resume_run"]    # nothing of theirs to resume


def test_token_from_secrets_toml(app):
    at = app(TRAIN, secrets={control.SECRET_KEY: TOKEN})
    assert _token_box(at) and not _unlocked(at)
    _token_box(at)[0].input(TOKEN).run()
    assert _unlocked(at)


def test_a_student_cannot_start_from_a_file_on_the_server(app, monkeypatch, tmp_path):
    """With a token set, a weights file on the server is the teacher's: a student's Start that
    names one is refused (nothing created), whether the file exists or not."""
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    existing = tmp_path / "efficientnetb0_notop.h5"
    existing.write_bytes(b"any bytes")
    at = app(TRAIN)
    at.session_state["cfg_weights"] = "file"
    at.run()
    at.text_input(key="weights_file").input(str(existing)).run()
    _button(at, "Start training").click().run()
    assert not at.exception
    assert any(control.SERVER_PATHS_HELP in e.value for e in at.error), [e.value for e in at.error]
    assert not run_folders(tmp_path / "runs")


# --- guessing the token -------------------------------------------------------------------------
def _guess(at, text):
    _token_box(at)[0].input(text).run()
    assert not at.exception, [e.value for e in at.exception]


def _unlocked(at) -> bool:
    return any("Controls unlocked" in c.value for c in at.sidebar.caption)


def _waiting(at) -> list[str]:
    return [e.value for e in at.sidebar.error if "Too many wrong tokens" in e.value]


def test_wrong_guesses_make_the_session_wait_longer_each_time(app, monkeypatch, clock):
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    at = app(RUNS)
    for number in range(control.SESSION_FREE_GUESSES + 1):        # the free ones, then one that costs 2 s
        _guess(at, f"guess-{number}")
        assert any("not the control token" in w.value for w in at.sidebar.warning)
        assert not _waiting(at)
    _guess(at, TOKEN)                                            # the right token, but too soon: not checked
    (message,) = _waiting(at)
    assert "Try again in 2 s" in message
    assert not _unlocked(at)
    clock[0] += 2.5
    _guess(at, "guess-again")                                    # now checked: wrong, and the wait doubles
    clock[0] += 3
    _guess(at, TOKEN)
    assert "Try again in 1 s" in _waiting(at)[0] and not _unlocked(at)
    clock[0] += 1.5
    _guess(at, TOKEN)
    assert not _waiting(at) and _unlocked(at)


def test_guesses_from_fresh_sessions_are_limited_per_server(app, monkeypatch, clock):
    """A new browser session per guess escapes the session's limit, not the server's."""
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    for number in range(control.SERVER_FREE_GUESSES + 1):
        _guess(app(RUNS), f"guess-{number}")
    teacher = app(RUNS)
    _guess(teacher, TOKEN)
    assert "Try again in 2 s" in _waiting(teacher)[0] and not _unlocked(teacher)
    clock[0] += 2.5
    _guess(teacher, TOKEN + " ")                                  # a slip: the server now waits 4 s
    _guess(teacher, TOKEN)
    assert _waiting(teacher) and not _unlocked(teacher)
    clock[0] += 4.5
    _guess(teacher, TOKEN)
    assert not _waiting(teacher) and _unlocked(teacher)


def test_backoff_doubles_up_to_its_cap_and_forgets_a_quiet_past():
    backoff = control.Backoff(free=2, max_wait=10.0)
    waits = []
    for failure in range(7):
        backoff.failed(100.0)
        waits.append(backoff.wait(100.0))
    assert waits == [0, 0, 2, 4, 8, 10, 10]
    assert backoff.wait(100.0 + control.FORGET_AFTER_S + 1) == 0 and backoff.failures == 0


# --- forged clicks: the browser sends what it likes; every action checks the token itself ---------
# Each test sends the widget event of a button drawn disabled (the controls locked: a token is
# set and this session never entered it), as a hand-written websocket message would, and checks
# that nothing happened to the runs. Two lines of defence stand in the way: Streamlit 1.67 drops
# a value sent for a widget registered disabled (runtime/state/session_state.py), and every
# action checks the token itself (the one line left for on_click callbacks, which run before the
# script redraws the button, and for buttons inside a popover that is itself disabled).
def _forge(button):
    """Clicks `button` even if drawn disabled: AppTest refuses that (a browser would); a forger does not."""
    button._value = True
    return button


def _locked(monkeypatch):
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)


def _select_first_run(at):
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    return at


def _state_of(runs_dir: Path, run_id: str) -> str:
    return RunStore(runs_dir).get(run_id).read_status()["state"]


def test_a_forged_delete_is_refused(app, monkeypatch, tmp_path):
    _locked(monkeypatch)
    runs = tmp_path / "runs"
    run_id = _finished_run(runs)
    at = _select_first_run(app(RUNS, runs_dir=runs))
    delete = _button(at, "Delete")
    assert delete.disabled
    _forge(delete).run()                          # would open the confirmation dialog
    assert not at.exception
    assert not [b for b in at.button if b.label == "Delete"], "a forged click opened the dialog"
    assert (runs / run_id / "config.json").exists() and _state_of(runs, run_id) == "completed"


def test_a_forged_resume_is_refused_on_the_runs_page(app, monkeypatch, tmp_path):
    _locked(monkeypatch)
    runs = tmp_path / "runs"
    run_id = _finished_run(runs)
    at = _select_first_run(app(RUNS, runs_dir=runs))
    resume_now = _button(at, "Resume now")       # inside a popover drawn disabled; itself enabled
    _forge(resume_now).run()
    assert not at.exception
    assert any(control.LOCKED_HELP in e.value for e in at.error)
    assert _state_of(runs, run_id) == "completed" and len(RunStore(runs).get(run_id).read_metrics()) == 1
    from dashboard import state
    assert state.job_manager().active_run_id is None


def test_the_train_page_offers_no_resume_of_someone_elses_run(app, monkeypatch, tmp_path):
    """Its Resume list holds only the runs this browser may resume (a forged Resume of another's
    run is the Runs page's test above: there every run is listed)."""
    _locked(monkeypatch)
    runs = tmp_path / "runs"
    run_id = _finished_run(runs)
    at = app(TRAIN, runs_dir=runs)
    assert not [sb for sb in at.selectbox if sb.key == "resume_run"]
    assert not [b for b in at.button if "Resume" in b.label]
    assert _state_of(runs, run_id) == "completed"


def test_a_forged_evaluate_is_refused(app, monkeypatch, tmp_path):
    _locked(monkeypatch)
    runs = tmp_path / "runs"
    run_id = _finished_run(runs)
    checkpoint = runs / run_id / "checkpoints" / "last.keras"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(b"not looked at: the click is refused before the checkpoint is loaded")
    at = app(CONFUSION, runs_dir=runs, run=run_id)
    evaluate = next(b for b in at.button if b.key == "evaluate_now")
    assert evaluate.disabled
    _forge(evaluate).run()
    assert not at.exception
    assert not any("Evaluat" in e.value for e in at.error)    # it never got as far as loading the checkpoint
    assert not (runs / run_id / "predictions.npz").exists()


@pytest.mark.slow
@pytest.mark.small_network
def test_a_forged_stop_is_refused(app, monkeypatch, tmp_path, tiny_config):
    """A real run trains; a forged Stop from a locked session leaves it training."""
    _locked(monkeypatch)
    runs = tmp_path / "runs"
    at = app(TRAIN, runs_dir=runs)
    from dashboard import state
    manager = state.job_manager()
    run_id = manager.start(tiny_config.replace(epochs=50))
    try:
        at.run()
        stop = _button(at, "Stop")
        assert stop.disabled
        _forge(stop).run()
        assert not at.exception
        assert manager.active_run_id == run_id
        assert _state_of(runs, run_id) not in ("stopping", "stopped")
        assert manager.progress(run_id).get("state") not in ("stopping", "stopped")
    finally:
        manager.stop(run_id)
        assert manager.wait(300)
    assert _state_of(runs, run_id) in ("stopped", "completed")


def test_unreadable_secrets_file_locks_rather_than_opens(monkeypatch):
    from streamlit.errors import StreamlitSecretNotFoundError

    class BrokenSecrets:
        def get(self, key, default=None):
            raise StreamlitSecretNotFoundError("Error parsing secrets file at {path}: {error}",
                                               path=".streamlit/secrets.toml", error="Invalid value (line 1)")

    class NoSecrets:
        def get(self, key, default=None):
            raise StreamlitSecretNotFoundError("No secrets found. Valid paths ...: {file_paths}", file_paths="x")

    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    monkeypatch.setattr(st, "secrets", NoSecrets())
    assert control.configured_token() is None and control.can_start()
    monkeypatch.setattr(st, "secrets", BrokenSecrets())
    assert control.configured_token() is not None and not control.can_start() and not control.is_teacher()
    assert not control.may_act(None) and not control.may_use_server_paths()
    monkeypatch.setattr(st, "secrets", {control.SECRET_KEY: 1234})   # a number in TOML is still a token
    assert control.configured_token() == "1234"


# --- nothing runs code from a file ---------------------------------------------------------------
@pytest.mark.slow
def test_keras_models_load_in_safe_mode(tmp_path, monkeypatch):
    import keras

    from core.training.model import load_checkpoint
    from core.errors import CheckpointError

    sentinel = tmp_path / "code-ran"
    monkeypatch.setenv("EFFLAB_SENTINEL", str(sentinel))   # no closure: Keras serialises the bytecode
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["EFFLAB_SENTINEL"], "w").close(), x)[1])(inputs)
    path = tmp_path / "evil.keras"
    keras.Model(inputs, outputs).save(path)
    sentinel.unlink()   # building the model above ran the lambda once
    with pytest.raises(CheckpointError, match=r"(?i)checkpoint .*evil.keras cannot be loaded .*lambda"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_predictions_with_pickled_objects_are_refused(tmp_path):
    run = RunStore(tmp_path / "runs").create(TrainConfig())
    np.savez(run.path / "predictions.npz", y_true=np.array([object()], dtype=object),
             y_prob=np.zeros((1, 10)))
    with pytest.raises(ValueError, match="pickle"):
        run.read_predictions()


# Loading calls that can run code from a file: (pattern, unless the line also says, what).
RISKY = [
    (re.compile(r"\bpickle\.loads?\("), None, "pickle.load"),
    (re.compile(r"\bUnpickler\("), None, "a pickle.Unpickler"),
    (re.compile(r"allow_pickle\s*=\s*True"), None, "allow_pickle=True"),
    (re.compile(r"\bnp\.load\("), "allow_pickle=False", "np.load without allow_pickle=False"),
    (re.compile(r"\b(models|saving)\.load_model\("), "safe_mode=True", "load_model without safe_mode=True"),
    (re.compile(r"import .*\bload_model\b"), None, "keras's load_model imported bare"),
    (re.compile(r"safe_mode\s*=\s*False"), None, "safe_mode=False"),
    (re.compile(r"\bimport (joblib|dill|cloudpickle|shelve|marshal)\b"), None, "another pickle-like loader"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), None, "eval/exec"),
    (re.compile(r"\byaml\.load\("), None, "yaml.load"),
]


def test_no_code_path_unpickles_except_the_restricted_unpickler():
    problems = []
    for path in sorted([*ROOT.glob("core/**/*.py"), *ROOT.glob("dashboard/*.py"), *ROOT.glob("pages/*.py"),
                        *ROOT.glob("bench/*.py")]):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            for pattern, unless, what in RISKY:
                if pattern.search(code) and not (unless and unless in code):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    # The one sanctioned unpickler: core/data/cifar10.py's _RestrictedUnpickler(pickle.Unpickler).
    allowed = [p for p in problems if p.startswith("core/data/cifar10.py") and "Restricted" in p]
    assert [p for p in problems if p not in allowed] == []
