"""The report's SQL (app/db/experiments.py) against a Python recomputation of the same per-user
metrics, on Postgres and SQLite."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from app.config import Settings
from app.db import experiments as queries
from app.db.session import make_engine, make_sessionmaker
from tests.app.experiments.report_data import (
    PRE_WINDOW,
    START,
    WINDOW,
    expected_sums,
    scenario,
    store,
)

CONVERSIONS = ("purchase", "add_to_cart")


@pytest.mark.parametrize("seed", [1, 2])
async def test_arm_sums_equal_a_python_recomputation(settings: Settings, seed: int) -> None:
    exposures, events = scenario(seed, f"exp{seed}")
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            await store(session, exposures, events)
            found = await queries.arm_sums(
                session=session,
                experiment=f"exp{seed}",
                window_s=WINDOW.total_seconds(),
                conversions=CONVERSIONS,
                started_at=START,
                pre_window_s=PRE_WINDOW.total_seconds(),
            )
            quantile = await queries.latency_quantile(
                session=session, experiment=f"exp{seed}", arm="a", timed=found[0].timed
            )
    finally:
        await engine.dispose()
    expected = expected_sums(f"exp{seed}", exposures, events, CONVERSIONS)
    assert {row.arm for row in found} == set(expected) == {"a", "b", "override"}
    for row in found:
        got = {k: v for k, v in asdict(row).items() if k not in ("arm", "metrics")}
        got.update(row.metrics)
        assert got == pytest.approx(expected[row.arm], rel=1e-9), row.arm
    # The attribution did something of each kind: windowed clicks, purchases, pre-period views.
    assert all(expected[arm]["clicks_s"] > 0 and expected[arm]["revenue_s"] > 0 for arm in "ab")
    assert expected["a"]["sc"] > 0
    mine = [x for x in exposures if x["experiment"] == f"exp{seed}"]
    latencies = sorted(x["latency_ms"] for x in mine if x["variant"] == "a")
    assert quantile == pytest.approx(latencies[-(-99 * len(latencies) // 100) - 1])
