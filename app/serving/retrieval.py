"""Top-k lists over a model version's catalog: through its ANN index when it has one, else exact.

With an index (models.ann.ItemIndex, built by the registry above `RECSYS_ANN_MIN_ITEMS`) a
row's list is made from n = k + its masked count + `overfetch` candidates: the index's best n
among the rows in its cells, plus every row outside them (added vectors too long for its
transform, rows added to the model after it was built: new catalog items). The candidates are
re-scored exactly (user vector . item row), the row's masked items dropped exactly, and the
best k kept. Since n counts every masked item,
the index can only come back short when its probed cells hold fewer than n items; such a row
(fewer than k unmasked candidates) is ranked exactly instead, so a list shorter than k still
means "every unmasked item is in it" (UserState.limit's rule). A row whose n would be too big
a share of what the probed cells hold (e.g. a request blocking many inactive items) is ranked
exactly from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.observability import Metrics
from app.serving.registry import LoadedModel
from app.serving.scoring import Ranked, rank_scored
from models.ann import ItemIndex

INDEX, EXACT = "index", "exact"  # the `source` label of recsys_ranked_lists


@dataclass(frozen=True)
class Retrieved:
    """Per row: its ranked list, and whether its candidates came from the index."""

    lists: list[Ranked]
    from_index: list[bool]


def retrieve(
    model: LoadedModel, vectors: torch.Tensor, blocked: Sequence[np.ndarray], k: int
) -> Retrieved:
    """Per user vector (B, D): its best k items, the row's `blocked` items left out (fewer than
    k only when fewer are left)."""
    index = getattr(model, "index", None)  # stand-ins in tests may have no such field
    rows = len(vectors)
    if index is None or not rows:
        return Retrieved(rank_scored(model.scores(vectors), blocked, k), [False] * rows)
    wants = [k + len(b) + model.overfetch for b in blocked]
    approx = [n for n, want in enumerate(wants) if want <= _fetch_limit(index)]
    lists: list[Ranked | None] = [None] * rows
    if approx:
        found = index.search(vectors[approx].numpy(), max(wants[n] for n in approx))
        for row, candidates in zip(approx, found, strict=True):
            lists[row] = _rescored(model, vectors[row], candidates, blocked[row], k)
    exact = [n for n, ranked in enumerate(lists) if ranked is None]
    if exact:
        ranked_exact = rank_scored(model.scores(vectors[exact]), [blocked[n] for n in exact], k)
        for row, ranked in zip(exact, ranked_exact, strict=True):
            lists[row] = ranked
    done = [ranked for ranked in lists if ranked is not None]
    return Retrieved(done, [n not in exact for n in range(rows)])


def _fetch_limit(index: ItemIndex) -> int:
    """The most candidates worth asking for: half of what the probed cells hold on average
    (more would come back short, or cost about what exact scoring does)."""
    return index.ntotal * index.nprobe // (2 * index.nlist)


def _rescored(
    model: LoadedModel, vector: torch.Tensor, found: np.ndarray, blocked: np.ndarray, k: int
) -> Ranked | None:
    """The best k of the index's candidates and the rows outside its cells, by exact score, the
    blocked items left out; None when the index gave fewer than k unmasked items."""
    candidates = found[found >= 0]
    candidates = candidates[~np.isin(candidates, blocked)]
    if len(candidates) < k:
        return None
    extra = _outside(model)
    if len(extra):  # scored exactly, all of them
        candidates = np.concatenate([candidates, extra[~np.isin(extra, blocked)]])
    rows = torch.from_numpy(candidates)
    scores = model.item_vectors[rows] @ vector  # (n,) exact dot products
    top = torch.topk(scores, k)
    return rows[top.indices].numpy().astype(np.int32), top.values.numpy()


def _outside(model: LoadedModel) -> np.ndarray:
    """Rows the index's search never returns: those it keeps out of its cells, and those added
    to the model after it was built."""
    index = model.index
    if index is None:
        return np.empty(0, dtype=np.int64)
    added = np.arange(index.ntotal, len(model.item_ids), dtype=np.int64)
    return np.concatenate([index.unindexed, added]) if len(index.unindexed) else added


def count(metrics: Metrics, model: LoadedModel, from_index: bool) -> None:
    """Count one ranked list by where its candidates came from."""
    metrics.child(metrics.ranked_lists, model.name, INDEX if from_index else EXACT).inc()
