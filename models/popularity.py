"""Most-popular baseline and cold-start fallback: every user gets the same ranking by count."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import History, Recommender


@dataclass
class PopularityConfig:
    """Popularity settings."""

    log_counts: bool = False  # score log(1 + count): same ranking, smaller numbers to serve
    unique_per_user: bool = True  # count each (user, item) once, as MF sees the data


class Popularity(Recommender):
    """Scores item i by its training interaction count (user vector = 1)."""

    name: ClassVar[str] = "popularity"
    Config = PopularityConfig

    def __init__(self, num_items: int, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.counts = torch.zeros(num_items, 1)  # (I, 1) score per item

    @property
    def num_items(self) -> int:
        return self.counts.shape[0]

    def fit(self, train: Sequence[np.ndarray], valid: Any | None = None) -> dict[str, Any]:
        """Count interactions per item over the training histories."""
        start = time.perf_counter()
        arrays = [np.asarray(h, dtype=np.int64) for h in train]
        if self.config.unique_per_user:
            arrays = [np.unique(h) for h in arrays]
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        counts = torch.as_tensor(np.bincount(flat, minlength=self.num_items), dtype=torch.float32)
        self.counts = (torch.log1p(counts) if self.config.log_counts else counts)[:, None]
        return {"epochs": 1, "seconds": time.perf_counter() - start}

    def user_vectors(self, histories: Sequence[History]) -> torch.Tensor:
        """Ones: (B, 1)."""
        return torch.ones(len(histories), 1)

    def item_vectors(self) -> torch.Tensor:
        """Counts: (I, 1)."""
        return self.counts

    def config_dict(self) -> dict[str, Any]:
        return {"num_items": self.num_items, **asdict(self.config)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts.contiguous()}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Popularity:
        num_items = int(config["num_items"])
        settings = {k: v for k, v in config.items() if k != "num_items"}
        model = cls(num_items, PopularityConfig(**settings))
        counts = tensors["counts"]
        if tuple(counts.shape) != (num_items, 1):
            raise ValueError(f"counts has shape {tuple(counts.shape)}, expected ({num_items}, 1)")
        model.counts = counts.to(torch.float32)
        return model
