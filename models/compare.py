"""Offline comparison: every model on one dataset under one protocol, over one or more seeds
-> Markdown, JSON, charts (written by models.compare_report).

Each model is trained, or its checkpoint reused, once per seed in
`OUT/checkpoints/<model>/seed-<N>/`; its row holds the means over the seeds, their spread, a
per-user bootstrap interval of each metric, and a paired bootstrap interval of its NDCG@10
difference to the best row (models.metrics). A derived row (`Derived`: e.g. a quantized copy)
transforms each seed's trained model of its base row instead of training.

Content and hybrid models read the items' text vectors (`item_features`); on a cold-item split
(models.split.cold_item_split) each row also has the test metrics of the users whose target is
a cold item (`test_cold`) and of the others (`test_warm`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Recommender, torch_threads
from models.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from models.compare_report import (
    METRIC_COLUMNS,
    VS_BEST_METRIC,
    CompareRow,
    plot_charts,
    write_per_user,
    write_reports,
)
from models.data import EvalSet, LeaveOneOut
from models.metrics import Evaluation, bootstrap_mean, evaluate, evaluate_users, paired_bootstrap
from models.split import cold_test_users
from models.train import data_summary, save_trained, train_model
from models.zoo import get_model_class

__all__ = [
    "METRIC_COLUMNS",
    "CompareRow",
    "ContentInputs",
    "Derived",
    "compare_models",
    "plot_charts",
    "slice_metrics",
    "write_reports",
]

BOOTSTRAP_SEED = 0  # the intervals' resampling seed: reruns give the same intervals


@dataclass(frozen=True)
class Derived:
    """A row made from another row's trained models without training (e.g. a quantized copy)."""

    base: str  # the compared model whose every seed's trained model is transformed
    transform: Callable[[Recommender], Recommender]


@dataclass
class ContentInputs:
    """What content and hybrid models read: the items' text vectors and where they came from."""

    features: np.ndarray  # (I, F) float32, zero rows for items without text
    meta: dict[str, Any]  # e.g. {"catalog": "ml-1m", "encoder": ..., "items_with_text": ...}

    def checkpoint_meta(self) -> dict[str, Any]:
        """meta.json fields of a model trained on them; the service adds new items to a model
        only from the encoder it names (`content_encoder`)."""
        return {"content": self.meta, "content_encoder": self.meta.get("encoder")}


def scoring_latency(model: Recommender, histories: Sequence[np.ndarray], users: int = 200) -> float:
    """Median milliseconds to recommend top-10 for a single user, over `users` users.

    One torch thread, as a serving worker runs (and threads only add overhead for one user).
    """
    sample = list(histories[:users])
    timings = []
    with torch_threads(1):
        model.recommend(sample[:1], k=10)  # warm up lazily built state
        for history in sample:
            start = time.perf_counter()
            model.recommend([history], k=10)
            timings.append(time.perf_counter() - start)
    return 1000 * statistics.median(timings)


def batched_latency(model: Recommender, histories: Sequence[np.ndarray], batch: int = 256) -> float:
    """Milliseconds per user when recommending top-10 for batches of users."""
    sample = list(histories[: 4 * batch])
    start = time.perf_counter()
    for lo in range(0, len(sample), batch):
        model.recommend(sample[lo : lo + batch], k=10)
    return 1000 * (time.perf_counter() - start) / max(len(sample), 1)


def checkpoint_dir(out: Path, name: str, seed: int) -> Path:
    """Where the comparison keeps model `name`'s checkpoint of one seed."""
    return out / "checkpoints" / name / f"seed-{seed}"


def _reusable(directory: Path, fingerprint: str, seed: int) -> Any | None:
    """A checkpoint in `directory` trained on the same data with the same seed, or None."""
    try:
        checkpoint = load_checkpoint(directory)
    except CheckpointError:
        return None
    same_data = checkpoint.meta.get("data", {}).get("fingerprint") == fingerprint
    return checkpoint if same_data and checkpoint.meta.get("seed") == seed else None


