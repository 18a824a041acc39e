"""The Sweep page's set-up form: widgets in, a W&B sweep configuration (a dict) out, which
core/sweeps/sweep_file.py validates exactly as it validates a file. The page shows the same dict as
YAML, so what was clicked can be run again with `python -m core sweep run`."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.settings.config import declaration, field_type
from core.settings.presets import PRESET_NAMES
from core.store.ownership import queue_per_person
from core.sweeps.spec import METHODS, PRUNINGS

# Settings a class varies most; each with how it varies by default and its starting values.
SWEEPABLE = {
    "learning_rate": ("log range", "0.0001, 0.003"),
    "fine_tune_from_block": ("values", "6, 4"),
    "batch_size": ("values", "64, 128"),
    "image_size": ("values", "32, 64"),
    "label_smoothing": ("range", "0.0, 0.2"),
    "augment_crop_padding": ("values", "0, 4"),
    "optimizer": ("values", "adam, adamw"),
    "weight_decay": ("log range", "0.0001, 0.05"),
    "dropout": ("range", "0.1, 0.5"),
}
HOW = {"log range": "log_uniform_values", "range": None, "values": None}
METHOD_LABELS = {"grid": "grid", "random": "random", "bayes": "TPE (Bayesian)"}
METHOD_HELP = ("grid: every combination of the values; random: draws from the ranges; TPE: Optuna's Bayesian "
               "search, which draws more where earlier trials did well.")
PRUNING_LABELS = {"none": "none", "median": "median", "hyperband": "Hyperband"}
PRUNING_HELP = ("After each epoch a trial's validation accuracy is compared with the other trials' at that epoch: "
                "median stops it when it is behind their median, Hyperband keeps the best third at each rung. "
                "A stopped trial is 'pruned', its curve kept.")


def _numbers_or_words(text: str, name: str) -> list[Any]:
    kind = field_type(name)
    items = [part.strip() for part in text.split(",") if part.strip()]
    out = []
    for item in items:
        try:
            out.append(int(item) if kind == "int" else float(item) if kind == "float" else item)
        except ValueError:
            out.append(item)   # left as typed: validation names the setting and the bad value
    return out


def _parameter(name: str) -> dict:
    """One varied setting's spec from its row of widgets."""
    how_default, text_default = SWEEPABLE[name]
    numeric = field_type(name) in ("int", "float")
    ways = ["log range", "range", "values"] if numeric else ["values"]
    c1, c2 = st.columns([1, 2])
    how = c1.selectbox(declaration(name).label, ways, index=ways.index(how_default), key=f"sweep_how_{name}")
    hint = "min, max" if how != "values" else "values, separated by commas"
    text = c2.text_input(f"{declaration(name).label}: {hint}", value=text_default, key=f"sweep_values_{name}")
    values = _numbers_or_words(text, name)
    if how == "values":
        return {"values": values}
    spec = {"min": values[0] if values else None, "max": values[1] if len(values) > 1 else None}
    return {**spec, "distribution": HOW[how]} if HOW[how] else spec


def sweep_config(default_name: str) -> dict:
    """The whole form; returns the W&B-format configuration it describes."""
    c1, c2 = st.columns(2)
    name = c1.text_input("Sweep name", value=default_name, max_chars=40, key="sweep_name")
    preset = c2.selectbox("Start every trial from", PRESET_NAMES, key="sweep_preset",
                          help="A preset's settings; the rest of the form changes a few of them.")
    varied = st.multiselect("Settings to vary", list(SWEEPABLE), default=["learning_rate", "fine_tune_from_block"],
                            format_func=lambda n: declaration(n).label, key="sweep_varied")
    parameters = {name_: _parameter(name_) for name_ in varied}
    f1, f2, f3 = st.columns(3)
    parameters["epochs"] = {"value": f1.number_input("Epochs per trial", 1, 50, 2, key="sweep_epochs")}
    parameters["train_limit"] = {"value": f2.number_input("Training images (0 = all)", 0, 50_000, 2_000, step=500,
                                                          key="sweep_train_limit")}
    parameters["val_fraction"] = {"value": f3.number_input("Validation share", 0.0, 0.5, 0.1, step=0.05,
                                                           key="sweep_val_fraction")}
    m1, m2, m3, m4 = st.columns(4)
    method = m1.selectbox("Method", METHODS, index=2, format_func=METHOD_LABELS.get, key="sweep_method",
                          help=METHOD_HELP)
    run_cap = m2.number_input("Trials", 1, queue_per_person(), min(6, queue_per_person()), key="sweep_trials",
                              help="At most what one person may have waiting (EFFLAB_QUEUE_PER_PERSON).")
    minutes = m3.number_input("Minutes (0 = no limit)", 0, 24 * 60, 0, key="sweep_minutes")
    pruning = m4.selectbox("Pruning", PRUNINGS, index=1, format_func=PRUNING_LABELS.get, key="sweep_pruning",
                           help=PRUNING_HELP)
    config = {"name": name, "method": method, "metric": {"name": "val_accuracy", "goal": "maximize"},
              "parameters": {"preset": {"value": preset}, **parameters}, "run_cap": int(run_cap)}
    if minutes:
        config["minutes"] = int(minutes)
    if pruning == "hyperband":
        config["early_terminate"] = {"type": "hyperband", "min_iter": 1, "eta": 3}
    elif pruning == "median":
        config["pruning"] = "median"
    return config
