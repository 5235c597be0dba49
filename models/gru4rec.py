"""GRU4Rec: a recurrent (GRU) encoder over item sequences, trained with full cross-entropy.

Hidasi et al. 2016 ("Session-based Recommendations with Recurrent Neural Networks") with the
loss that made SASRec+ strong in this repo (models/sasrec.py): softmax over the whole catalog at
every position, the items seen so far left out of it. Input and output item embeddings are tied,
so a user is scored by a plain dot product `user_vectors(h) @ item_vectors().T`, as serving needs.

A GRU is causal by construction, so right padding after a history never changes its states; a
user is the (projected) state at the last item of the window. The training pieces are SASRec's:
the fused loss `LinearCrossEntropy`, length-bucketed batches and the warmup/cosine schedule
(models/sasrec_train.py); the epoch loop is models/gru4rec_train.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.base import History, Recommender, Times, Weights, torch_threads
from models.data import EvalSet
from models.gru4rec_train import GRU4RecTrainer
from models.sampled import check_loss
from models.sasrec import length_groups
from models.sasrec_net import pad_right

__all__ = ["GRU4Rec", "GRU4RecConfig", "GRU4RecNet"]


@dataclass
class GRU4RecConfig:
    """GRU4Rec hyperparameters; defaults chosen on ml1m-half-loo validation
    (research/results/tuning_gru4rec.md: hidden 128 over 64, val NDCG@10 0.1762 against 0.1585
    after 4 and 5 epochs of a time-capped run)."""

    max_len: int = 200  # the encoder sees the most recent max_len items of a history
    hidden: int = 128  # width D of the item embeddings and of the GRU state
    layers: int = 1  # stacked GRU layers
    dropout: float = 0.2  # on the input embeddings, between GRU layers and on the output
    lr: float = 3e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay (weight matrices, not embeddings)
    warmup_epochs: float = 1.0  # linear warmup to lr, then cosine decay over `epochs`
    cosine: bool = True  # cosine decay to 0 at `epochs`; False keeps lr constant after warmup
    batch_size: int = 16  # users (sequences) per step; batches hold users of similar length
    epochs: int = 8  # upper bound on training epochs (and the cosine horizon)
    patience: int = 3  # stop after this many validations without a better val NDCG@10
    eval_every: int = 1  # epochs between validations
    loss: str = "auto"  # "ce": softmax over all items (fused); "sampled": over the positive
    # and shared negatives, logQ-corrected (models/sampled.py); "auto": ce up to
    # models.sampled.AUTO_SAMPLED_ITEMS (50k) items, sampled above
    mask_history: bool = True  # "ce" only: leave the items seen so far out of each softmax
    n_negatives: int = 256  # "sampled" only: uniform negatives, and up to as many of the
    # batch's positives (in-batch negatives), shared by the whole batch
    eval_users: int | None = 10_000  # validate on a seeded sample of this many users when
    # there are more (None: all); full ranking of a 1M-item catalog for every user is too slow
    max_seconds: float | None = None  # wall-clock budget; training stops, keeping the best state
    seed: int = 0  # seeds init, dropout and shuffling
    threads: int | None = None  # torch intra-op threads during fit; None leaves torch's setting
    device: str = "cpu"  # where fit runs: "cpu", "cuda", "cuda:N" or "auto" (cuda when present);
    # the trained model always comes back on the CPU, where it is saved and served
    progress: bool = True  # tqdm bar with loss and validation NDCG@10

    def __post_init__(self) -> None:
        if self.layers < 1 or self.hidden < 1 or self.max_len < 1:
            raise ValueError("layers, hidden and max_len must be at least 1")
        check_loss(self.loss, self.n_negatives, self.eval_users)
        if self.device != "auto" and torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', not {self.device!r}")

    def torch_device(self) -> torch.device:
        """The training device: `device`, with "auto" meaning CUDA when it is available."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


class GRU4RecNet(nn.Module):
    """Item embeddings -> norm -> dropout -> GRU -> linear -> dropout -> norm; the item table
    doubles as the output layer."""

    empty_user: torch.Tensor

    def __init__(self, cfg: GRU4RecConfig, num_items: int) -> None:
        super().__init__()
        self.pad = num_items  # padding index: one row past the last item, kept at zero
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=num_items)
        self.drop = nn.Dropout(cfg.dropout)
        # The tied item table starts small (std 0.02): normalised, the GRU sees unit-scale
        # input from the first step (val NDCG@10 0.065 against 0.022 after one epoch).
        self.ln_in = nn.LayerNorm(cfg.hidden)
        self.ln_out = nn.LayerNorm(cfg.hidden)
        between = cfg.dropout if cfg.layers > 1 else 0.0  # torch warns on dropout with 1 layer
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True, dropout=between)
        # A user vector need not stay in the GRU's (-1, 1) state space: a linear map out of it.
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        # Mean training user vector: the representation of an empty history.
        self.register_buffer("empty_user", torch.zeros(cfg.hidden))
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[num_items].zero_()

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Output states (B, L, D) for right-padded item sequences (B, L)."""
        x = self.drop(self.ln_in(self.item_emb(seqs)))  # (B, L, D)
        states, _ = self.gru(x)  # (B, L, D)
        return self.ln_out(self.drop(self.out(states)))  # (B, L, D)

    def last_states(self, seqs: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """forward(seqs)[arange(B), last]: each row's state at its last item (B, D)."""
        x = self.drop(self.ln_in(self.item_emb(seqs)))  # (B, L, D)
        states, _ = self.gru(x)  # (B, L, D)
        at = states[torch.arange(seqs.shape[0], device=seqs.device), last]  # (B, D)
        return self.ln_out(self.drop(self.out(at)))

    def items(self) -> torch.Tensor:
        """Output item table without the padding row: (I, D)."""
        return self.item_emb.weight[: self.pad]


