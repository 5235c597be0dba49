"""The content part W (F, D) of `mf-hybrid`: item factors h_i = W^T x_i + v_i (models/mf.py).

Two ways to fit W each epoch, both closed-form or nearly, both on the CPU in about a second:
- "factors": a weighted ridge regression of the item factors on the text vectors, the exact
  block step of the joint iALS objective. It predicts the average item for a text, so a cold
  item's scores come out flat and rarely reach a top list.
- "interactions": W as a content-only iALS: the iALS loss of the scores u^T W^T x_i themselves,
  sum_obs c (s - 1)^2 + alpha0 sum_all s^2 + l2 ||W||^2, given the users, solved by conjugate
  gradients on its normal equations (never forming the (F D)^2 matrix). W then scores items by
  their text alone as iALS scores a trained item: what an item without interactions needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def regress_factors(
    features: torch.Tensor, factors: torch.Tensor, weights: torch.Tensor, l2: float
) -> torch.Tensor:
    """W (F, D) minimising sum_i w_i ||h_i - W^T x_i||^2 + l2 * mean(w) ||W||^2, in float64."""
    x, h, w = features.double(), factors.double(), weights.double()[:, None]
    system = x.T @ (w * x) + l2 * float(w.mean()) * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(system, x.T @ (w * h)).float().contiguous()


def fit_interactions(
    features: torch.Tensor,
    users: torch.Tensor,
    entries: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    alpha0: float,
    l2: float,
    start: torch.Tensor,
    steps: int = 25,
) -> torch.Tensor:
    """W (F, D) of the content-only iALS loss (module docstring) given the users (U, D), by
    `steps` conjugate-gradient steps from `start`; `entries`: the observed (user, item,
    confidence) triples, each (nnz,)."""
    rows, cols, confidence = entries
    user_rows = users[rows]  # (nnz, D)
    gram_users, gram_items = users.T @ users, features.T @ features  # (D, D), (F, F)

    def per_item_sum(values: torch.Tensor) -> torch.Tensor:
        """sum over each item's entries of value x user: (I, D)."""
        out = torch.zeros(len(features), users.shape[1])
        return out.index_add_(0, cols, values[:, None] * user_rows)

    def normal(w: torch.Tensor) -> torch.Tensor:
        """The normal equations' operator applied to W: (F, D)."""
        scores = ((features @ w)[cols] * user_rows).sum(1)  # (nnz,)
        observed = features.T @ per_item_sum(confidence * scores)
        return observed + alpha0 * gram_items @ w @ gram_users + l2 * w

    return _conjugate_gradients(normal, features.T @ per_item_sum(confidence), start, steps)


def _conjugate_gradients(
    apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, x: torch.Tensor, steps: int
) -> torch.Tensor:
    """Solve apply(x) = rhs for a symmetric positive definite linear `apply`, from `x`."""
    residual = rhs - apply(x)
    direction, norm = residual.clone(), float((residual * residual).sum())
    for _ in range(steps):
        if norm < 1e-20:
            break
        image = apply(direction)
        step = norm / float((direction * image).sum())
        x = x + step * direction
        residual = residual - step * image
        previous, norm = norm, float((residual * residual).sum())
        direction = residual + (norm / previous) * direction
    return x.contiguous()
