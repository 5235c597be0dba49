"""Serving fixtures: checkpoints trained once per run, settings that serve them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from tests.app.serving_fixtures import train_tiny_models


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """popularity, mf and sasrec checkpoints on generated data (read-only for tests)."""
    return train_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def serving_settings(settings: Settings, trained_models: Path) -> Settings:
    """The parametrised deployment, serving the trained checkpoints."""
    settings.model_dir = trained_models
    settings.refresh_interval_s = 3600  # tests trigger refreshes themselves
    return settings
