"""The Train page's first screen: one card per preset, read in seconds, started with one click.

Each card: the preset's name, what to expect on this machine as one big figure (the accuracy we
measured for the recipe, the minutes core's estimate gives for this device), one plain sentence,
and its own Start. The recipe, the measurements with their dates and machines, and "load these
settings into the form" are one click away, in Details. A preset this machine cannot run (no
ImageNet weights offline, a GPU recipe on a CPU) says so in one line instead of offering a Start
that fails or a figure it cannot reach.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.estimates.timing import run_estimate
from core.settings.presets import Preset
from dashboard import train_form

ESTIMATE_NOTE = "Accuracy as we measured each recipe; minutes estimated for this machine."
MAX_CARDS = 4          # in a row at 1280 px, each still wide enough for its figure and buttons


def minutes_text(seconds: float) -> str:
    """"4 min", "1 h 10 min": a whole run's length at a glance."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def figure_text(preset: Preset, seconds: float) -> str:
    """"≈ 90% · 4 min" (what to expect), or "≈ 4 min" where the accuracy was never measured."""
    accuracy = preset.expected_accuracy
    return f"≈ {100 * accuracy:.0f}% · {minutes_text(seconds)}" if accuracy is not None else f"≈ {minutes_text(seconds)}"


def preset_cards(presets: list[Preset], *, device: dict, train_images: Callable[[Preset], int],
                 imagenet_available: bool, start: Callable[[Preset], None], can_start: bool) -> None:
    """The cards of the presets this machine can run, side by side (`start(preset)` is a card's
    Start callback), then one line for each it cannot."""
    on_gpu = device.get("kind") == "gpu"
    problems = {p.name: p.cannot_run_here(imagenet_available=imagenet_available, on_gpu=on_gpu) for p in presets}
    runnable = [p for p in presets if not problems[p.name]]
    rows = [runnable[i:i + MAX_CARDS] for i in range(0, len(runnable), MAX_CARDS)]
    for column, preset in ((c, p) for row in rows for c, p in zip(st.columns(MAX_CARDS), row)):
        with column.container(border=True):
            st.markdown(f"**{preset.label}**")
            seconds = run_estimate(preset.config().to_dict(), train_images(preset), device).total
            st.markdown(f"##### {figure_text(preset, seconds)}")
            st.caption(preset.summary)
            st.button(":material/play_arrow: Start", key=f"start_{preset.name}", type="primary",
                      width="stretch", disabled=not can_start, on_click=start, args=(preset,),
                      help=f"Starts {plain_label(preset.label)} now, with its settings: one click.")
            with st.popover("Details", width="stretch"):
                _details(preset)
    st.caption(ESTIMATE_NOTE)
    # One line per reason, naming every preset it keeps off this machine.
    for reason in dict.fromkeys(problem for problem in problems.values() if problem):
        names = ", ".join(f"**{plain_label(p.label)}**" for p in presets if problems[p.name] == reason)
        st.caption(f":material/block: {names}: {reason}")


def _details(preset: Preset) -> None:
    st.markdown(preset.expectation)
    st.button("Load into the form below", key=f"preset_{preset.name}", on_click=train_form.apply_settings,
              args=(preset.settings,), help="Fills Your own settings with this recipe, to change a setting "
                                            "before Start.")


def plain_label(label: str) -> str:
    """The label without its icon: ":material/bolt: Quick demo" -> "Quick demo"."""
    return label.split(": ", 1)[1] if label.startswith(":material/") else label
