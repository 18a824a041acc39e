"""Sweeps: many runs over a grid or a search of settings, on Optuna (issue 31).

    spec.py        a sweep as data, and the Optuna sampler and pruner it maps onto
    sweep_file.py  W&B-format sweep files (YAML or JSON) read and validated into a spec
    study.py       the sweep's Optuna study, in the lab's own database
    driver.py      one idempotent step: tell finished trials, queue new ones
    queueing.py    the dashboard's side: start, stop and drive sweeps through the scheduler
    results.py     importance, best trial; board.py: the class board's points and Pareto front
    commands.py    `python -m core sweep run | create | status | stop | list`

The trainer's side, the callback that reports each epoch and prunes, is core/training/pruning.py.

Trials are ordinary runs: queued, owned and limited like any other, named "<sweep> · trial N",
with `sweep` and `trial` in their status. Nothing here imports Streamlit or Plotly.
"""
