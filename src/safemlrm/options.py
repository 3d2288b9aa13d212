"""Validation of numeric plugin options, with errors that name the plugin and the option."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, did_you_mean


def number_option(what: str, value: Any, *, minimum: float, integer: bool = False) -> Any:
    """`what` names the option for the message, e.g. "backend openai: option 'timeout'"."""
    try:
        # bool is an int to Python but never a count; bytes, Decimal, numpy scalars are no config values
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        out = int(value) if integer else float(value)
        if integer and out != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise ConfigError(f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}") from None
    if out < minimum:
        raise ConfigError(f"{what} must be >= {minimum:g}, got {value!r}")
    return out


def choice(what: str, value: Any, choices: Sequence[str]) -> Any:
    """`value` when it is one of `choices`; else a ConfigError: `what` (e.g. "judge keyword: variant")
    must be one of them, with the close matches."""
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, choices))}, not {value!r}."
                          f"{did_you_mean(str(value), choices)}")
    return value
