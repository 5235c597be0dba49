"""The report's statistics against independent computations: scipy, numpy on per-user rows,
the mixture SPRT in Johari et al.'s form, ANCOVA for CUPED, the chi-square test for SRM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from app.db.experiments import ArmSums
from app.experiments.report import moments
from app.experiments.stats import (
    Reading,
    arm_interval,
    half_width,
    linearise,
    p_value,
    relative_lift,
    sample_ratio,
)

FIXED, SEQUENTIAL = Reading(sequential=False), Reading(sequential=True)


def sums(x: np.ndarray, y: np.ndarray, c: np.ndarray, metric: str = "clicks") -> ArmSums:
    """The per-arm sums the report's SQL returns, from per-user rows."""
    x, y, c = x.astype(float), y.astype(float), c.astype(float)
    metrics = {
        f"{metric}_s": y.sum(),
        f"{metric}_ss": (y * y).sum(),
        f"{metric}_sx": (x * y).sum(),
        f"{metric}_sc": (y * c).sum(),
    }
    return ArmSums(
        "arm", len(x), x.sum(), (x * x).sum(), c.sum(), (c * c).sum(), (x * c).sum(), 0, 0,
        {k: float(v) for k, v in metrics.items()},
    )  # fmt: skip


def users(rng: np.random.Generator, n: int, lift: float = 0.0) -> tuple[np.ndarray, ...]:
    """Per-user exposures, clicks and a covariate that tracks the click propensity."""
    propensity = np.minimum(rng.beta(1, 9, n) * (1 + lift), 1)
    x = 1 + rng.poisson(4, n)
    y = rng.binomial(x, propensity)
    c = rng.binomial(20, propensity)
    return x, y, c


def test_mean_metric_interval_is_the_normal_interval_of_scipy() -> None:
    rng = np.random.default_rng(1)
    revenue = rng.lognormal(2, 1, 500)
    line = linearise(moments(sums(np.ones(500), revenue, np.zeros(500), "revenue"), "revenue"))
    assert line is not None
    low, high = sp.norm.interval(0.95, loc=revenue.mean(), scale=sp.sem(revenue))
    assert arm_interval(line, FIXED) == pytest.approx((low, high), rel=1e-9)


def test_ratio_metric_variance_is_the_delta_method_on_user_rows() -> None:
    rng = np.random.default_rng(2)
    x, y, c = users(rng, 800)
    line = linearise(moments(sums(x, y, c), "clicks"))
    assert line is not None
    ratio = y.sum() / x.sum()
    assert line.estimate == pytest.approx(ratio)
    # var(R) = var(y - R x) / (n mean(x)^2), computed on the rows with ddof 1
    variance = np.var(y - ratio * x, ddof=1) / (len(x) * x.mean() ** 2)
    assert line.var_l / line.n == pytest.approx(variance, rel=1e-9)
    z = sp.norm.ppf(0.975)
    assert arm_interval(line, FIXED) == pytest.approx(
        (ratio - z * math.sqrt(variance), ratio + z * math.sqrt(variance)), rel=1e-9
    )


def test_relative_lift_of_means_by_hand() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.exponential(10, 400), rng.exponential(11, 300)
    zeros = np.zeros
    la = linearise(moments(sums(np.ones(400), a, zeros(400), "revenue"), "revenue"))
    lb = linearise(moments(sums(np.ones(300), b, zeros(300), "revenue"), "revenue"))
    assert la is not None and lb is not None
    lift = relative_lift(la, lb, FIXED)
    assert lift is not None
    va, vb = sp.sem(a) ** 2, sp.sem(b) ** 2
    expected = b.mean() / a.mean() - 1
    se = math.sqrt(vb / a.mean() ** 2 + b.mean() ** 2 * va / a.mean() ** 4)
    assert lift.lift == pytest.approx(expected)
    assert lift.difference == pytest.approx(b.mean() - a.mean())
    assert lift.p_value == pytest.approx(2 * sp.norm.sf(abs(expected) / se), rel=1e-9)
    assert (lift.low, lift.high) == pytest.approx(sp.norm.interval(0.95, expected, se), rel=1e-9)
    # The difference test agrees with Welch's t-test at this size (a sanity check, not equal).
    welch = sp.ttest_ind(b, a, equal_var=False).pvalue
    assert abs(lift.p_value - welch) < 0.02


