"""GET /experiments/{name}/report: its shape, sequential and fixed readings, CUPED, the
sample-ratio check and the guardrail, on Postgres and SQLite."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.db import repo
from app.db.session import make_engine, make_sessionmaker
from tests.app.experiments.report_data import ARMS, START, expected_sums, scenario, store


async def save(
    settings: Settings, name: str, exposures: list[dict], events: list[dict], **extra: Any
) -> None:
    """Store rows and the experiment (arms naming no loaded model: the report needs none)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            await store(session, exposures, events)
            await repo.put_experiment(
                session=session, name=name, arms=ARMS, salt=name, status="running",
                started_at=START, **extra,
            )  # fmt: skip
    finally:
        await engine.dispose()


async def report(client: httpx.AsyncClient, name: str, **params: Any) -> dict[str, Any]:
    """The report, asserting a 200."""
    response = await client.get(f"/experiments/{name}/report", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_report_shape_sequential_by_default(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    exposures, events = scenario(7, "shop", users=80)
    await save(settings, "shop", exposures, events)
    found = await report(client, "shop")
    assert found["analysis"]["sequential"] is True and found["analysis"]["unit"] == "user"
    assert "always-valid" in found["analysis"]["method"] and found["analysis"]["cuped"] is True
    assert set(found["srm"]) == {"chi2", "p_value", "ok"} and found["srm"]["ok"] is True
    assert found["experiment"]["started_at"].startswith("2026-11-01")
    arms = {arm["arm"]: arm for arm in found["arms"]}
    assert list(arms) == ["a", "b", "override"]
    expected = expected_sums("shop", exposures, events, tuple(settings.conversion_types))
    for name, arm in arms.items():
        assert (arm["users"], arm["exposures"]) == (expected[name]["n"], expected[name]["sx"])
        assert arm["clicks"]["count"] == expected[name]["clicks_s"]
        assert arm["revenue"]["total"] == pytest.approx(expected[name]["revenue_s"])
        low, high = arm["clicks"]["ci95"]
        assert low < arm["clicks"]["rate"] < high
        assert arm["guardrail"]["metric"] == "latency_p99_ms"
    assert arms["a"]["vs_control"] is None and arms["override"]["vs_control"] is None
    lift = arms["b"]["vs_control"]["clicks"]
    assert set(lift) == {"lift", "ci95", "p_value", "difference", "variance_reduction"}
    assert lift["ci95"][0] < lift["lift"] < lift["ci95"][1] and 0 <= lift["p_value"] <= 1


async def test_fixed_reading_is_narrower_and_cuped_can_be_off(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    exposures, events = scenario(8, "shop", users=80)
    await save(settings, "shop", exposures, events)
    sequential = await report(client, "shop")
    fixed = await report(client, "shop", sequential="false")
    plain = await report(client, "shop", sequential="false", cuped="false")
    assert fixed["analysis"]["sequential"] is False and "fixed" in fixed["analysis"]["method"]

    def width(found: dict[str, Any], arm: int, metric: str) -> float:
        low, high = found["arms"][arm][metric]["ci95"]
        return float(high - low)

    assert width(fixed, 0, "clicks") < width(sequential, 0, "clicks")
    wide, narrow = sequential["arms"][1]["vs_control"], fixed["arms"][1]["vs_control"]
    assert narrow["clicks"]["ci95"][1] - narrow["clicks"]["ci95"][0] < (
        wide["clicks"]["ci95"][1] - wide["clicks"]["ci95"][0]
    )
    assert narrow["clicks"]["p_value"] <= wide["clicks"]["p_value"]
    assert plain["analysis"]["cuped"] is False
    assert plain["arms"][1]["vs_control"]["clicks"]["variance_reduction"] == 0


@pytest.mark.parametrize(("field", "value"), [("sequential", "maybe"), ("cuped", "2")])
async def test_bad_parameters_are_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    response = await client.get("/experiments/shop/report", params={field: value})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_a_broken_split_and_a_guardrail_breach_are_loud(
    settings: Settings, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    exposures = [
        {"recommendation_id": f"r{n}", "user_id": f"u{n}", "model_name": "mf",
         "model_version": "v1", "experiment": "split", "variant": "a" if n < 300 else "b",
         "items": {"items": ["i1"]}, "created_at": START + timedelta(minutes=n),
         "latency_ms": 10.0, "fallback": None if n < 300 or n % 2 else "backfill"}
        for n in range(500)
    ]  # fmt: skip
    guardrail = {"metric": "fallback_rate", "tolerance": 0.1}
    await save(settings, "split", exposures, [], guardrail=guardrail)
    with caplog.at_level(logging.WARNING, logger="app.experiments.report"):
        found = await report(client, "split")
    assert found["srm"]["ok"] is False and found["srm"]["p_value"] < 0.001
    assert found["srm"]["chi2"] == pytest.approx(20.0)  # (300-250)^2/250 * 2
    assert any("SAMPLE RATIO MISMATCH" in warning for warning in found["warnings"])
    assert found["guardrail"] == guardrail
    a, b = found["arms"]
    assert (a["guardrail"]["value"], a["guardrail"]["worse"]) == (0.0, False)
    assert (b["guardrail"]["value"], b["guardrail"]["worse"]) == (0.5, True)
    assert any("guardrail" in warning for warning in found["warnings"])
    assert "SAMPLE RATIO MISMATCH" in caplog.text


async def test_unknown_experiment_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/experiments/nope/report")).status_code == 404
