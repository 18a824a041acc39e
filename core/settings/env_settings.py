"""Numbers read from the environment (EFFLAB_LEASE_SECONDS, EFFLAB_MEMORY_GB, ...): one parser, so
every variable says the same thing when it is wrong: its name, what it may be and what was given."""

from __future__ import annotations

import math
import os

from core.errors import UserInputError


class EnvSettingError(UserInputError, ValueError):
    """An environment variable whose value is not allowed; the message names it."""


def number_from_env(name: str, default: float | None, low: float, high: float, what: str, *,
                    whole: bool = False) -> float | None:
    """The variable `name` as a number in [low, high]; `default` when it is unset or blank.

    Args:
        what: what the number is, for the message ("a number of seconds").
        whole: only plain ASCII digits are allowed ("2.5", "²" are refused).

    Raises:
        EnvSettingError: "NAME: expected WHAT from LOW to HIGH; got 'TEXT'".
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if not whole or (text.isascii() and text.isdigit()) else math.nan
    except ValueError:
        value = math.nan
    if not low <= value <= high:   # NaN fails too
        raise EnvSettingError(f"{name}: expected {what} from {low:g} to {high:g}; got {text!r}")
    return value
