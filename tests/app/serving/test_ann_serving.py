"""Approximate retrieval in serving: lists through the index, exact masking, added items."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from app.serving.registry import AnnPolicy, LoadedModel, load_version
from app.serving.retrieval import _rescored, retrieve
from app.serving.scoring import rank_scored
from tests.app.serving_fixtures import ids, post_history
from tests.conftest import running_app

GROUP = [f"sku-{n}" for n in range(10)]  # one of the generated shop's item groups, in order
# 60 items in 31 cells; every cell probed, so the index finds the exact top and lists must
# match. The index answers a row asking for at most 60 * nprobe / 62 candidates (k + masked
# items + overfetch), so the tests keep k and the overfetch small.
EXHAUSTIVE = {"ann_min_items": 10, "ann_nprobe": 1000, "ann_overfetch": 0, "ranked_items": 10}


def ann_settings(settings: Settings, **update: object) -> Settings:
    """The serving settings with an index for every dot-scored model."""
    return settings.model_copy(update={**EXHAUSTIVE, **update})


Scored = list[tuple[str, float]]


async def lists(client: httpx.AsyncClient, user: str, model: str) -> list[Scored]:
    """The user's lists at k=5 (the cached list) and k=25 (past it: the catalog is ranked)."""
    out = []
    for k in (5, 25):
        response = await client.get("/recommend", params={"user_id": user, "k": k, "model": model})
        assert response.status_code == 200, response.text
        out.append([(item["item_id"], item["score"]) for item in response.json()["items"]])
    return out


def assert_same_ranking(found: Scored, wanted: Scored) -> None:
    """Same scores position by position; where the items differ, they tie (the tiny models
    give items of one group near-equal vectors, and float sums break such ties either way)."""
    assert len(found) == len(wanted) == len({item for item, _ in found})
    wanted_scores = dict(wanted)
    for (item, score), (other, other_score) in zip(found, wanted, strict=True):
        assert score == pytest.approx(other_score, rel=1e-4, abs=1e-5)
        if item != other:
            assert wanted_scores[item] == pytest.approx(score, rel=1e-4, abs=1e-5)


async def test_index_lists_equal_exact_lists(serving_settings: Settings) -> None:
    exact_settings = serving_settings.model_copy(update={"ranked_items": 10})
    found: dict[str, list[Scored]] = {}
    for name, settings in (("exact", exact_settings), ("ann", ann_settings(serving_settings))):
        async with running_app(settings) as client:
            await post_history(client, f"uma-{name}", GROUP[:5])  # one database: two users
            for model in ("mf", "sasrec"):
                found[f"{name}-{model}"] = await lists(client, f"uma-{name}", model)
            metrics = (await client.get("/metrics")).text
            source = "index" if name == "ann" else "exact"
            assert f'recsys_ranked_lists_total{{model="mf",source="{source}"}}' in metrics
            assert 'source="index"' not in metrics if name == "exact" else True
    for model in ("mf", "sasrec"):
        for approx, exact in zip(found[f"ann-{model}"], found[f"exact-{model}"], strict=True):
            assert_same_ranking(approx, exact)
        assert [len(x) for x in found[f"ann-{model}"]] == [5, 25]


async def test_masked_items_never_appear(serving_settings: Settings) -> None:
    # 16 probed cells of 31: the index misses items, the masks must still hold exactly.
    settings = ann_settings(serving_settings, ann_nprobe=16, ranked_items=5)
    async with running_app(settings) as client:
        await post_history(client, "vic", GROUP[:6])
        first = ids(await client.get("/recommend", params={"user_id": "vic", "k": 8}))
        await client.put("/items", json={"items": [{"item_id": first[0], "active": False}]})
        await client.post("/models/reload")  # the refresh that reads the catalog
        excluded = first[1:4]
        for model in ("mf", "sasrec"):
            for k in (3, 8, 40, 1000):
                params = {"user_id": "vic", "k": k, "model": model, "exclude": excluded}
                items = ids(await client.get("/recommend", params=params))
                assert not set(items) & {*GROUP[:6], first[0], *excluded}
                assert len(items) == min(k, 60 - 6 - 1 - 3) == len(set(items))
        metrics = (await client.get("/metrics")).text
        assert 'recsys_ranked_lists_total{model="sasrec",source="index"}' in metrics


