"""The registry refuses checkpoints it cannot serve as they were evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.serving.registry import load_version
from models.checkpoint import CheckpointError
from models.train import save_trained, train_model
from tests.models.conftest import random_loo

TINY_GAPS = {
    "max_len": 10,
    "hidden": 16,
    "epochs": 1,
    "eval_every": 1,
    "progress": False,
    "time_gaps": True,
}


def test_a_checkpoint_that_reads_event_times_is_refused(tmp_path: Path) -> None:
    # Serving does not pass event times yet: its lists would differ from the offline ones.
    data = random_loo()
    trained = train_model("sasrec", data, TINY_GAPS, refit=False)
    save_trained(trained.model, trained.report, data, tmp_path / "sasrec")
    with pytest.raises(CheckpointError, match="serving does not pass"):
        load_version(tmp_path / "sasrec")
