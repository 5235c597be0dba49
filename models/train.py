"""Seeded training of a zoo model on a leave-one-out dataset: fit, validate, refit, test.

Protocol (datasets README, section 4; the one the reference numbers use):
1. fit on `train` with the validation set for early stopping -> validation metrics;
2. refit a fresh model with the same config on `train + val` (the epoch count fixed to the best
   validation epoch, no validation peeking) -> test metrics with input history `train + val`.
The refit model (for SASRec, joined with the step-1 model: `Recommender.with_refit`) is the one
to serve and save. `refit=False` evaluates test on the step-1 model.
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

from models.base import Recommender
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
    test: dict[str, float]
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
    times: list[np.ndarray] | None = None,
) -> _Timed:
    """Fit with an optional progress bar, timed; `times` go to a model that uses them."""
    with tqdm(desc=label, unit="epoch", disable=not progress, leave=False) as bar:
        model.epoch_callback = _progress_callback(bar) if progress else None
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            extra = {"times": times} if model.uses_times else {}
            report = model.fit(data, valid, **extra)
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


def refit_model(
    name: str,
    data: LeaveOneOut,
    model: Recommender,
    fit_report: dict[str, Any],
    seed: int = 0,
    progress: bool = False,
) -> tuple[Recommender, _Timed]:
    """Step 2: a fresh model fit on train + val for step 1's best epoch count, as the model
    to serve (`model.with_refit`: the refit itself, or joined with `model`)."""
    seed_everything(seed)
    refit = build_model(name, data.num_items, _refit_overrides(model, fit_report))
    times = data.train_plus_val_times()
    timed = _fit(refit, data.train_plus_val(), None, progress, f"{name} refit", times)
    return model.with_refit(refit), timed


def train_model(
    name: str,
    data: LeaveOneOut,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    refit: bool = True,
    progress: bool = False,
) -> tuple[Recommender, TrainReport]:
    """Train model `name` on `data` under the protocol above; returns the model to serve."""
    overrides = dict(overrides or {})
    config_fields = {f.name for f in dataclasses.fields(config_class(get_model_class(name)))}
    if "seed" in config_fields:
        overrides.setdefault("seed", seed)  # the model's own seed follows the run's seed
    seed_everything(seed)
    model = build_model(name, data.num_items, overrides)
    popularity = data.item_popularity()
    first = _fit(model, data.train, data.val_set(), progress, f"{name} fit", data.train_times)
    val = evaluate(model, data.val_set(), item_popularity=popularity)
    second = None
    if refit:
        model, second = refit_model(name, data, model, first.report, seed, progress)
    report = TrainReport(
        model=name,
        config=model.config_dict(),
        seed=seed,
        val=val,
        test=evaluate(model, data.test_set(), item_popularity=popularity),
        train_seconds=first.seconds,
        refit_seconds=None if second is None else second.seconds,
        train_cpu_seconds=first.cpu_seconds,
        refit_cpu_seconds=None if second is None else second.cpu_seconds,
        fit=_json_safe(first.report),
        data=data_summary(data),
    )
    return model, report


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
    overwrite: bool = False,
) -> Path:
    """Write the trained model and its report as a checkpoint directory."""
    return save_checkpoint(
        model,
        out,
        item_ids=data.item_ids,
        overwrite=overwrite,
        user_ids=data.user_ids.to_json(),
        data=report.data,
        metrics={"val": report.val, "test": report.test},
        trained_on="train" if report.refit_seconds is None else "train+val",
        train_seconds=report.train_seconds,
        refit_seconds=report.refit_seconds,
        train_cpu_seconds=report.train_cpu_seconds,
        refit_cpu_seconds=report.refit_cpu_seconds,
        seed=report.seed,
        fit=report.fit,
    )
