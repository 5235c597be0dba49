"""No Docker engine runs here: check the compose file's shape and the Dockerfile's essentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    """The parsed docker-compose.yml."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_and_health_checks() -> None:
    services = compose()["services"]
    assert {"api", "postgres", "redis", "migrate"} <= set(services)
    for name in ("api", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name


def test_dependency_order() -> None:
    services = compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    api = services["api"]["depends_on"]
    assert api["migrate"]["condition"] == "service_completed_successfully"
    assert api["postgres"]["condition"] == "service_healthy"
    assert api["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["recsys", "db", "upgrade"]
    trainer = services["trainer"]
    assert trainer["command"][:2] == ["recsys", "retrain"] and "--every" in trainer["command"]
    assert trainer["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # The trainer writes checkpoints where the api reads them.
    assert set(trainer["volumes"]) == set(services["api"]["volumes"])


def test_api_points_at_postgres_and_redis() -> None:
    env = compose()["services"]["api"]["environment"]
    assert env["RECSYS_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["RECSYS_REDIS_URL"].startswith("redis://redis:")


def test_dockerfile_essentials() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2  # multi-stage
    assert "torch==2.13.0" in text and "whl/cpu" in text
    assert "\nUSER recsys" in text and "HEALTHCHECK" in text
    assert 'CMD ["recsys", "serve"' in text
