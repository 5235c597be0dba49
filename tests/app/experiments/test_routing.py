"""Sticky weighted assignment, overlap measures and the old per-exposure test."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from app.experiments.routing import Arm, assign, bucket
from app.experiments.stats import two_proportion_test
from app.serving.compare import jaccard, rank_biased_overlap

ARMS = (Arm("control", "mf", 70), Arm("treatment", "sasrec", 20), Arm("holdout", "popularity", 10))


def test_assignment_is_sticky_and_salted() -> None:
    users = [f"user-{n}" for n in range(1000)]
    first = [assign(ARMS, "s1", u).name for u in users]
    assert first == [assign(ARMS, "s1", u).name for u in users]
    other_salt = [assign(ARMS, "s2", u).name for u in users]
    assert sum(a != b for a, b in zip(first, other_salt, strict=True)) > 200


def test_weights_hold_over_10000_users() -> None:
    counts = Counter(assign(ARMS, "exp", f"u{n}").name for n in range(10_000))
    for arm in ARMS:
        expected = 10_000 * arm.weight / 100
        # 4 standard deviations of a binomial count: fails by chance about once in 15,000 runs
        assert abs(counts[arm.name] - expected) < 4 * math.sqrt(expected * (1 - arm.weight / 100))


def test_bucket_is_uniform_and_stable() -> None:
    values = [bucket("salt", str(n)) for n in range(10_000)]
    assert all(0 <= v < 1 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.02
    assert bucket("salt", "42") == bucket("salt", "42")


def test_jaccard_and_rbo() -> None:
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert rank_biased_overlap(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
    assert rank_biased_overlap(["a", "b", "c"], ["x", "y", "z"]) == 0.0
    # Agreement at the top weighs more than agreement at the bottom.
    top = rank_biased_overlap(["a", "b", "c", "d"], ["a", "b", "x", "y"])
    bottom = rank_biased_overlap(["a", "b", "c", "d"], ["x", "y", "c", "d"])
    assert top > bottom
    # Same set, different order: Jaccard cannot tell, RBO can.
    assert jaccard(["a", "b"], ["b", "a"]) == 1.0 > rank_biased_overlap(["a", "b"], ["b", "a"])


def test_two_proportion_test() -> None:
    result = two_proportion_test(100, 1000, 130, 1000)
    assert result["difference"] == pytest.approx(0.03)
    # pooled p = 0.115, se = sqrt(0.115 * 0.885 * 2 / 1000) = 0.014267
    assert result["z"] == pytest.approx(2.10274, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.035488, abs=1e-5)
    assert two_proportion_test(0, 0, 1, 10)["p_value"] is None
