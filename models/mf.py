"""Implicit ALS (iALS) with frequency-scaled regularization, after Rendle et al. 2022.

"Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022):

    L(W, H) = sum_{(u,i) observed} (<w_u, h_i> - 1)^2 + alpha0 * sum_{all u,i} <w_u, h_i>^2
              + lambda * sum_u (|I_u| + alpha0 |I|)^nu ||w_u||^2
              + lambda * sum_i (|U_i| + alpha0 |U|)^nu ||h_i||^2

Each half-step is an exact ridge solve per row, batched: rows are sorted by length and padded
into chunks, the per-row Gram matrix comes from one `bmm`, and all systems of a chunk are solved
by one batched Cholesky. Users are never stored: `user_vectors` solves the user step for any
history (fold-in), so known and unseen users are served the same way, and a training user's
vector equals the one the last training step produced.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import History, Recommender
from models.data import EvalSet
from models.metrics import evaluate_vectors


@dataclass
class IALSConfig:
    """iALS hyperparameters (defaults tuned on ml1m-half-loo validation, see bench/results)."""

    factors: int = 128  # embedding dimension D
    iterations: int = 16  # maximum epochs; one epoch = item step then user step
    unobserved_weight: float = 0.1  # alpha0: weight of the squared score of every (u, i) pair
    regularization: float = 0.003  # lambda: scaled per row by (count + alpha0 * n_other)^nu
    reg_exponent: float = 1.0  # nu: 0 = plain L2, 1 = fully frequency-scaled
    init_std: float = 0.1  # initial factors ~ N(0, init_std / sqrt(factors))
    patience: int = 3  # stop after this many epochs without a better validation NDCG@10
    chunk_elements: int = 1 << 16  # rows x padded length per batched solve: less padding, memory
    seed: int = 0  # seeds the initial factors


@dataclass
class _RowPlan:
    """Padded neighbour indices of the rows of one side, chunked for batched solves."""

    chunks: list[tuple[torch.Tensor, torch.Tensor]]  # (rows (B,), padded indices (B, L))
    counts: torch.Tensor  # (R,) distinct neighbours per row


def _csr(histories: Sequence[History], num_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicated CSR (indptr, indices) of a binary rows x num_cols matrix."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    cols = np.concatenate([np.zeros(0, np.int64), *(np.asarray(h, np.int64) for h in histories)])
    if cols.size and (cols.min() < 0 or cols.max() >= num_cols):
        raise ValueError(f"item index out of range [0, {num_cols})")
    keys = np.unique(rows * num_cols + cols)  # sorted by row, then column; duplicates dropped
    indptr = np.searchsorted(keys // num_cols, np.arange(len(histories) + 1))
    return indptr.astype(np.int64), (keys % num_cols).astype(np.int64)


def _transpose(
    indptr: np.ndarray, indices: np.ndarray, num_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the transposed binary matrix."""
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((rows, indices))
    counts = np.bincount(indices, minlength=num_cols)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows[order]


def _chunk_bounds(sorted_lengths: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) chunks of length-sorted rows whose padded size fits `budget`."""
    bounds, start, total = [], 0, len(sorted_lengths)
    while start < total:
        sizes = (np.arange(1, total - start + 1)) * np.maximum(sorted_lengths[start:], 1)
        end = start + max(1, int(np.searchsorted(sizes, budget, side="right")))
        bounds.append((start, end))
        start = end
    return bounds


def _plan_rows(indptr: np.ndarray, indices: np.ndarray, pad: int, budget: int) -> _RowPlan:
    """Group rows by length into padded index chunks; padding points at row `pad` (zeros)."""
    lengths = np.diff(indptr)
    order = np.argsort(lengths, kind="stable")
    chunks = []
    for start, end in _chunk_bounds(lengths[order], budget):
        rows = order[start:end]
        width = max(int(lengths[rows].max()), 1)
        offsets = np.arange(width)[None, :]  # (1, L)
        valid = offsets < lengths[rows][:, None]  # (B, L)
        positions = np.minimum(indptr[rows][:, None] + offsets, max(len(indices) - 1, 0))
        padded = np.where(valid, indices[positions] if len(indices) else pad, pad)  # (B, L)
        chunks.append((torch.from_numpy(rows), torch.from_numpy(padded)))
    return _RowPlan(chunks=chunks, counts=torch.from_numpy(lengths.astype(np.float32)))


def _solve_side(
    plan: _RowPlan, fixed: torch.Tensor, reg: torch.Tensor, alpha0: float
) -> torch.Tensor:
    """Exact ridge solution of every row given the other side's factors `fixed` (N, D): (R, D)."""
    dim = fixed.shape[1]
    padded_fixed = torch.cat([fixed, fixed.new_zeros(1, dim)])  # (N + 1, D), last row = padding
    base = alpha0 * (fixed.T @ fixed)  # (D, D): alpha0 * Gram of all of the other side
    eye = torch.eye(dim, dtype=fixed.dtype)
    out = fixed.new_zeros(len(plan.counts), dim)  # (R, D)
    for rows, padded in plan.chunks:
        gathered = padded_fixed[padded]  # (B, L, D)
        system = torch.bmm(gathered.transpose(1, 2), gathered) + base  # (B, D, D)
        system += reg[rows][:, None, None] * eye
        rhs = gathered.sum(dim=1, keepdim=True).transpose(1, 2)  # (B, D, 1): targets are 1
        # Batched LU measured ~1.7x faster than batched Cholesky here (both are per-matrix LAPACK).
        solved, info = torch.linalg.solve_ex(system, rhs)
        if bool(info.any()):  # singular in float32: redo those systems in float64
            solved = torch.linalg.solve(system.double(), rhs.double()).to(fixed.dtype)
        out[rows] = solved[:, :, 0]
    return out


