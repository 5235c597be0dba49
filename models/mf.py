"""Implicit ALS (iALS) with frequency-scaled regularization, after Rendle et al. 2022.

"Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022), with
per-interaction confidence weights c_ui as in Hu et al. 2008:

    L(W, H) = sum_{(u,i) observed} c_ui (<w_u, h_i> - 1)^2 + alpha0 * sum_{all u,i} <w_u, h_i>^2
              + lambda * sum_u (|I_u| + alpha0 |I|)^nu ||w_u||^2
              + lambda * sum_i (|U_i| + alpha0 |U|)^nu ||h_i||^2

c_ui = 1 is plain iALS (recency_boost = 0). With recency_boost = b, an interaction p steps from
the end of the user's history has c = 1 + b * 2^(-p / recency_halflife): recent items count more,
which matters for next-item (leave-one-out) evaluation.

Event weights (`fit(..., weights=)`, e.g. retrain's per-type weights): an interaction of weight
w has c = w * (1 + b * 2^(-p / halflife)), so a purchase of weight 5 counts five times a view of
weight 1 at the same place; without weights (MovieLens) w = 1 and nothing changes. Multiplying
(rather than c = 1 + alpha * w) keeps the recency profile and needs no new hyperparameter. A
user's repeated item keeps its largest confidence (the split already merged repeats by their
largest weight). Fold-in (`user_vectors(..., weights=)`) takes them too: the service passes
each history item's weight, the largest of its stored events' types (app.serving.state).

Each half-step is an exact ridge solve per row, batched: rows are sorted by length and padded
into chunks, the per-row Gram matrix comes from one `bmm`, and all systems of a chunk are solved
by one batched LAPACK call. Users are never stored: `user_vectors` solves the user step for any
history (fold-in), so known and unseen users are served the same way, and a training user's
vector equals the one the last training step produced.

Content (`content`, the hybrid `mf-hybrid`): with "add", item i's factors are h_i = W^T x_i + v_i,
x_i its pretrained text vector, and the free part v_i carries iALS's regularization, i.e. the
item step pulls h_i towards the content prior W^T x_i instead of towards 0 (Collaborative Topic
Regression's form, Wang & Blei 2011). Each epoch: the item step with that prior (still one exact
ridge solve per item), then W in closed form, a weighted ridge regression of the item factors on
the text vectors (F x F system), then the user step. An item without text has x = 0 and is
plain iALS. An item with text but no training interaction is its prior alone, times
`cold_scale` (v = 0: what `item_vectors_for` gives a new item), and stays out of the
unobserved term alpha0 sum <w_u, h_i>^2, as an item added after training would. With "init",
the item factors start from the text vectors' principal directions and the first half-step is a
user step; then plain iALS.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import History, Recommender, Times, Weights, torch_threads
from models.content import principal_projection
from models.data import EvalSet
from models.metrics import evaluate_vectors
from models.mf_content import fit_interactions, regress_factors


@dataclass
class IALSConfig:
    """iALS hyperparameters (defaults tuned on ml1m-half-loo validation, see research/results)."""

    factors: int = 48  # embedding dimension D (val NDCG@10 flat from 48 to 96, cost ~D^2)
    iterations: int = 10  # maximum epochs; one epoch = item step then user step
    unobserved_weight: float = 3.0  # alpha0: weight of the squared score of every (u, i) pair
    regularization: float = 0.001  # lambda: scaled per row by (count + alpha0 * n_other)^nu
    reg_exponent: float = 1.0  # nu: 0 = plain L2, 1 = fully frequency-scaled
    recency_boost: float = 30.0  # b in c = 1 + b * 2^(-steps from the end / halflife); 0 = off
    recency_halflife: float = 2.0  # interactions until the recency boost halves
    init_std: float = 0.1  # initial factors ~ N(0, init_std / sqrt(factors))
    patience: int = 2  # stop after this many epochs without a better validation NDCG@10
    chunk_elements: int = 1 << 16  # rows x padded length per batched solve: memory vs padding
    # Training's row solves: "exact" (batched LU: O(nnz D^2 + rows D^3) per epoch), "cg"
    # (cg_steps conjugate-gradient steps from the row's previous factors, Takacs et al. 2011,
    # as the `implicit` library does: O(nnz D + rows D^2) per step), or "auto": cg above
    # cg_rows users + items. Folding in a user at serving time is always exact.
    solver: str = "auto"
    cg_steps: int = 3
    cg_rows: int = 50_000
    seed: int = 0  # seeds the initial factors
    # torch threads during fit; None keeps torch's setting. 1 measured 2.6x faster than 2 on the
    # shared 2-core dev box (OpenMP threads spin-wait when the cores are oversubscribed).
    threads: int | None = 1
    content: str = "off"  # item text vectors: "off" (ID-only), "add" or "init" (module docstring)
    content_dim: int = 0  # width F of the item text vectors (build_model sets it from them)
    content_l2: float = 1.0  # "add": ridge on W, in units of the mean item regularization
    content_fit: str = "factors"  # "add": how W is fit, "factors" or "interactions"
    # (models/mf_content.py): regressing the item factors, or as a content-only iALS
    cold_scale: float = 1.0  # content on: an item without training interactions (or a new
    # item) is cold_scale x its content part; > 1 undoes the ridge's shrinkage to the mean item

    def __post_init__(self) -> None:
        if self.content not in ("off", "add", "init"):
            raise ValueError(f"content must be 'off', 'add' or 'init', not {self.content!r}")
        if self.content_fit not in ("factors", "interactions"):
            raise ValueError(f"content_fit must be 'factors' or 'interactions': {self.content_fit}")
        if self.solver not in ("exact", "cg", "auto"):
            raise ValueError(f"solver must be 'exact', 'cg' or 'auto', not {self.solver!r}")
        if self.cg_steps < 1:
            raise ValueError(f"cg_steps must be >= 1, not {self.cg_steps}")

    def cg_for(self, rows: int) -> int:
        """Conjugate-gradient steps per row solve for a problem of `rows` users + items; 0:
        solve exactly."""
        use = self.solver == "cg" or (self.solver == "auto" and rows > self.cg_rows)
        return self.cg_steps if use else 0


@dataclass
class _Sparse:
    """A binary rows x cols matrix in CSR form with a confidence weight per entry."""

    indptr: np.ndarray  # (R + 1,) int64
    indices: np.ndarray  # (nnz,) int64 column of each entry
    weights: np.ndarray  # (nnz,) float32 confidence c of each entry
    num_cols: int

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def row_of_entry(self) -> np.ndarray:
        """Row index of every entry: (nnz,)."""
        return np.repeat(np.arange(self.num_rows, dtype=np.int64), np.diff(self.indptr))

    def transpose(self) -> _Sparse:
        """The cols x rows matrix with the same weights."""
        rows = self.row_of_entry()
        order = np.lexsort((rows, self.indices))
        counts = np.bincount(self.indices, minlength=self.num_cols)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return _Sparse(indptr, rows[order], self.weights[order], self.num_rows)


def recency_weights(lengths: np.ndarray, cfg: IALSConfig) -> np.ndarray:
    """Confidence of every history position, histories concatenated: (sum lengths,) float32."""
    ends = np.repeat(np.cumsum(lengths), lengths)
    steps_from_end = ends - np.arange(int(lengths.sum())) - 1  # 0 for the most recent item
    boost = cfg.recency_boost * np.exp2(-steps_from_end / cfg.recency_halflife)
    return (1.0 + boost).astype(np.float32)


def history_matrix(
    histories: Sequence[History], num_cols: int, cfg: IALSConfig, weights: Weights = None
) -> _Sparse:
    """Users x items confidence matrix, c = event weight x recency (module docstring); a
    repeated item keeps its largest confidence."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    cols = np.concatenate([np.zeros(0, np.int64), *(np.asarray(h, np.int64) for h in histories)])
    if cols.size and (cols.min() < 0 or cols.max() >= num_cols):
        raise ValueError(f"item index out of range [0, {num_cols})")
    keys = rows * num_cols + cols
    confidence = recency_weights(lengths, cfg)
    if weights is not None:
        confidence = (confidence * _flat_weights(weights, lengths)).astype(np.float32)
    order = np.lexsort((-confidence, keys))  # per key, the largest confidence first
    unique_keys, first = np.unique(keys[order], return_index=True)
    indptr = np.searchsorted(unique_keys // num_cols, np.arange(len(histories) + 1))
    entries = order[first]
    return _Sparse(indptr.astype(np.int64), cols[entries], confidence[entries], num_cols)


def _flat_weights(weights: Sequence[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """The histories' event weights concatenated, checked: (sum lengths,) float64, all > 0."""
    if len(weights) != len(lengths):
        raise ValueError(f"{len(weights)} weight arrays for {len(lengths)} histories")
    parts = [np.asarray(w, dtype=np.float64).reshape(-1) for w in weights]
    if any(len(w) != n for w, n in zip(parts, lengths.tolist(), strict=True)):
        raise ValueError("a history and its weights differ in length")
    flat = np.concatenate([np.zeros(0), *parts])
    if flat.size and not bool(np.all(flat > 0)):
        raise ValueError("event weights must be > 0")
    return flat


@dataclass
class _RowPlan:
    """Padded neighbour indices and weights of every row, chunked for batched solves."""

    # rows (B,), padded neighbour indices (B, L), sqrt of their confidence weights (B, L)
    chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    counts: torch.Tensor  # (R,) distinct neighbours per row


def _chunk_bounds(sorted_lengths: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) chunks of length-sorted rows whose padded size fits `budget`."""
    bounds, start, total = [], 0, len(sorted_lengths)
    while start < total:
        sizes = np.arange(1, total - start + 1) * np.maximum(sorted_lengths[start:], 1)
        end = start + max(1, int(np.searchsorted(sizes, budget, side="right")))
        bounds.append((start, end))
        start = end
    return bounds


def _plan_rows(matrix: _Sparse, budget: int) -> _RowPlan:
    """Group rows by length into padded chunks; padding is column 0 with weight 0."""
    lengths = np.diff(matrix.indptr)
    order = np.argsort(lengths, kind="stable")
    last = max(len(matrix.indices) - 1, 0)
    chunks = []
    for start, end in _chunk_bounds(lengths[order], budget):
        rows = order[start:end]
        offsets = np.arange(max(int(lengths[rows].max()), 1))[None, :]  # (1, L)
        valid = offsets < lengths[rows][:, None]  # (B, L)
        positions = np.minimum(matrix.indptr[rows][:, None] + offsets, last)
        if len(matrix.indices):
            padded = np.where(valid, matrix.indices[positions], 0)  # (B, L)
            weights = np.where(valid, matrix.weights[positions], 0.0)
        else:
            padded, weights = np.zeros(valid.shape, np.int64), np.zeros(valid.shape)
        root_weights = torch.from_numpy(np.sqrt(weights).astype(np.float32))  # 0 on padding
        chunks.append((torch.from_numpy(rows), torch.from_numpy(padded), root_weights))
    return _RowPlan(chunks=chunks, counts=torch.from_numpy(lengths.astype(np.float32)))


def _solve_side(
    plan: _RowPlan,
    fixed: torch.Tensor,
    reg: torch.Tensor,
    alpha0: float,
    gram: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    cg_steps: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted ridge solution of every row given the other side's factors (N, D): exact, or
    with `cg_steps` > 0 that many conjugate-gradient steps from `start` (R, D).

    Returns the solutions (R, D) and each row's observed-entry loss sum_i c (<x, y_i> - 1)^2
    (R,), which falls out of the solve almost for free: x^T S x - 2 x^T b + sum_i c. `prior`
    (R, D): the ridge pulls each row towards its prior row instead of towards zero.
    """
    dim = fixed.shape[1]
    base = alpha0 * (fixed.T @ fixed if gram is None else gram)  # (D, D): alpha0 * Gram of all
    out = fixed.new_zeros(len(plan.counts), dim)  # (R, D)
    observed_loss = fixed.new_zeros(len(plan.counts))  # (R,)
    iterative = cg_steps > 0 and start is not None
    for rows, padded, root_weights in plan.chunks:
        batch, width = padded.shape
        gathered = fixed.index_select(0, padded.reshape(-1)).view(batch, width, dim)
        gathered *= root_weights[:, :, None]  # (B, L, D): sqrt(c_ui) * h_i, padding zeroed
        rhs = torch.bmm(gathered.transpose(1, 2), root_weights[:, :, None])[:, :, 0]  # sum c h
        ridge = reg[rows][:, None]  # (B, 1)
        pull = rhs if prior is None else rhs + ridge * prior[rows]
        if iterative:
            assert start is not None
            solved = _conjugate_gradients(gathered, base, ridge, pull, start[rows], cg_steps)
            scores = torch.bmm(gathered, solved[:, :, None])[:, :, 0]  # (B, L): sqrt(c) h . x
            quadratic = scores.pow(2).sum(1)  # x^T S x
        else:
            solved, quadratic = _exact_rows(gathered, base, ridge, pull)
        linear = (solved * rhs).sum(1)  # x^T b
        observed_loss[rows] = quadratic - 2 * linear + root_weights.pow(2).sum(dim=1)
        out[rows] = solved
    return out, observed_loss


def _exact_rows(
    gathered: torch.Tensor, base: torch.Tensor, ridge: torch.Tensor, pull: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk's rows solved exactly: (B, D) solutions and x^T S x (B,), S = sum c h h^T."""
    local = torch.bmm(gathered.transpose(1, 2), gathered)  # (B, D, D): S = sum c h h^T
    eye = torch.eye(base.shape[0], dtype=base.dtype)
    system = local + base + ridge[:, :, None] * eye
    # Batched LU measured ~1.7x faster than batched Cholesky here (both per-matrix LAPACK).
    solved, info = torch.linalg.solve_ex(system, pull[:, :, None])
    if bool(info.any()):  # singular in float32: redo the chunk in float64
        solved = torch.linalg.solve(system.double(), pull[:, :, None].double()).to(base.dtype)
    quadratic = (solved.transpose(1, 2) @ local @ solved).view(len(pull))  # x^T S x
    return solved[:, :, 0], quadratic


def _conjugate_gradients(
    gathered: torch.Tensor,
    base: torch.Tensor,
    ridge: torch.Tensor,
    pull: torch.Tensor,
    start: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """A chunk's rows by `steps` conjugate-gradient steps from `start` (B, D): the system
    (alpha0 G + S_u + reg I) x = b is only ever multiplied by a vector, S_u p = sum_i c (h_i .
    p) h_i, so no (D, D) matrix per row is built or factorised."""

    def times(p: torch.Tensor) -> torch.Tensor:
        """The row systems times p (B, D)."""
        local = torch.bmm(gathered.transpose(1, 2), torch.bmm(gathered, p[:, :, None]))[:, :, 0]
        return p @ base + ridge * p + local

    x = start
    residual = pull - times(x)
    direction, norm = residual, (residual * residual).sum(1)
    for _ in range(steps):
        moved = times(direction)
        step = norm / (direction * moved).sum(1).clamp(min=1e-20)
        x = x + step[:, None] * direction
        residual = residual - step[:, None] * moved
        new_norm = (residual * residual).sum(1)
        direction = residual + (new_norm / norm.clamp(min=1e-20))[:, None] * direction
        norm = new_norm
    return x


def _row_regularization(counts: torch.Tensor, n_other: int, cfg: IALSConfig) -> torch.Tensor:
    """Frequency-scaled L2 weight per row: lambda * (|row| + alpha0 * n_other)^nu."""
    return cfg.regularization * (counts + cfg.unobserved_weight * n_other) ** cfg.reg_exponent


def _aligned(train: Sequence[History], valid: EvalSet) -> bool:
    """True when validation user u's history is training row u (val vectors = user factors)."""
    if len(valid.histories) != len(train):
        return False
    return all(np.array_equal(a, b) for a, b in zip(valid.histories, train, strict=True))


@dataclass
class _Problem:
    """Everything one training run reuses across epochs."""

    user_plan: _RowPlan
    item_plan: _RowPlan
    user_reg: torch.Tensor  # (U,)
    item_reg: torch.Tensor  # (I,)
    matrix: _Sparse  # users x items


class ImplicitALS(Recommender):
    """iALS matrix factorisation; users are folded in from their histories."""

    name: ClassVar[str] = "mf"
    Config = IALSConfig
    config: IALSConfig

    def __init__(self, num_items: int, config: IALSConfig | None = None) -> None:
        self.config = config or IALSConfig()
        if self.config.content != "off" and not self.reads_content:
            raise ValueError(f"{self.name} reads no item content; use mf-hybrid")
        generator = torch.Generator().manual_seed(self.config.seed)
        self.item_factors = self._init(num_items, generator)  # (I, D)
        self._gram_of: torch.Tensor | None = None  # the item factors `_gram` was computed from
        self._gram = torch.zeros(0)
        dim, factors = self.config.content_dim, self.config.factors
        self.item_content = torch.zeros(num_items, dim)  # (I, F) text vectors, zero: no text
        self.content_projection = torch.zeros(dim, factors)  # (F, D): W, or "init"'s map
        self.content_offset = torch.zeros(factors)  # (D,) "init"'s centring; 0 for "add"
        # Items with factors of their own: trained, or without text. The others (content only,
        # as new items) stay out of the unobserved term, as items unknown at training time do.
        self.item_own = torch.ones(num_items, dtype=torch.bool)  # (I,)

    def _init(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        """Random factors ~ N(0, init_std / sqrt(D)): (rows, D)."""
        scale = self.config.init_std / self.config.factors**0.5
        return torch.randn(rows, self.config.factors, generator=generator) * scale

    @property
    def num_items(self) -> int:
        return self.item_factors.shape[0]

    def set_item_features(self, features: torch.Tensor) -> None:
        """Take the items' text vectors (I, F); "init" starts the item factors from them."""
        if tuple(features.shape) != tuple(self.item_content.shape):
            raise ValueError(f"features {tuple(features.shape)}, model {self.item_content.shape}")
        self.item_content = features.to(torch.float32).contiguous()
        if self.config.content == "init":
            std = self.config.init_std / self.config.factors**0.5
            projection, offset = principal_projection(self.item_content, self.config.factors, std)
            self.content_projection, self.content_offset = projection, offset
            has_text = self.item_content.abs().sum(1) > 0
            self.item_factors[has_text] = self._content_prior()[has_text]

    def _content_prior(self) -> torch.Tensor:
        """Every item's content part x W + b: (I, D)."""
        return self.item_content @ self.content_projection + self.content_offset

    def _problem(self, train: Sequence[History], weights: Weights = None) -> _Problem:
        """Sparse matrices, row plans and per-row regularization for `train`."""
        cfg = self.config
        matrix = history_matrix(train, self.num_items, cfg, weights)
        user_plan = _plan_rows(matrix, cfg.chunk_elements)
        item_plan = _plan_rows(matrix.transpose(), cfg.chunk_elements)
        return _Problem(
            user_plan=user_plan,
            item_plan=item_plan,
            user_reg=_row_regularization(user_plan.counts, self.num_items, cfg),
            item_reg=_row_regularization(item_plan.counts, len(train), cfg),
            matrix=matrix,
        )

    def _loss(self, users: torch.Tensor, observed: torch.Tensor, problem: _Problem) -> float:
        """The full training objective L(W, H) per observed interaction ("add": the items'
        penalty on their free part h - W^T x, plus W's ridge)."""
        items, free = self.item_factors, self.item_factors
        penalty = (problem.user_reg * users.pow(2).sum(1)).sum()
        if self.config.content == "add":
            free = items - self._content_prior()
            ridge = self.config.content_l2 * problem.item_reg.mean()
            penalty += ridge * self.content_projection.pow(2).sum()
        unobserved = ((users.T @ users) * self._item_gram()).sum()  # sum of all squared scores
        penalty += (problem.item_reg * free.pow(2).sum(1)).sum()
        total = observed.sum() + self.config.unobserved_weight * unobserved + penalty
        return float(total) / max(len(problem.matrix.indices), 1)

    def _epoch(self, problem: _Problem, users: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One item step then one user step; returns the new user factors (U, D) and the loss."""
        alpha0 = self.config.unobserved_weight
        prior = self._content_prior() if self.config.content == "add" else None
        steps = self.config.cg_for(len(problem.user_reg) + len(problem.item_reg))
        self.item_factors, _ = _solve_side(
            problem.item_plan,
            users,
            problem.item_reg,
            alpha0,
            prior=prior,
            start=self.item_factors,
            cg_steps=steps,
        )
        self._content_step(problem, users)
        gram = None if self.config.content == "off" else self._item_gram()
        users, observed = _solve_side(
            problem.user_plan,
            self.item_factors,
            problem.user_reg,
            alpha0,
            gram,
            start=users,
            cg_steps=steps,
        )
        return users, self._loss(users, observed, problem)

    def _content_step(self, problem: _Problem, users: torch.Tensor) -> None:
        """ "add": W fit given the item factors and users; items without training interactions
        (and with text) are then their content part alone, as a new item would be."""
        cfg = self.config
        if cfg.content == "off":
            return
        unseen = problem.item_plan.counts == 0
        has_text = self.item_content.abs().sum(1) > 0
        self.item_own = ~(unseen & has_text)
        l2 = cfg.content_l2
        if cfg.content == "add" and cfg.content_fit == "factors":
            x, h, reg = self.item_content[~unseen], self.item_factors[~unseen], problem.item_reg
            self.content_projection = regress_factors(x, h, reg[~unseen], l2)
        elif cfg.content == "add":
            matrix = problem.matrix
            entries = (
                torch.from_numpy(matrix.row_of_entry()),
                torch.from_numpy(matrix.indices),
                torch.from_numpy(matrix.weights),
            )
            self.content_projection = fit_interactions(
                self.item_content,
                users,
                entries,
                cfg.unobserved_weight,
                l2 * float(problem.item_reg.mean()),
                self.content_projection,
            )
        cold = unseen & has_text
        self.item_factors[cold] = self.config.cold_scale * self._content_prior()[cold]

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: EvalSet | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Alternate exact item and user steps; keep the epoch with the best validation NDCG@10
        (times are not used: recency counts positions from the end of a history; `weights`
        scale the confidences, module docstring)."""
        with torch_threads(self.config.threads):
            return self._fit(train, valid, weights)

    def _first_users(self, problem: _Problem, count: int) -> torch.Tensor:
        """The user factors the first item step starts from: random, or with "init" the user
        step given the content-initialised item factors."""
        cfg = self.config
        if cfg.content != "init":
            return self._init(count, torch.Generator().manual_seed(cfg.seed + 1))
        plan, reg = problem.user_plan, problem.user_reg
        return _solve_side(plan, self.item_factors, reg, cfg.unobserved_weight)[0]

    def _fit(
        self, train: Sequence[np.ndarray], valid: EvalSet | None, weights: Weights
    ) -> dict[str, Any]:
        """The training loop of `fit`."""
        cfg, start = self.config, time.perf_counter()
        problem = self._problem(train, weights)
        users = self._first_users(problem, len(train))
        aligned = valid is not None and _aligned(train, valid)
        best, best_epoch, best_state, history = -1.0, 0, self._item_state(), []
        for epoch in range(1, cfg.iterations + 1):
            users, loss = self._epoch(problem, users)
            stats = {"epoch": epoch, "epochs": cfg.iterations, "loss": loss}
            if valid is not None:
                vectors = users if aligned else self.user_vectors(valid.histories)
                metrics = evaluate_vectors(vectors, self.item_factors, valid)
                stats["val_ndcg@10"] = metrics["ndcg@10"]
            history.append(stats)
            self.log_epoch(**stats)
            metric = stats.get("val_ndcg@10", float(epoch))  # no validation: keep the last epoch
            if metric > best:
                best, best_epoch, best_state = metric, epoch, self._item_state()
            elif epoch - best_epoch >= cfg.patience:
                break
        self.item_factors, self.content_projection = best_state
        self.item_factors = self.item_factors.contiguous()
        return {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_ndcg@10": best if valid is not None else None,
            "history": history,
            "seconds": time.perf_counter() - start,
        }

    def _item_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What an epoch changes on the item side: the factors and W (replaced, never mutated
        after an epoch, so keeping references is enough)."""
        return self.item_factors, self.content_projection

    def user_vectors(
        self, histories: Sequence[History], times: Times = None, *, weights: Weights = None
    ) -> torch.Tensor:
        """Fold-in: the exact user step for each history (same formula as training, event
        weights included): (B, D)."""
        plan = _plan_rows(
            history_matrix(histories, self.num_items, self.config, weights),
            self.config.chunk_elements,
        )
        reg = _row_regularization(plan.counts, self.num_items, self.config)
        alpha0 = self.config.unobserved_weight
        return _solve_side(plan, self.item_factors, reg, alpha0, self._item_gram())[0]

    def _item_gram(self) -> torch.Tensor:
        """H^T H (D, D) over the items with factors of their own, cached for serving until the
        item factors change (they are replaced, never changed in place, once an epoch ends)."""
        if self._gram_of is not self.item_factors:
            own = self.item_factors
            if not bool(self.item_own.all()):
                own = own[self.item_own]
            self._gram = own.T @ own
            self._gram_of = self.item_factors
        return self._gram

    def item_vectors(self) -> torch.Tensor:
        """Item factors: (I, D)."""
        return self.item_factors

    def item_vectors_for(self, features: torch.Tensor) -> torch.Tensor | None:
        """A new item's factors: cold_scale x its content part x W + b (None for ID-only)."""
        if self.config.content == "off":
            return None
        content = features.to(torch.float32) @ self.content_projection + self.content_offset
        return self.config.cold_scale * content

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"item_factors": self.item_factors.contiguous()}
        if self.config.content != "off":  # ID-only checkpoints stay as they were
            tensors["item_content"] = self.item_content.contiguous()
            tensors["content_projection"] = self.content_projection.contiguous()
            tensors["content_offset"] = self.content_offset.contiguous()
            tensors["item_own"] = self.item_own.contiguous()
        return tensors

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.item_factors = tensors["item_factors"].to(torch.float32).contiguous()
        if self.config.content != "off":
            self.item_content = tensors["item_content"].to(torch.float32).contiguous()
            self.content_projection = tensors["content_projection"].to(torch.float32)
            self.content_offset = tensors["content_offset"].to(torch.float32)
            self.item_own = tensors["item_own"].to(torch.bool)


@dataclass
class PlainIALSConfig(IALSConfig):
    """iALS as published (Rendle et al. 2022): no recency weighting. Tuned on validation
    (research/results/tuning_mf.md, run g128b): val NDCG@10 0.0502, best at epoch 3 of 8."""

    factors: int = 128
    iterations: int = 8
    unobserved_weight: float = 0.3
    regularization: float = 0.003
    recency_boost: float = 0.0


class PlainIALS(ImplicitALS):
    """The published iALS, kept beside `mf` so the comparison shows what recency adds."""

    name: ClassVar[str] = "ials"
    Config = PlainIALSConfig


@dataclass
class HybridIALSConfig(IALSConfig):
    """`mf` with the item text vectors (module docstring), chosen on ml1m-half-loo validation
    (research/results/tuning_mf.md): "add" 0.1288 NDCG@10 against "init" 0.1257 at 15 epochs
    (`mf` itself: 0.1277 at 15); W fit to the interactions (0.1285, flat in content_l2) rather
    than to the factors, for the better cold items at every cold_scale; cold_scale 1, the best
    on the cold-item validation check's mix of cold and warm targets."""

    iterations: int = 15
    content: str = "add"
    content_dim: int = 384
    content_fit: str = "interactions"


class HybridIALS(ImplicitALS):
    """iALS whose item factors are the free factors plus a projection of the item's text."""

    name: ClassVar[str] = "mf-hybrid"
    Config = HybridIALSConfig
    reads_content: ClassVar[bool] = True
