"""The cached per-user state: its binary form and answers from its ranked list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.serving.registry import LoadedModel
from app.serving.state import UserState
from models.popularity import Popularity


def model(items: int = 10) -> LoadedModel:
    """A loaded model stand-in: only item ids and vectors matter here."""
    meta: dict[str, Any] = {}
    ids = [f"i{n}" for n in range(items)]
    return LoadedModel(
        name="m",
        version="v1",
        path=Path("."),
        model=Popularity(items),
        item_ids=ids,
        item_index={i: n for n, i in enumerate(ids)},
        item_vectors=torch.zeros(items, 4),
        meta=meta,
    )


def state(ranked: list[int], limit: int, ranked_over: int = 10) -> UserState:
    scores = np.linspace(1.0, 0.1, len(ranked), dtype=np.float32)
    return UserState(
        vector=np.arange(4, dtype=np.float32),
        seen=np.array([7, 8], dtype=np.int64),
        ranked=np.array(ranked, dtype=np.int32),
        ranked_scores=scores,
        limit=limit,
        ranked_over=ranked_over,
    )


def test_pack_round_trip_and_foreign_blobs_are_refused() -> None:
    original = state([3, 1, 4], limit=3)
    restored = UserState.unpack(original.pack(), dim=4)
    assert restored is not None
    for name in ("vector", "seen", "ranked", "ranked_scores"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(original, name))
    assert restored.limit == 3 and restored.ranked_over == 10
    assert UserState.unpack(original.pack(), dim=5) is None  # another model's width
    assert UserState.unpack(original.pack()[:-1], dim=4) is None  # truncated
    assert UserState.unpack(b"\x00" * 8, dim=4) is None  # the old, shorter format


def test_answer_skips_blocked_items_and_knows_when_it_runs_out() -> None:
    m = model()
    full = state([3, 1, 4, 0], limit=4)  # holds the top 4 of a longer ranking
    assert [i for i, _ in full.answer(m, frozenset(), 2) or []] == ["i3", "i1"]
    assert [i for i, _ in full.answer(m, frozenset({3}), 2) or []] == ["i1", "i4"]
    assert full.answer(m, frozenset({3, 1, 4}), 2) is None  # too few left: score the catalog
    complete = state([3, 1], limit=5)  # shorter than asked: every unseen item is in it
    assert [i for i, _ in complete.answer(m, frozenset({3}), 2) or []] == ["i1"]


def test_items_added_after_ranking_are_scored_and_merged() -> None:
    # A state ranked over 10 items keeps serving after new catalog items join the model.
    m = model().with_items(["new-a", "new-b", "new-c"], torch.tensor([[0.0, 0, 0, 0.3]] * 3))
    m = m.with_items(["new-d"], torch.tensor([[0.0, 0, 0, -1.0]]))
    assert m.trained_items == 10 and len(m.item_ids) == 14
    ranked = state([3, 1, 4, 0], limit=4)  # scores 1.0 .. 0.1; vector . added = 0.9, -3
    top = ranked.answer(m, frozenset({11}), 4) or []
    assert [i for i, _ in top] == ["i3", "new-a", "new-c", "i1"]
    assert ranked.answer(m, frozenset({3, 1, 4, 10, 12}), 4) is None  # runs out: full scoring


def test_marks_round_trip_and_a_request_with_other_repeats_scores_the_catalog() -> None:
    original = UserState(
        vector=np.arange(4, dtype=np.float32),
        seen=np.array([7, 8, 9], dtype=np.int32),  # seen 7, 8; hidden 9
        ranked=np.array([3, 1], dtype=np.int32),
        ranked_scores=np.array([1.0, 0.5], dtype=np.float32),
        limit=2,
        ranked_over=10,
        history=np.array([7, 8], dtype=np.int32),
        hidden=np.array([9], dtype=np.int32),
    )
    restored = UserState.unpack(original.pack(), dim=4)
    assert restored is not None and not restored.repeats
    for name in ("seen", "history", "hidden", "repeatable"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(original, name))
    assert restored.for_request(repeats=False) is restored
    again = restored.for_request(repeats=True)  # seen items back, the hidden one not
    assert again.seen.tolist() == [9] and again.answer(model(), frozenset(), 2) is None
    # Ranked under allow_repeats: a request without repeats masks the seen items again.
    allowing = replace(original, seen=original.hidden, repeatable=original.history, repeats=True)
    back = UserState.unpack(allowing.pack(), dim=4)
    assert back is not None and back.repeats
    assert sorted(back.for_request(repeats=False).seen.tolist()) == [7, 8, 9]