def _train_or_load(
    name: str,
    data: LeaveOneOut,
    directory: Path,
    overrides: Mapping[str, Any],
    seed: int,
    reuse: bool,
    progress: bool,
    content: ContentInputs | None = None,
) -> tuple[Recommender, dict[str, Any], bool]:
    """The model and its metadata: reused from `directory` when allowed, else trained and saved."""
    if reuse and (found := _reusable(directory, data.fingerprint(), seed)) is not None:
        return found.model, found.meta, True
    reads = get_model_class(name).reads_content and content is not None
    features = content.features if reads and content is not None else None
    trained = train_model(
        name, data, overrides, seed=seed, progress=progress, item_features=features
    )
    extra = content.checkpoint_meta() if reads and content is not None else {}
    save_trained(trained.model, trained.report, data, directory, overwrite=True, **extra)
    return trained.model, load_checkpoint(directory).meta, False


def slice_metrics(
    model: Recommender, data: LeaveOneOut, cold_items: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Test metrics of the cold slice (target a cold item) and of the warm slice (the rest)."""
    test, cold = data.test_set(), cold_test_users(data, cold_items)
    popularity = data.item_popularity()
    cold_set, warm_set = _subset(test, cold), _subset(test, ~cold)
    return (
        evaluate(model, cold_set, item_popularity=popularity),
        evaluate(model, warm_set, item_popularity=popularity),
    )


def _subset(users: EvalSet, keep: np.ndarray) -> EvalSet:
    """The evaluation users where `keep` (U,) bool is True."""
    rows = np.flatnonzero(keep)
    times = None if users.times is None else [users.times[r] for r in rows]
    return EvalSet([users.histories[r] for r in rows], users.targets[rows], times)


@dataclass(frozen=True)
class _Plan:
    """What every seed's run of every model shares."""

    data: LeaveOneOut
    out: Path
    reuse: bool
    progress: bool
    content: ContentInputs | None
    cold_items: np.ndarray | None
    test: EvalSet


@dataclass
class _SeedRun:
    """One seed's measurements of one row, and its users' test metrics from the same pass."""

    row: CompareRow
    per_user: dict[str, np.ndarray]  # metric -> (U,), row u = the dataset's user u


def _evaluate_test(model: Recommender, plan: _Plan) -> Evaluation:
    """The served model's test metrics and their per-user values."""
    return evaluate_users(model, plan.test, item_popularity=plan.data.item_popularity())


def _seed_run(
    name: str,
    model: Recommender,
    meta: Mapping[str, Any],
    directory: Path,
    plan: _Plan,
    evaluation: Evaluation | None = None,
) -> _SeedRun:
    """Measure one seed's model: per-user test values (unless `evaluation` has them already),
    latencies, size, cold/warm slices."""
    cold_items, histories = plan.cold_items, plan.test.histories
    cold, warm = (None, None) if cold_items is None else slice_metrics(model, plan.data, cold_items)
    row = CompareRow(
        model=name,
        val=meta["metrics"]["val"],
        test=meta["metrics"]["test"],
        train_seconds=meta["train_seconds"],
        train_cpu_seconds=meta.get("train_cpu_seconds", 0.0),
        refit_seconds=meta.get("refit_seconds"),
        ms_per_user=scoring_latency(model, histories),
        ms_per_user_batched=batched_latency(model, histories),
        parameters=meta["parameters"],
        checkpoint_bytes=checkpoint_bytes(directory),
        reused=bool(meta.get("reused", False)),
        test_cold=cold,
        test_warm=warm,
        seeds=[int(meta["seed"])],
        derived_from=meta.get("derived_from"),
    )
    return _SeedRun(row, (evaluation or _evaluate_test(model, plan)).per_user)


def _trained_run(
    name: str, seed: int, overrides: Mapping[str, Any], plan: _Plan
) -> tuple[Recommender, _SeedRun]:
    """Train (or reuse) model `name` with one seed and measure it."""
    directory = checkpoint_dir(plan.out, name, seed)
    model, meta, reused = _train_or_load(
        name, plan.data, directory, overrides, seed, plan.reuse, plan.progress, plan.content
    )
    return model, _seed_run(name, model, {**meta, "seed": seed, "reused": reused}, directory, plan)


def _derived_run(name: str, spec: Derived, model: Recommender, seed: int, plan: _Plan) -> _SeedRun:
    """Transform one seed's trained base model, save it as a checkpoint and measure it."""
    wall, cpu = time.perf_counter(), time.process_time()
    derived = spec.transform(model)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    directory, evaluation = checkpoint_dir(plan.out, name, seed), _evaluate_test(derived, plan)
    meta = {
        "data": data_summary(plan.data),
        "metrics": {"val": {}, "test": evaluation.means},
        "trained_on": "train+val",
        "train_seconds": wall,
        "train_cpu_seconds": cpu,
        "refit_seconds": None,
        "seed": seed,
        "derived_from": spec.base,
    }
    save_checkpoint(derived, directory, item_ids=plan.data.item_ids, overwrite=True, **meta)
    return _seed_run(name, derived, read_meta(directory), directory, plan, evaluation)


def _mean_dicts(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts with the same keys."""
    return {k: statistics.fmean(d[k] for d in dicts) for k in dicts[0]}


def _std_dicts(dicts: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """Key-wise sample standard deviation; None below two dicts."""
    return None if len(dicts) < 2 else {k: statistics.stdev(d[k] for d in dicts) for k in dicts[0]}


def _mean_slice(slices: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    """The seeds' mean metrics of a cold or warm slice; None off a cold-item split."""
    present = [s for s in slices if s is not None]
    return _mean_dicts(present) if present else None


def _mean_row(runs: Sequence[CompareRow]) -> CompareRow:
    """One row from its seeds' rows: means of metrics and costs, the metrics' spread."""
    first, refits = runs[0], [r.refit_seconds for r in runs]
    return replace(
        first,
        val=_mean_dicts([r.val for r in runs]),
        test=_mean_dicts([r.test for r in runs]),
        train_seconds=statistics.fmean(r.train_seconds for r in runs),
        train_cpu_seconds=statistics.fmean(r.train_cpu_seconds for r in runs),
        refit_seconds=None if None in refits else statistics.fmean(r or 0.0 for r in refits),
        ms_per_user=statistics.fmean(r.ms_per_user for r in runs),
        ms_per_user_batched=statistics.fmean(r.ms_per_user_batched for r in runs),
        parameters=round(statistics.fmean(r.parameters for r in runs)),
        checkpoint_bytes=round(statistics.fmean(r.checkpoint_bytes for r in runs)),
        reused=all(r.reused for r in runs),
        seeds=[s for r in runs for s in r.seeds],
        val_std=_std_dicts([r.val for r in runs]),
        test_std=_std_dicts([r.test for r in runs]),
        test_cold=_mean_slice([r.test_cold for r in runs]),
        test_warm=_mean_slice([r.test_warm for r in runs]),
    )


def _combine(runs: Sequence[_SeedRun]) -> tuple[CompareRow, dict[str, np.ndarray]]:
    """A row over its seeds, and each user's metrics averaged over the seeds."""
    per_user = {m: np.mean([r.per_user[m] for r in runs], axis=0) for m in runs[0].per_user}
    return _mean_row([r.row for r in runs]), per_user


def add_intervals(
    rows: Sequence[CompareRow],
    per_user: Mapping[str, Mapping[str, np.ndarray]],
    resamples: int = 10_000,
) -> None:
    """Set each row's `test_ci95` (bootstrap over users of its seed-averaged per-user values)
    and `vs_best` (paired bootstrap of its NDCG@10 minus the best row's, per user)."""
    best = max(rows, key=lambda r: r.test.get(VS_BEST_METRIC, -np.inf)).model
    for row in rows:
        values = per_user[row.model]
        row.test_ci95 = {
            m: list(bootstrap_mean(values[m], resamples=resamples, seed=BOOTSTRAP_SEED)[1:])
            for m in METRIC_COLUMNS
            if m in values
        }
        diff, low, high = paired_bootstrap(
            values[VS_BEST_METRIC],
            per_user[best][VS_BEST_METRIC],
            resamples=resamples,
            seed=BOOTSTRAP_SEED,
        )
        row.vs_best = {
            "best": best,
            "metric": VS_BEST_METRIC,
            "diff": diff,
            "low": low,
            "high": high,
        }


def _seeds_of(name: str, seeds: Sequence[int], max_seeds: Mapping[str, int]) -> list[int]:
    """The seeds model `name` runs: the first `max_seeds[name]` of `seeds`, else all."""
    return list(seeds[: max_seeds.get(name, len(seeds))])


def _check_request(
    names: Sequence[str],
    seeds: Sequence[int],
    max_seeds: Mapping[str, int],
    derived: Mapping[str, Derived],
) -> None:
    """Refuse seeds, caps and derived rows that do not fit the compared models."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one: {list(seeds)}")
    for name, cap in max_seeds.items():
        if name not in names or cap < 1:
            raise ValueError(f"max seeds {name}={cap}: needs a compared model and a cap >= 1")
    for name, spec in derived.items():
        if spec.base not in names or name in names:
            raise ValueError(
                f"derived row {name}: its base {spec.base!r} must be a compared "
                "model and its name a new one"
            )


def _model_rows(
    name: str,
    seeds: Sequence[int],
    overrides: Mapping[str, Any],
    derived: Mapping[str, Derived],
    plan: _Plan,
) -> dict[str, list[_SeedRun]]:
    """Every seed's run of model `name` and of the rows derived from it, by row name."""
    mine = {d: spec for d, spec in derived.items() if spec.base == name}
    runs: dict[str, list[_SeedRun]] = {n: [] for n in (name, *mine)}
    for seed in seeds:
        model, run = _trained_run(name, seed, overrides, plan)
        runs[name].append(run)
        for row_name, spec in mine.items():
            runs[row_name].append(_derived_run(row_name, spec, model, seed, plan))
    return runs


def compare_models(
    data: LeaveOneOut,
    names: Sequence[str],
    out_dir: str | Path,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    reuse: bool = False,
    progress: bool = False,
    content: ContentInputs | None = None,
    cold_items: np.ndarray | None = None,
    *,
    seeds: Sequence[int] | None = None,
    max_seeds: Mapping[str, int] | None = None,
    derived: Mapping[str, Derived] | None = None,
    resamples: int = 10_000,
) -> list[CompareRow]:
    """Train (or reuse) each model once per seed, measure it, and write compare.md/.json, the
    per-user NDCG@10 arrays and the charts. `seeds`: default `[seed]`; `max_seeds`: a model's
    cap on them (slow models); `derived`: rows made from a compared model's trained models;
    `content`: the item text vectors content and hybrid models read; `cold_items`: the cold
    items of a cold-item split, whose rows then get their cold and warm test slices."""
    seeds = list(seeds if seeds is not None else [seed])
    caps, derived = max_seeds or {}, derived or {}
    _check_request(names, seeds, caps, derived)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _Plan(data, out, reuse, progress, content, cold_items, data.test_set())
    rows, per_user = [], {}
    for name in names:
        model_overrides = (overrides or {}).get(name, {})
        for row_name, runs in _model_rows(
            name, _seeds_of(name, seeds, caps), model_overrides, derived, plan
        ).items():
            row, per_user[row_name] = _combine(runs)
            rows.append(row)
    add_intervals(rows, per_user, resamples)
    write_per_user({n: values[VS_BEST_METRIC] for n, values in per_user.items()}, out)
    write_reports(rows, data, out, content.meta if content is not None else None, cold_items, seeds)
    return rows
