"""Exact top-k lists: the item matrix times user vectors, history masked, `torch.topk`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.base import mask_items

Ranked = tuple[np.ndarray, np.ndarray]  # item indices (int32, best first), their scores (f32)


def rank_rows(
    item_vectors: torch.Tensor, vectors: torch.Tensor, blocked: Sequence[np.ndarray], k: int
) -> list[Ranked]:
    """Per row of `vectors` (B, D): its best k item indices and scores, the row's `blocked`
    items left out (fewer than k when fewer are left). One matrix product for the batch."""
    with torch.inference_mode():
        scores = vectors @ item_vectors.T  # (B, I)
        mask_items(scores, blocked)
        values, indices = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
    out = []
    for top, top_values in zip(indices.numpy(), values.numpy(), strict=True):
        kept = int(np.count_nonzero(top_values != -np.inf))  # masked items sort last
        out.append((top[:kept].astype(np.int32), top_values[:kept]))
    return out
