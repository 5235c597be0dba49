"""SASRec's network (as nanoGPT's model.py): config, causal self-attention blocks, embeddings.

Sequences are right-padded inside a batch: with a causal mask no real position ever attends to a
padding position, and positions count from the first item of the window, so the output for a
history does not depend on how much padding its batch needed. The recommender around it is
models/sasrec.py; its training is models/sasrec_train.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.content import principal_projection
from models.sampled import check_loss

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
    loss: str = "auto"  # "ce": softmax over all items (fused, O(positions x items) work);
    # "sampled": over the positive and shared negatives, logQ-corrected (models/sampled.py);
    # "auto": ce up to models.sampled.AUTO_SAMPLED_ITEMS (50k) items, sampled above
    mask_history: bool = True  # "ce" only: leave the items seen so far out of each softmax
    n_negatives: int = 256  # "sampled" only: uniform negatives, and up to as many of the
    # batch's positives (in-batch negatives), shared by the whole batch
    eval_users: int | None = 10_000  # validate on a seeded sample of this many users when
    # there are more (None: all); full ranking of a 1M-item catalog for every user is too slow
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
    time_gaps: bool = True  # one more input embedding per item: the bucket of the time since
    # the previous item (TiSASRec's idea, coarse); fit and scoring then take timestamps, and a
    # history without them gets the "unknown" bucket (never seen in training). Validation
    # NDCG@10 0.2029 against 0.1973 joined, and +0.0056 / +0.0033 on seeds 0 / 1 in the probe
    # (research/results/tuning_sasrec.md, session 5); serving passes the events' times
    content: str = "off"  # item text vectors x (sasrec-hybrid): "add": an item's embedding is
    # its ID embedding + a learned linear projection of x; "init": ID embeddings start as x's
    # principal directions. Either way an item without training interactions (and with text)
    # is its content part alone, as a new item is; an item without text is ID-only.
    content_dim: int = 0  # width F of the item text vectors (build_model sets it from them)
    id_dropout: float = 0.0  # content "add": the chance that an item's ID embedding is left out
    # of a training step's table, so that its text projection alone must score it (DropoutNet,
    # Volkovs et al. 2017): all an item nobody trained on has
    cold_scale: float = 1.0  # content on: the vector of an item without training interactions
    # (or a new item) is cold_scale x its content part (> 1 undoes the projection's shrinkage)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        check_loss(self.loss, self.n_negatives, self.eval_users)
        if self.content not in ("off", "add", "init"):
            raise ValueError(f"content must be 'off', 'add' or 'init', not {self.content!r}")
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
    content: torch.Tensor  # (I + 1, F), with content only
    keep_id: torch.Tensor  # (I + 1,) bool, with content only

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
        # Content: the projection of the item text vectors; "init" keeps it fixed (with the bias
        # that centres the text vectors), the map the ID embeddings started from.
        self.content_mode = cfg.content
        self.content_proj: nn.Linear | None = None
        if cfg.content != "off":
            self.content_proj = nn.Linear(cfg.content_dim, cfg.hidden, bias=cfg.content == "init")
            # The text vectors (I + 1, F), padding row zero: kept once by the recommender for
            # every joined network, so not in this state dict; and which items keep their ID
            # embedding (trained, or without text): False only during a fit.
            self.register_buffer("content", torch.zeros(num_items + 1, cfg.content_dim), False)
            self.register_buffer("keep_id", torch.ones(num_items + 1, dtype=torch.bool), False)
        self.id_dropout, self.cold_scale = cfg.id_dropout, cfg.cold_scale
        self.dropped: torch.Tensor | None = None  # this training step's ID-dropout mask
        # Inference: the composed item table, dropped by every change this class makes to what
        # it is composed from (train mode, loading, the content setters).
        self._table: torch.Tensor | None = None
        # Mean training user vector: the representation of an empty history.
        self.register_buffer("empty_user", torch.zeros(cfg.hidden))
        self.apply(_init_weights)

    def embed(self, seqs: torch.Tensor) -> torch.Tensor:
        """Item plus position embeddings (B, L, D) of right-padded sequences (B, L)."""
        pos = torch.arange(seqs.shape[1], device=seqs.device)  # (L,)
        if self.gap_emb is None:
            return self.drop(self._item_embed(seqs) + self.pos_emb(pos))  # (B, L, D)
        width = self.pad + 1
        items, gaps = seqs % width, seqs // width
        return self.drop(self._item_embed(items) + self.pos_emb(pos) + self.gap_emb(gaps))

    def _item_embed(self, items: torch.Tensor) -> torch.Tensor:
        """Input item embeddings (B, L, D): rows of the (tied) item table."""
        if self.content_proj is None:
            return self.item_emb(items)
        return F.embedding(items, self.table(), padding_idx=self.pad)

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
        return self.table()[: self.pad]

    def table(self) -> torch.Tensor:
        """The item table (I + 1, D), padding row last and zero: the ID embeddings, with
        content "add" plus the text projection, with "init" the projection where an item has
        no ID embedding of its own (`keep_id`)."""
        if self.content_proj is None:
            return self.item_emb.weight
        if self.training or torch.is_grad_enabled():
            return self._compose()
        if self._table is None:  # a (I + 1, F) x (F, D) product: once, not per encoded batch
            self._table = self._compose()
        return self._table

    def _compose(self) -> torch.Tensor:
        """`table`, computed."""
        assert self.content_proj is not None
        from_text = self.content_proj(self.content)  # (I + 1, D)
        if self.content_mode == "add":
            keep = self.keep_id if self.dropped is None else self.keep_id & ~self.dropped
            return self.item_emb.weight * keep[:, None] + from_text
        return torch.where(self.keep_id[:, None], self.item_emb.weight, from_text)

    def train(self, mode: bool = True) -> SASRecNet:
        """nn.Module.train; the cached inference table is dropped (training changes it)."""
        self._table = None
        return super().train(mode)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """nn.Module.load_state_dict; the cached inference table is dropped."""
        self._table = None
        return super().load_state_dict(state_dict, strict, assign)

    def drop_ids(self) -> None:
        """Draw the next training step's ID dropout (content "add" with id_dropout only)."""
        if self.content_mode == "add" and self.id_dropout > 0:
            self.dropped = torch.rand(self.keep_id.shape, device=self.keep_id.device)
            self.dropped = self.dropped < self.id_dropout

    def softmax_items(self) -> torch.Tensor | None:
        """The items a training softmax ranks: all (None), or with content only those with an
        ID embedding of their own: an untrained item stays out, as a new item would be."""
        if self.content_proj is None or bool(self.keep_id.all()):
            return None
        return self.keep_id[: self.pad].nonzero().squeeze(1)

    # ---- content ------------------------------------------------------------------------

    @torch.no_grad()
    def set_content(self, features: torch.Tensor) -> None:
        """Take the item text vectors (I, F)."""
        self.content[: self.pad] = features.to(self.content)
        self._table = None

    @torch.no_grad()
    def init_from_content(self) -> None:
        """ "init": the fixed map onto the text vectors' principal directions (scaled to the
        embeddings' init std), and the ID embeddings of the items with text set to it."""
        assert self.content_proj is not None
        dim = self.item_emb.weight.shape[1]
        weight, bias = principal_projection(self.content[: self.pad], dim, std=0.02)
        self.content_proj.weight.copy_(weight.T)
        self.content_proj.requires_grad_(False)
        assert self.content_proj.bias is not None
        self.content_proj.bias.copy_(bias)
        has_text = self._has_text()
        self.item_emb.weight[has_text] = self.content_proj(self.content)[has_text]
        self._table = None

    def _has_text(self) -> torch.Tensor:
        """Which rows have a text vector: (I + 1,) bool, the padding row False."""
        return self.content.abs().sum(1) > 0

    @torch.no_grad()
    def set_trained(self, trained: torch.Tensor) -> None:
        """Before a fit: items with text and no training interaction (I,) bool False have no ID
        embedding of their own, exactly as a new item."""
        self.keep_id[: self.pad] = trained.to(self.keep_id.device)
        self.keep_id |= ~self._has_text()
        self._table = None

    @torch.no_grad()
    def fold_untrained(self) -> None:
        """After a fit: write the table's rows of untrained items into the ID embeddings as
        cold_scale x their content part ("add": the ID part that adds it; "init": the rows), so
        the table needs no mask."""
        assert self.content_proj is not None
        untrained, self.dropped = ~self.keep_id, None
        from_text = self.content_proj(self.content)[untrained]
        if self.content_mode == "add":
            self.item_emb.weight[untrained] = (self.cold_scale - 1.0) * from_text
        else:
            self.item_emb.weight[untrained] = self.cold_scale * from_text
        self.keep_id.fill_(True)
        self._table = None


def _init_weights(module: nn.Module) -> None:
    """Small normal init for linear and embedding weights, zero biases (as in nanoGPT)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


def gap_buckets(times: np.ndarray) -> np.ndarray:
    """Per item, the bucket of the time since the previous item; the first item its own."""
    inner = np.searchsorted(GAP_EDGES, np.diff(times), side="right")
    return np.concatenate([[FIRST_GAP], inner]).astype(np.int64)[: len(times)]


def pad_right(seqs: Sequence[np.ndarray], pad: int) -> torch.Tensor:
    """Stack sequences into a right-padded (B, max length) int64 tensor."""
    width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), pad, dtype=np.int64)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = s
    return torch.from_numpy(out)
