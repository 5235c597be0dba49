"""Full-ranking evaluator: HR@K, NDCG@K, MRR, catalog coverage and popularity of the top list.

Ranking protocol: every item in the catalog is scored, the items in the input history are
excluded (set to -inf), and the held-out target's 1-based rank is

    rank = 1 + #{items whose score is strictly greater than the target's score}

Tie handling is therefore *optimistic*: items that tie with the target do not push it down.
This is a deliberate choice (it is what argsort-free evaluators such as RecBole's "full" mode
and most SASRec re-implementations compute); it matters only for models that emit many exactly
equal scores (popularity: items with equal counts). Its known failure mode is a constant
scorer, which would rank every target first; `ties="pessimistic"` counts ties as ranked ahead
(rank = #{score >= target}) and bounds the effect. A target that is itself in the input history
is masked like any history item and so counts as a miss; a target index of -1 (an item the
model does not know) is a miss as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from models.base import History, mask_items
from models.data import EvalSet

__all__ = [
    "EvalSet",
    "Evaluation",
    "bootstrap_mean",
    "evaluate",
    "evaluate_users",
    "evaluate_vectors",
    "paired_bootstrap",
    "target_ranks",
]

Ties = Literal["optimistic", "pessimistic"]
COVERAGE_K = 10  # coverage@10 and popularity@10 are computed on this list length
# Most scores held at once: a batch of B users scores (B, I), cloned and compared once more, so
# B shrinks as the catalog grows (64M floats: 256 MB a copy; B = 64 users at 1M items).
MAX_BATCH_SCORES = 64 * 2**20


class Scorer(Protocol):
    """Anything with a batched `score` (every Recommender)."""

    def score(
        self, histories: Sequence[History], times: Sequence[np.ndarray] | None = None
    ) -> torch.Tensor: ...


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, ties: Ties = "optimistic"
) -> torch.Tensor:
    """1-based rank of each target among masked scores: (B,) int64; a miss ranks I + 1."""
    known = targets >= 0
    target_scores = scores.gather(1, targets.clamp(min=0)[:, None])  # (B, 1)
    ahead = scores > target_scores if ties == "optimistic" else scores >= target_scores
    ranks = ahead.sum(dim=1) + (1 if ties == "optimistic" else 0)
    ranks = torch.where(torch.isinf(target_scores[:, 0]), scores.shape[1] + 1, ranks)  # masked
    return torch.where(known, ranks, scores.shape[1] + 1)


@dataclass
class Evaluation:
    """Metrics of one evaluation pass: the means, and the per-user values they average."""

    means: dict[str, float]  # hr@K, ndcg@K, mrr, coverage@10, popularity@10
    per_user: dict[str, np.ndarray]  # hr@K, ndcg@K, mrr: (U,) float64, row u = data user u


class _Accumulator:
    """Running sums and per-user values of the metrics, and the set of recommended items."""

    def __init__(self, num_items: int, ks: Sequence[int], popularity: np.ndarray) -> None:
        self.ks = tuple(ks)
        self.sums: dict[str, float] = {f"{m}@{k}": 0.0 for k in self.ks for m in ("hr", "ndcg")}
        self.sums["mrr"] = 0.0
        self.values: dict[str, list[torch.Tensor]] = {name: [] for name in self.sums}
        self.users = 0
        self.recommended = torch.zeros(num_items, dtype=torch.bool)
        self.popularity = torch.as_tensor(popularity, dtype=torch.float64)
        self.popularity_sum = 0.0

    def add(self, ranks: torch.Tensor, top: torch.Tensor) -> None:
        """Add one batch: ranks (B,) and top-COVERAGE_K item indices (B, COVERAGE_K)."""
        ranks_f = ranks.to(torch.float64)
        for k in self.ks:
            hit = ranks <= k
            self._add_values(f"hr@{k}", hit.to(torch.float64))
            self._add_values(f"ndcg@{k}", torch.where(hit, 1.0 / torch.log2(ranks_f + 1), 0.0))
        self._add_values("mrr", 1.0 / ranks_f)
        self.users += len(ranks)
        self.recommended[top.reshape(-1)] = True
        self.popularity_sum += self.popularity[top].mean(dim=1).sum().item()

    def _add_values(self, name: str, values: torch.Tensor) -> None:
        """One batch's per-user values (B,) of metric `name`."""
        self.sums[name] += values.sum().item()
        self.values[name].append(values)

    def result(self) -> Evaluation:
        """Averages over users, plus coverage and popularity of the top lists; per-user values."""
        users = max(self.users, 1)
        out = {name: total / users for name, total in self.sums.items()}
        out[f"coverage@{COVERAGE_K}"] = self.recommended.float().mean().item()
        out[f"popularity@{COVERAGE_K}"] = self.popularity_sum / users
        per_user = {
            name: torch.cat(parts).numpy() if parts else np.zeros(0)
            for name, parts in self.values.items()
        }
        return Evaluation(means=out, per_user=per_user)


