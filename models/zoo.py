"""The registry of model classes by name, imported lazily; models built from `--set` overrides."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from models.base import Recommender
from models.config import config_class, make_config

__all__ = [
    "MODELS",
    "build_model",
    "config_class",
    "get_model_class",
    "make_config",
    "parse_model_overrides",
    "parse_overrides",
]

# name -> "module:Class"; imported on first use so a model being written elsewhere (or one with
# heavy imports) does not break the others.
_PATHS = {
    "popularity": "models.popularity:Popularity",
    "mf": "models.mf:ImplicitALS",
    "ials": "models.mf:PlainIALS",
    "ease": "models.ease:EASE",
    "sasrec": "models.sasrec:SASRec",
    "content": "models.content_model:ContentRecommender",
    "mf-hybrid": "models.mf:HybridIALS",
    "sasrec-hybrid": "models.sasrec:HybridSASRec",
    "gru4rec": "models.gru4rec:GRU4Rec",
    "neumf": "models.neumf:NeuMF",
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


def build_model(
    name: str,
    num_items: int,
    overrides: Mapping[str, Any] | None = None,
    item_features: np.ndarray | torch.Tensor | None = None,
) -> Recommender:
    """A fresh, untrained model `name` for `num_items` items with config overrides; a model
    that reads content takes `item_features` (I, F), the items' pretrained text vectors
    (ValueError without them), and ID-only models ignore them."""
    model_class = get_model_class(name)
    settings = config_class(model_class)
    overrides = dict(overrides or {})
    features = None
    if model_class.reads_content:
        features = checked_features(name, item_features, num_items)
        if "content_dim" in {f.name for f in dataclasses.fields(settings)}:
            overrides.setdefault("content_dim", features.shape[1])  # the encoder's width
    model = model_class(num_items, make_config(settings, overrides))
    if features is not None:
        model.set_item_features(features)
    return model


def checked_features(
    name: str, features: np.ndarray | torch.Tensor | None, num_items: int
) -> torch.Tensor:
    """Item features as a (num_items, F) float32 tensor; ValueError when missing or misshapen."""
    if features is None:
        raise ValueError(f"{name} reads item content: give it item features (e.g. --catalog)")
    tensor = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if tensor.dim() != 2 or tensor.shape[0] != num_items:
        raise ValueError(f"item features of shape {tuple(tensor.shape)} for {num_items} items")
    return tensor


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """`key=value` strings -> {key: value}; the values are coerced to the field types later."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def parse_model_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """`model.key=value` strings -> {model: {key: value}}."""
    per_model: dict[str, dict[str, str]] = {}
    for item in items:
        [(key, value)] = parse_overrides([item]).items()
        model, dot, field = key.partition(".")
        if not model or not dot or not field:
            raise ValueError(f"expected model.key=value, got {item!r}")
        per_model.setdefault(model, {})[field] = value
    return per_model
