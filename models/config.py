"""Model config dataclasses: the class a model declares, configs built from overrides, and
stored configs read back (unknown fields ignored, retired options refused unless off)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any


def config_class(model_class: type[Any]) -> type:
    """The model's config dataclass: its `Config` attribute, else the `config` arg's annotation."""
    declared = getattr(model_class, "Config", None)
    if declared is not None:
        return typing.cast(type, declared)
    hint = typing.get_type_hints(model_class.__init__)["config"]
    arms = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return typing.cast(type, arms[0])


def _coerce(value: Any, annotation: Any) -> Any:
    """Convert a CLI string to a config field's type (int, float, bool, str, list, Optional)."""
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null"):
            return None
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, arms[0])
    if annotation is bool:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"not a boolean: {value!r}")
        return value.lower() in ("1", "true", "yes")
    if annotation in (int, float, str):
        return annotation(value)
    if origin in (list, tuple):
        return origin(json.loads(value))
    return value


def make_config(config_class: type, overrides: Mapping[str, Any] | None = None) -> Any:
    """A config dataclass with `overrides` applied; strings are coerced to the field types."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        known = sorted(fields)
        raise ValueError(f"unknown {config_class.__name__} fields {unknown}; known: {known}")
    hints = typing.get_type_hints(config_class)
    return config_class(**{k: _coerce(v, hints[k]) for k, v in overrides.items()})


def known_fields(config_class: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a stored config that are fields of `config_class` (others are ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {k: v for k, v in config.items() if k in names}


def refuse_retired(retired: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """ValueError when a stored config turns on an option the code no longer has."""
    for name, neutral in retired.items():
        if name in config and config[name] != neutral:
            raise ValueError(
                f"config field {name}={config[name]!r} is a removed option "
                f"(only {name}={neutral!r} still loads)"
            )
