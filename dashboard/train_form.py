"""The training form: one widget per TrainConfig field, generated from its declaration, plus presets.

Each widget is drawn from the field's `Setting` (core/settings/config.py): a toggle for a bool, a selectbox
for choices, a number box (or a slider) bounded exactly by the declared bounds. Labels, help texts, groups, steps
and formats come from there too, so a new setting appears here without an edit, and the form can
show every value the settings accept (and no number the settings refuse at its bounds).

Widgets keep their values in st.session_state under "cfg_<field>", so a preset is just a set of
values written there (from a button's on_click, before the widgets are drawn) and the page
survives reruns and page switches without losing the user's settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import streamlit as st

from core.settings.config import ConfigError, TrainConfig, check_startable, declaration, declared_fields, field_type
from core.settings.presets import RECIPES_DOC, Preset, dashboard_presets
from core.settings.variants import VARIANT_NAMES
from core.training.weights import imagenet_weights_obtainable
from dashboard import control

KEY_PREFIX = "cfg_"
WEIGHTS_FILE_KEY = "weights_file"      # the path typed when "a weights file" is chosen
FILE_CHOICE = "file"                   # the weights selectbox's entry for "a path, typed below"
FILE_CHOICE_LABEL = "a weights file on this machine"
DRAWN_APART = ("variant",)             # the page draws the variant picker above the variant's facts
COLUMNS = 4
# Said to viewers without the control token instead of whether their path exists on the server.
WEIGHTS_NOT_CHECKED = ("A weights file on the server is the teacher's to choose (control token in the sidebar); "
                       "choose ImageNet or random weights.")


@st.cache_data(ttl=300, show_spinner=False)
def _imagenet_b0_obtainable() -> bool:
    # Cached: behind a firewall that drops packets the reachability probe waits for its timeout,
    # and the presets are drawn on every rerun.
    return imagenet_weights_obtainable("b0")


def imagenet_available() -> bool:
    """Whether ImageNet weights for B0 can be found here or downloaded."""
    return _imagenet_b0_obtainable()


def presets() -> list[Preset]:
    """The one-click presets (core/settings/presets.py); the Quick demo becomes the from-scratch recipe
    where ImageNet weights can be neither found nor downloaded, and says what that reaches."""
    return dashboard_presets(_imagenet_b0_obtainable())


def what_we_tried() -> str:
    """docs/RECIPES.md, the measured table behind the presets, as Markdown (the Train page links it)."""
    return RECIPES_DOC.read_text(encoding="utf-8")


# --- what each widget offers, from the declarations -----------------------------------------------
def _key(name: str) -> str:
    return KEY_PREFIX + name


def widget_options(name: str) -> tuple[str, ...]:
    """The entries of a choice field's selectbox: the choices the form offers, plus "file" where
    a path is allowed."""
    s = declaration(name)
    return (s.form_choices or s.choices) + ((FILE_CHOICE,) if s.path_allowed else ())


def widget_range(name: str) -> tuple[int, int] | tuple[float, float]:
    """A number box's (min, max): the declared bounds. An open low end becomes the next number up
    (a number box's minimum is allowed), a special value below the bounds (dropout's -1) the minimum."""
    s = declaration(name)
    low = s.low
    if s.low_open:
        low = math.nextafter(low, math.inf)
    if s.special is not None and s.special < low:
        low = s.special
    if field_type(name) == "int":
        return int(low), int(s.high)
    return float(low), float(s.high)


def apply_settings(settings: dict) -> list[str]:
    """Writes settings into the widgets' state (call from on_click, before widgets are drawn).

    Returns what the form cannot show as given (a choice only the command line offers), in words;
    those widgets get the default instead.
    """
    defaults = TrainConfig().to_dict()
    notes = []
    for name, value in {**defaults, **settings}.items():
        s = declaration(name)
        if s.path_allowed and value not in s.choices:
            st.session_state[WEIGHTS_FILE_KEY], value = value, FILE_CHOICE
        elif s.choices and value not in widget_options(name):
            notes.append(f"{name}: the file's {value!r} is offered on the command line only; the form "
                         f"now shows {defaults[name]!r}")
            value = defaults[name]
        st.session_state[_key(name)] = value
    return notes


def ensure_defaults() -> None:
    for name, value in TrainConfig().to_dict().items():
        st.session_state.setdefault(_key(name), value)


def form_values() -> dict:
    values = {f.name: st.session_state.get(_key(f.name)) for f in declared_fields()}
    for f in declared_fields():
        if declaration(f.name).path_allowed and values[f.name] == FILE_CHOICE:
            values[f.name] = (st.session_state.get(WEIGHTS_FILE_KEY) or "").strip()
    return values


def build_config() -> tuple[TrainConfig | None, str]:
    """(config, "") or (None, the validation message naming the field)."""
    try:
        return TrainConfig.from_dict(form_values()), ""
    except ConfigError as exc:
        return None, str(exc)


def names_a_server_file(config: TrainConfig) -> bool:
    """Whether the settings name a file on the server (a weights file), not one of the choices."""
    return config.weights not in declaration("weights").choices


def start_refusal(config: TrainConfig) -> str:
    """Why this session may not start `config` now, in one line ("" when it may): the check every
    Start makes again inside its action (the form's, the finder's), a disabled button being only a hint."""
    if not control.can_start():
        return control.UNREADABLE_HELP
    if not control.may_use_server_paths() and names_a_server_file(config):
        return control.SERVER_PATHS_HELP
    return ""


def start_check(config: TrainConfig, may_use_server_paths: bool) -> tuple[str, str]:
    """(problem, note) of what only starting can check (core.settings.config.check_startable).

    Whether a path exists on the server is told only to a session that may use server paths
    (dashboard/control.py): to anyone else every path gets the same note, so the weights box
    cannot probe the server's files.
    """
    if not names_a_server_file(config):
        return "", ""
    if not may_use_server_paths:
        return "", WEIGHTS_NOT_CHECKED
    try:
        check_startable(config)
    except ConfigError as exc:
        return str(exc), ""
    return "", ""


# --- the widgets -----------------------------------------------------------------------------------
def _choice_label(name: str, value: str) -> str:
    if value == FILE_CHOICE and declaration(name).path_allowed:
        return FILE_CHOICE_LABEL
    return declaration(name).choice_labels.get(value, value)


def setting_widget(name: str, container, extra_help: str = "") -> None:
    """Draws the widget of one setting in `container`, as its declaration says."""
    s = declaration(name)
    key = _key(name)
    disabled = not s.in_effect(lambda other: st.session_state.get(_key(other)))
    help_text = f"{s.help} {extra_help}".strip()
    kind = field_type(name)
    if kind == "bool":
        container.toggle(s.label, key=key, help=help_text, disabled=disabled)
    elif s.choices:
        options = widget_options(name)
        if st.session_state.get(key) not in options:   # a value only the CLI offers: the default
            st.session_state[key] = getattr(TrainConfig(), name)
        container.selectbox(s.label, options, key=key, help=help_text, disabled=disabled,
                            format_func=lambda value: _choice_label(name, value))
        if s.path_allowed and st.session_state[key] == FILE_CHOICE:
            container.text_input("Weights file (path)", key=WEIGHTS_FILE_KEY,
                                 placeholder="/data/efficientnetb0_notop.h5", help=help_text)
    else:
        low, high = widget_range(name)
        step = None if s.step is None else (int(s.step) if kind == "int" else float(s.step))
        draw = container.slider if s.slider else container.number_input
        draw(s.label, low, high, step=step, format=s.format, key=key, help=help_text, disabled=disabled)


def group_names(group: str) -> list[str]:
    """The settings of `group` (core.settings.config.GROUPS) the form draws there, in declaration order."""
    return [f.name for f in declared_fields()
            if declaration(f.name).group == group and f.name not in DRAWN_APART]


def group_widgets(group: str, extra_help: Mapping[str, str] | None = None, columns: int = COLUMNS) -> None:
    """Every setting of `group`, in declaration order, `columns` to a row."""
    names = group_names(group)
    for start in range(0, len(names), columns):
        for column, name in zip(st.columns(columns), names[start:start + columns]):
            setting_widget(name, column, (extra_help or {}).get(name, ""))


def variant_picker() -> str:
    s = declaration("variant")
    return st.segmented_control(s.label, VARIANT_NAMES, key=_key("variant"), help=s.help,
                                format_func=str.upper, selection_mode="single") or "b0"
