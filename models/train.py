"""The one training protocol: fit -> validate -> refit -> save, seeded, with a progress bar.

Protocol (datasets README, section 4; the one the reference numbers use):
1. fit on `train` with the validation set for early stopping -> validation metrics;
2. refit a fresh model with the same config on `train + val` (the epoch count fixed to the best
   validation epoch, no validation peeking) -> test metrics with input history `train + val`.
The refit model (for SASRec, joined with the step-1 model: `Recommender.with_refit`) is the one
to serve and save. `refit=False` serves the step-1 model and evaluates test on it. Data without
known test targets (every test item -1, as `load_train_val` and `holdout_split` give) is only
validated. Item timestamps go to every fit; models that do not use them ignore them. Content and
hybrid models take the items' pretrained text vectors (`item_features`) in both fits; ID-only
models ignore them.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base import Recommender, Times, Weights
from models.checkpoint import save_checkpoint
from models.data import LeaveOneOut
from models.metrics import evaluate
from models.zoo import build_model, config_class, get_model_class

# Config fields that hold a model's number of training epochs, in lookup order.
_EPOCH_FIELDS = ("epochs", "iterations")


@dataclass
class TrainReport:
    """What a training run produced: config, metrics, timings and the data it saw."""

    model: str
    config: dict[str, Any]
    seed: int
    val: dict[str, float]
    test: dict[str, float]  # of the served model; {} when the data has no test targets
    train_seconds: float  # step 1: fit on train, validation included
    refit_seconds: float | None  # step 2: fit on train + val (None without refit)
    train_cpu_seconds: float = 0.0  # CPU time of step 1, all threads (wall / CPU shows contention)
    refit_cpu_seconds: float | None = None
    fit: dict[str, Any] = field(default_factory=dict)  # the model's own fit report (step 1)
    data: dict[str, Any] = field(default_factory=dict)  # fingerprint, sizes, source

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; CPU kernels are deterministic for a fixed thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_summary(data: LeaveOneOut) -> dict[str, Any]:
    """Fingerprint and sizes of a dataset, for checkpoint metadata."""
    return {
        "fingerprint": data.fingerprint(),
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        **data.meta,
    }


def _progress_callback(bar: tqdm) -> Any:
    """An epoch callback that advances a tqdm bar and shows loss and validation metric."""

    def update(stats: dict[str, float]) -> None:
        if stats.get("epochs") and bar.total != stats["epochs"]:
            bar.total = int(stats["epochs"])
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in stats.items() if k not in ("epoch", "epochs")})

    return update


@dataclass
class _Timed:
    """A fit's report with its wall-clock and CPU seconds (CPU: all threads; shows contention)."""

    report: dict[str, Any]
    seconds: float
    cpu_seconds: float


def _fit(
    model: Recommender,
    data: Any,
    valid: Any,
    progress: bool,
    label: str,
    times: Times = None,
    weights: Weights = None,
) -> _Timed:
    """Fit with an optional progress bar, timed; `weights` only reach models when given."""
    extra = {} if weights is None else {"weights": weights}
    with tqdm(desc=label, unit="epoch", disable=not progress, leave=False) as bar:
        model.epoch_callback = _progress_callback(bar) if progress else None
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            report = model.fit(data, valid, times, **extra)
        finally:
            model.epoch_callback = None
    return _Timed(report, time.perf_counter() - wall, time.process_time() - cpu)


def _refit_overrides(model: Recommender, fit_report: dict[str, Any]) -> dict[str, Any]:
    """Step-2 config: step 1's config with the epoch count set to the best validation epoch."""
    config = {k: v for k, v in model.config_dict().items() if k != "num_items"}
    best_epoch = fit_report.get("best_epoch")
    for name in _EPOCH_FIELDS:
        if name in config and best_epoch:
            config[name] = int(best_epoch)
            break
    return config


def _refit_model(
    name: str,
    data: LeaveOneOut,
    model: Recommender,
    fit_report: dict[str, Any],
    seed: int,
    progress: bool,
    item_features: np.ndarray | None = None,
) -> tuple[Recommender, _Timed]:
    """Step 2: a fresh model fit on train + val for step 1's best epoch count, as the model
    to serve (`model.with_refit`: the refit itself, or joined with `model`)."""
    seed_everything(seed)
    overrides = _refit_overrides(model, fit_report)
    refit = build_model(name, data.num_items, overrides, item_features)
    times, weights = data.train_plus_val_times(), data.train_plus_val_weights()
    timed = _fit(refit, data.train_plus_val(), None, progress, f"{name} refit", times, weights)
    return model.with_refit(refit), timed


