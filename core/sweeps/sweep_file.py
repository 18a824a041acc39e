"""Sweep files in W&B's sweep configuration format (YAML or JSON), read into a SweepSpec.

    name: lr-and-block
    method: bayes                       # grid | random | bayes (Optuna's TPE)
    metric: {name: val_accuracy, goal: maximize}
    parameters:
      preset: {value: quick-demo}       # a lab key: the recipe the rest is changed from
      learning_rate: {distribution: log_uniform_values, min: 0.0001, max: 0.01}
      fine_tune_from_block: {values: [block6a, block5a]}
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}
    run_cap: 6

Every parameter is a lab setting (a TrainConfig field) or `preset`, and every value a trial could
get is checked by TrainConfig's own validation before anything is created. W&B's keys that mean
nothing here (program, command, project, entity, description) are accepted and left alone, so a
file written for W&B runs unchanged. Lab keys besides: `preset`, `minutes` (a time budget) and
`pruning` (none | median | hyperband). Every problem is a ConfigError: one line naming the key,
what it accepts and what it got (the CLI exits 2 with it).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from core.settings.config import ConfigError, TrainConfig, declaration, declared_fields, field_type
from core.settings.presets import get_preset
from core.store.ownership import QUEUE_PER_PERSON_ENV, queue_per_person
from core.sweeps.spec import DISTRIBUTIONS, GOALS, METHODS, METRICS, PRUNINGS, RANGES, Param, SweepSpec

WANDB_IGNORED = ("program", "command", "project", "entity", "description")
LAB_KEYS = ("preset", "minutes", "pruning")
TOP_KEYS = ("name", "method", "metric", "parameters", "early_terminate", "run_cap", *LAB_KEYS, *WANDB_IGNORED)
PARAM_KEYS = ("value", "values", "min", "max", "distribution", "q")
EARLY_TERMINATE_KEYS = ("type", "min_iter", "max_iter", "eta")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")
NAME_RULE = "1-40 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
MAX_FILE_BYTES = 100_000
# PyYAML reads YAML 1.1, where 1e-4 (no dot) is text, not a number; W&B files write rates so.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def read_sweep_file(path: str | Path) -> SweepSpec:
    """The sweep that the YAML or JSON file at `path` describes, validated whole.

    Raises:
        ConfigError: the first problem, naming its key (e.g. "parameters.learning_rate").
    """
    import yaml
    path = Path(path)
    try:
        raw = path.read_bytes()[:MAX_FILE_BYTES + 1]
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError("sweep file", f"a file under {MAX_FILE_BYTES:,} bytes", f"a larger one ({path})")
        data = yaml.safe_load(raw.decode("utf-8"))
    except OSError as exc:
        raise ConfigError("sweep file", "a readable YAML or JSON file", str(path), hint=exc.strerror or "") from None
    except UnicodeDecodeError:
        raise ConfigError("sweep file", "UTF-8 text (YAML or JSON)", f"binary data in {path}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError("sweep file", "YAML or JSON", f"{line}{getattr(exc, 'problem', None) or exc}") from None
    return sweep_from_dict(data, default_name=path.stem)


def sweep_from_dict(data: Any, default_name: str = "") -> SweepSpec:
    """A validated SweepSpec from a sweep configuration already parsed (the page builds one too)."""
    if not isinstance(data, dict):
        raise ConfigError("sweep file", "a mapping of keys (name, method, parameters, ...)", type(data).__name__)
    unknown = [key for key in data if key not in TOP_KEYS]
    if unknown:
        raise ConfigError(str(unknown[0]), f"one of the sweep keys ({', '.join(TOP_KEYS)})", data[unknown[0]],
                          hint="unknown key")
    name = _name(data.get("name", default_name))
    method = _choice("method", data.get("method"), METHODS)
    metric, goal = _metric(data.get("metric"))
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError("parameters", "a mapping of lab settings to how each varies", parameters)
    preset = _preset(data.get("preset"), parameters.get("preset"))
    base, params = _base_and_params(parameters, preset)
    pruning, early = _pruning(data.get("pruning"), data.get("early_terminate"), base)
    run_cap, minutes = _count("run_cap", data.get("run_cap")), _minutes(data.get("minutes"))
    spec = SweepSpec(name=name, method=method, params=params, base=base.to_dict(), metric=metric, goal=goal,
                     run_cap=run_cap, minutes=minutes, pruning=pruning, preset=preset, **early)
    _check_budget(spec)
    return spec


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value.strip()):
        raise ConfigError("name", NAME_RULE, value)
    return value.strip()


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(key, f"one of {', '.join(choices)}", value)
    return value


def _metric(value: Any) -> tuple[str, str]:
    if value is None:
        return "val_accuracy", "maximize"
    if not isinstance(value, dict) or set(value) - {"name", "goal"}:
        raise ConfigError("metric", "a mapping with name and goal", value)
    name = _choice("metric.name", value.get("name"), tuple(METRICS))
    return name, _choice("metric.goal", value.get("goal", METRICS[name]), GOALS)


def _preset(top: Any, as_parameter: Any) -> str | None:
    """The recipe the sweep starts from: `preset: NAME` or `parameters: {preset: {value: NAME}}`."""
    if isinstance(as_parameter, dict):
        if set(as_parameter) != {"value"}:
            raise ConfigError("parameters.preset", "one value (value: NAME): a sweep starts from one recipe",
                              as_parameter)
        if top is not None and top != as_parameter["value"]:
            raise ConfigError("preset", f"the same preset as parameters.preset ({as_parameter['value']})", top)
        top = as_parameter["value"]
    elif as_parameter is not None:
        raise ConfigError("parameters.preset", "a mapping such as {value: quick-demo}", as_parameter)
    if top is None:
        return None
    return get_preset(top).name if isinstance(top, str) else get_preset(str(top)).name


def _base_and_params(parameters: dict, preset: str | None) -> tuple[TrainConfig, tuple[Param, ...]]:
    """The config every trial starts from (the preset's, then the fixed values) and the varied params."""
    settings = {f.name for f in declared_fields()}
    base_values: dict[str, Any] = dict(get_preset(preset).settings) if preset else {}
    params = []
    for name, spec in parameters.items():
        if name == "preset":
            continue
        if name not in settings:
            raise ConfigError(f"parameters.{name}", f"a lab setting ({', '.join(sorted(settings))}) or preset",
                              name, hint="unknown setting")
        param = _param(name, spec)
        if param.varies:
            params.append(param)
        else:
            base_values[name] = param.values[0]
    try:
        base = TrainConfig.from_dict(base_values)
    except ConfigError as exc:
        raise ConfigError(f"parameters.{exc.field}", "a value the lab accepts", base_values.get(exc.field),
                          hint=str(exc)) from None
    if not params:
        raise ConfigError("parameters", "at least one setting that varies (values, or min and max)",
                          "only fixed values")
    for param in params:
        _check_candidates(base, param)
    return base, tuple(params)


def _param(name: str, spec: Any) -> Param:
    key = f"parameters.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(key, "a mapping with value, values, or min and max", spec)
    unknown = [k for k in spec if k not in PARAM_KEYS]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"one of {', '.join(PARAM_KEYS)}", spec[unknown[0]],
                          hint="unknown key")
    kind = field_type(name)
    distribution = spec.get("distribution") or _inferred(spec, kind)
    _choice(f"{key}.distribution", distribution, DISTRIBUTIONS)
    if distribution == "constant":
        if "value" not in spec:
            raise ConfigError(key, "value: X for a constant", spec)
        return Param(name, "constant", (spec["value"],))
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}.values", "a non-empty list of values", values)
        return Param(name, "categorical", tuple(values))
    if kind not in ("int", "float"):
        raise ConfigError(key, f"values: [...] ({name} is not a number, so it has no range)", spec)
    return _range(name, spec, distribution, kind == "int")


