"""The Recommender protocol every model implements (batch-first, as in benfred/implicit)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, ClassVar, Self

import numpy as np
import torch

from models.config import config_class, known_fields, refuse_retired

# A history is one user's item indices in chronological order (oldest first).
History = Sequence[int] | np.ndarray
# Per history, each item's timestamp in seconds (int64), same order; None: times not known.
Times = Sequence[np.ndarray] | None
# Per history, each item's training weight (float), same order; None: every weight 1.
Weights = Sequence[np.ndarray] | None


class Recommender(ABC):
    """A model that scores every item for a batch of user histories, by default by a dot
    product of user and item vectors (`score_vectors`).

    Construction convention (used by models.zoo.build_model and `from_state`): a model class has
    a `Config` dataclass and is built as `cls(num_items, config)`.
    """

    name: ClassVar[str]
    config: Any  # the model's Config dataclass instance
    # Config fields the model no longer has, each with the one value that still loads (the old
    # default, which left the removed option off); any other value is refused by `from_state`.
    retired_fields: ClassVar[Mapping[str, Any]] = {}
    # Set by the training loop (models.train) to receive per-epoch stats for a progress bar.
    epoch_callback: Callable[[dict[str, float]], None] | None = None
    # True for content and hybrid models: they need the items' pretrained text vectors
    # (`set_item_features`, which models.zoo.build_model calls) and keep them in their state.
    reads_content: ClassVar[bool] = False

    @abstractmethod
    def __init__(self, num_items: int, config: Any | None = None) -> None:
        """A fresh model for `num_items` items; `config` None: the Config defaults."""

    @property
    @abstractmethod
    def num_items(self) -> int:
        """Number of items the model scores."""

    @abstractmethod
    def fit(
        self, train: Any, valid: Any | None = None, times: Times = None, weights: Weights = None
    ) -> dict[str, Any]:
        """Train on per-user histories; returns a report (epochs, best validation metric, seconds).

        `train` is a Sequence[np.ndarray] of chronological item indices per user; `valid` an
        EvalSet (models.metrics) used for early stopping by models that train in epochs; `times`
        each train item's timestamp, for models that use them (`uses_times`); `weights` each
        train item's training weight (> 0; None: all 1), for models that use them (mf scales
        confidences, sasrec the cross-entropy terms; the others ignore them).
        """

    def log_epoch(self, **stats: float) -> None:
        """Report one epoch's stats (epoch, epochs, loss, a validation metric) to the callback."""
        if self.epoch_callback is not None:
            self.epoch_callback(stats)

    @property
    def uses_times(self) -> bool:
        """True when `fit` and `user_vectors` use the items' timestamps (else they ignore them)."""
        return False

    @abstractmethod
    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """User representations built from histories (and their times): (B, D) float32.
        `weights`: each history item's event weight, as `fit` takes them; a model that trains
        with weights folds a user in with them (mf), the others ignore them."""

    @abstractmethod
    def item_vectors(self) -> torch.Tensor:
        """Item representations: (I, D) float32, contiguous."""

    def set_item_features(self, features: torch.Tensor) -> None:
        """Take the items' pretrained content vectors (I, F); ID-only models ignore them."""
        if self.reads_content:
            raise NotImplementedError(f"{self.name} reads content but takes no item features")

    def item_vectors_for(self, features: torch.Tensor) -> torch.Tensor | None:
        """Vectors (N, D), in the space of `item_vectors()`, of items the model never saw, from
        their content vectors (N, F) alone; None when the model reads no content."""
        return None

    @torch.inference_mode()
    def explain(
        self, history: History, targets: torch.Tensor, k: int = 3, times: np.ndarray | None = None
    ) -> list[list[int]]:
        """For each target item vector (N, D), up to k items of `history` that contributed
        most: by default the history items whose vectors are most similar (cosine) to it."""
        items = np.unique(np.asarray(history, dtype=np.int64).reshape(-1))
        if not len(items):
            return [[] for _ in range(len(targets))]
        vectors = torch.nn.functional.normalize(self.item_vectors()[torch.from_numpy(items)], dim=1)
        similarity = torch.nn.functional.normalize(targets.float(), dim=1) @ vectors.T  # (N, H)
        return top_items(similarity, items, k)

    def score_vectors(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user vector (B, D): (B, I), a new tensor. By default
        the dot product with `item_vectors()`; a model whose score is not one (NeuMF) overrides
        it, and everything that ranks (score, recommend, serving) scores through it."""
        return user_vectors @ self.item_vectors().T

    @torch.inference_mode()
    def score(self, histories: Sequence[History], times: Times = None) -> torch.Tensor:
        """Scores of every item for each history: (B, I)."""
        return self.score_vectors(self.user_vectors(histories, times))

    @torch.inference_mode()
    def recommend(
        self,
        histories: Sequence[History],
        k: int,
        exclude: Sequence[Sequence[int]] | None = None,
        times: Times = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k item indices and scores per history, history and `exclude` masked: (B, k) each."""
        blocked = list(histories)
        if exclude is not None:
            blocked = [_concat(h, e) for h, e in zip(histories, exclude, strict=True)]
        return rank_scores(self.score_vectors(self.user_vectors(histories, times)), blocked, k)

    def with_refit(self, refit: Recommender) -> Recommender:
        """The model to serve after `refit`, a fresh fit on train + val: by default the refit."""
        return refit

    def config_dict(self) -> dict[str, Any]:
        """The model's config as plain JSON-able values, with the catalog size."""
        return {"num_items": self.num_items, **asdict(self.config)}

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor needed to rebuild the model (saved as safetensors)."""

    @abstractmethod
    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Take the trained tensors, names and shapes already checked against `state_tensors`."""

    @classmethod
    def from_state(cls, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Self:
        """Rebuild a trained model from its `config_dict()` and `state_tensors()`."""
        refuse_retired(cls.retired_fields, config)
        settings = config_class(cls)
        model = cls(int(config["num_items"]), settings(**known_fields(settings, config)))
        check_tensors(model.state_tensors(), tensors)
        model.load_tensors(tensors)
        return model


def check_tensors(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> None:
    """ValueError unless `given` has exactly the names and shapes of `expected`."""
    unexpected, missing = sorted(set(given) - set(expected)), sorted(set(expected) - set(given))
    if unexpected or missing:
        raise ValueError(f"tensors not in the model: {unexpected}; missing tensors: {missing}")
    for name, tensor in given.items():
        want = tuple(expected[name].shape)
        if tuple(tensor.shape) != want:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, the config gives {want}")


def top_items(
    weights: torch.Tensor, items: np.ndarray, k: int, positive: bool = False
) -> list[list[int]]:
    """Per row of `weights` (N, H), the `items` (H,) of the k largest weights, ties in item
    order; `positive`: after the first (the one that weighs most, whatever its sign), only
    weights above zero, so every row names at least one item."""
    order = torch.sort(weights, dim=1, descending=True, stable=True)
    rows = []
    for values, indices in zip(order.values[:, :k], order.indices[:, :k], strict=True):
        keep = values > 0 if positive else torch.ones_like(values, dtype=torch.bool)
        keep[:1] = True
        rows.append([int(items[j]) for j in indices[keep].tolist()])
    return rows


def _concat(history: History, extra: Sequence[int] | np.ndarray) -> np.ndarray:
    """One row's blocked items: its history, then `extra`."""
    return np.concatenate(
        [np.asarray(history, np.int64).reshape(-1), np.asarray(extra, np.int64).reshape(-1)]
    )


def mask_items(scores: torch.Tensor, item_lists: Sequence[Sequence[int] | np.ndarray]) -> None:
    """Set the listed items' scores to -inf in place, one list per row, no loop over items."""
    lengths = np.fromiter((len(items) for items in item_lists), dtype=np.int64)
    if not lengths.sum():
        return
    row_idx = np.repeat(np.arange(len(lengths)), lengths)
    col_idx = np.concatenate([np.asarray(items, np.int64).reshape(-1) for items in item_lists])
    scores[torch.from_numpy(row_idx), torch.from_numpy(col_idx)] = float("-inf")


@torch.inference_mode()
def rank_items(
    item_vectors: torch.Tensor,
    user_vectors: torch.Tensor,
    blocked: Sequence[Sequence[int] | np.ndarray],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's top-k items, its `blocked` items masked: indices and scores (B, min(k, I)).

    Scores are user_vectors (B, D) @ item_vectors (I, D).T, ranked by `rank_scores`.
    """
    return rank_scores(user_vectors @ item_vectors.T, blocked, k)  # (B, I) scores


@torch.inference_mode()
def rank_scores(
    scores: torch.Tensor, blocked: Sequence[Sequence[int] | np.ndarray], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's top-k items of `scores` (B, I), its `blocked` items masked (in place):
    indices and scores (B, min(k, I)).

    When fewer than k items are left unblocked, a row's tail holds blocked items scored -inf.
    Serving and `recommend` both rank here, so a model's served lists are its offline ones.
    """
    mask_items(scores, blocked)
    top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
    return top.indices, top.values


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
