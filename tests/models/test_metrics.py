"""The full-ranking evaluator on hand-computed cases, ties included."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from models.base import History
from models.data import EvalSet
from models.metrics import evaluate, evaluate_vectors, target_ranks


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