class GRU4Rec(Recommender):
    """GRU4Rec with full cross-entropy: GRU user encoder, tied item embeddings."""

    name: ClassVar[str] = "gru4rec"
    Config: ClassVar[type[GRU4RecConfig]] = GRU4RecConfig
    config: GRU4RecConfig

    def __init__(self, num_items: int, config: GRU4RecConfig | None = None) -> None:
        self.config = config or GRU4RecConfig()
        self._num_items = num_items
        torch.manual_seed(self.config.seed)
        self.net = GRU4RecNet(self.config, num_items).eval()

    @property
    def num_items(self) -> int:
        return self._num_items

    def fit(
        self,
        train: Sequence[np.ndarray],
        valid: EvalSet | None = None,
        times: Times = None,
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Train on per-user chronological item arrays, early-stopping on validation NDCG@10;
        `weights`: each item's weight, which scales its cross-entropy term as a target."""
        cfg = self.config
        kept = [i for i, s in enumerate(train) if len(s) >= 2]  # one (input, next) pair at least
        sequences = [self._checked(train[i]) for i in kept]
        target_weights = None if weights is None else _checked_weights(train, weights, kept)
        torch.manual_seed(cfg.seed)
        trainer = GRU4RecTrainer(self, self.net, cfg, np.random.default_rng(cfg.seed))
        with torch_threads(cfg.threads or None):
            self.net.to(cfg.torch_device())
            try:
                report, state = trainer.run(sequences, valid, target_weights)
                self.net.load_state_dict(state)
            finally:
                self.net.to("cpu").eval()
        self._set_empty_user(sequences)
        return report

    @torch.no_grad()
    def _set_empty_user(self, train: list[np.ndarray]) -> None:
        """The empty-history vector: the mean training user."""
        if train:
            self.net.empty_user.copy_(self.user_vectors(train).mean(0))

    @torch.inference_mode()
    def user_vectors(
        self,
        histories: Sequence[History],
        times: Times = None,
        batch_size: int = 256,
        *,
        weights: Weights = None,
    ) -> torch.Tensor:
        """The state after the last max_len items of each history: (B, D). Times and event
        weights are not model input (weights act in training only, through the loss)."""
        windows = [self._checked(h)[-self.config.max_len :] for h in histories]
        out = torch.empty(len(windows), self.config.hidden)
        for rows in length_groups([len(w) for w in windows], batch_size):
            out[torch.from_numpy(rows)] = self._encode_last([windows[r] for r in rows])
        return out

    def _encode_last(self, seqs: list[np.ndarray]) -> torch.Tensor:
        """Last-item states (B, D) on the net's device; empty histories get the mean user."""
        device = self.net.empty_user.device  # the CPU, except during a fit on a GPU
        lengths = torch.tensor([len(s) for s in seqs], device=device)  # (B,)
        padded = pad_right(seqs, self.net.pad).to(device)  # (B, L)
        last = self.net.last_states(padded, (lengths - 1).clamp(min=0))  # (B, D)
        return torch.where((lengths > 0)[:, None], last, self.net.empty_user).cpu()

    def _checked(self, history: History) -> np.ndarray:
        """A history as int64, checked to hold valid item indices."""
        items = np.asarray(history, dtype=np.int64).reshape(-1)
        if items.size and (items.min() < 0 or items.max() >= self.num_items):
            raise ValueError(f"item indices must lie in [0, {self.num_items})")
        return items

    @torch.inference_mode()
    def item_vectors(self) -> torch.Tensor:
        """The tied item table without the padding row: (I, D)."""
        return self.net.items().detach().float().cpu().contiguous()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.net.load_state_dict(dict(tensors))
        self.net.eval()


def _checked_weights(
    train: Sequence[History], weights: Sequence[np.ndarray], kept: list[int]
) -> list[np.ndarray]:
    """The weights of the kept histories as float32, checked: one per item, all > 0."""
    if len(weights) != len(train):
        raise ValueError(f"{len(weights)} weight arrays for {len(train)} histories")
    out = []
    for history, weight in zip(train, weights, strict=True):
        weight = np.asarray(weight, dtype=np.float32).reshape(-1)
        if len(weight) != len(history):
            raise ValueError("a history and its weights differ in length")
        if len(weight) and not bool(np.all(weight > 0)):
            raise ValueError("event weights must be > 0")
        out.append(weight)
    return [out[i] for i in kept]
