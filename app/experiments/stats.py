"""The report's statistics, on per-arm sums over users (never per-row): delta-method ratio
metrics, CUPED, fixed-horizon and always-valid intervals, the sample-ratio check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy.special import chdtrc

ALPHA = 0.05
SRM_ALPHA = 0.001  # a split this unlikely is broken, not unlucky
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Moments:
    """Sums over one arm's users of a metric's numerator y, its denominator x (x = 1 for a mean
    per user) and the covariate c: sums, sums of squares and cross-products."""

    n: float
    sy: float
    sx: float
    sc: float
    syy: float
    sxx: float
    scc: float
    sxy: float
    syc: float
    sxc: float

    def cov(self, sab: float, sa: float, sb: float) -> float:
        """The sample covariance of two columns from their sums."""
        return (sab - sa * sb / self.n) / (self.n - 1)


@dataclass(frozen=True)
class Linearised:
    """A ratio metric R = sum y / sum x of one arm, with the variance of its per-user influence
    l = (y - R x) / mean x (the delta method), its covariance with c, and c's moments."""

    n: float
    estimate: float
    var_l: float
    cov_lc: float
    var_c: float
    mean_c: float


@dataclass(frozen=True)
class Lift:
    """A treatment arm against the control: relative lift, its interval and p-value, the
    absolute difference, and the share of variance CUPED removed."""

    lift: float
    low: float
    high: float
    p_value: float
    difference: float
    variance_reduction: float


def linearise(m: Moments) -> Linearised | None:
    """The delta method's view of one arm's metric; None with under two users or no x."""
    if m.n < 2 or m.sx <= 0:
        return None
    mean_x, ratio = m.sx / m.n, m.sy / m.sx
    var_y, var_x = m.cov(m.syy, m.sy, m.sy), m.cov(m.sxx, m.sx, m.sx)
    cov_xy = m.cov(m.sxy, m.sx, m.sy)
    var_l = (var_y - 2 * ratio * cov_xy + ratio * ratio * var_x) / mean_x**2
    cov_lc = (m.cov(m.syc, m.sy, m.sc) - ratio * m.cov(m.sxc, m.sx, m.sc)) / mean_x
    var_c = max(m.cov(m.scc, m.sc, m.sc), 0.0)
    return Linearised(m.n, ratio, max(var_l, 0.0), cov_lc, var_c, m.sc / m.n)


@dataclass(frozen=True)
class Reading:
    """How intervals are read: always-valid (sequential, safe at every look) or fixed-horizon
    (valid once, at a sample size fixed in advance), at level alpha."""

    sequential: bool = True
    alpha: float = ALPHA
    tuning: float = 5000  # units (users) at which the confidence sequence is tightest

    def rho2(self) -> float:
        """The normal mixture's variance (Howard et al. 2021) that makes the confidence
        sequence tightest near `tuning` units, as GrowthBook chooses it."""
        log_alpha = math.log(self.alpha)
        return (-2 * log_alpha + math.log(-2 * log_alpha + 1)) / self.tuning


def half_width(variance: float, n: float, reading: Reading) -> float:
    """Half the interval of an estimate with this variance from `n` units: z * se, or the
    normal-mixture confidence sequence's (Waudby-Smith et al. 2023, eq. 9)."""
    if not reading.sequential:
        return _NORMAL.inv_cdf(1 - reading.alpha / 2) * math.sqrt(variance)
    rho2, s2 = reading.rho2(), variance * n
    log_term = math.log(math.sqrt(n * rho2 + 1) / reading.alpha)
    return math.sqrt(s2 * 2 * (n * rho2 + 1) * log_term) / (n * math.sqrt(rho2))


