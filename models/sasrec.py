"""SASRec: a causal Transformer over item sequences, trained with full cross-entropy (SASRec+).

Kang & McAuley 2018 (SASRec) with the loss of Klenitskiy & Vasilev 2023 ("Turning Dross Into
Gold Loss: is BERT4Rec really better than SASRec?"): softmax over the whole catalog at every
position instead of one sampled negative. Input and output item embeddings are tied, so a user
is scored by a plain dot product `user_vectors(h) @ item_vectors().T`, which serving relies on.

Sequences are right-padded inside a batch: with a causal mask no real position ever attends to a
padding position, and positions count from the first item of the window, so the output for a
history does not depend on how much padding its batch needed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from models.base import History, Recommender
from models.data import EvalSet
from models.metrics import evaluate

CE_CHUNK = 512  # rows of logits per step of the fused loss: (512, I) stays cache-sized
# Floor on logit - max before exp: exp of inputs below about -88 takes a very slow path on x86
# CPUs and its denormal results slow every later product (5-30x once the model is confident).
# e^-60 / I stays a normal float; the probability it stands for is below 1e-26.
EXP_FLOOR = -60.0
# Seconds since the previous item: 0 | < 1 min | < 1 h | < 1 day | < 30 days | more; then a
# bucket for a history's first item and one for items whose time is not known.
GAP_EDGES = np.array([1, 60, 3600, 86400, 30 * 86400])
FIRST_GAP, UNKNOWN_GAP = len(GAP_EDGES) + 1, len(GAP_EDGES) + 2


@dataclass
class SASRecConfig:
    """SASRec hyperparameters; defaults tuned on ml1m-half-loo validation (bench/results)."""

    max_len: int = 200  # the encoder sees the most recent max_len items of a history
    hidden: int = 64  # width D of item/position embeddings and of every block
    blocks: int = 2  # Transformer blocks
    heads: int = 1  # attention heads (hidden must be divisible by heads)
    ffn_mult: int = 1  # feed-forward width = ffn_mult * hidden (original SASRec: 1)
    positions: str = "start"  # "start": position t counts from the window's first item;
    # "end": from its last item (the last item always gets the same embedding, as with the
    # left padding of the original SASRec); "end" lost 0.013 val NDCG@10 (tuning_sasrec.md)
    dropout: float = 0.1  # on embeddings and residual branches
    attn_dropout: float = 0.0  # on attention weights; > 0 forces SDPA's slower math path on CPU
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay (not applied to norms/biases)
    warmup_epochs: float = 1.0  # linear warmup to lr, then cosine decay over `epochs`
    cosine: bool = True  # cosine decay to 0 at `epochs`; False keeps lr constant after warmup
    batch_size: int = 16  # users (sequences) per step; batches hold users of similar length
    random_windows: float = 0.5  # chance a history longer than max_len + 1 trains on a random
    # earlier window instead of its last one (uses the older part of long histories)
    ema_decay: float = 0.0  # > 0: validate, keep and return an exponential moving average of
    # the weights, updated every step with this decay (0: the weights as trained); 0.998 lost
    # 0.0045 under the refit protocol (tuning_sasrec.md)
    epochs: int = 40  # upper bound on training epochs (and the cosine horizon)
    patience: int = 10  # stop after this many validations without a better val NDCG@10
    eval_every: int = 2  # epochs between validations
    loss: str = "ce"  # "ce": softmax over all items; "sampled": over n_negatives + the positive
    recency_boost: float = 0.0  # b: a target d steps before the end of its user's history
    recency_halflife: float = 2.0  # weighs 1 + b * 2^(-d / halflife) in the loss (0: uniform;
    # mf's b=30, halflife 2 lost 0.055 val NDCG@10 here, b=10, halflife 8 lost 0.021)
    mask_history: bool = True  # "ce" only: leave the items seen so far out of each softmax
    n_negatives: int = 256  # "sampled" only: uniform negatives shared by the whole batch
    max_seconds: float | None = None  # wall-clock budget; training stops, keeping the best state
    seed: int = 0  # seeds init, dropout, shuffling and negative sampling
    threads: int | None = None  # torch intra-op threads during fit; None leaves torch's setting
    device: str = "cpu"  # where fit runs: "cpu", "cuda", "cuda:N" or "auto" (cuda when present);
    # the trained model always comes back on the CPU, where it is saved and served
    progress: bool = True  # tqdm bar with loss and validation NDCG@10
    ensemble_refit: bool = True  # after a refit on train + val, serve the early-stopped network
    # and the refit one together (their scores add): +0.004 and +0.008 NDCG@10 over two seeds
    # on the shifted split, for no extra training (tuning_sasrec.md); twice the encoding cost
    members: int = 1  # networks whose scores add; set by the refit's join, not trained at once
    time_gaps: bool = False  # one more input embedding per item: the bucket of the time since
    # the previous item (TiSASRec's idea, coarse); fit and scoring then take timestamps, and a
    # history without them gets the "unknown" bucket. Serving does not pass times yet.

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.positions not in ("start", "end"):
            raise ValueError(f"positions must be 'start' or 'end', not {self.positions!r}")
        if self.loss not in ("ce", "sampled"):
            raise ValueError(f"loss must be 'ce' or 'sampled', not {self.loss!r}")
        if self.members < 1:
            raise ValueError(f"members must be at least 1, not {self.members}")
        if self.device != "auto" and torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', not {self.device!r}")

    def torch_device(self) -> torch.device:
        """The training device: `device`, with "auto" meaning CUDA when it is available."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, L, D)
        q, k, v = (t.view(B, L, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, L, D/H)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The output at one position per row, `last` (B,): keys and values at every position,
        one query per row (inference: an L x L attention becomes 1 x L)."""
        B, L, D = x.shape
        H = self.heads
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[torch.arange(B, device=x.device), last], weight[:D], bias[:D])  # (B, D)
        k, v = F.linear(x, weight[D:], bias[D:]).split(D, dim=2)  # 2 x (B, L, D)
        q = q.view(B, H, 1, D // H)
        k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (k, v))  # (B, H, L, D/H)
        visible = torch.arange(L, device=x.device)[None, :] <= last[:, None]  # (B, L) causal
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
        return self.proj(y.reshape(B, D))  # (B, D)


class FeedForward(nn.Module):
    """Position-wise two-layer MLP."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.hidden, cfg.ffn_mult * cfg.hidden)
        self.proj = nn.Linear(cfg.ffn_mult * cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, L, D)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.hidden)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x)))  # (B, L, D)
        return x + self.drop(self.ffn(self.ln_ffn(x)))  # (B, L, D)

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The block's output (B, D) at position `last` of each row only (inference)."""
        y = x[torch.arange(x.shape[0], device=x.device), last] + self.attn.forward_at(
            self.ln_attn(x), last
        )
        return y + self.ffn(self.ln_ffn(y))  # (B, D)


