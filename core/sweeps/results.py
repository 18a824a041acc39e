"""A sweep's results as plain data for pages and slides: one row per trial, each trial's curve,
Optuna's parameter importances and the sentence that says what mattered."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from core.settings.config import declaration
from core.store.runs import RunNotFoundError
from core.sweeps.study import RUN_ATTR, Sweep

log = logging.getLogger(__name__)
METRIC_WORDS = {"val_accuracy": "validation accuracy", "test_accuracy": "test accuracy",
                "val_loss": "validation loss"}


@dataclass(frozen=True)
class TrialResult:
    """One trial: `state` is Optuna's once told (complete, pruned, fail), else its run's (queued,
    running, ...), or "asked" before its run exists; `value` the metric (a pruned trial's last
    reported figure)."""

    number: int
    run_id: str
    state: str
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None

    @property
    def label(self) -> str:
        return f"trial {self.number + 1}"


def trial_results(sweep: Sweep) -> list[TrialResult]:
    runs = {s.run_id: s.state for s in sweep.store.list(kinds=None)}
    results = []
    for trial in sweep.trials():
        run_id = trial.user_attrs.get(RUN_ATTR, "")
        told = trial.state.name != "RUNNING"
        state = trial.state.name.lower() if told else runs.get(run_id, "asked" if not run_id else "gone")
        value = trial.value if trial.value is not None else _last(trial.intermediate_values)
        results.append(TrialResult(trial.number, run_id, state, dict(trial.params), value))
    return results


def _last(values: dict[int, float]) -> float | None:
    return values[max(values)] if values else None


def trial_curves(sweep: Sweep, results: list[TrialResult]) -> dict[int, list[tuple[int, float]]]:
    """{trial number: [(epoch, the per-epoch figure)]} from each trial's run (its metrics)."""
    column = sweep.spec.epoch_metric
    curves = {}
    for result in results:
        if not result.run_id:
            continue
        try:
            rows = sweep.store.get(result.run_id).read_metrics()
        except RunNotFoundError:
            continue
        curves[result.number] = [(int(r["epoch"]), float(r[column])) for r in rows
                                 if isinstance(r.get(column), float) and math.isfinite(r[column])]
    return curves


def importances(sweep: Sweep) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator, fANOVA) over the completed trials;
    {} until there are two with different results."""
    import optuna
    complete = [t for t in sweep.trials() if t.state.name == "COMPLETE"]
    if len(complete) < 2 or len({t.value for t in complete}) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(sweep.study))
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:   # e.g. a setting that never varied
        log.info("sweep %s: no importances yet (%s)", sweep.name, exc)
        return {}


def setting_label(name: str) -> str:
    try:
        return declaration(name).label
    except KeyError:
        return name


def importance_sentence(sweep: Sweep, scores: dict[str, float], results: list[TrialResult]) -> str:
    """"Learning rate explains most of the spread (importance 0.83): validation accuracy 0.912 at
    0.0003, 0.623 at 0.01." — the most important setting, at the best and the worst completed trial."""
    done = [r for r in results if r.state == "complete" and r.value is not None]
    if not scores or len(done) < 2:
        return ""
    name, score = max(scores.items(), key=lambda item: item[1])
    ordered = sorted(done, key=lambda r: r.value, reverse=sweep.spec.goal == "maximize")
    best, worst = ordered[0], ordered[-1]
    share = "most of the spread" if score >= 0.5 else "more of the spread than any other setting"
    metric = METRIC_WORDS[sweep.spec.metric]
    return (f"{setting_label(name)} explains {share} (importance {score:.2f}): {metric} {best.value:.3f} at "
            f"{_shown(best.params.get(name))}, {worst.value:.3f} at {_shown(worst.params.get(name))}.")


def _shown(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
