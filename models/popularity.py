"""Most-popular baseline and cold-start fallback: every user gets the same ranking by count."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import History, Recommender, Times, Weights


@dataclass
class PopularityConfig:
    """Popularity settings."""

    log_counts: bool = False  # score log(1 + count): same ranking, smaller numbers to serve
    unique_per_user: bool = True  # count each (user, item) once, as MF sees the data


class Popularity(Recommender):
    """Scores item i by its training interaction count (user vector = 1)."""

    name: ClassVar[str] = "popularity"
    Config = PopularityConfig
    config: PopularityConfig

    def __init__(self, num_items: int, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.counts = torch.zeros(num_items, 1)  # (I, 1) score per item

    @property
    def num_items(self) -> int:
        return self.counts.shape[0]

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: Any | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Count interactions per item over the training histories (times and weights are not
        used)."""
        start = time.perf_counter()
        arrays = [np.asarray(h, dtype=np.int64) for h in train]
        if self.config.unique_per_user:
            arrays = [np.unique(h) for h in arrays]
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        counts = torch.as_tensor(np.bincount(flat, minlength=self.num_items), dtype=torch.float32)
        self.counts = (torch.log1p(counts) if self.config.log_counts else counts)[:, None]
        return {"epochs": 1, "seconds": time.perf_counter() - start}

    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """Ones: (B, 1)."""
        return torch.ones(len(histories), 1)

    def item_vectors(self) -> torch.Tensor:
        """Counts: (I, 1)."""
        return self.counts

    def explain(
        self, history: History, targets: torch.Tensor, k: int = 3, times: np.ndarray | None = None
    ) -> list[list[int]]:
        """Nothing: a popular item's score does not depend on the user's history."""
        return [[] for _ in range(len(targets))]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts.contiguous()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.counts = tensors["counts"].to(torch.float32)
