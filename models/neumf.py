"""NeuMF (He et al. 2017, "Neural Collaborative Filtering"): GMF + MLP over embeddings.

score(u, i) = h^T [p_u * q_i ; MLP([p'_u ; q'_i])] + b: a generalised matrix factorisation
branch (the element-wise product of the GMF embeddings) and an MLP tower over the concatenated
MLP embeddings, joined by one linear layer. With `mlp=False` only the GMF branch is left:
h^T (p_u * q_i) = <p_u * h, q_i>, a learned dot product (the ablation of Rendle et al. 2020,
"Neural Collaborative Filtering vs. Matrix Factorization Revisited").

The score is not a dot product, so `score_vectors` runs the network over the whole catalog
(chunked: (B, I, width) activations); `item_vectors()` are the GMF item embeddings q_i, used
and the MLP item embeddings q'_i concatenated, (I, D) as wide as a user vector, used only where
cosine similarity of items is enough (similar items, explanations).

Users: the repo's contract is history -> user vector, with no user ids. Training learns an
embedding per training user, as the paper does; `user_vectors` then *folds a history in*: a
fixed number of Adam steps on that user's embeddings (GMF and MLP parts, started from the mean
training user) minimising the training loss on the history, every item-side parameter frozen.
It is deterministic and each user's steps are independent of the batch, so offline evaluation
and serving run the same code, and users unseen in training are handled alike. Validation
during training (early stopping) uses the learned embeddings when the validation users are the
training users; the final metrics (models.metrics.evaluate) use the fold-in.

Losses: "softmax", the multinomial log-likelihood of the user's items under a softmax over all
items (one (B, I) score matrix per batch of users), or "bce", the paper's pointwise log loss
with `negatives` items sampled uniformly per positive (the fold-in minimises its expectation:
every item as a negative, weighted negatives / I). Each history item is weighted as in `mf`:
event weight x (1 + recency_boost * 2^(-steps from the end / recency_halflife)).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from models.base import History, Recommender, Times, Weights, torch_threads
from models.data import EvalSet
from models.metrics import evaluate

Params = dict[str, torch.Tensor]
# Elements of one (users, items, width) activation chunk when scoring the catalog.
_CHUNK_ELEMENTS = 1 << 22


@dataclass
class NeuMFConfig:
    """NeuMF hyperparameters (defaults: the best ml1m-half-loo validation point of a small,
    CPU-starved grid, research/results/tuning_neumf.md)."""

    gmf_factors: int = 32  # width of the GMF embeddings p_u, q_i
    mlp_factors: int = 32  # width of each MLP embedding p'_u, q'_i (the tower's input is twice)
    mlp_layers: str = "32,16"  # the tower's hidden widths, comma-separated
    mlp: bool = True  # False: the GMF branch only, a learned dot product (Rendle's ablation)
    loss: str = "softmax"  # "softmax" over all items, or "bce" with sampled negatives
    negatives: int = 4  # "bce": uniform negatives per positive
    lr: float = 0.01  # Adam learning rate
    l2: float = 1e-4  # penalty on the users' squared embedding norm (training and fold-in)
    item_l2: float = 0.0  # Adam weight decay on the item-side parameters
    batch_size: int = 128  # users per step
    epochs: int = 30  # maximum epochs
    patience: int = 3  # stop after this many epochs without a better validation NDCG@10
    max_seconds: float | None = None  # stop after the epoch that passes this training time
    # item weight 1 + b * 2^(-steps from the end / halflife), mf's values: on validation it
    # more than doubled the GMF-only model's NDCG@10 (tuning_neumf.md)
    recency_boost: float = 30.0
    recency_halflife: float = 2.0
    init_std: float = 0.01  # embeddings start ~ N(0, init_std)
    fold_steps: int = 10  # Adam steps of the fold-in (20 measured worse on validation)
    fold_lr: float = 0.05  # the fold-in's Adam learning rate
    seed: int = 0
    threads: int | None = 1  # torch threads during fit; None keeps torch's setting

    def __post_init__(self) -> None:
        if self.loss not in ("softmax", "bce"):
            raise ValueError(f"loss must be 'softmax' or 'bce', not {self.loss!r}")
        if self.mlp and not self.widths:
            raise ValueError("mlp=True needs at least one width in mlp_layers")

    @property
    def widths(self) -> list[int]:
        """The MLP tower's hidden widths."""
        return [int(w) for w in self.mlp_layers.split(",") if w.strip()]

    @property
    def user_dim(self) -> int:
        """Width D of a user vector: the GMF part, then the MLP part (0 without the MLP)."""
        return self.gmf_factors + (self.mlp_factors if self.mlp else 0)


