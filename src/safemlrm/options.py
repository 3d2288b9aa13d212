"""Validation of numeric plugin options, with errors that name the plugin and the option."""
from __future__ import annotations

from typing import Any

from .errors import ConfigError


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
