"""Checks on task options that turn bad values into messages a user can act on."""

from __future__ import annotations

from nervana_lstm.errors import UsageError

__all__ = ["check_fraction", "check_int"]


def check_int(task: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, or a UsageError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{task}: option '{name}' must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise UsageError(f"{task}: option '{name}' must be >= {minimum}, got {value}")
    return value


def check_fraction(task: str, name: str, value: object, *, low: float, high: float) -> float:
    """``value`` as a float in the open interval ``(low, high)``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{task}: option '{name}' must be a number, got {value!r}")
    if not low < float(value) < high:
        raise UsageError(
            f"{task}: option '{name}' must be between {low} and {high} (exclusive), got {value}"
        )
    return float(value)
