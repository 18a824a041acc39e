"""Bad input through every door: the same table of invalid settings through the CLI (flags and a
--config file) and the dashboard (a settings file, the form), and run ids from the URL. Each gets
one message naming the field, the allowed values and what was given; none gets a traceback."""

from __future__ import annotations

import json
import math

import pytest

from core.__main__ import main as cli_main
from core.settings.config import TrainConfig
from core.store.runs import RunStore
from conftest import ended, run_folders
from test_config import BAD_SETTINGS

TRAIN, CURVES, CONFUSION, MISTAKES = ("../pages/train.py", "../pages/curves.py", "../pages/confusion.py",
                                      "../pages/mistakes.py")

# Beyond test_config's table: what only a command line or a file can carry.
# (flags or file text, field named, text that must appear)
MORE_CLI_ROWS = [
    (["--learning-rate", "1e400"], "learning_rate", "a finite number; got inf"),
    (["--train-limit", "99999999999999999999"], "train_limit", "got 99999999999999999999"),
    (["--epochs", "three"], "epochs", "a whole number; got 'three'"),
    (["--image-size", ""], "image_size", "a whole number; got ''"),
    (["--variant", "../../b0"], "variant", "got '../../b0'"),
    (["--variant", "b7", "--image-size", "600", "--batch-size", "4096"], "batch_size", "at most 186 at 600 px"),
    ('{"variant": "b0", "lerning_rate": 0.1}', "lerning_rate", "one of the known settings"),
    ('{"variant": "b0"', "config", "valid JSON"),
    ('[1, 2, 3]', "config", "a JSON object of settings; got 'list'"),
    ('"b0"', "config", "a JSON object of settings; got 'str'"),
    ('{"epochs": 1e309}', "epochs", "a whole number; got inf"),
    ('{"batch_size": null}', "batch_size", "a whole number; got None"),
    ('{"variant": ["b0", "b1"]}', "variant", "text; got ['b0', 'b1']"),
    # Issue 13 #8: numbers a float cannot hold and nesting json cannot recurse into (OverflowError,
    # RecursionError: a traceback and exit 1 before).
    (["--learning-rate", "2" + "0" * 308], "learning_rate", "(0, 10]; got 2000"),
    ('{"learning_rate": 2' + "0" * 308 + "}", "learning_rate", "(0, 10]; got 2000"),
    ('{"dropout": -9' + "9" * 308 + "}", "dropout", "[0, 0.9]; got -999"),
    ('{"epochs": 1' + "0" * 5000 + "}", "config", "valid JSON"),
    ('{"head": ' + "[" * 50_000 + "]" * 50_000 + "}", "head", "not JSON nested over 32 levels deep"),
    ("[" * 100_000, "config", "not JSON nested over 32 levels deep"),
]


def _flags(changes: dict) -> list[str] | None:
    """The command-line flags for `changes`, or None where a shell cannot say it (a bool that is
    not a bool, a number given as text: on a command line "32" is the number 32)."""
    flags = []
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(TrainConfig(), name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                return None
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, str) and not isinstance(default, str):
            return None
        else:
            flags += [flag, str(value)]
    return flags


def _run_cli(capsys, args: list[str]) -> tuple[int, str]:
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_line(err: str, field: str, text: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {field}: expected "), err
    assert text in lines[0], err
    assert "Traceback" not in err


# --- the CLI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, field, text", BAD_SETTINGS, ids=[f"{f}={c}" for c, f, _ in BAD_SETTINGS])
def test_cli_config_file_names_the_field(tmp_path, capsys, changes, field, text):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(changes))
    code, err = _run_cli(capsys, ["--runs-dir", str(tmp_path / "runs"), "train", "--config", str(path)])
    assert code == 2
    _assert_one_line(err, field, text)
    assert not (tmp_path / "runs").exists()   # nothing was created


FLAG_ROWS = [(c, f, t) for c, f, t in BAD_SETTINGS if _flags(c) is not None]