def init_params(num_items: int, cfg: NeuMFConfig, generator: torch.Generator) -> Params:
    """The item-side parameters: embeddings N(0, init_std), layers as torch.nn.Linear does."""
    params = {"gmf_item": torch.randn(num_items, cfg.gmf_factors, generator=generator)}
    params["gmf_item"] *= cfg.init_std
    width, last = 2 * cfg.mlp_factors, cfg.gmf_factors
    if cfg.mlp:
        params["mlp_item"] = torch.randn(num_items, cfg.mlp_factors, generator=generator)
        params["mlp_item"] *= cfg.init_std
        for n, out in enumerate(cfg.widths):
            params.update(_linear(f"tower.{n}", width, out, generator))
            width = out
        last += width
    params.update(_linear("out", last, 1, generator))
    params["user_init"] = torch.zeros(cfg.user_dim)  # the fold-in's start: the mean user
    return params


def _linear(name: str, fan_in: int, fan_out: int, generator: torch.Generator) -> Params:
    """A layer's weight (out, in) and bias (out,), uniform in +-1/sqrt(fan_in)."""
    bound = fan_in**-0.5
    weight = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
    return {f"{name}.weight": weight, f"{name}.bias": bias}


def pair_scores(
    params: Params, cfg: NeuMFConfig, users: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    """Scores of (user, item) pairs: users (..., D) broadcast against item indices (...)."""
    gmf = users[..., : cfg.gmf_factors] * params["gmf_item"][items]  # (..., Dg)
    parts = [gmf]
    if cfg.mlp:
        mlp_user = users[..., cfg.gmf_factors :]
        first = params["tower.0.weight"]  # (H1, 2 Dm): the user half, then the item half
        hidden = mlp_user @ first[:, : cfg.mlp_factors].T + params["tower.0.bias"]
        hidden = hidden + params["mlp_item"][items] @ first[:, cfg.mlp_factors :].T
        parts.append(_tower(params, cfg, hidden))
    joined = torch.cat(parts, dim=-1)  # (..., Dg + H_last)
    return (joined @ params["out.weight"][0]) + params["out.bias"][0]


def _tower(params: Params, cfg: NeuMFConfig, hidden: torch.Tensor) -> torch.Tensor:
    """The MLP tower after its first layer's pre-activation: (..., H_last)."""
    hidden = F.relu(hidden)
    for n in range(1, len(cfg.widths)):
        hidden = F.relu(F.linear(hidden, params[f"tower.{n}.weight"], params[f"tower.{n}.bias"]))
    return hidden


def catalog_scores(params: Params, cfg: NeuMFConfig, users: torch.Tensor) -> torch.Tensor:
    """Every item's score for each user vector (B, D): (B, I), in user chunks."""
    num_items = params["gmf_item"].shape[0]
    weight = params["out.weight"][0]
    gmf = (users[:, : cfg.gmf_factors] * weight[: cfg.gmf_factors]) @ params["gmf_item"].T
    if not cfg.mlp:
        return gmf + params["out.bias"][0]  # (B, I): a dot product
    first = params["tower.0.weight"]
    item_hidden = params["mlp_item"] @ first[:, cfg.mlp_factors :].T  # (I, H1), once
    user_hidden = users[:, cfg.gmf_factors :] @ first[:, : cfg.mlp_factors].T
    user_hidden = user_hidden + params["tower.0.bias"]  # (B, H1)
    rows = max(1, _CHUNK_ELEMENTS // (num_items * first.shape[0]))
    towers = []
    for lo in range(0, len(users), rows):
        hidden = user_hidden[lo : lo + rows, None, :] + item_hidden[None]  # (b, I, H1)
        towers.append(_tower(params, cfg, hidden) @ weight[cfg.gmf_factors :])  # (b, I)
    return gmf + torch.cat(towers) + params["out.bias"][0]


@dataclass
class _Batch:
    """A batch's history items, flat: the row (user in the batch), item and normalised weight
    of each (the weights of one user sum to 1, so each user's loss is a weighted mean)."""

    rows: torch.Tensor  # (N,) int64
    items: torch.Tensor  # (N,) int64
    weights: torch.Tensor  # (N,) float32


def item_weights(history: History, weights: np.ndarray | None, cfg: NeuMFConfig) -> np.ndarray:
    """Each history item's loss weight, event weight x recency, normalised to sum 1: (L,)."""
    length = len(history)
    steps_from_end = np.arange(length)[::-1]
    weight = 1.0 + cfg.recency_boost * np.exp2(-steps_from_end / cfg.recency_halflife)
    if weights is not None:
        weight = weight * np.asarray(weights, dtype=np.float64).reshape(-1)
    return (weight / max(weight.sum(), 1e-12)).astype(np.float32)


def make_batch(
    histories: Sequence[History], weights: Sequence[np.ndarray] | None, cfg: NeuMFConfig
) -> _Batch:
    """The flat items of a batch of histories with their normalised loss weights."""
    arrays = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    per_item = [
        item_weights(a, None if weights is None else weights[n], cfg) for n, a in enumerate(arrays)
    ]
    return _Batch(
        rows=torch.from_numpy(np.repeat(np.arange(len(arrays)), lengths)),
        items=torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *arrays])),
        weights=torch.from_numpy(np.concatenate([np.zeros(0, np.float32), *per_item])),
    )