def _inferred(spec: dict, kind: str) -> str:
    """W&B's rule: value -> constant, values -> categorical, min/max of whole numbers -> int_uniform."""
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    low, high = _number(spec.get("min")), _number(spec.get("max"))
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
    return "int_uniform" if whole or kind == "int" else "uniform"


def _range(name: str, spec: dict, distribution: str, integer: bool) -> Param:
    key = f"parameters.{name}"
    low, high = (_number(spec.get(end)) for end in ("min", "max"))
    for end, value in (("min", low), ("max", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}.{end}", f"a number (the {distribution} range's {end})", spec.get(end))
    if low >= high:
        raise ConfigError(key, "min < max", f"min {low:g}, max {high:g}")
    if distribution == "log_uniform_values" and low <= 0:
        raise ConfigError(f"{key}.min", "a number above 0 for log_uniform_values", low)
    q = _number(spec.get("q"))
    if distribution == "q_uniform" and (not isinstance(q, (int, float)) or isinstance(q, bool) or q <= 0):
        raise ConfigError(f"{key}.q", "a step above 0 for q_uniform", spec.get("q"))
    if integer and (low != int(low) or high != int(high) or (q is not None and q != int(q))):
        raise ConfigError(key, f"whole numbers ({name} is a whole number)", f"min {low:g}, max {high:g}")
    return Param(name, distribution, low=low, high=high, q=q if distribution == "q_uniform" else None,
                 integer=integer or distribution == "int_uniform")


def _number(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _check_candidates(base: TrainConfig, param: Param) -> None:
    """Every value a trial could get passes TrainConfig's validation, beside the base's others."""
    key = f"parameters.{param.name}"
    candidates = [param.low, param.high] if param.distribution in RANGES else list(param.values)
    for value in candidates:
        value = int(value) if param.integer else value
        try:
            base.replace(**{param.name: value})
        except ConfigError as exc:
            allowed = declaration(param.name).allowed_text()
            hint = "" if exc.field == param.name else str(exc)
            raise ConfigError(key, allowed if not hint else "values that fit the other settings", value,
                              hint=hint) from None


def _pruning(pruning: Any, early: Any, base: TrainConfig) -> tuple[str, dict]:
    if early is not None:
        if not isinstance(early, dict) or set(early) - set(EARLY_TERMINATE_KEYS):
            raise ConfigError("early_terminate", f"a mapping of {', '.join(EARLY_TERMINATE_KEYS)}", early)
        _choice("early_terminate.type", early.get("type"), ("hyperband",))
        if pruning not in (None, "hyperband"):
            raise ConfigError("pruning", "hyperband, as early_terminate says, or no early_terminate", pruning)
        pruning = "hyperband"
    pruning = _choice("pruning", pruning if pruning is not None else "none", PRUNINGS)
    early = early or {}
    settings = {"min_iter": _count("early_terminate.min_iter", early.get("min_iter", 1)),
                "eta": _count("early_terminate.eta", early.get("eta", 3)),
                "max_iter": _count("early_terminate.max_iter", early.get("max_iter"))}
    if settings["eta"] < 2:
        raise ConfigError("early_terminate.eta", "a whole number of at least 2", settings["eta"])
    if pruning != "none" and base.val_fraction <= 0:
        raise ConfigError("pruning", "a validation set to prune on (val_fraction above 0)", pruning)
    return pruning, settings


def _count(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, "a whole number of at least 1", value)
    return value


def _minutes(value: Any) -> float | None:
    if value is None:
        return None
    value = _number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 24 * 60:
        raise ConfigError("minutes", "a number of minutes in (0, 10080]", value)
    return float(value)


def _check_budget(spec: SweepSpec) -> None:
    """A budget there is, and within what one person may have waiting (core/store/ownership.py)."""
    if spec.method == "grid":
        ranges = [p.name for p in spec.params if p.distribution in RANGES and p.distribution != "int_uniform"]
        if ranges:
            param = next(p for p in spec.params if p.name == ranges[0])
            raise ConfigError(f"parameters.{param.name}", "a list of values for a grid sweep (values: [...]), "
                              "or method random or bayes", f"a {param.describe()} range")
    elif spec.run_cap is None and spec.minutes is None:
        raise ConfigError("run_cap", f"a number of trials for a {spec.method} sweep (or minutes: a time budget)",
                          None)
    trials, limit = spec.trial_budget(), queue_per_person()
    if trials is not None and trials > limit:
        what = "run_cap" if spec.run_cap else "parameters"
        raise ConfigError(what, f"at most {limit} trials, the most one person may have waiting "
                          f"({QUEUE_PER_PERSON_ENV}={limit})", f"{trials} trials")
