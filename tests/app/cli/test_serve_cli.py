"""`recsys serve`: several workers are refused without a shared cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings


@pytest.fixture
def local_cache(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings with the embedded database and no Redis."""
    monkeypatch.setenv("RECSYS_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("RECSYS_REDIS_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_several_workers_without_redis_are_refused(local_cache: None) -> None:
    result = CliRunner(env={"COLUMNS": "240"}).invoke(cli, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "RECSYS_REDIS_URL" in result.output


def test_zero_workers_is_a_usage_error(local_cache: None) -> None:
    result = CliRunner(env={"COLUMNS": "240"}).invoke(cli, ["serve", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output


@pytest.mark.parametrize("workers", [1, 2])
def test_demo_models_are_trained_once_before_the_workers_start(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # Each worker runs the app's start-up: left to them, N workers would train the demo at once.
    import uvicorn

    import app.training.demo

    calls: list[str] = []

    async def ensure_demo(*_: object) -> None:
        calls.append("demo")

    monkeypatch.setattr(app.training.demo, "ensure_demo", ensure_demo)
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kw: calls.append(f"run x{kw['workers']}"))
    monkeypatch.setenv("RECSYS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RECSYS_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RECSYS_DEMO_MODELS", "true")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--workers", str(workers)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    # One worker trains in its own start-up (app.serving.lifecycle), as before.
    assert calls == (["demo", "run x2"] if workers == 2 else ["run x1"])
