"""Plugin options: each plugin declares what it accepts as a pydantic model that refuses unknown keys.

    @register("backend", "hf")
    class HFBackend(Backend):
        class Options(PluginOptions):
            dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
            batch_size: int = Field(8, ge=1, description="requests per generate call")

`check_options` validates a config's options against the declaration before anything runs, with the
run config's error format (file, key path, did-you-mean); `describe` gives `safemlrm list` and the
docs the same declaration. A plugin not converted yet gets a model built from the names it already
lists (`known_params`, `known_options`, ...), untyped but still refusing unknown keys; a third-party
plugin that declares nothing takes any key and checks its own (tests/test_contract_plugins.py holds
every built-in to a declaration).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing import get_args

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import PydanticUndefined

from .errors import ConfigError, did_you_mean


class PluginOptions(BaseModel):
    """Base of every plugin's `Options`: unknown keys are errors, values are checked by type."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def _listed_names(cls: type) -> tuple[str, ...] | None:
    """The option names a not-yet-converted plugin lists by hand, or None when it lists none."""
    if hasattr(cls, "_common") and hasattr(cls, "extra_options"):  # datasets.io.BenchmarkDataset
        hub: tuple[str, ...] = getattr(cls, "_hub", ()) if getattr(cls, "hub_id", None) else ()
        return cls._common + hub + cls.extra_options
    param_names = getattr(cls, "_param_names", None)  # judges.llm.LLMJudge
    if callable(param_names):
        return tuple(sorted(param_names()))
    for attr in ("known_params", "known_options"):
        if isinstance(getattr(cls, attr, None), tuple):
            return getattr(cls, attr)
    return None


class UndeclaredOptions(PluginOptions):
    """What a third-party plugin without a declaration gets: any key, left to the plugin to check."""

    model_config = ConfigDict(extra="allow", frozen=True)


_derived: dict[type, type[PluginOptions]] = {}


def options_model(cls: type) -> type[PluginOptions]:
    """The plugin's declared `Options`, or one made from the names it lists."""
    declared = getattr(cls, "Options", None)
    if isinstance(declared, type) and issubclass(declared, PluginOptions):
        return declared
    if cls not in _derived:
        names = _listed_names(cls)
        if names is None:
            return UndeclaredOptions
        fields: dict[str, Any] = {n: (Any, None) for n in names}
        typed = getattr(cls, "Params", None)  # an LLM judge's own params, typed (judges.llm.LLMJudge.Params)
        if isinstance(typed, type) and issubclass(typed, PluginOptions):
            fields.update({n: (f.annotation, f) for n, f in typed.model_fields.items()})
        _derived[cls] = create_model(f"{cls.__name__}Options", __base__=PluginOptions, **fields)
    return _derived[cls]


def check_options(kind: str, name: str, cls: type, values: dict[str, Any], *, where: str, key: str) -> Any:
    """Validate `values` against the plugin's declaration (returns an instance of its Options); a
    ConfigError in the run config's format.

    `where`: the config file; `key`: the key path of the mapping, e.g. "models.0.options".
    """
    model = options_model(cls)
    try:
        return model.model_validate(values)
    except ValidationError as e:
        known = list(model.model_fields)
        lines = [f"{where}: invalid {kind} {name!r} {key.rsplit('.', 1)[-1]}"]
        for err in e.errors()[:8]:
            loc = ".".join([key, *(str(x) for x in err["loc"])])
            if err["type"] == "extra_forbidden":
                msg = f"unknown key.{did_you_mean(str(err['loc'][-1]), known)} Keys here: {', '.join(known) or 'none'}"
            elif err["type"] == "literal_error":  # a choice: name them all, and the near one
                field = model.model_fields.get(str(err["loc"][0]))
                choices = [str(c) for c in get_args(field.annotation)] if field is not None else []
                got = err.get("input")
                msg = (f"must be one of {', '.join(choices)}, not {got!r}."
                       f"{did_you_mean(str(got), choices)}")
            else:
                msg = f"{err['msg'].removeprefix('Value error, ')}, got {err.get('input')!r}"
            lines.append(f"  key '{loc}': {msg}")
        raise ConfigError("\n".join(lines)) from None


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) per option, for `safemlrm list` and the docs."""
    rows = []
    for name, f in options_model(cls).model_fields.items():
        ann = f.annotation
        typ = getattr(ann, "__name__", None) if isinstance(ann, type) else None
        typ = "any" if ann is Any else (typ or str(ann).replace("typing.", ""))
        default = "" if f.default is PydanticUndefined else repr(f.default)
        rows.append((name, typ, "required" if f.is_required() else default, f.description or ""))
    return rows


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
