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
