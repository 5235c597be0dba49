"""The content model: items are their pretrained text vectors, a user the recency-weighted blend
of the vectors of the items in the history. The cold-start baseline: nothing is learned beyond
the encoder, so an item nobody has interacted with is scored like any other.

    user(h) = normalise( sum_p 2^(-p / halflife) x_{h_p} ),  p = 0 for the most recent item

Scores are cosines (the item vectors have unit length; an item without text is a zero row and
scores 0). An empty history gets the mean vector of the training interactions' items.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from models.base import History, Recommender, Times, Weights


@dataclass
class ContentConfig:
    """Content model settings (halflife tuned on ml1m-half-loo validation, research/results)."""

    halflife: float = 1.0  # items back until an item's weight in the user vector halves
    max_len: int = 200  # only the most recent max_len items of a history count
    content_dim: int = 384  # width F of the item features (set from them by build_model)


class ContentRecommender(Recommender):
    """Recency-weighted mean of the history's pretrained item vectors; nothing trained."""

    name: ClassVar[str] = "content"
    Config = ContentConfig
    config: ContentConfig
    reads_content: ClassVar[bool] = True

    def __init__(self, num_items: int, config: ContentConfig | None = None) -> None:
        self.config = config or ContentConfig()
        self.features = torch.zeros(num_items, self.config.content_dim)  # (I, F)
        self.empty_user = torch.zeros(self.config.content_dim)  # (F,)

    @property
    def num_items(self) -> int:
        return self.features.shape[0]

    def set_item_features(self, features: torch.Tensor) -> None:
        """Take the items' pretrained vectors (I, F)."""
        if tuple(features.shape) != tuple(self.features.shape):
            want = tuple(self.features.shape)
            raise ValueError(f"features of shape {tuple(features.shape)}, the model needs {want}")
        self.features = features.to(torch.float32).contiguous()

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: Any | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Only the empty-history vector: the mean of the training interactions' item vectors
        (weights are not used)."""
        start = time.perf_counter()
        flat = np.concatenate([np.zeros(0, np.int64), *(np.asarray(h, np.int64) for h in train)])
        counts = torch.from_numpy(np.bincount(flat, minlength=self.num_items)).float()
        self.empty_user = F.normalize(counts @ self.features, dim=0)
        return {"epochs": 1, "seconds": time.perf_counter() - start}

    def recency_weights(self, histories: Sequence[History]) -> torch.Tensor:
        """Sparse (B, I) matrix of each history's item weights (the last max_len items)."""
        windows = [np.asarray(h, np.int64).reshape(-1)[-self.config.max_len :] for h in histories]
        lengths = np.array([len(w) for w in windows], dtype=np.int64)
        items = np.concatenate([np.zeros(0, np.int64), *windows])
        if items.size and (items.min() < 0 or items.max() >= self.num_items):
            raise ValueError(f"item indices must lie in [0, {self.num_items})")
        rows = np.repeat(np.arange(len(windows)), lengths)
        steps_back = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(items)) - 1
        weights = np.exp2(-steps_back / self.config.halflife).astype(np.float32)
        index = torch.from_numpy(np.stack([rows, items]))
        shape = (len(windows), self.num_items)
        values = torch.from_numpy(weights)
        return torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()

    @torch.inference_mode()
    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """Unit-length recency-weighted blends of the history items' vectors: (B, F); event
        weights are not used."""
        blend = torch.sparse.mm(self.recency_weights(histories), self.features)  # (B, F)
        empty = torch.tensor([len(h) == 0 for h in histories], dtype=torch.bool)
        return torch.where(empty[:, None], self.empty_user, F.normalize(blend, dim=1))

    def item_vectors(self) -> torch.Tensor:
        """The pretrained item vectors: (I, F)."""
        return self.features

    def item_vectors_for(self, features: torch.Tensor) -> torch.Tensor:
        """A new item's vector is its pretrained vector."""
        return features.to(torch.float32)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"item_content": self.features, "empty_user": self.empty_user.contiguous()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.features = tensors["item_content"].to(torch.float32).contiguous()
        self.empty_user = tensors["empty_user"].to(torch.float32)