@pytest.mark.parametrize("changes, field, text", FLAG_ROWS, ids=[f"{f}={c}" for c, f, _ in FLAG_ROWS])
def test_cli_flags_name_the_field(tmp_path, capsys, changes, field, text):
    code, err = _run_cli(capsys, ["--runs-dir", str(tmp_path / "runs"), "train", *_flags(changes)])
    assert code == 2
    # The value arrives as text, so "got 32.5" reads "got '32.5'" (and 0 is the text '0', not a
    # number): check the field, that allowed values are stated, and the value given.
    _assert_one_line(err, field, "; got ")
    given = changes[field]
    assert (str(given) if not (isinstance(given, float) and math.isnan(given)) else "nan") in err, err
    assert not (tmp_path / "runs").exists()


def test_cli_train_limit_beyond_the_data_is_refused_before_the_run(tmp_path, capsys, fixture_data_dir):
    code, err = _run_cli(capsys, ["--runs-dir", str(tmp_path / "runs"), "--data-dir", fixture_data_dir,
                                  "train", "--train-limit", "280", "--val-fraction", "0.2"])
    assert code == 2
    _assert_one_line(err, "train_limit", "at most 240, the training images left after val_fraction=0.2")
    assert "got 280" in err
    assert not run_folders(tmp_path / "runs")


@pytest.mark.parametrize("given, field, text", MORE_CLI_ROWS, ids=[str(g)[:40] for g, _, _ in MORE_CLI_ROWS])
def test_cli_more_bad_input(tmp_path, capsys, given, field, text):
    if isinstance(given, str):
        path = tmp_path / "settings.json"
        path.write_text(given)
        given = ["--config", str(path)]
    code, err = _run_cli(capsys, ["--runs-dir", str(tmp_path / "runs"), "train", *given])
    assert code == 2
    _assert_one_line(err, field, text)


def test_cli_missing_weights_file_is_refused_when_the_run_starts(tmp_path, capsys, fixture_data_dir):
    """Issue 13 #3: a config naming a weights file is read anywhere; `train` refuses it (exit 2, one
    line) when the file is not there, before a run folder is made (JobManager.start calls
    core.settings.config.check_startable)."""
    gone = tmp_path / "efficientnetb0_notop.h5"
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"weights": str(gone), "epochs": 1}))
    code, err = _run_cli(capsys, ["--runs-dir", str(tmp_path / "runs"), "--data-dir", fixture_data_dir,
                                  "train", "--config", str(path)])
    assert code == 2
    _assert_one_line(err, "weights", f"the path of an existing weights file; got {str(gone)!r}")
    assert not run_folders(tmp_path / "runs")


def test_cli_unreadable_config_files(tmp_path, capsys):
    binary = tmp_path / "model.keras"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00garbage")
    code, err = _run_cli(capsys, ["train", "--config", str(binary)])
    assert code == 2 and err.startswith("error: --config: expected a UTF-8 JSON text file") and "Traceback" not in err
    code, err = _run_cli(capsys, ["train", "--config", str(tmp_path / "missing.json")])
    assert code == 2 and "error: --config: cannot read" in err and "No such file" in err
    code, err = _run_cli(capsys, ["train", "--config", str(tmp_path)])
    assert code == 2 and "error: --config: cannot read" in err


def test_the_tables_hold_at_least_thirty_rows_each():
    assert len(BAD_SETTINGS) + len(MORE_CLI_ROWS) >= 30
    assert len(FLAG_ROWS) >= 30
    assert len(UPLOAD_ROWS) >= 30


# --- the dashboard -------------------------------------------------------------------------------
@pytest.fixture
def app(app_factory, tmp_path):
    """make(page, runs_dir=..., **query) -> an AppTest that has run that page (runs in tmp_path)."""
    return app_factory(tmp_path / "runs")


def _button(at, text):
    return next(b for b in at.button if text in b.label)


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


