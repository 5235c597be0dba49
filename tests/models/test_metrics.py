"""The full-ranking evaluator on hand-computed cases, ties included."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from models.base import History
from models.data import EvalSet
from models.metrics import (
    bootstrap_mean,
    evaluate,
    evaluate_users,
    evaluate_vectors,
    ndcg_at,
    paired_bootstrap,
    target_ranks,
)


class FixedScores:
    """A scorer that returns preset score rows (one per user, in order)."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = torch.tensor(rows)
        self.num_items = self.rows.shape[1]
        self.calls = 0

    def score(self, histories: Sequence[History]) -> torch.Tensor:
        batch = self.rows[self.calls : self.calls + len(histories)]
        self.calls += len(histories)
        return batch


def _eval(
    rows: list[list[float]], histories: list[list[int]], targets: list[int], **kw: object
) -> dict[str, float]:
    data = EvalSet([np.array(h, dtype=np.int64) for h in histories], np.array(targets))
    return evaluate(FixedScores(rows), data, batch_size=kw.pop("batch_size", 512), **kw)  # type: ignore[arg-type]


def test_rank_one_and_rank_three() -> None:
    scores = [[0.9, 0.1, 0.5, 0.3], [0.9, 0.1, 0.5, 0.3]]
    result = _eval(scores, [[], []], [0, 3], ks=(1, 3))
    # user 0: rank 1; user 1: item 3 has 2 items above it (0.9, 0.5) -> rank 3
    assert result["hr@1"] == 0.5 and result["hr@3"] == 1.0
    assert result["ndcg@3"] == pytest.approx((1.0 + 1 / math.log2(4)) / 2)
    assert result["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_history_is_excluded_from_the_ranking() -> None:
    # item 0 would beat the target but is in the history, so the target ranks first
    result = _eval([[0.9, 0.5, 0.1]], [[0]], [1], ks=(1,))
    assert result["hr@1"] == 1.0 and result["mrr"] == 1.0


def test_target_in_history_is_a_miss() -> None:
    result = _eval([[0.9, 0.5, 0.1]], [[1]], [1], ks=(1, 2))
    assert result["hr@2"] == 0.0 and result["mrr"] == pytest.approx(1 / 4)  # rank I + 1


def test_unknown_target_is_a_miss() -> None:
    result = _eval([[0.9, 0.5, 0.1]], [[]], [-1], ks=(3,))
    assert result["hr@3"] == 0.0 and result["ndcg@3"] == 0.0


def test_ties_are_optimistic_by_default_and_pessimistic_on_request() -> None:
    # target item 2 ties with items 1 and 3; item 0 is strictly higher
    rows = [[0.9, 0.5, 0.5, 0.5]]
    optimistic = _eval(rows, [[]], [2], ks=(1, 2, 3))
    assert optimistic["mrr"] == pytest.approx(1 / 2)  # rank = 1 + #strictly greater = 2
    assert optimistic["hr@2"] == 1.0 and optimistic["ndcg@2"] == pytest.approx(1 / math.log2(3))
    pessimistic = _eval(rows, [[]], [2], ks=(1, 2, 3), ties="pessimistic")
    assert pessimistic["mrr"] == pytest.approx(1 / 4)  # rank = #(score >= target) = 4
    assert pessimistic["hr@3"] == 0.0


def test_constant_scorer_shows_why_ties_matter() -> None:
    rows = [[1.0] * 5] * 2
    assert _eval(rows, [[], []], [0, 4], ks=(1,))["hr@1"] == 1.0
    assert _eval(rows, [[], []], [0, 4], ks=(1,), ties="pessimistic")["hr@1"] == 0.0


def test_target_ranks_direct() -> None:
    scores = torch.tensor([[3.0, 2.0, 2.0, float("-inf")], [1.0, 2.0, 3.0, 4.0]])
    ranks = target_ranks(scores, torch.tensor([1, 3]))
    assert ranks.tolist() == [2, 1]
    assert target_ranks(scores, torch.tensor([3, 0])).tolist() == [5, 4]  # masked target: I + 1


def test_coverage_and_popularity_of_top_lists() -> None:
    rows = [[float(10 - i) for i in range(12)]] * 2  # both users: items 0..9 on top
    popularity = np.arange(12, dtype=np.int64)
    result = _eval(rows, [[0], []], [5, 5], item_popularity=popularity)
    assert result["coverage@10"] == pytest.approx(11 / 12)  # items 0..10 appear in a top 10
    # user 0: items 1..10 (mean 5.5); user 1: items 0..9 (mean 4.5)
    assert result["popularity@10"] == pytest.approx(5.0)


def test_batches_give_the_same_result() -> None:
    rng = np.random.default_rng(0)
    rows = rng.random((7, 30)).tolist()
    histories = [rng.choice(30, 3, replace=False).tolist() for _ in range(7)]
    targets = [int(rng.integers(30)) for _ in range(7)]
    whole = _eval(rows, histories, targets)
    batched = _eval(rows, histories, targets, batch_size=2)
    assert whole == pytest.approx(batched)


def test_evaluate_vectors_matches_evaluate() -> None:
    users, items = torch.randn(5, 3), torch.randn(9, 3)
    data = EvalSet(
        [np.array([0, 1]), np.array([], np.int64), np.array([2]), np.array([3]), np.array([4])],
        np.array([5, 6, 7, 8, 0]),
    )
    direct = evaluate_vectors(users, items, data)
    via_scores = evaluate(FixedScores((users @ items.T).tolist()), data)
    assert direct == pytest.approx(via_scores)


def test_per_user_values_come_in_user_order_and_average_to_the_means() -> None:
    rows = [[0.9, 0.1, 0.5, 0.3], [0.9, 0.1, 0.5, 0.3], [0.9, 0.1, 0.5, 0.3]]
    data = EvalSet([np.zeros(0, np.int64)] * 3, np.array([0, 3, 1]))
    result = evaluate_users(FixedScores(rows), data, ks=(1, 3), batch_size=2)  # type: ignore[arg-type]
    per_user = result.per_user
    assert set(per_user) == {"hr@1", "ndcg@1", "hr@3", "ndcg@3", "mrr"}
    assert per_user["hr@3"].tolist() == [1.0, 1.0, 0.0]  # ranks 1, 3, 4
    assert per_user["ndcg@3"] == pytest.approx([1.0, ndcg_at(3, 3), 0.0])
    assert per_user["mrr"] == pytest.approx([1.0, 1 / 3, 1 / 4])
    for name, values in per_user.items():
        assert values.mean() == pytest.approx(result.means[name])
    assert result.means == evaluate(FixedScores(rows), data, ks=(1, 3))  # type: ignore[arg-type]


def test_paired_bootstrap_of_a_known_difference() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(2000)
    mean, low, high = paired_bootstrap(b + 0.05, b)
    assert mean == pytest.approx(0.05) and low == pytest.approx(0.05)
    assert high == pytest.approx(0.05)  # a constant difference has no spread
    noisy = b + 0.05 + rng.normal(0, 0.1, 2000)
    mean, low, high = paired_bootstrap(noisy, b)
    half_width = 1.96 * 0.1 / np.sqrt(2000)  # the normal interval's half width, about 0.0044
    assert low < mean < high and mean == pytest.approx(0.05, abs=0.01)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_equal_arrays_give_a_zero_width_interval_at_zero() -> None:
    values = np.random.default_rng(2).random(500)
    assert paired_bootstrap(values, values.copy()) == (0.0, 0.0, 0.0)


def test_a_clear_gain_excludes_zero_and_a_noisy_one_includes_it() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(3000)
    clear = base + rng.normal(0.02, 0.1, 3000)  # 0.02 is about 11 standard errors
    _, low, high = paired_bootstrap(clear, base)
    assert 0 < low < high
    noise = base + rng.normal(0.0, 0.1, 3000)  # no true difference
    noise -= (noise - base).mean()  # exactly 0 on average
    _, low, high = paired_bootstrap(noise, base)
    assert low < 0 < high


def test_bootstrap_is_deterministic_by_seed() -> None:
    values = np.random.default_rng(4).normal(size=700)
    first = bootstrap_mean(values, resamples=1200, seed=5)
    assert bootstrap_mean(values, resamples=1200, seed=5) == first
    assert bootstrap_mean(values, resamples=1200, seed=6) != first
    assert first[0] == pytest.approx(values.mean())


def test_paired_bootstrap_refuses_unpaired_values() -> None:
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no per-user values"):
        bootstrap_mean(np.zeros(0))