def _row_regularization(counts: torch.Tensor, n_other: int, cfg: IALSConfig) -> torch.Tensor:
    """Frequency-scaled L2 weight per row: lambda * (|row| + alpha0 * n_other)^nu."""
    return cfg.regularization * (counts + cfg.unobserved_weight * n_other) ** cfg.reg_exponent


def _aligned(train: Sequence[History], valid: EvalSet) -> bool:
    """True when validation user u's history is training row u (val vectors = user factors)."""
    if len(valid.histories) != len(train):
        return False
    return all(np.array_equal(a, b) for a, b in zip(valid.histories, train, strict=True))


class ImplicitALS(Recommender):
    """iALS matrix factorisation; users are folded in from their histories."""

    name: ClassVar[str] = "mf"
    Config = IALSConfig

    def __init__(self, num_items: int, config: IALSConfig | None = None) -> None:
        self.config = config or IALSConfig()
        generator = torch.Generator().manual_seed(self.config.seed)
        scale = self.config.init_std / self.config.factors**0.5
        self.item_factors = torch.randn(num_items, self.config.factors, generator=generator) * scale

    @property
    def num_items(self) -> int:
        return self.item_factors.shape[0]

    def _loss(self, users: torch.Tensor, indptr: np.ndarray, indices: np.ndarray) -> float:
        """Training objective per observed interaction (without the regularization terms)."""
        rows = torch.from_numpy(np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)))
        observed = (users[rows] * self.item_factors[torch.from_numpy(indices)]).sum(dim=1)
        gram_product = ((users.T @ users) * (self.item_factors.T @ self.item_factors)).sum()
        total = ((observed - 1) ** 2).sum() + self.config.unobserved_weight * gram_product
        return float(total) / max(len(indices), 1)

    def fit(self, train: Sequence[np.ndarray], valid: EvalSet | None = None) -> dict[str, Any]:
        """Alternate exact item and user steps; keep the epoch with the best validation NDCG@10."""
        cfg, start = self.config, time.perf_counter()
        user_ptr, user_idx = _csr(train, self.num_items)
        item_ptr, item_idx = _transpose(user_ptr, user_idx, self.num_items)
        user_plan = _plan_rows(user_ptr, user_idx, self.num_items, cfg.chunk_elements)
        item_plan = _plan_rows(item_ptr, item_idx, len(train), cfg.chunk_elements)
        user_reg = _row_regularization(user_plan.counts, self.num_items, cfg)
        item_reg = _row_regularization(item_plan.counts, len(train), cfg)
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        users = torch.randn(len(train), cfg.factors, generator=generator) * (
            cfg.init_std / cfg.factors**0.5
        )
        aligned = valid is not None and _aligned(train, valid)
        best, best_epoch, best_items, history = -1.0, 0, self.item_factors, []
        for epoch in range(1, cfg.iterations + 1):
            self.item_factors = _solve_side(item_plan, users, item_reg, cfg.unobserved_weight)
            users = _solve_side(user_plan, self.item_factors, user_reg, cfg.unobserved_weight)
            stats = {
                "epoch": epoch,
                "epochs": cfg.iterations,
                "loss": self._loss(users, user_ptr, user_idx),
            }
            if valid is not None:
                user_vecs = users if aligned else self.user_vectors(valid.histories)
                stats["val_ndcg@10"] = evaluate_vectors(user_vecs, self.item_factors, valid)[
                    "ndcg@10"
                ]
            history.append(stats)
            self.log_epoch(**stats)
            metric = stats.get("val_ndcg@10", float(epoch))  # no validation: keep the last epoch
            if metric > best:
                best, best_epoch, best_items = metric, epoch, self.item_factors
            elif epoch - best_epoch >= cfg.patience:
                break
        self.item_factors = best_items.contiguous()
        return {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_ndcg@10": best if valid is not None else None,
            "history": history,
            "seconds": time.perf_counter() - start,
        }

    def user_vectors(self, histories: Sequence[History]) -> torch.Tensor:
        """Fold-in: the exact user step for each history (same formula as training): (B, D)."""
        indptr, indices = _csr(histories, self.num_items)
        plan = _plan_rows(indptr, indices, self.num_items, self.config.chunk_elements)
        reg = _row_regularization(plan.counts, self.num_items, self.config)
        return _solve_side(plan, self.item_factors, reg, self.config.unobserved_weight)

    def item_vectors(self) -> torch.Tensor:
        """Item factors: (I, D)."""
        return self.item_factors

    def config_dict(self) -> dict[str, Any]:
        return {"num_items": self.num_items, **asdict(self.config)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"item_factors": self.item_factors.contiguous()}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ImplicitALS:
        known = {f.name for f in fields(IALSConfig)}
        cfg = IALSConfig(**{k: v for k, v in config.items() if k in known})
        num_items = int(config["num_items"])
        factors = tensors["item_factors"]
        if tuple(factors.shape) != (num_items, cfg.factors):
            expected = (num_items, cfg.factors)
            raise ValueError(f"item_factors has shape {tuple(factors.shape)}, expected {expected}")
        model = cls(num_items, cfg)
        model.item_factors = factors.to(torch.float32).contiguous()
        return model
