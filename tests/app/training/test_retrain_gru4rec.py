"""GRU4Rec through the service: `recsys retrain` trains it when listed, /recommend, POST
/recommend with a history and /compare serve its checkpoint."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.training.retrain import retrain
from tests.app.training.test_retrain import post_shop
from tests.conftest import running_app

TINY = {"gru4rec": {"hidden": 16, "epochs": 6, "patience": 6, "lr": 1e-2, "progress": False}}


async def test_retrain_trains_and_the_service_serves_gru4rec(pg_settings: Settings) -> None:
    pg_settings.retrain_models = ("gru4rec",)  # as RECSYS_RETRAIN_MODELS=gru4rec sets it
    async with running_app(pg_settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await post_shop(client)
        names = list(pg_settings.retrain_models)
        (outcome,) = await retrain(pg_settings, services.sessionmaker, names, TINY)
        assert outcome.status == "active" and outcome.val["ndcg@10"] > 0.05
        await client.post("/models/reload")
        models = (await client.get("/models")).json()["models"]
        assert [(m["name"], m["version"]) for m in models] == [("gru4rec", outcome.version)]
        params: dict[str, str | int] = {"user_id": "user-3", "model": "gru4rec", "k": 5}
        body = (await client.get("/recommend", params=params)).json()
        assert body["model_version"] == outcome.version and body["fallback"] is None
        assert len(body["items"]) == 5
        history = {
            "user_id": "anon-1",
            "model": "gru4rec",
            "k": 5,
            "history": ["sku-1", "sku-2", "sku-3"],
        }
        anonymous = (await client.post("/recommend", json=history)).json()
        assert anonymous["fallback"] is None and len(anonymous["items"]) == 5
        assert not {"sku-1", "sku-2", "sku-3"} & {item["item_id"] for item in anonymous["items"]}
        compared = await client.get("/compare", params={"user_id": "user-3", "models": "gru4rec"})
        assert compared.status_code == 200
        assert [m["model"] for m in compared.json()["models"]] == ["gru4rec"]


def test_retrain_models_setting_names_gru4rec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_RETRAIN_MODELS", '["mf","gru4rec"]')  # the README's JSON form
    assert Settings().retrain_models == ("mf", "gru4rec")
