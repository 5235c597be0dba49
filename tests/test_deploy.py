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


def test_trainer_health_check_reads_its_heartbeat() -> None:
    # The trainer serves no HTTP: the image's /healthz check would fail forever.
    trainer = compose()["services"]["trainer"]
    command, check = trainer["command"], trainer["healthcheck"]["test"]
    heartbeat = command[command.index("--heartbeat") + 1]
    assert check[:4] == ["CMD", "python", "-m", "app.training.heartbeat"]
    assert check[4] == heartbeat
    every = command[command.index("--every") + 1]
    assert every == "1h" and float(check[5]) > 3600  # longer than the interval between beats


def test_keys_and_cors_reach_the_containers() -> None:
    env = compose()["x-recsys-env"]
    for name in ("WRITE", "ADMIN", "READ", "METRICS"):
        assert env[f"RECSYS_{name}_KEY"] == f"${{RECSYS_{name}_KEY:-}}"  # empty: unset
    assert env["RECSYS_CORS_ORIGINS"] == "${RECSYS_CORS_ORIGINS:-[]}"