UPLOAD_ROWS = [(json.dumps(c), f, t) for c, f, t in BAD_SETTINGS] + \
    [(g, f, t) for g, f, t in MORE_CLI_ROWS if isinstance(g, str)]


def test_dashboard_settings_file_names_the_field_for_every_row(app):
    """Every row of the table, uploaded as a settings file on the Train page (one AppTest session,
    as one user trying file after file): refused by name, the form left as it was."""
    at = app(TRAIN)
    form_before = {f"cfg_{name}": at.session_state[f"cfg_{name}"] for name in TrainConfig().to_dict()}
    failures = []
    for text, field, expected in UPLOAD_ROWS:
        at.file_uploader(key="settings_file").set_value(("bad.json", text.encode(), "application/json"))
        at.run()
        errors = [e for e in _errors(at) if e.startswith("**bad.json was not loaded:**")]
        shown = errors[0].split(":** ", 1)[1] if errors else ""
        if at.exception or not shown.startswith(f"{field}: expected ") or expected not in shown:
            failures.append((text, [e.value for e in at.exception] or _errors(at)))
        form_now = {k: at.session_state[k] for k in form_before}
        if form_now != form_before:
            failures.append((text, "the form changed"))
    assert failures == []


def test_dashboard_settings_file_binary_then_good(app, tmp_path):
    at = app(TRAIN)
    at.file_uploader(key="settings_file").set_value(("weights.json", b"\x89HDF\r\n\x1a\n\xff", "application/json"))
    at.run()
    assert not at.exception
    assert any("expected a UTF-8 JSON text file" in e for e in _errors(at))
    # A good file (a run's config.json) fills the form, even with values at the edge of what the
    # settings accept: the number boxes' bounds are the declared ones, so nothing is changed.
    good = TrainConfig(variant="b1", epochs=7, batch_size=64, learning_rate=1e-8, dropout=-1.0,
                       plateau_factor=0.001, seed=2**31 - 1).to_json()
    at.file_uploader(key="settings_file").set_value(("config.json", good.encode(), "application/json"))
    at.run()
    assert not at.exception
    assert TrainConfig.from_dict({name: at.session_state[f"cfg_{name}"] for name in TrainConfig().to_dict()}) \
        == TrainConfig.from_json(good)
    assert [w.value for w in at.warning] == []
    assert not any("Check the settings" in e for e in _errors(at))
    # A choice only the command line offers is said, and the form shows the default instead.
    cli_only = TrainConfig(distribution="multi_worker", epochs=5).to_json()
    at.file_uploader(key="settings_file").set_value(("cluster.json", cli_only.encode(), "application/json"))
    at.run()
    assert not at.exception
    assert at.session_state["cfg_epochs"] == 5 and at.session_state["cfg_distribution"] == "auto"
    assert any(w.value.startswith("distribution: the file's 'multi_worker' is offered on the command line only")
               for w in at.warning), [w.value for w in at.warning]


# Values the form's widgets can hold but the settings cannot have together (or at all).
FORM_ROWS = [
    ({"dropout": -0.5}, "dropout", "[0, 0.9]; got -0.5"),
    ({"train_limit": 5}, "train_limit", "at least 10 (one per class); got 5"),
    # Needs the data: the fixture's 30 images per class leave 27 each after a 10% validation split.
    ({"train_limit": 300}, "train_limit", "at most 270, the training images left after val_fraction=0.1"),
    ({"freeze_base": False, "fine_tune_at_epoch": 2}, "fine_tune_at_epoch", "0 unless freeze_base is true"),
    ({"lr_schedule": "cosine", "warmup_epochs": 4, "epochs": 4}, "warmup_epochs", "fewer than epochs (4)"),
    ({"early_stopping_patience": 2, "val_fraction": 0.0}, "early_stopping_patience", "when val_fraction is 0"),
    ({"lr_schedule": "plateau", "val_fraction": 0.0}, "lr_schedule", "plateau watches val_accuracy"),
    ({"variant": "b7", "image_size": 600, "batch_size": 4096}, "batch_size", "at most 186 at 600 px"),
    ({"image_size": 512, "batch_size": 300}, "batch_size", "at most 256 at 512 px"),
    ({"image_size": 120, "progressive_start_size": 96}, "progressive_start_size", "one of 88, 56; got 96"),
]


