"""The Recommender protocol every model implements (batch-first, as in benfred/implicit)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

# A history is one user's item indices in chronological order (oldest first).
History = Sequence[int] | np.ndarray


class Recommender(ABC):
    """A model that scores every item for a batch of user histories by a dot product.

    Construction convention (used by models.zoo.build_model): a model class has a `Config`
    dataclass and is built as `cls(num_items=..., config=cls.Config(...))`.
    """

    name: ClassVar[str]
    # Set by the training loop (models.train) to receive per-epoch stats for a progress bar.
    epoch_callback: Callable[[dict[str, float]], None] | None = None

    @property
    @abstractmethod
    def num_items(self) -> int:
        """Number of items the model scores."""

    @abstractmethod
    def fit(self, train: Any, valid: Any | None = None) -> dict[str, Any]:
        """Train on per-user histories; returns a report (epochs, best validation metric, seconds).

        `train` is a Sequence[np.ndarray] of chronological item indices per user; `valid` an
        EvalSet (models.metrics) used for early stopping by models that train in epochs.
        """

    def log_epoch(self, **stats: float) -> None:
        """Report one epoch's stats (epoch, epochs, loss, a validation metric) to the callback."""
        if self.epoch_callback is not None:
            self.epoch_callback(stats)

    @abstractmethod
    def user_vectors(self, histories: Sequence[History]) -> torch.Tensor:
        """User representations built from histories: (B, D) float32."""

    @abstractmethod
    def item_vectors(self) -> torch.Tensor:
        """Item representations: (I, D) float32, contiguous."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The model's config as plain JSON-able values."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor needed to rebuild the model (saved as safetensors)."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Recommender:
        """Rebuild a trained model from its config and tensors."""

    def with_refit(self, refit: Recommender) -> Recommender:
        """The model to serve after `refit`, a fresh fit on train + val: by default the refit."""
        return refit

    @property
    def uses_times(self) -> bool:
        """True when `fit(..., times=)` and `timed_vectors` use each item's timestamp."""
        return False

    def timed_vectors(
        self, histories: Sequence[History], times: Sequence[np.ndarray] | None
    ) -> torch.Tensor:
        """User vectors given each history item's timestamp (seconds, None: not known); by
        default the times are unused."""
        return self.user_vectors(histories)

    @torch.inference_mode()
    def score(
        self, histories: Sequence[History], times: Sequence[np.ndarray] | None = None
    ) -> torch.Tensor:
        """Scores of every item for each history: (B, I); `times` for models that use them."""
        return self.timed_vectors(histories, times) @ self.item_vectors().T

    @torch.inference_mode()
    def recommend(
        self,
        histories: Sequence[History],
        k: int,
        exclude: Sequence[Sequence[int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k item indices and scores per history, history and `exclude` masked: (B, k) each."""
        scores = self.score(histories).clone()  # (B, I)
        mask_items(scores, histories)
        if exclude is not None:
            mask_items(scores, exclude)
        top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
        return top.indices, top.values

    def save(self, directory: str | Path, **meta: Any) -> Path:
        """Write a checkpoint directory (weights.safetensors + meta.json)."""
        from models.checkpoint import save_checkpoint

        return save_checkpoint(self, directory, **meta)

    @staticmethod
    def load(directory: str | Path) -> Recommender:
        """Load and validate a checkpoint directory written by `save`."""
        from models.checkpoint import load_checkpoint

        return load_checkpoint(directory).model


def mask_items(scores: torch.Tensor, item_lists: Sequence[Sequence[int] | np.ndarray]) -> None:
    """Set the listed items' scores to -inf in place, one list per row, no loop over items."""
    lengths = np.fromiter((len(items) for items in item_lists), dtype=np.int64)
    if not lengths.sum():
        return
    row_idx = np.repeat(np.arange(len(lengths)), lengths)
    col_idx = np.concatenate([np.asarray(items, np.int64).reshape(-1) for items in item_lists])
    scores[torch.from_numpy(row_idx), torch.from_numpy(col_idx)] = float("-inf")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with `count` torch intra-op threads, restoring the previous setting."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
