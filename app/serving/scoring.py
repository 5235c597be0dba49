"""Exact top-k lists as serving keeps them: models.base.rank_scores per row, as NumPy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.base import rank_scores

Ranked = tuple[np.ndarray, np.ndarray]  # item indices (int32, best first), their scores (f32)


def rank_rows(
    item_vectors: torch.Tensor, vectors: torch.Tensor, blocked: Sequence[np.ndarray], k: int
) -> list[Ranked]:
    """Per row of `vectors` (B, D): its best k item indices and scores, the row's `blocked`
    items left out (fewer than k when fewer are left). One matrix product for the batch."""
    return rank_scored(vectors @ item_vectors.T, blocked, k)


def rank_scored(scores: torch.Tensor, blocked: Sequence[np.ndarray], k: int) -> list[Ranked]:
    """Per row of `scores` (B, I) (`LoadedModel.scores`): its best k item indices and scores,
    the row's `blocked` items left out (fewer than k when fewer are left), by the ranking
    function offline evaluation runs too."""
    indices, values = rank_scores(scores, blocked, k)
    out = []
    for top, top_values in zip(indices.numpy(), values.numpy(), strict=True):
        kept = int(np.count_nonzero(top_values != -np.inf))  # masked items sort last
        out.append((top[:kept].astype(np.int32), top_values[:kept]))
    return out


def nearest(
    item_ids: list[str], vectors: torch.Tensor, index: int, blocked: np.ndarray, k: int
) -> list[tuple[str, float]]:
    """The k items whose vectors have the highest cosine with row `index`, `blocked` left out."""
    unit = torch.nn.functional.normalize(vectors, dim=1)  # (I, D); zero rows stay zero
    masked = np.concatenate([[index], blocked]).astype(np.int64)
    [(ranked, values)] = rank_rows(unit, unit[index][None, :], [masked], k)
    return [(item_ids[i], v) for i, v in zip(ranked.tolist(), values.tolist(), strict=True)]