async def test_versions_below_the_threshold_have_no_index(serving_settings: Settings) -> None:
    for threshold, indexed in ((61, set()), (60, {"mf", "sasrec", "popularity"}), (0, set())):
        async with running_app(ann_settings(serving_settings, ann_min_items=threshold)) as client:
            described = (await client.get("/models")).json()["models"]
            with_index = {m["name"] for m in described if m["index"] is not None}
            assert with_index == indexed
            for model in described:
                if model["index"] is not None:
                    assert model["index"]["items"] == 60 and model["index"]["exact_rows"] == 0
                    assert model["index"]["nprobe"] == model["index"]["nlist"] == 31


@pytest.fixture
def mf(trained_models: Path) -> LoadedModel:
    """The tiny mf version with an exhaustive index."""
    policy = AnnPolicy(min_items=10, nprobe=1000, overfetch=0)
    return load_version(trained_models / "mf" / "v1", policy)


def test_added_items_are_served_and_the_shared_index_is_untouched(mf: LoadedModel) -> None:
    assert mf.index is not None
    user = mf.item_vectors[:3].sum(dim=0)  # (D,)
    one = mf.with_items(["new-0"], user[None, :] * 10)  # the best item for this user
    assert one.index is mf.index  # one row: scored beside the shared index
    [(ranked, _)] = retrieve(one, user[None, :], [np.array([0, 1, 2])], 5).lists
    assert one.item_ids[ranked[0]] == "new-0"
    # Five rows pass the tail's share: indexed into a copy; the longest ones do not fit the
    # index's transform and are kept out of its cells, scored exactly like the tail.
    five = mf.with_items(
        [f"new-{n}" for n in range(5)], user[None, :] * torch.arange(1, 6)[:, None]
    )
    assert five.index is not None and five.index is not mf.index
    assert (five.index.ntotal, mf.index.ntotal, len(mf.index.unindexed)) == (65, 60, 0)
    long = [60 + n for n in range(5) if float((n + 1) * user.norm()) > five.index.max_norm]
    assert long and five.index.unindexed.tolist() == long
    [(ranked, _)] = retrieve(five, user[None, :], [np.array([64])], 3).lists
    assert [five.item_ids[i] for i in ranked] == ["new-3", "new-2", "new-1"]
    assert (
        five.describe()["index"]["exact_rows"] == 0 and one.describe()["index"]["exact_rows"] == 1
    )


def test_retrieve_masks_exactly_and_falls_back_when_short(mf: LoadedModel) -> None:
    rng = np.random.default_rng(0)
    vectors = torch.from_numpy(rng.standard_normal((8, mf.dim)).astype(np.float32))
    blocked = [rng.choice(60, size=n, replace=False) for n in range(0, 16, 2)]
    found = retrieve(mf, vectors, blocked, 10)
    exact = rank_scored(mf.scores(vectors), blocked, 10)
    assert all(found.from_index)
    for (ranked, scores), (want, want_scores), mask in zip(
        found.lists, exact, blocked, strict=True
    ):
        assert not set(ranked.tolist()) & set(mask.tolist())
        assert ranked.tolist() == want.tolist()
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert mf.index is not None
    mf.index.nprobe = 1  # one cell of ~2 items: too few to ask for 10, ranked exactly
    short = retrieve(mf, vectors, blocked, 10)
    assert not any(short.from_index)
    assert [r.tolist() for r, _ in short.lists] == [r.tolist() for r, _ in exact]
    # A search that came back short (-1 padded) after masking: the row is ranked exactly.
    assert _rescored(mf, vectors[0], np.array([3, 4, 5, -1, -1]), np.array([4]), 3) is None
    assert _rescored(mf, vectors[0], np.array([3, 4, 5, 6, -1]), np.array([4]), 3) is not None
    many = retrieve(mf, vectors[:1], [np.arange(55)], 10)  # 5 items left: all of them
    assert sorted(many.lists[0][0].tolist()) == [55, 56, 57, 58, 59]
