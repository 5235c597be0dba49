"""The registry of model classes by name, imported lazily, and config building from overrides."""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from models.base import Recommender

# name -> "module:Class"; imported on first use so a model being written elsewhere (or one with
# heavy imports) does not break the others.
_PATHS = {
    "popularity": "models.popularity:Popularity",
    "mf": "models.mf:ImplicitALS",
    "ials": "models.mf:PlainIALS",
    "ease": "models.ease:EASE",
    "sasrec": "models.sasrec:SASRec",
}


class _LazyZoo(Mapping[str, type[Recommender]]):
    """A read-only dict name -> Recommender class that imports each class on access."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths

    def __getitem__(self, name: str) -> type[Recommender]:
        module_name, _, class_name = self._paths[name].partition(":")
        model_class: type[Recommender] = getattr(importlib.import_module(module_name), class_name)
        return model_class

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


MODELS: Mapping[str, type[Recommender]] = _LazyZoo(_PATHS)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered under `name`; KeyError names the known models."""
    if name not in _PATHS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_PATHS)}")
    return MODELS[name]


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


def build_model(
    name: str, num_items: int, overrides: Mapping[str, Any] | None = None
) -> Recommender:
    """A fresh, untrained model `name` for `num_items` items with config overrides."""
    model_class = get_model_class(name)
    config = make_config(config_class(model_class), overrides)
    return model_class(num_items=num_items, config=config)  # type: ignore[call-arg]


def config_class(model_class: type[Recommender]) -> type:
    """The model's config dataclass: its `Config` attribute, else the `config` arg's annotation."""
    declared = getattr(model_class, "Config", None)
    if declared is not None:
        return typing.cast(type, declared)
    hint = typing.get_type_hints(model_class.__init__)["config"]
    arms = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return typing.cast(type, arms[0])
