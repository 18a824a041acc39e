"""A sweep as data: what varies and how, what is measured, the budget and the pruning.

A `SweepSpec` is what a sweep file (core/sweeps/sweep_file.py) or the Sweep page turns into, and
what the study keeps in the database (as JSON, in its user attributes), so every process that
drives or trains the sweep rebuilds the same sampler and pruner from it. It maps onto Optuna's
own pieces only: distributions, GridSampler / RandomSampler / TPESampler, MedianPruner /
HyperbandPruner. Optuna is imported where those are built, never at import time.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = ("grid", "random", "bayes")              # bayes: Optuna's TPE
PRUNINGS = ("none", "median", "hyperband")
# What a trial is judged by, and its natural goal. test_accuracy is known only once a run ends,
# so its trials are pruned on val_accuracy, the closest figure known after each epoch.
METRICS = {"val_accuracy": "maximize", "test_accuracy": "maximize", "val_loss": "minimize"}
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "log_uniform_values", "q_uniform")
RANGES = ("uniform", "int_uniform", "log_uniform_values", "q_uniform")
# With fewer finished trials than this, the median is noise: pruning waits for them.
MEDIAN_STARTUP_TRIALS = 2
# TPE samples at random until this many trials have finished (Optuna's default is 10, more than
# a classroom sweep of 6 has): a third of the budget, at least 2.
TPE_STARTUP_SHARE = 3


@dataclass(frozen=True)
class Param:
    """One setting that the sweep varies (or fixes). `values` for constant and categorical;
    `low`/`high` (and `q`) for ranges; `integer` when the setting is a whole number."""

    name: str
    distribution: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None
    integer: bool = False

    @property
    def varies(self) -> bool:
        return self.distribution != "constant"

    def grid_values(self) -> list[Any]:
        """The values a grid walks through (int_uniform: every whole number in the range)."""
        if self.distribution == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        return list(self.values)

    def count(self) -> int:
        """How many grid values it has (without listing a large whole-number range)."""
        return int(self.high) - int(self.low) + 1 if self.distribution == "int_uniform" else len(self.values)

    def optuna_distribution(self):
        """The Optuna distribution that samples this setting."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        if self.distribution in ("constant", "categorical"):
            return CategoricalDistribution(list(self.values))
        log = self.distribution == "log_uniform_values"
        if self.integer:
            step = int(self.q) if self.q else 1
            return IntDistribution(int(self.low), int(self.high), log=log, step=step)
        return FloatDistribution(float(self.low), float(self.high), log=log, step=self.q)

    def describe(self) -> str:
        """"log-uniform 0.0001 … 0.01" or "one of b0, b1": for tables and messages."""
        if self.distribution in ("constant", "categorical"):
            return ", ".join(str(v) for v in self.values) if self.varies else f"= {self.values[0]}"
        words = {"uniform": "uniform", "int_uniform": "whole numbers", "log_uniform_values": "log-uniform",
                 "q_uniform": f"steps of {self.q or 0:g}"}
        return f"{words[self.distribution]} {self.low:g} … {self.high:g}"


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep. `base` is the full TrainConfig dict every trial starts from (a preset's and
    the fixed values); `params` only the settings that vary."""

    name: str
    method: str
    params: tuple[Param, ...]
    base: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_accuracy"
    goal: str = "maximize"
    run_cap: int | None = None
    minutes: float | None = None
    pruning: str = "none"
    min_iter: int = 1
    eta: int = 3
    max_iter: int | None = None
    preset: str | None = None

    def grid_size(self) -> int:
        return math.prod(p.count() for p in self.params)

    def trial_budget(self) -> int | None:
        """How many trials it runs at most; None: as many as its minutes allow."""
        if self.method == "grid":
            return min(self.grid_size(), self.run_cap or self.grid_size())
        return self.run_cap

    def grid_points(self) -> list[dict[str, Any]]:
        names = [p.name for p in self.params]
        return [dict(zip(names, combo)) for combo in itertools.product(*(p.grid_values() for p in self.params))]

    def distributions(self) -> dict[str, Any]:
        """What `study.ask` samples: a grid's values as choices (GridSampler picks among them)."""
        from optuna.distributions import CategoricalDistribution
        if self.method == "grid":
            return {p.name: CategoricalDistribution(p.grid_values()) for p in self.params}
        return {p.name: p.optuna_distribution() for p in self.params}

    def sampler(self, trials_so_far: int):
        """A new sampler for one round of asking. Samplers are not stored with the study, so a
        random or TPE round seeds its own from the trials so far: it never repeats an earlier
        round's draws, and a sweep continued after a restart goes on drawing new points. A grid
        keeps one seed: GridSampler shuffles its points with it and numbers trials into that order."""
        import optuna
        seed = int(self.base.get("seed", 0))
        if self.method == "grid":
            return optuna.samplers.GridSampler({p.name: p.grid_values() for p in self.params}, seed=seed)
        seed += trials_so_far
        if self.method == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        startup = max(2, (self.trial_budget() or 30) // TPE_STARTUP_SHARE)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    def pruner(self):
        import optuna
        if self.pruning == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=self.min_iter)
        if self.pruning == "hyperband":
            epochs = int(self.base.get("epochs", 1))
            return optuna.pruners.HyperbandPruner(min_resource=self.min_iter, max_resource=self.max_iter or epochs,
                                                  reduction_factor=self.eta)
        return optuna.pruners.NopPruner()

    @property
    def epoch_metric(self) -> str:
        """The figure reported to the pruner after each epoch."""
        return "val_loss" if self.metric == "val_loss" else "val_accuracy"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = [{**asdict(p), "values": list(p.values)} for p in self.params]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepSpec":
        params = tuple(Param(**{**p, "values": tuple(p.get("values", ()))}) for p in data["params"])
        return cls(**{**data, "params": params})
