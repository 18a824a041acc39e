"""Every setting is declared once (core/settings/config.py field metadata), and validation, the CLI's flags
and the Train page's widgets all follow the declaration. Walks every TrainConfig field, so a new
setting is checked here without an edit: its bounds and choices are enforced by validation, it has
a flag whose help is the declared help, and a widget whose range or options are the declared ones."""

from __future__ import annotations

import math
import re

import pytest

from core.__main__ import build_parser
from core.settings.config import GROUPS, ConfigError, TrainConfig, declaration, declared_fields, field_type

TRAIN = "../pages/train.py"
NAMES = [f.name for f in declared_fields()]
# Settings that must hold for a bound to be tried alone (fine-tuning needs a frozen base; with 1000
# epochs no count setting is beyond `epochs`).
CONTEXT = {"freeze_base": True, "epochs": 1000}
# The largest progressive start size is 32 below the largest image size, whose batch must be small.
CONTEXT_OF = {"progressive_start_size": {"image_size": 600, "batch_size": 1}}


def _accepts(name, value) -> bool:
    try:
        TrainConfig.from_dict({**CONTEXT, **CONTEXT_OF.get(name, {}), name: value})
    except ConfigError as exc:
        assert exc.field == name, f"{name}={value!r} refused for another field: {exc}"
        return False
    return True


def _outside(value, direction):
    return value + direction if isinstance(value, int) else math.nextafter(value, direction * math.inf)


def test_every_field_is_declared():
    assert "jit_compile" in NAMES and "plateau_factor" in NAMES
    for f in declared_fields():
        s = f.metadata["setting"]
        assert s.group in GROUPS and s.label and s.help.endswith((".", "...", "…")), f.name
        assert field_type(f.name) in ("int", "float", "bool", "str"), f.name
        if field_type(f.name) in ("int", "float"):
            assert s.low is not None and s.high is not None and s.low < s.high, f.name
        elif field_type(f.name) == "str":
            assert s.choices and getattr(TrainConfig(), f.name) in s.choices, f.name
            assert set(s.form_choices) <= set(s.choices) and set(s.choice_labels) <= set(s.choices), f.name
        for condition in (s.only_when, s.no_effect_when):
            if condition:
                assert condition[0] in NAMES, f.name


@pytest.mark.parametrize("name", NAMES)
def test_validation_enforces_the_declaration(name):
    s = declaration(name)
    kind = field_type(name)
    if kind == "bool":
        assert _accepts(name, True) and _accepts(name, False) and not _accepts(name, 1)
        return
    if kind == "str":
        assert all(_accepts(name, choice) for choice in s.choices)
        assert not _accepts(name, "no-such-" + name)
        with pytest.raises(ConfigError) as caught:
            TrainConfig.from_dict({name: "no-such-" + name})
        assert str(caught.value) == f"{name}: expected {s.allowed_text()}; got 'no-such-{name}'"
        if s.path_allowed:    # a path is read without asking the file system (check_startable does)
            assert _accepts(name, "/nowhere/efficientnetb0_notop.h5")
        return
    cast = int if kind == "int" else float
    low, high = cast(s.low), cast(s.high)
    assert _accepts(name, high) and not _accepts(name, _outside(high, +1))
    assert _accepts(name, low) != s.low_open
    assert not _accepts(name, _outside(low, -1)) or _outside(low, -1) == s.special
    if s.low_open:
        assert _accepts(name, _outside(low, +1))
    if s.special is not None:
        assert _accepts(name, cast(s.special))
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({**CONTEXT, **CONTEXT_OF.get(name, {}), name: _outside(high, +1)})
    assert str(caught.value).startswith(f"{name}: expected {s.range_text()}; got ")


def test_every_field_has_a_cli_flag_with_the_declared_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    for name in NAMES:
        s = declaration(name)
        action = flags[name]
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        help_text = action.help.replace("%%", "%")
        assert help_text.startswith(s.plain_help) and s.allowed_text() in help_text, name
        assert f"default {getattr(TrainConfig(), name)}" in help_text
        for choice in s.choices:
            assert choice in action.metavar, name
    assert "100%" in train.format_help()             # help texts survive argparse's %-formatting
    assert "transfer learning (Keras guide (https://keras.io/guides/transfer_learning/))" in " ".join(
        train.format_help().split())                # Markdown links read as plain text on a terminal


