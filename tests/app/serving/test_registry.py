"""The registry serves checkpoints as they were evaluated, event times included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.serving.registry import load_version
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


def test_a_checkpoint_that_reads_event_times_is_served(tmp_path: Path) -> None:
    # Serving passes event times now (app.serving.state): a time_gaps checkpoint loads.
    data = random_loo()
    trained = train_model("sasrec", data, TINY_GAPS, refit=False)
    save_trained(trained.model, trained.report, data, tmp_path / "sasrec")
    loaded = load_version(tmp_path / "sasrec")
    assert loaded.model.uses_times
    history, times = [data.train[0]], [np.asarray(data.train_times[0])]  # type: ignore[index]
    torch.testing.assert_close(
        loaded.model.user_vectors(history, times), trained.model.user_vectors(history, times)
    )