@pytest.mark.parametrize("changes, field, text", FORM_ROWS, ids=[f for _, f, _ in FORM_ROWS])
def test_dashboard_form_names_the_field_and_disables_start(app, changes, field, text):
    at = app(TRAIN)
    for name, value in changes.items():
        at.session_state[f"cfg_{name}"] = value
    at.run()
    assert not at.exception
    problems = [e for e in _errors(at) if e.startswith("**Check the settings:**")]
    assert len(problems) == 1 and f"{field}: expected " in problems[0] and text in problems[0], _errors(at)
    assert _button(at, "Start training").disabled


def test_form_widgets_cannot_hold_a_value_the_settings_refuse(app):
    """Out-of-range numbers cannot be typed into the form (Streamlit keeps a number box within its
    bounds), and every box's bounds are values the settings accept; what lies between the bounds
    but is still refused (dropout -0.5, combinations) is FORM_ROWS' job."""
    at = app(TRAIN)
    checked = set()
    for widget in at.number_input:
        key = widget.key or ""
        if not key.startswith("cfg_"):
            continue
        name = key[4:]
        as_type = int if widget.proto.data_type == widget.proto.INT else float
        # The bounds that hold only alongside another setting (the largest start size needs the
        # largest image, in a small batch).
        context = {"fine_tune_at_epoch": {"freeze_base": True, "epochs": 1000},
                   "progressive_start_size": {"image_size": 600, "batch_size": 1}}.get(name, {})
        assert widget.min is not None and widget.max is not None, name
        for bound in (widget.min, widget.max):
            TrainConfig.from_dict({**context, name: as_type(bound)})   # raises if a bound is refused
        checked.add(name)
    assert len(checked) >= 18, checked


# --- run ids from the URL ------------------------------------------------------------------------
@pytest.fixture
def runs_with_a_symlink(tmp_path):
    runs = tmp_path / "runs"
    run = RunStore(runs).create(TrainConfig(epochs=1))
    ended(run, "completed", checkpoint_epoch=1)
    run.append_metrics({"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2,
                        "learning_rate": 1e-3, "epoch_seconds": 5, "images_per_second": 40})
    outside = tmp_path / "outside" / "20200101-000000-b0-0bad"
    outside.mkdir(parents=True)
    (outside / "status.json").write_text('{"state": "completed"}')
    (runs / outside.name).symlink_to(outside, target_is_directory=True)
    return runs, run.run_id, outside.name


BAD_IDS = ["../../etc", "/etc/passwd", "..", "20200101-000000-b0-0000", "20261125-142301-b0-3f9a/../../x",
           "[click](http://evil.example)", "%2e%2e%2f"]


@pytest.mark.parametrize("page", [CONFUSION, MISTAKES])
def test_run_ids_from_the_url_are_refused(app, runs_with_a_symlink, page):
    runs, good, linked = runs_with_a_symlink
    for bad in [*BAD_IDS, linked]:
        at = app(page, runs_dir=runs, run=bad)
        warnings = [w.value for w in at.warning if "There is no run" in w.value]
        assert len(warnings) == 1, (bad, [w.value for w in at.warning])
        assert "](" not in warnings[0] and "[" not in warnings[0]   # no Markdown link smuggled in
        assert at.sidebar.selectbox[0].value == good      # the page shows a real run instead
        assert linked not in at.sidebar.selectbox[0].options


def test_curves_ignore_unknown_and_escaping_ids(app, runs_with_a_symlink):
    runs, good, linked = runs_with_a_symlink
    at = app(CURVES, runs_dir=runs, runs=",".join([*BAD_IDS[:3], linked, good]))
    assert at.multiselect[0].value == [good]
    assert linked not in at.multiselect[0].options