class SASRecNet(nn.Module):
    """Item + position embeddings, causal blocks, final LayerNorm; item table doubles as output."""

    empty_user: torch.Tensor

    def __init__(self, cfg: SASRecConfig, num_items: int) -> None:
        super().__init__()
        self.pad = num_items  # padding index: one row past the last item, kept at zero
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=num_items)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.from_end = cfg.positions == "end"
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.ln_out = nn.LayerNorm(cfg.hidden)
        # With time gaps, an input token is item + (num_items + 1) * gap bucket.
        self.gap_emb = nn.Embedding(UNKNOWN_GAP + 1, cfg.hidden) if cfg.time_gaps else None
        # Mean training user vector: the representation of an empty history.
        self.register_buffer("empty_user", torch.zeros(cfg.hidden))
        self.apply(_init_weights)

    def embed(self, seqs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Item plus position embeddings (B, L, D) of right-padded sequences (B, L); `lengths`
        (B,) of the real items, counted from `seqs` when not given (positions from the end)."""
        pos = torch.arange(seqs.shape[1], device=seqs.device)  # (L,)
        if self.from_end:
            if lengths is None:
                lengths = (seqs != self.pad).sum(dim=1)
            # The last real item gets max_len - 1; padding slots (never attended to) are clamped.
            top = self.pos_emb.num_embeddings - 1
            pos = (top + 1 - lengths[:, None] + pos[None, :]).clamp(0, top)  # (B, L)
        if self.gap_emb is None:
            return self.drop(self.item_emb(seqs) + self.pos_emb(pos))  # (B, L, D)
        width = self.pad + 1
        items, gaps = seqs % width, seqs // width
        return self.drop(self.item_emb(items) + self.pos_emb(pos) + self.gap_emb(gaps))

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) for right-padded item sequences (B, L)."""
        x = self.embed(seqs)  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        return self.ln_out(x)  # (B, L, D)

    def last_states(self, seqs: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """forward(seqs)[arange(B), last] without computing the other positions of the final
        block: about half the cost of encoding a user for serving."""
        x = self.embed(seqs, last + 1)  # (B, L, D)
        *early, final = self.blocks
        for block in early:
            x = block(x)
        assert isinstance(final, Block)
        return self.ln_out(final.forward_at(x, last))  # (B, D)

    def items(self) -> torch.Tensor:
        """Output item table without the padding row: (I, D)."""
        return self.item_emb.weight[: self.pad]


def _init_weights(module: nn.Module) -> None:
    """Small normal init for linear and embedding weights, zero biases (as in nanoGPT)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


class LinearCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of `states @ items.T`, fused and chunked over rows.

    Gradients are computed in the forward pass, CE_CHUNK rows at a time, so the (N, I) logits
    are never stored: a chunk stays in cache and no separate softmax-backward pass is needed
    (about 2.5x faster than F.cross_entropy on CPU). A chunk is laid out item-major, (I, C),
    which makes the three matrix products cheaper than the (C, I) layout. Forward-only use
    (no backward) would waste the gradient work; this is a training loss only.
    """

    @staticmethod
    def forward(
        ctx: Any,
        states: torch.Tensor,
        items: torch.Tensor,
        labels: torch.Tensor,
        excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`excluded`: optional (row, item) pairs, sorted by row, left out of the row's softmax;
        `weights`: optional (N,) row weights (the loss is then their weighted mean)."""
        grad_states, grad_items = torch.empty_like(states), torch.zeros_like(items)
        total = states.new_zeros(())
        for start in range(0, states.shape[0], CE_CHUNK):
            rows = slice(start, start + CE_CHUNK)
            h, y = states[rows], labels[rows]  # (C, D), (C,)
            cols = torch.arange(len(y), device=y.device)  # (C,)
            w = None if weights is None else weights[rows]  # (C,)
            probs = items @ h.T  # logits (I, C), turned into softmax - onehot in place
            if excluded is not None:
                _exclude(probs, excluded, start, y, float("-inf"))
            peak = probs.amax(dim=0)  # (C,)
            target = probs[y, cols] - peak  # (C,)
            total -= target.sum() if w is None else (target * w).sum()
            probs.sub_(peak).clamp_(min=EXP_FLOOR).exp_()
            if excluded is not None:
                _exclude(probs, excluded, start, y, 0.0)  # the floor lifted them from -inf
            norm = probs.sum(dim=0)  # (C,)
            total += norm.log().sum() if w is None else (norm.log() * w).sum()
            probs.div_(norm)[y, cols] -= 1.0
            if w is not None:
                probs.mul_(w)  # each column's gradient scaled by its row weight
            torch.mm(probs.T, items, out=grad_states[rows])
            grad_items.addmm_(probs, h)
        n = max(states.shape[0], 1) if weights is None else weights.sum().clamp(min=1e-12)
        ctx.save_for_backward(grad_states / n, grad_items / n)
        return total / n

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_states, grad_items = ctx.saved_tensors
        return grad_states * grad, grad_items * grad, None, None, None


def _exclude(
    chunk: torch.Tensor,
    excluded: tuple[torch.Tensor, torch.Tensor],
    start: int,
    y: torch.Tensor,
    value: float,
) -> None:
    """Set a (I, C) chunk's excluded entries (rows from `start`) to `value`; targets stay."""
    rows, items = excluded  # (P,), (P,)
    bounds = torch.tensor([start, start + len(y)], device=rows.device)
    lo, hi = torch.searchsorted(rows, bounds).tolist()
    cols = torch.arange(len(y), device=y.device)
    target = chunk[y, cols]  # (C,) advanced indexing copies
    chunk[items[lo:hi], rows[lo:hi] - start] = value
    chunk[y, cols] = target


def length_groups(lengths: Sequence[int], max_batch: int, ratio: float = 2.0) -> list[np.ndarray]:
    """Row indices in groups of similar length (longest <= ratio x shortest, floor 8 items),
    at most max_batch each: every group is padded to its longest, so mixing a 20-item history
    with a 200-item one would spend 10x the attention work on padding."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    groups, start = [], 0
    for end in range(1, len(order) + 1):
        full = end - start == max_batch
        if end == len(order) or full or lengths[order[end]] > ratio * max(lengths[order[start]], 8):
            groups.append(order[start:end])
            start = end
    return groups


def pad_right(seqs: Sequence[np.ndarray], pad: int) -> torch.Tensor:
    """Stack sequences into a right-padded (B, max length) int64 tensor."""
    width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), pad, dtype=np.int64)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = s
    return torch.from_numpy(out)


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index batches of users with similar lengths, in random order (less padding per batch)."""
    jitter = rng.random(len(lengths))  # random order among equal lengths
    order = np.lexsort((jitter, lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def training_pairs(
    seqs: Sequence[np.ndarray], max_len: int, pad: int, ends: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets (B, L), max_len + 1 items up to each end; targets pad -100."""
    ends = ends if ends is not None else [len(s) for s in seqs]
    windows = [s[max(0, end - max_len - 1) : end] for s, end in zip(seqs, ends, strict=True)]
    inputs = pad_right([w[:-1] for w in windows], pad)  # (B, L)
    targets = pad_right([w[1:] for w in windows], -100)  # (B, L)
    return inputs, targets


def seen_items(inputs: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) pairs: each kept position (row-major order) with every input item up to it."""
    B, L = inputs.shape
    row_of = (torch.cumsum(keep.flatten(), 0) - 1).view(B, L)  # (B, L) index among kept
    upto = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()  # (L, L) [t, s]: s <= t
    b, t, s = (keep[:, :, None] & upto).nonzero(as_tuple=True)  # sorted by b, t: by row
    return row_of[b, t], inputs[b, s]


def lr_factor(step: int, warmup: int, total: int, cosine: bool) -> float:
    """Linear warmup to 1, then constant or cosine decay to 0 at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SASRec(Recommender):
    """SASRec+ recommender: causal Transformer user encoder, tied item embeddings, full CE."""

    name = "sasrec"
    Config: ClassVar[type[SASRecConfig]] = SASRecConfig

    def __init__(self, num_items: int, config: SASRecConfig | None = None) -> None:
        self.config = config or SASRecConfig()
        self._num_items = num_items
        torch.manual_seed(self.config.seed)
        self.net = SASRecNet(self.config, num_items)
        self.net.eval()
        # Networks scored beside `net` (a joined early-stopped fit and refit); never trained here.
        self.others = [
            SASRecNet(self.config, num_items).eval() for _ in range(self.config.members - 1)
        ]
        self._pool: ThreadPoolExecutor | None = None  # encodes `others` beside `net`

    @classmethod
    def joined(cls, models: Sequence[SASRec]) -> SASRec:
        """One model whose scores are the sum of `models`' scores (their vectors side by side)."""
        first, *rest = models
        if any(_shape(m) != _shape(first) for m in rest):
            raise ValueError("only models of the same architecture and catalog can be joined")
        config = replace(first.config, members=sum(m.config.members for m in models))
        model = cls.__new__(cls)
        model.config, model._num_items = config, first.num_items
        model.net, *model.others = (net for m in models for net in m.nets())
        model._pool = None
        return model

    def nets(self) -> list[SASRecNet]:
        """Every network whose scores add up to the model's: `net` first."""
        return [self.net, *self.others]

    def with_refit(self, refit: Recommender) -> Recommender:
        """The refit joined with this early-stopped model when `ensemble_refit` is set."""
        if not self.config.ensemble_refit or not isinstance(refit, SASRec):
            return refit
        return SASRec.joined([refit, self])

    @property
    def num_items(self) -> int:
        return self._num_items

    # ---- training -------------------------------------------------------------------------

    @property
    def uses_times(self) -> bool:
        return self.config.time_gaps

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: EvalSet | None = None,
        times: Sequence[np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Train on per-user chronological item arrays, early-stopping on validation NDCG@10;
        `times`: each item's timestamp in seconds, used with `time_gaps`."""
        cfg = self.config
        if cfg.time_gaps:
            train = [self._tokens(self._checked(h), t) for h, t in _with_times(train, times)]
        if self.others:
            raise ValueError("a joined model is not trained further; fit a single network")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.net.to(cfg.torch_device())
        try:
            return self._train_loop([np.asarray(s, dtype=np.int64) for s in train], valid, rng)
        finally:
            torch.set_num_threads(threads)
            self.net.to("cpu").eval()

    def _train_loop(
        self, train: list[np.ndarray], valid: EvalSet | None, rng: np.random.Generator
    ) -> dict[str, Any]:
        """Epoch loop with periodic validation, patience, a time budget and best-state restore."""
        cfg = self.config
        train = [s for s in train if len(s) >= 2]  # a pair (input, next item) needs two items
        lengths = np.array([min(len(s) - 1, cfg.max_len) for s in train], dtype=np.int64)
        optimizer, schedule = self._optimizer(math.ceil(len(train) / cfg.batch_size))
        ema = (
            AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
            if cfg.ema_decay > 0
            else None
        )
        scored = self.net if ema is None else ema.module  # the weights validated and kept
        start = time.perf_counter()
        best: dict[str, float] = {"epoch": 0, "val_ndcg@10": -1.0, "seconds": 0.0}
        best_state = copy.deepcopy(self.net.state_dict())
        history: list[dict[str, float]] = []
        own_bar = cfg.progress and self.epoch_callback is None  # models.train draws its own
        for epoch in tqdm(range(1, cfg.epochs + 1), desc="sasrec", disable=not own_bar):
            stats = {"epoch": epoch, "epochs": cfg.epochs}
            stats["loss"] = self._train_epoch(train, lengths, optimizer, schedule, rng, ema)
            out_of_time = self._out_of_time(time.perf_counter() - start, epoch)
            last = epoch == cfg.epochs or out_of_time
            if valid is not None and (epoch % cfg.eval_every == 0 or last):
                with self._using(scored):
                    stats.update(self._validate(valid))
            stats["seconds"] = time.perf_counter() - start
            history.append(stats)
            self.log_epoch(**stats)
            if stats.get("val_ndcg@10", -1.0) > best["val_ndcg@10"]:
                best, best_state = stats, copy.deepcopy(scored.state_dict())
            # Without validation (a refit) there is nothing to stall on: run every epoch.
            stalled = valid is not None and epoch - best["epoch"] >= cfg.patience * cfg.eval_every
            if out_of_time or stalled:
                break
        if valid is None:
            best, best_state = history[-1], scored.state_dict()
        self._restore(best_state, train)
        return {
            "epochs": len(history),
            "best_epoch": int(best["epoch"]),
            "best_val_ndcg@10": best["val_ndcg@10"] if valid is not None else None,
            "best": best,
            "seconds": time.perf_counter() - start,
            "seconds_to_best": best["seconds"],
            "history": history,
        }

    @contextlib.contextmanager
    def _using(self, net: nn.Module) -> Iterator[None]:
        """Score with `net` (the moving average's copy) in place of the trained weights."""
        kept, self.net = self.net, net  # type: ignore[assignment]
        net.eval()
        try:
            yield
        finally:
            self.net = kept

    def _out_of_time(self, elapsed: float, epochs_done: int) -> bool:
        """True when another epoch of the average length would overrun `max_seconds`."""
        budget = self.config.max_seconds
        return budget is not None and elapsed * (epochs_done + 1) / epochs_done > budget

    def _restore(self, state: dict[str, torch.Tensor], train: list[np.ndarray]) -> None:
        """Load the kept weights and set the empty-history vector to the mean training user."""
        self.net.load_state_dict(state)
        self.net.eval()
        if train:
            with torch.no_grad():
                windows = [s[-self.config.max_len :] for s in train]  # tokens, not items
                self.net.empty_user.copy_(self._vectors_of(windows).mean(0))

    def _optimizer(
        self, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """AdamW (decay on weight matrices only) and its warmup/cosine schedule by step."""
        cfg = self.config
        decay = [p for n, p in self.net.named_parameters() if p.dim() == 2 and "emb" not in n]
        rest = [p for n, p in self.net.named_parameters() if p.dim() != 2 or "emb" in n]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=True)
        warmup, total = round(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, total, cfg.cosine)
        )
        return optimizer, schedule

    def _train_epoch(
        self,
        train: list[np.ndarray],
        lengths: np.ndarray,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        rng: np.random.Generator,
        ema: AveragedModel | None = None,
    ) -> float:
        """One pass over all users in length-bucketed batches; returns the mean loss."""
        self.net.train()
        total, count = 0.0, 0
        for batch in length_batches(lengths, self.config.batch_size, rng):
            seqs = [train[i] for i in batch]
            ends = self._window_ends(seqs, rng)
            inputs, targets = training_pairs(seqs, self.config.max_len, self.net.pad, ends)
            weights = self._recency_weights(seqs, ends, targets.shape[1])
            device = self.net.empty_user.device
            inputs, targets = inputs.to(device), targets.to(device)
            loss = self._loss(inputs, targets, rng, None if weights is None else weights.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(self.net)
            total, count = total + loss.item(), count + 1
        self.net.eval()
        return total / max(count, 1)

    def _window_ends(self, seqs: list[np.ndarray], rng: np.random.Generator) -> list[int]:
        """Window ends: the history's end, or (chance random_windows) an earlier one if long."""
        cfg, ends = self.config, [len(s) for s in seqs]
        if cfg.random_windows <= 0:
            return ends
        for row, n in enumerate(ends):
            if n > cfg.max_len + 1 and rng.random() < cfg.random_windows:
                ends[row] = int(rng.integers(cfg.max_len + 1, n + 1))
        return ends

    def _recency_weights(
        self, seqs: list[np.ndarray], ends: list[int], width: int
    ) -> torch.Tensor | None:
        """Per target (B, width): 1 + boost * 2^(-steps from its history's end / halflife); None
        when the boost is off. Targets of an earlier window are that much further from the end."""
        cfg = self.config
        if cfg.recency_boost <= 0:
            return None
        lengths = np.array([len(s) for s in seqs])[:, None]  # (B, 1)
        end = np.asarray(ends)[:, None]  # (B, 1)
        count = np.minimum(end, cfg.max_len + 1) - 1  # (B, 1) targets in the window
        steps = (lengths - end) + (count - 1) - np.arange(width)[None, :]  # (B, width)
        weights = 1.0 + cfg.recency_boost * np.exp2(-np.maximum(steps, 0) / cfg.recency_halflife)
        return torch.from_numpy(weights.astype(np.float32))

    def _loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        rng: np.random.Generator,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-item cross-entropy at the non-padded positions only, optionally weighted."""
        cfg = self.config
        hidden = self.net(inputs)  # (B, L, D)
        keep = targets >= 0  # (B, L)
        if cfg.time_gaps:  # tokens -> items: targets and the seen-item mask are items
            inputs, targets = inputs % (self.net.pad + 1), targets % (self.net.pad + 1)
        states, labels = hidden[keep], targets[keep]  # (N, D), (N,)
        row_weights = None if weights is None else weights[keep]  # (N,)
        items = self.net.items()  # (I, D)
        if cfg.loss == "ce":
            excluded = seen_items(inputs, keep) if cfg.mask_history else None
            return LinearCrossEntropy.apply(states, items, labels, excluded, row_weights)
        negatives = torch.from_numpy(rng.integers(0, self.num_items, cfg.n_negatives))
        negatives = negatives.to(states.device)
        positive = (states * items[labels]).sum(-1, keepdim=True)  # (N, 1)
        negative = states @ items[negatives].T  # (N, K)
        negative = negative.masked_fill(negatives[None, :] == labels[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)  # (N, 1 + K)
        losses = F.cross_entropy(logits, torch.zeros_like(labels), reduction="none")  # (N,)
        if row_weights is None:
            return losses.mean()
        return (losses * row_weights).sum() / row_weights.sum()

    def _validate(self, valid: EvalSet) -> dict[str, float]:
        """Validation NDCG@10 and HR@10 (full ranking, history excluded), shared evaluator."""
        metrics = evaluate(self, valid, ks=(10,))
        return {"val_ndcg@10": metrics["ndcg@10"], "val_hr@10": metrics["hr@10"]}

    # ---- inference ------------------------------------------------------------------------

    @torch.inference_mode()
    def user_vectors(self, histories: Sequence[History], batch_size: int = 256) -> torch.Tensor:
        """Encode the last max_len items of each history; the state at its last item: (B, D)."""
        return self.timed_vectors(histories, None, batch_size)

    @torch.inference_mode()
    def timed_vectors(
        self,
        histories: Sequence[History],
        times: Sequence[np.ndarray] | None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """`user_vectors` with each item's timestamp (None: unknown), used with `time_gaps`."""
        if not self.config.time_gaps:
            return self._vectors_of([self._window(h) for h in histories], batch_size)
        pairs = _with_times(histories, times)
        seqs = [self._tokens(self._checked(h), t)[-self.config.max_len :] for h, t in pairs]
        return self._vectors_of(seqs, batch_size)

    def _tokens(self, items: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        """Items as item + (I + 1) * the bucket of the time since the previous item."""
        if times is None:
            gaps = np.full(len(items), UNKNOWN_GAP, dtype=np.int64)
        else:
            gaps = gap_buckets(np.asarray(times, dtype=np.int64))
        return items + (self.num_items + 1) * gaps

    def _vectors_of(self, seqs: list[np.ndarray], batch_size: int = 256) -> torch.Tensor:
        """The last-position states of already windowed (and tokenised) sequences."""
        out = torch.empty(len(seqs), self.config.hidden * self.config.members)
        for rows in length_groups([len(s) for s in seqs], batch_size):
            out[torch.from_numpy(rows)] = torch.cat(self._encode_nets([seqs[r] for r in rows]), 1)
        return out

    def _encode_nets(self, seqs: list[np.ndarray]) -> list[torch.Tensor]:
        """Each network's last-position states. A joined model's networks encode at once, one
        thread each: torch releases the GIL in its kernels, and a serving encoder thread runs
        single-threaded (16 users: 7 ms instead of 11 for two networks, one alone 5 ms)."""
        if not self.others:
            return [self._encode_last(seqs, self.net)]
        if self._pool is None:
            threads = torch.get_num_threads()  # OpenMP thread counts are per thread
            self._pool = ThreadPoolExecutor(
                len(self.others), "sasrec-member", torch.set_num_threads, (threads,)
            )
        others = [self._pool.submit(self._encode_apart, seqs, net) for net in self.others]
        return [self._encode_last(seqs, self.net), *(f.result() for f in others)]

    def _encode_apart(self, seqs: list[np.ndarray], net: SASRecNet) -> torch.Tensor:
        """`_encode_last` on a pool thread, where inference mode must be entered again."""
        with torch.inference_mode():
            return self._encode_last(seqs, net)

    def _window(self, history: History) -> np.ndarray:
        """The last max_len items of a history as int64, checked to be valid item indices."""
        return self._checked(np.asarray(history, dtype=np.int64)[-self.config.max_len :])

    def _checked(self, history: History) -> np.ndarray:
        """A history as int64, checked to hold valid item indices."""
        items = np.asarray(history, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.num_items):
            raise ValueError(f"item indices must lie in [0, {self.num_items})")
        return items

    def _encode_last(self, seqs: list[np.ndarray], net: SASRecNet) -> torch.Tensor:
        """Last-position states (B, D) of one network; empty histories get its mean user."""
        device = net.empty_user.device  # the CPU, except during a fit on a GPU
        lengths = torch.tensor([len(s) for s in seqs], device=device)  # (B,)
        padded = pad_right(seqs, net.pad).to(device)  # (B, L)
        last = net.last_states(padded, (lengths - 1).clamp(min=0))  # (B, D)
        return torch.where((lengths > 0)[:, None], last, net.empty_user).cpu()

    @torch.inference_mode()
    def item_vectors(self) -> torch.Tensor:
        """The tied item tables without the padding row, side by side: (I, D * members)."""
        return torch.cat([n.items().detach().float().cpu() for n in self.nets()], 1).contiguous()

    # ---- persistence ----------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return {"num_items": self.num_items, **asdict(self.config)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # `net`'s names stay unprefixed, so single-network checkpoints read as before.
        return {
            f"{_prefix(i)}{k}": v.detach().cpu().clone().contiguous()
            for i, net in enumerate(self.nets())
            for k, v in net.state_dict().items()
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SASRec:
        known = {f.name for f in fields(SASRecConfig)}
        model = cls(
            int(config["num_items"]),
            SASRecConfig(**{k: v for k, v in config.items() if k in known}),
        )
        parts: list[dict[str, torch.Tensor]] = [{} for _ in model.nets()]
        for name, tensor in tensors.items():
            member, key = _member_of(name)
            if member >= len(parts):
                raise ValueError(f"tensor {name!r} names a network past members={len(parts)}")
            parts[member][key] = tensor
        for net, part in zip(model.nets(), parts, strict=True):
            net.load_state_dict(part)
        return model


def _shape(model: SASRec) -> tuple[Any, ...]:
    """What joined models must share: the catalog and every field the encoder's input uses."""
    c = model.config
    return (
        model.num_items,
        c.max_len,
        c.hidden,
        c.blocks,
        c.heads,
        c.ffn_mult,
        c.positions,
        c.time_gaps,
    )


def gap_buckets(times: np.ndarray) -> np.ndarray:
    """Per item, the bucket of the time since the previous item; the first item its own."""
    inner = np.searchsorted(GAP_EDGES, np.diff(times), side="right")
    return np.concatenate([[FIRST_GAP], inner]).astype(np.int64)[: len(times)]


def _with_times(
    histories: Sequence[History], times: Sequence[np.ndarray] | None
) -> Iterator[tuple[History, np.ndarray | None]]:
    """Each history with its times (None for all when not given), lengths checked."""
    if times is None:
        yield from ((h, None) for h in histories)
        return
    for history, stamps in zip(histories, times, strict=True):
        if len(stamps) != len(history):
            raise ValueError(f"{len(stamps)} timestamps for a history of {len(history)} items")
        yield history, stamps


def _prefix(member: int) -> str:
    """State-tensor name prefix of a joined model's network `member` (none for the first)."""
    return f"member{member}." if member else ""


def _member_of(name: str) -> tuple[int, str]:
    """The network a state-tensor name belongs to, and the name within that network."""
    head, _, key = name.partition(".")
    if head.startswith("member") and head.removeprefix("member").isdigit():
        return int(head.removeprefix("member")), key
    return 0, name
