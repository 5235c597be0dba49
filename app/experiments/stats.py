"""Proportions with 95% Wilson intervals and a two-proportion z-test."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) with no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> dict[str, float | None]:
    """Pooled two-sided z-test of p1 == p2: the difference, z and p-value (None if undefined)."""
    if n1 == 0 or n2 == 0:
        return {"difference": None, "z": None, "p_value": None}
    p1, p2 = s1 / n1, s2 / n2
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return {"difference": p2 - p1, "z": None, "p_value": None}
    z = (p2 - p1) / se
    return {"difference": p2 - p1, "z": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}