def _history_popularity(histories: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """Interaction count of every item over the input histories: (I,)."""
    flat = [np.asarray(h, dtype=np.int64) for h in histories]
    return np.bincount(np.concatenate([np.zeros(0, np.int64), *flat]), minlength=num_items)


def _evaluate(
    score_batch: Callable[[int, int], torch.Tensor],
    num_items: int,
    data: EvalSet,
    ks: Sequence[int],
    batch_size: int,
    item_popularity: np.ndarray | None,
    ties: Ties,
) -> Evaluation:
    """Shared loop: score users [lo, hi), mask history, rank targets, accumulate."""
    if item_popularity is None:
        item_popularity = _history_popularity(data.histories, num_items)
    acc = _Accumulator(num_items, ks, item_popularity)
    targets = torch.as_tensor(np.ascontiguousarray(data.targets), dtype=torch.long)
    batch_size = max(1, min(batch_size, MAX_BATCH_SCORES // max(num_items, 1)))
    for lo in range(0, len(data), batch_size):
        hi = min(lo + batch_size, len(data))
        scores = score_batch(lo, hi).detach().to(torch.float32).clone()  # (B, I)
        mask_items(scores, data.histories[lo:hi])
        ranks = target_ranks(scores, targets[lo:hi], ties)
        top = torch.topk(scores, k=min(COVERAGE_K, num_items), dim=1).indices
        acc.add(ranks, top)
    return acc.result()


@torch.inference_mode()
def evaluate(
    model: Scorer,
    data: EvalSet,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    item_popularity: np.ndarray | None = None,
    ties: Ties = "optimistic",
    num_items: int | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of a model: hr@K, ndcg@K, mrr, coverage@10, popularity@10.

    `item_popularity` (I,) is the train interaction count per item used for popularity@10;
    by default it is counted on the input histories. See the module docstring for ties.
    """
    return evaluate_users(model, data, ks, batch_size, item_popularity, ties, num_items).means


@torch.inference_mode()
def evaluate_users(
    model: Scorer,
    data: EvalSet,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    item_popularity: np.ndarray | None = None,
    ties: Ties = "optimistic",
    num_items: int | None = None,
) -> Evaluation:
    """`evaluate`'s metrics and, from the same pass, each user's hr@K, ndcg@K and mrr."""
    num_items = num_items if num_items is not None else int(getattr(model, "num_items"))  # noqa: B009
    histories, times = data.histories, data.times
    return _evaluate(
        lambda lo, hi: (
            model.score(histories[lo:hi])
            if times is None
            else model.score(histories[lo:hi], times[lo:hi])
        ),
        num_items,
        data,
        ks,
        batch_size,
        item_popularity,
        ties,
    )


@torch.inference_mode()
def evaluate_vectors(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    data: EvalSet,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    item_popularity: np.ndarray | None = None,
    ties: Ties = "optimistic",
) -> dict[str, float]:
    """Same metrics from precomputed user (U, D) and item (I, D) vectors, row u = data user u."""
    evaluation = _evaluate(
        lambda lo, hi: user_vectors[lo:hi] @ item_vectors.T,
        item_vectors.shape[0],
        data,
        ks,
        batch_size,
        item_popularity,
        ties,
    )
    return evaluation.means


def ndcg_at(rank: int, k: int) -> float:
    """NDCG@k of one target at 1-based `rank` (a reference for tests)."""
    return 1.0 / math.log2(rank + 1) if rank <= k else 0.0


BOOTSTRAP_CHUNK = 500  # resamples drawn at once: bounds memory at chunk x users indices


def bootstrap_mean(
    values: np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of per-user `values` (U,) and its 95% percentile bootstrap interval.

    Users are resampled with replacement `resamples` times; the same seed gives the same
    interval. Returns (mean, low, high).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no per-user values to bootstrap")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for lo in range(0, resamples, BOOTSTRAP_CHUNK):
        hi = min(lo + BOOTSTRAP_CHUNK, resamples)
        rows = rng.integers(0, values.size, size=(hi - lo, values.size))  # (R, U)
        means[lo:hi] = values[rows].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean per-user difference a - b and its paired 95% bootstrap interval: (mean, low, high).

    `a` and `b` (U,) are two models' values for the same users in the same order; resampling
    the users' differences keeps each user's pair together, so what the users share (an easy
    or a hard target) cancels out.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {a.shape} vs {b.shape}")
    return bootstrap_mean(a - b, resamples=resamples, seed=seed)