def p_value(estimate: float, variance: float, n: float, reading: Reading) -> float:
    """Two-sided p-value of estimate == 0: the z-test, or the mixture SPRT's always-valid one
    (below alpha exactly when the confidence sequence leaves out 0)."""
    if variance <= 0:
        return 1.0 if estimate == 0 else 0.0
    if not reading.sequential:
        return math.erfc(abs(estimate) / math.sqrt(2 * variance))
    rho2, s2 = reading.rho2(), variance * n
    log_p = 0.5 * math.log(n * rho2 + 1) - estimate**2 * n * n * rho2 / (2 * s2 * (n * rho2 + 1))
    return min(1.0, math.exp(log_p))


def arm_interval(arm: Linearised, reading: Reading) -> tuple[float, float]:
    """The interval of one arm's metric."""
    width = half_width(arm.var_l / arm.n, arm.n, reading)
    return arm.estimate - width, arm.estimate + width


def _theta(control: Linearised, treatment: Linearised) -> float:
    """CUPED's coefficient, pooled over both arms: cov(l, c) / var(c)."""
    var_c = (control.n - 1) * control.var_c + (treatment.n - 1) * treatment.var_c
    cov = (control.n - 1) * control.cov_lc + (treatment.n - 1) * treatment.cov_lc
    return cov / var_c if var_c > 0 else 0.0


def _adjusted(arm: Linearised, theta: float, mean_c: float) -> tuple[float, float]:
    """The arm's estimate moved by theta * (its covariate mean - the pooled one), and the
    variance of that estimate."""
    variance = (arm.var_l - 2 * theta * arm.cov_lc + theta * theta * arm.var_c) / arm.n
    return arm.estimate - theta * (arm.mean_c - mean_c), max(variance, 0.0)


def _lift_variance(
    control: Linearised, treatment: Linearised, theta: float
) -> tuple[float, float, float, float]:
    """(control mean, treatment mean, relative lift, its delta-method variance) under theta."""
    mean_c = (control.n * control.mean_c + treatment.n * treatment.mean_c) / (
        control.n + treatment.n
    )
    mc, vc = _adjusted(control, theta, mean_c)
    mt, vt = _adjusted(treatment, theta, mean_c)
    return mc, mt, mt / mc - 1, vt / mc**2 + mt**2 * vc / mc**4


def relative_lift(
    control: Linearised, treatment: Linearised, reading: Reading, *, cuped: bool = True
) -> Lift | None:
    """Treatment / control - 1 with its interval and p-value; None when the control's mean is
    not positive (no lift is defined)."""
    if control.estimate <= 0:
        return None
    theta = _theta(control, treatment) if cuped else 0.0
    mc, mt, lift, variance = _lift_variance(control, treatment, theta)
    if mc <= 0:
        return None
    raw = _lift_variance(control, treatment, 0.0)[3]
    n = control.n + treatment.n
    width = half_width(variance, n, reading)
    return Lift(
        lift=lift,
        low=lift - width,
        high=lift + width,
        p_value=p_value(lift, variance, n, reading),
        difference=mt - mc,
        variance_reduction=1 - variance / raw if raw > 0 else 0.0,
    )


def sample_ratio(users: Sequence[int], weights: Sequence[float]) -> dict[str, float | bool]:
    """Chi-square test of users per arm against the configured weights."""
    total, weight = sum(users), sum(weights)
    if len(users) < 2 or total == 0:
        return {"chi2": 0.0, "p_value": 1.0, "ok": True}
    expected = [total * w / weight for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(users, expected, strict=True))
    p = float(chdtrc(len(users) - 1, chi2))
    return {"chi2": chi2, "p_value": p, "ok": p >= SRM_ALPHA}


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> dict[str, float | None]:
    """The old per-exposure test (kept for bench/ab_sim.py's comparison only): pooled
    two-sided z-test of p1 == p2, which treats every exposure as independent."""
    if n1 == 0 or n2 == 0:
        return {"difference": None, "z": None, "p_value": None}
    p1, p2 = s1 / n1, s2 / n2
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return {"difference": p2 - p1, "z": None, "p_value": None}
    z = (p2 - p1) / se
    return {"difference": p2 - p1, "z": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}
