"""Tiny trained checkpoints and helpers for the serving tests."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx

from app.training.demo import synthetic_shop
from models.split import build_leave_one_out
from models.train import save_trained, train_model

TEST_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "mf": {"factors": 16, "iterations": 4},
    "sasrec": {
        "max_len": 20,
        "hidden": 32,
        "epochs": 15,
        "patience": 15,
        "lr": 5e-3,
        "batch_size": 64,
        "progress": False,
    },
}


def train_tiny_models(root: Path) -> Path:
    """popularity, mf and sasrec trained on the generated shop: root/<name>/v1. Refit as
    `recsys retrain` does, so sasrec serves two networks (`ensemble_refit`)."""
    split = build_leave_one_out(synthetic_shop(users=200, items=60, length=12, groups=3), k=2)
    for name, overrides in TEST_MODELS.items():
        trained = train_model(name, split, overrides, seed=0)
        save_trained(trained.model, trained.report, split, root / name / "v1")
    return root


def copy_models(source: Path, target: Path) -> Path:
    """A private copy of trained checkpoints, for tests that add or break versions."""
    shutil.copytree(source, target)
    return target


def events_for(user: str, items: list[str]) -> dict[str, Any]:
    """A POST /events body: the user viewed `items` in order, one second apart."""
    return {
        "events": [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": user,
                "item_id": item,
                "type": "view",
                "timestamp": 1_750_000_000 + n,
            }
            for n, item in enumerate(items)
        ]
    }


async def post_history(client: httpx.AsyncClient, user: str, items: list[str]) -> None:
    """Store the user's history through the API."""
    response = await client.post("/events", json=events_for(user, items))
    assert response.status_code == 200, response.text


def ids(response: httpx.Response) -> list[str]:
    """Item ids of a /recommend answer."""
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]