def test_sequential_p_value_is_the_mixture_sprt() -> None:
    reading = Reading(sequential=True, tuning=5000)
    rho2 = reading.rho2()
    for estimate, variance, n in [(0.02, 1e-4, 2000), (0.1, 4e-3, 800), (0.001, 1e-6, 10_000)]:
        s2 = variance * n  # per-unit variance; the mixture's variance is tau^2 = rho^2 s2
        tau2 = rho2 * s2
        likelihood_ratio = math.sqrt(s2 / (s2 + n * tau2)) * math.exp(
            n * n * tau2 * estimate**2 / (2 * s2 * (s2 + n * tau2))
        )
        expected = min(1.0, 1 / likelihood_ratio)
        assert p_value(estimate, variance, n, reading) == pytest.approx(expected, rel=1e-9)
        # always-valid: the interval leaves out 0 exactly when p < alpha
        width = half_width(variance, n, reading)
        assert (abs(estimate) > width) == (expected < 0.05)
        assert width > half_width(variance, n, FIXED)


def test_sequential_interval_is_wider_than_fixed_and_shrinks_with_users() -> None:
    widths = [half_width(1 / n, n, SEQUENTIAL) / half_width(1 / n, n, FIXED) for n in (100, 10**4)]
    assert all(ratio > 1 for ratio in widths)
    assert half_width(1 / 10**4, 10**4, SEQUENTIAL) < half_width(1 / 100, 100, SEQUENTIAL)


def test_cuped_is_ancova_and_narrows_the_interval_when_the_covariate_correlates() -> None:
    rng = np.random.default_rng(4)
    (_, ya, ca), (_, yb, cb) = users(rng, 3000), users(rng, 3000, lift=0.05)
    line_a = linearise(moments(sums(np.ones(3000), ya, ca, "revenue"), "revenue"))
    line_b = linearise(moments(sums(np.ones(3000), yb, cb, "revenue"), "revenue"))
    assert line_a is not None and line_b is not None
    cuped = relative_lift(line_a, line_b, FIXED, cuped=True)
    plain = relative_lift(line_a, line_b, FIXED, cuped=False)
    assert cuped is not None and plain is not None
    assert cuped.variance_reduction > 0.3 and plain.variance_reduction == 0
    assert cuped.high - cuped.low < 0.85 * (plain.high - plain.low)
    # ANCOVA with a common slope: y ~ 1 + treatment + c gives the same adjusted difference.
    y = np.concatenate([ya, yb]).astype(float)
    treatment = np.r_[np.zeros(3000), np.ones(3000)]
    design = np.column_stack([np.ones(6000), treatment, np.concatenate([ca, cb])])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    assert cuped.difference == pytest.approx(coefficients[1], rel=1e-6)


def test_cuped_changes_nothing_with_an_unrelated_covariate() -> None:
    rng = np.random.default_rng(5)
    (xa, ya, _), (xb, yb, _) = users(rng, 3000), users(rng, 3000)
    noise_a, noise_b = rng.poisson(5, 3000), rng.poisson(5, 3000)
    line_a = linearise(moments(sums(xa, ya, noise_a), "clicks"))
    line_b = linearise(moments(sums(xb, yb, noise_b), "clicks"))
    assert line_a is not None and line_b is not None
    lift = relative_lift(line_a, line_b, FIXED)
    assert lift is not None and lift.variance_reduction < 0.01


def test_no_lift_without_a_control_mean() -> None:
    zero = linearise(moments(sums(np.ones(10), np.zeros(10), np.zeros(10), "revenue"), "revenue"))
    some = linearise(moments(sums(np.ones(10), np.ones(10), np.zeros(10), "revenue"), "revenue"))
    assert zero is not None and some is not None
    assert relative_lift(zero, some, FIXED) is None
    assert (
        linearise(moments(sums(np.ones(1), np.ones(1), np.zeros(1), "revenue"), "revenue")) is None
    )


def test_sample_ratio_matches_scipy_and_flags_a_broken_split() -> None:
    fine = sample_ratio([5030, 4970], [1, 1])
    reference = sp.chisquare([5030, 4970], [5000, 5000])
    assert fine["chi2"] == pytest.approx(reference.statistic)
    assert fine["p_value"] == pytest.approx(reference.pvalue)
    assert fine["ok"] is True
    broken = sample_ratio([5000, 4600], [1, 1])
    assert broken["ok"] is False and broken["p_value"] < 0.001
    # 70/20/10 weights: a split that fits them is fine, an even split is not.
    assert sample_ratio([7010, 1985, 1005], [70, 20, 10])["ok"] is True
    assert sample_ratio([3333, 3333, 3334], [70, 20, 10])["ok"] is False
    assert sample_ratio([0, 0], [1, 1]) == {"chi2": 0.0, "p_value": 1.0, "ok": True}