MEASUREMENT = re.compile(r"images/s|\bmeasur|\bour \b|table [A-Z]\b|RECIPES|\b20\d\d-\d\d|\d+(\.\d+)?x faster")
LINK = re.compile(r"\[[^\]]+\]\((https://[^)\s]+)\)")


def test_help_texts_are_plain_and_short_with_links_not_measurements():
    """Issue 32: a sentence or two of plain language a student reads in the tooltip, the technical
    term linked where it has one; measured figures live in docs/RECIPES.md, not here."""
    linked = 0
    for name in NAMES:
        text = declaration(name).help
        assert not MEASUREMENT.search(text), (name, MEASUREMENT.search(text).group(0))
        words = len(LINK.sub("link", text).split())
        assert words <= 60, (name, words)
        linked += bool(LINK.search(text))
    assert linked >= 20                              # the terms a student looks up have a link


@pytest.fixture
def train_page(app_factory, tmp_path):
    return app_factory(tmp_path / "runs")(TRAIN)


def _widgets_by_key(at) -> dict:
    found = {}
    for kind in ("number_input", "slider", "selectbox", "toggle", "button_group"):
        for widget in getattr(at, kind):
            if (widget.key or "").startswith("cfg_"):
                found[widget.key[4:]] = (kind, widget)
    return found


def test_every_field_has_a_widget_that_agrees_with_the_declaration(train_page):
    """The widget's label, help, and range or options are the declared ones: a number box's bounds
    are the declared bounds (an open low end: the next float up; dropout's -1 below its bounds)."""
    widgets = _widgets_by_key(train_page)
    assert set(widgets) == set(NAMES)
    for name in NAMES:
        s = declaration(name)
        kind, widget = widgets[name]
        assert widget.label == s.label, name
        if kind != "button_group":
            assert widget.help.startswith(s.help), name
        if field_type(name) == "bool":
            assert kind == "toggle", name
        elif s.choices:
            options = [str(o) for o in widget.options]
            if kind == "button_group":
                assert options == [c.upper() for c in s.choices], name
            else:
                assert kind == "selectbox", name
                drawn = [c for c in s.choices if not s.form_choices or c in s.form_choices]
                assert options == [s.choice_labels.get(c, c) for c in drawn] + \
                    (["a weights file on this machine"] if s.path_allowed else []), name
        else:
            assert kind == ("slider" if s.slider else "number_input"), name
            low = math.nextafter(s.low, math.inf) if s.low_open else s.low
            low = s.special if s.special is not None and s.special < low else low
            assert (widget.min, widget.max) == (low, s.high), name
            assert (widget.proto.data_type == widget.proto.INT) == (field_type(name) == "int"), name
            if s.format:
                assert widget.proto.format == s.format, name


def test_only_when_greys_out_a_setting_without_effect(train_page):
    at = train_page
    widgets = _widgets_by_key(at)
    assert widgets["momentum"][1].disabled and not widgets["learning_rate"][1].disabled   # adam by default
    at.session_state["cfg_optimizer"] = "sgd"
    at.run()
    assert not _widgets_by_key(at)["momentum"][1].disabled

    # The fine-tuning rate means nothing once the head phase is skipped. (The fine-tuning epoch stays
    # open: a value other than 0 is refused then, and a greyed-out box could not be mended.)
    at.session_state["cfg_freeze_base"] = True
    at.run()
    assert not _widgets_by_key(at)["fine_tune_learning_rate"][1].disabled
    at.session_state["cfg_fine_tune_from_start"] = True
    at.run()
    widgets = _widgets_by_key(at)
    assert widgets["fine_tune_learning_rate"][1].disabled and not widgets["fine_tune_at_epoch"][1].disabled
    assert not widgets["fine_tune_from_block"][1].disabled
