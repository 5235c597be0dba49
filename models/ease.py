"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): a closed-form item-item model.

B = I - P diag(1 / diag(P)) with P = (X^T X + lambda I)^-1, so B has a zero diagonal and the
score of item j for a user is sum_i x_i B_ij. As a dot-product model: the user vector is the
multi-hot history (B, I) and item j's vector is column j of B, i.e. item_vectors() = B^T.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from models.base import History, Recommender, Times, Weights, torch_threads


@dataclass
class EASEConfig:
    """EASE hyperparameters."""

    regularization: float = 200.0  # lambda added to the diagonal of the item Gram matrix
    threads: int | None = 1  # torch threads during fit (1: fastest on the shared dev box)


def _binary_matrix(histories: Sequence[History], num_items: int) -> sp.csr_matrix:
    """Users x items 0/1 matrix (repeated interactions count once)."""
    lengths = [len(h) for h in histories]
    rows = np.repeat(np.arange(len(histories)), lengths)
    cols = np.concatenate([np.zeros(0, np.int64), *(np.asarray(h, np.int64) for h in histories)])
    matrix = sp.csr_matrix(
        (np.ones(len(cols), np.float64), (rows, cols)), shape=(len(histories), num_items)
    )
    matrix.data[:] = 1.0  # duplicates were summed by the constructor
    return matrix


class EASE(Recommender):
    """Item-item weights from one regularised least-squares solve."""

    name: ClassVar[str] = "ease"
    Config = EASEConfig
    config: EASEConfig

    def __init__(self, num_items: int, config: EASEConfig | None = None) -> None:
        self.config = config or EASEConfig()
        self.weights = torch.zeros(num_items, num_items)  # (I, I) = B^T: row j is column j of B

    @property
    def num_items(self) -> int:
        return self.weights.shape[0]

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: Any | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Closed form: invert the regularised item Gram matrix (float64 for accuracy; weights
        are not used)."""
        start = time.perf_counter()
        matrix = _binary_matrix(train, self.num_items)
        gram = torch.from_numpy((matrix.T @ matrix).toarray())  # (I, I) float64
        gram.diagonal().add_(self.config.regularization)
        with torch_threads(self.config.threads):
            precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # (I, I) = P
        coefficients = -precision / precision.diagonal()[None, :]  # B = I - P diag(1/diag(P))
        coefficients.diagonal().zero_()
        self.weights = coefficients.T.to(torch.float32).contiguous()
        return {"epochs": 1, "seconds": time.perf_counter() - start}

    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """Multi-hot histories: (B, I); EASE has no event weights."""
        vectors = torch.zeros(len(histories), self.num_items)
        lengths = [len(h) for h in histories]
        rows = torch.from_numpy(np.repeat(np.arange(len(histories)), lengths))
        cols = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        vectors[rows, torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *cols]))] = 1.0
        return vectors

    def item_vectors(self) -> torch.Tensor:
        """Columns of B: (I, I), row j = B[:, j]."""
        return self.weights

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.contiguous()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.weights = tensors["weights"].to(torch.float32).contiguous()
