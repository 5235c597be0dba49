"""SASRec: a causal Transformer over item sequences, trained with full cross-entropy (SASRec+).

Kang & McAuley 2018 (SASRec) with the loss of Klenitskiy & Vasilev 2023 ("Turning Dross Into
Gold Loss: is BERT4Rec really better than SASRec?"): softmax over the whole catalog at every
position instead of one sampled negative. Input and output item embeddings are tied, so a user
is scored by a plain dot product `user_vectors(h) @ item_vectors().T`, which serving relies on.

Sequences are right-padded inside a batch: with a causal mask no real position ever attends to a
padding position, and positions count from the first item of the window, so the output for a
history does not depend on how much padding its batch needed.

This file holds the config, the network and the recommender (inference, joining, persistence);
the training (fused loss, batching, the epoch loop) is models/sasrec_train.py, which `fit` calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.base import History, Recommender, Times, torch_threads
from models.data import EvalSet
from models.sasrec_train import SASRecTrainer, pad_right

# Seconds since the previous item: 0 | < 1 min | < 1 h | < 1 day | < 30 days | more; then a
# bucket for a history's first item and one for items whose time is not known.
GAP_EDGES = np.array([1, 60, 3600, 86400, 30 * 86400])
FIRST_GAP, UNKNOWN_GAP = len(GAP_EDGES) + 1, len(GAP_EDGES) + 2


@dataclass
class SASRecConfig:
    """SASRec hyperparameters; defaults tuned on ml1m-half-loo validation (research/results).

    Rejected options are gone from here (see `SASRec.retired_fields`); the tuning log keeps
    their numbers.
    """

    max_len: int = 200  # the encoder sees the most recent max_len items of a history
    hidden: int = 64  # width D of item/position embeddings and of every block
    blocks: int = 2  # Transformer blocks
    heads: int = 1  # attention heads (hidden must be divisible by heads)
    ffn_mult: int = 1  # feed-forward width = ffn_mult * hidden (original SASRec: 1)
    dropout: float = 0.1  # on embeddings and residual branches
    attn_dropout: float = 0.0  # on attention weights; > 0 forces SDPA's slower math path on CPU
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay (not applied to norms/biases)
    warmup_epochs: float = 1.0  # linear warmup to lr, then cosine decay over `epochs`
    cosine: bool = True  # cosine decay to 0 at `epochs`; False keeps lr constant after warmup
    batch_size: int = 16  # users (sequences) per step; batches hold users of similar length
    random_windows: float = 0.5  # chance a history longer than max_len + 1 trains on a random
    # earlier window instead of its last one (uses the older part of long histories)
    epochs: int = 40  # upper bound on training epochs (and the cosine horizon)
    patience: int = 10  # stop after this many validations without a better val NDCG@10
    eval_every: int = 2  # epochs between validations
    loss: str = "ce"  # "ce": softmax over all items; "sampled": over n_negatives + the positive
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
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.ln_out = nn.LayerNorm(cfg.hidden)
        # With time gaps, an input token is item + (num_items + 1) * gap bucket.
        self.gap_emb = nn.Embedding(UNKNOWN_GAP + 1, cfg.hidden) if cfg.time_gaps else None
        # Mean training user vector: the representation of an empty history.
        self.register_buffer("empty_user", torch.zeros(cfg.hidden))
        self.apply(_init_weights)

    def embed(self, seqs: torch.Tensor) -> torch.Tensor:
        """Item plus position embeddings (B, L, D) of right-padded sequences (B, L)."""
        pos = torch.arange(seqs.shape[1], device=seqs.device)  # (L,)
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
        x = self.embed(seqs)  # (B, L, D)
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


class SASRec(Recommender):
    """SASRec+ recommender: causal Transformer user encoder, tied item embeddings, full CE."""

    name: ClassVar[str] = "sasrec"
    Config: ClassVar[type[SASRecConfig]] = SASRecConfig
    config: SASRecConfig
    # Options rejected on validation and removed (research/results/tuning_sasrec.md): positions
    # counted from the end, a moving average of the weights, recency-weighted targets. An old
    # checkpoint loads when it had them off; recency_halflife, which only tuned recency_boost,
    # loads at any value (an unknown field, ignored).
    retired_fields: ClassVar[Mapping[str, Any]] = {
        "positions": "start",
        "ema_decay": 0.0,
        "recency_boost": 0.0,
    }

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

    @property
    def uses_times(self) -> bool:
        return self.config.time_gaps

    # ---- training -------------------------------------------------------------------------

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: EvalSet | None = None,
        times: Times = None,
    ) -> dict[str, Any]:
        """Train on per-user chronological item arrays, early-stopping on validation NDCG@10;
        `times`: each item's timestamp in seconds, used with `time_gaps`."""
        cfg = self.config
        if self.others:
            raise ValueError("a joined model is not trained further; fit a single network")
        sequences = self._training_sequences(train, times)
        torch.manual_seed(cfg.seed)
        trainer = SASRecTrainer(self, np.random.default_rng(cfg.seed))
        with torch_threads(cfg.threads or None):
            self.net.to(cfg.torch_device())
            try:
                report, state = trainer.run(sequences, valid)
                self._restore(state, sequences)
            finally:
                self.net.to("cpu").eval()
        return report

    def _training_sequences(self, train: Sequence[History], times: Times) -> list[np.ndarray]:
        """int64 sequences (tokens with `time_gaps`) long enough for one (input, next item) pair."""
        if self.config.time_gaps:
            pairs = _with_times(train, times)
            sequences = [self._tokens(self._checked(h), t) for h, t in pairs]
        else:
            sequences = [np.asarray(s, dtype=np.int64) for s in train]
        return [s for s in sequences if len(s) >= 2]

    def _restore(self, state: dict[str, torch.Tensor], train: list[np.ndarray]) -> None:
        """Load the kept weights and set the empty-history vector to the mean training user."""
        self.net.load_state_dict(state)
        self.net.eval()
        if train:
            with torch.no_grad():
                windows = [s[-self.config.max_len :] for s in train]  # tokens, not items
                self.net.empty_user.copy_(self._vectors_of(windows).mean(0))

    # ---- inference ------------------------------------------------------------------------

    @torch.inference_mode()
    def user_vectors(
        self, histories: Sequence[History], times: Times = None, batch_size: int = 256
    ) -> torch.Tensor:
        """Encode the last max_len items of each history; the state at its last item: (B, D).
        With `time_gaps`, `times` give each item's gap bucket (None: the "unknown" bucket)."""
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

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # `net`'s names stay unprefixed, so single-network checkpoints read as before.
        return {
            f"{_prefix(i)}{k}": v.detach().cpu().clone().contiguous()
            for i, net in enumerate(self.nets())
            for k, v in net.state_dict().items()
        }

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        parts: list[dict[str, torch.Tensor]] = [{} for _ in self.nets()]
        for name, tensor in tensors.items():
            member, key = _member_of(name)
            parts[member][key] = tensor
        for net, part in zip(self.nets(), parts, strict=True):
            net.load_state_dict(part)


def _shape(model: SASRec) -> tuple[Any, ...]:
    """What joined models must share: the catalog and every field the encoder's input uses."""
    c = model.config
    return (model.num_items, c.max_len, c.hidden, c.blocks, c.heads, c.ffn_mult, c.time_gaps)


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