@dataclass
class Trained:
    """What `train_model` produced: the model to serve, the validated one, and the report."""

    model: Recommender  # to serve: the refit (joined with `fitted` by `with_refit`), or `fitted`
    fitted: Recommender  # step 1: early-stopped on validation, never trained on it
    report: TrainReport


def train_model(
    name: str,
    data: LeaveOneOut,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    refit: bool = True,
    progress: bool = False,
    item_features: np.ndarray | None = None,
    eval_users: int | None = None,
) -> Trained:
    """Train model `name` on `data` under the protocol above (`item_features` (I, F): the
    items' pretrained text vectors, needed by models that read content; `eval_users`: validate
    on a seeded sample of that many users, for large data)."""
    config = _seeded(name, overrides, seed)
    seed_everything(seed)
    fitted = build_model(name, data.num_items, config, item_features)
    popularity = data.item_popularity()
    valid = data.val_set(eval_users)
    first = _fit(
        fitted, data.train, valid, progress, f"{name} fit", data.train_times, data.train_weights
    )
    val = evaluate(fitted, valid, item_popularity=popularity)
    model, second = fitted, None
    if refit:
        model, second = _refit_model(
            name, data, fitted, first.report, seed, progress, item_features
        )
    report = TrainReport(
        model=name,
        config=model.config_dict(),
        seed=seed,
        val=val,
        test=_test_metrics(model, data, popularity),
        train_seconds=first.seconds,
        refit_seconds=None if second is None else second.seconds,
        train_cpu_seconds=first.cpu_seconds,
        refit_cpu_seconds=None if second is None else second.cpu_seconds,
        fit=_json_safe(first.report),
        data=data_summary(data),
    )
    return Trained(model=model, fitted=fitted, report=report)


def _seeded(name: str, overrides: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """The overrides with the model's own seed (when its config has one) set to the run's."""
    overrides = dict(overrides or {})
    config_fields = {f.name for f in dataclasses.fields(config_class(get_model_class(name)))}
    if "seed" in config_fields:
        overrides.setdefault("seed", seed)
    return overrides


def _test_metrics(
    model: Recommender, data: LeaveOneOut, popularity: np.ndarray
) -> dict[str, float]:
    """Test metrics of the served model; {} when no test target is known."""
    if bool(np.all(data.test < 0)):
        return {}
    return evaluate(model, data.test_set(), item_popularity=popularity)


def _json_safe(value: Any) -> Any:
    """Drop values JSON cannot hold (tensors, arrays) from a nested report."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items() if _is_plain(v)}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value if _is_plain(v)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_plain(value: Any) -> bool:
    """True for JSON-able leaves and containers."""
    return value is None or isinstance(
        value, str | int | float | bool | np.generic | Mapping | list | tuple
    )


def save_trained(
    model: Recommender,
    report: TrainReport,
    data: LeaveOneOut,
    out: str | Path,
    /,
    overwrite: bool = False,
    **meta: Any,
) -> Path:
    """Write the trained model and its report as a checkpoint directory; `meta` adds fields to
    meta.json or replaces the report's (e.g. source, data, trained_on; hence the positional-only
    arguments)."""
    fields: dict[str, Any] = {
        # No user ids: no model stores per-user rows (users are folded in from their
        # histories), so a list of them would only be personal data to erase (issue 14).
        "data": report.data,
        "metrics": {"val": report.val, "test": report.test},
        "trained_on": "train" if report.refit_seconds is None else "train+val",
        "train_seconds": report.train_seconds,
        "refit_seconds": report.refit_seconds,
        "train_cpu_seconds": report.train_cpu_seconds,
        "refit_cpu_seconds": report.refit_cpu_seconds,
        "seed": report.seed,
        "fit": report.fit,
    }
    return save_checkpoint(
        model, out, item_ids=data.item_ids, overwrite=overwrite, **{**fields, **meta}
    )