def batch_loss(
    params: Params,
    cfg: NeuMFConfig,
    users: torch.Tensor,
    batch: _Batch,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training loss summed over the batch's users (B, D), their L2 penalty included;
    "bce" samples negatives with `generator`, or without one takes their expectation."""
    penalty = cfg.l2 * users.pow(2).sum()
    if cfg.loss == "bce" and generator is not None:
        return _sampled_bce(params, cfg, users, batch, generator) + penalty
    scores = catalog_scores(params, cfg, users)  # (B, I)
    positive = scores[batch.rows, batch.items]  # (N,)
    if cfg.loss == "softmax":
        log_norm = torch.logsumexp(scores, dim=1)[batch.rows]
        return -(batch.weights * (positive - log_norm)).sum() + penalty
    has_items = torch.zeros(len(users)).index_add_(0, batch.rows, batch.weights)  # 1 or 0
    negative = F.softplus(scores).mean(dim=1) * cfg.negatives  # (B,): E over uniform negatives
    return (batch.weights * F.softplus(-positive)).sum() + (has_items * negative).sum() + penalty


def _sampled_bce(
    params: Params, cfg: NeuMFConfig, users: torch.Tensor, batch: _Batch, generator: torch.Generator
) -> torch.Tensor:
    """He et al.'s log loss: each positive against `negatives` items drawn uniformly."""
    num_items = params["gmf_item"].shape[0]
    owners = users[batch.rows]  # (N, D)
    positive = pair_scores(params, cfg, owners, batch.items)  # (N,)
    drawn = torch.randint(num_items, (len(batch.items), cfg.negatives), generator=generator)
    negative = pair_scores(params, cfg, owners[:, None, :], drawn)  # (N, negatives)
    loss = F.softplus(-positive) + F.softplus(negative).sum(dim=1)
    return (batch.weights * loss).sum()


class NeuMF(Recommender):
    """NeuMF; a user vector is the user's GMF and MLP embeddings, folded in from the history."""

    name: ClassVar[str] = "neumf"
    Config = NeuMFConfig
    config: NeuMFConfig

    def __init__(self, num_items: int, config: NeuMFConfig | None = None) -> None:
        self.config = config or NeuMFConfig()
        generator = torch.Generator().manual_seed(self.config.seed)
        self.params = init_params(num_items, self.config, generator)
        # After `fit`: the training users' learned embeddings (U, D), row u = training history
        # u, to measure the fold-in against; never saved (the contract has no user ids).
        self.learned_users: torch.Tensor | None = None

    @property
    def num_items(self) -> int:
        return int(self.params["gmf_item"].shape[0])

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: EvalSet | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Learn the item side and one embedding per training user with Adam; keep the epoch
        with the best validation NDCG@10 (times are not used; `weights` scale the items)."""
        with torch_threads(self.config.threads):
            return self._fit(train, valid, weights)

    def _fit(
        self, train: Sequence[np.ndarray], valid: EvalSet | None, weights: Weights
    ) -> dict[str, Any]:
        """The training loop of `fit`."""
        cfg, start = self.config, time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        trained = _Trainable.start(self.params, len(train), cfg, generator)
        best, best_epoch, best_state, history = -1.0, 0, trained.snapshot(), []
        best_users = trained.users.detach().clone()
        for epoch in range(1, cfg.epochs + 1):
            loss = trained.epoch(train, weights, generator)
            stats = {"epoch": epoch, "epochs": cfg.epochs, "loss": loss}
            if valid is not None:
                stats["val_ndcg@10"] = self._validate(trained, train, valid)
            history.append(stats)
            self.log_epoch(**stats)
            metric = stats.get("val_ndcg@10", float(epoch))  # no validation: keep the last
            if metric > best:
                best, best_epoch, best_state = metric, epoch, trained.snapshot()
                best_users = trained.users.detach().clone()
            elif epoch - best_epoch >= cfg.patience:
                break
            if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
                break
        self.params, self.learned_users = best_state, best_users
        return {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_ndcg@10": best if valid is not None else None,
            "history": history,
            "seconds": time.perf_counter() - start,
        }

    def _validate(self, trained: _Trainable, train: Sequence[np.ndarray], valid: EvalSet) -> float:
        """Validation NDCG@10: from the learned embeddings when the validation users are the
        training users (cheap), else by folding the histories in."""
        self.params = trained.snapshot()
        if not _same_histories(train, valid):
            return float(_evaluate_model(self, valid))
        users = trained.users.detach()
        scorer = _RowScorer(self.params, self.config, users, valid.histories)
        return float(_evaluate_model(scorer, valid))

    @torch.inference_mode()
    def score_vectors(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Every item's score through the network (not a dot product): (B, I)."""
        return catalog_scores(self.params, self.config, user_vectors.to(torch.float32))

    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """Fold-in (module docstring): `fold_steps` Adam steps on each history's embeddings,
        every item-side parameter frozen: (B, D)."""
        chunk, out = 256, [torch.zeros(0, self.config.user_dim)]
        with torch.inference_mode(False), torch.enable_grad():
            frozen = {k: v.clone() if v.is_inference() else v for k, v in self.params.items()}
            for lo in range(0, len(histories), chunk):
                part = None if weights is None else weights[lo : lo + chunk]
                out.append(fold_in(frozen, self.config, histories[lo : lo + chunk], part))
        return torch.cat(out)

    def item_vectors(self) -> torch.Tensor:
        """The GMF item embeddings, then the MLP ones: (I, D), for cosine similarity only."""
        parts = [self.params["gmf_item"]]
        if self.config.mlp:
            parts.append(self.params["mlp_item"])
        return torch.cat(parts, dim=1).contiguous()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().contiguous() for name, tensor in self.params.items()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.params = {name: tensor.to(torch.float32) for name, tensor in tensors.items()}


def fold_in(
    params: Params, cfg: NeuMFConfig, histories: Sequence[History], weights: Weights = None
) -> torch.Tensor:
    """Users (B, D) fitted to their histories by `fold_steps` Adam steps from the mean user,
    params frozen. The loss is a sum over users and Adam is element-wise, so a user's vector
    does not depend on the others in the batch."""
    batch = make_batch(histories, weights, cfg)
    users = params["user_init"].detach().expand(len(histories), -1).clone().requires_grad_()
    first, second = torch.zeros_like(users), torch.zeros_like(users)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, cfg.fold_steps + 1):
        (grad,) = torch.autograd.grad(batch_loss(params, cfg, users, batch), users)
        with torch.no_grad():
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            unbiased = (second / (1 - beta2**step)).sqrt_().add_(eps)
            users.addcdiv_(first, unbiased, value=-cfg.fold_lr / (1 - beta1**step))
    return users.detach()


@dataclass
class _Trainable:
    """What training updates: the item side and the training users' embeddings (U, D)."""

    params: Params
    users: torch.Tensor
    optimizer: torch.optim.Optimizer
    cfg: NeuMFConfig

    @classmethod
    def start(
        cls, initial: Params, num_users: int, cfg: NeuMFConfig, generator: torch.Generator
    ) -> _Trainable:
        """Leaf tensors from the initial parameters and random user embeddings."""
        params = {k: v.clone().requires_grad_() for k, v in initial.items() if k != "user_init"}
        users = torch.randn(num_users, cfg.user_dim, generator=generator) * cfg.init_std
        users.requires_grad_()
        groups = [
            {"params": [users], "weight_decay": 0.0},
            {"params": list(params.values()), "weight_decay": cfg.item_l2},
        ]
        return cls(params, users, torch.optim.Adam(groups, lr=cfg.lr), cfg)

    def epoch(
        self, train: Sequence[np.ndarray], weights: Weights, generator: torch.Generator
    ) -> float:
        """One pass over the users in random order: the mean loss per user."""
        order = torch.randperm(len(train), generator=generator).numpy()
        total, size = 0.0, self.cfg.batch_size
        for lo in range(0, len(order), size):
            rows = order[lo : lo + size]
            part = None if weights is None else [weights[r] for r in rows]
            batch = make_batch([train[r] for r in rows], part, self.cfg)
            users = self.users[torch.from_numpy(rows)]
            loss = batch_loss(self.params, self.cfg, users, batch, generator)
            self.optimizer.zero_grad()
            (loss / len(rows)).backward()
            self.optimizer.step()
            total += float(loss.detach())
        return total / max(len(order), 1)

    def snapshot(self) -> Params:
        """The item side as plain tensors, with the mean user as the fold-in's start."""
        state = {k: v.detach().clone() for k, v in self.params.items()}
        state["user_init"] = self.users.detach().mean(dim=0)
        return state


class _RowScorer:
    """Scores validation users by their learned embeddings: a history maps to its training
    row by identity (evaluate passes the EvalSet's own history objects)."""

    def __init__(
        self, params: Params, cfg: NeuMFConfig, users: torch.Tensor, histories: Sequence[History]
    ) -> None:
        self.params, self.cfg, self.users = params, cfg, users
        self.row_of = {id(h): n for n, h in enumerate(histories)}
        self.num_items = int(params["gmf_item"].shape[0])

    def score(self, histories: Sequence[History], times: Times = None) -> torch.Tensor:
        rows = torch.tensor([self.row_of[id(h)] for h in histories], dtype=torch.long)
        return catalog_scores(self.params, self.cfg, self.users[rows])


def _evaluate_model(scorer: Any, valid: EvalSet) -> float:
    """Validation NDCG@10 of anything with `score` and `num_items`."""
    return float(evaluate(scorer, valid, ks=(10,))["ndcg@10"])


def _same_histories(train: Sequence[np.ndarray], valid: EvalSet) -> bool:
    """True when validation user u's history is training row u."""
    if len(valid.histories) != len(train):
        return False
    return all(np.array_equal(a, b) for a, b in zip(valid.histories, train, strict=True))
