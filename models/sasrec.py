"""SASRec: a causal Transformer over item sequences, trained with full cross-entropy (SASRec+).

Kang & McAuley 2018 (SASRec) with the loss of Klenitskiy & Vasilev 2023 ("Turning Dross Into
Gold Loss: is BERT4Rec really better than SASRec?"): softmax over the whole catalog at every
position instead of one sampled negative. Input and output item embeddings are tied, so a user
is scored by a plain dot product `user_vectors(h) @ item_vectors().T`, which serving relies on.

Sequences are right-padded inside a batch: with a causal mask no real position ever attends to a
padding position, and positions count from the first item of the window, so the output for a
history does not depend on how much padding its batch needed.

This file holds the recommender (inference, joining, persistence); the config and the network
are models/sasrec_net.py, the training (fused loss, batching, the epoch loop)
models/sasrec_train.py, which `fit` calls.

`sasrec-hybrid` (`HybridSASRec`) is the same model reading the items' pretrained text vectors
(`SASRecConfig.content`): an item's embedding (input and output, still tied) gains a learned
projection of its text vector ("add"), or starts from it ("init"). An item with text but no
training interaction has no ID embedding of its own and stays out of the training softmax, as
an item added after training would; afterwards its vector is `cold_scale` x its content part,
which is what `item_vectors_for` gives a new item. `id_dropout` drops random items' ID
embeddings during training so the projection learns to score an item alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import numpy as np
import torch

from models.base import History, Recommender, Times, Weights, top_items, torch_threads
from models.data import EvalSet
from models.sasrec_net import (
    FIRST_GAP,
    GAP_EDGES,
    UNKNOWN_GAP,
    SASRecConfig,
    SASRecNet,
    gap_buckets,
    pad_right,
)
from models.sasrec_train import SASRecTrainer

CONTENT = "item_content"  # the state tensor of the item text vectors (hybrid only)

__all__ = [
    "FIRST_GAP",
    "GAP_EDGES",
    "UNKNOWN_GAP",
    "HybridSASRec",
    "HybridSASRecConfig",
    "SASRec",
    "SASRecConfig",
    "gap_buckets",
]


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
        if self.config.content != "off" and not self.reads_content:
            raise ValueError(f"{self.name} reads no item content; use sasrec-hybrid")
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

    @classmethod
    def from_state(cls, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Self:
        """As Recommender's, with a stored config from before `time_gaps` (off back then)."""
        return super().from_state({"time_gaps": False, **config}, tensors)

    def nets(self) -> list[SASRecNet]:
        """Every network whose scores add up to the model's: `net` first."""
        return [self.net, *self.others]

    def with_refit(self, refit: Recommender) -> Recommender:
        """The refit joined with this early-stopped model when `ensemble_refit` is set."""
        if not self.config.ensemble_refit or not isinstance(refit, SASRec):
            return refit
        return type(self).joined([refit, self])

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
        weights: Weights = None,
    ) -> dict[str, Any]:
        """Train on per-user chronological item arrays, early-stopping on validation NDCG@10;
        `times`: each item's timestamp in seconds, used with `time_gaps`; `weights`: each
        item's weight, which scales its cross-entropy term as a target (None: all 1)."""
        cfg = self.config
        if self.others:
            raise ValueError("a joined model is not trained further; fit a single network")
        sequences = self._training_sequences(train, times)
        target_weights = None if weights is None else _sequence_weights(train, weights)
        if cfg.content != "off":
            self.net.set_trained(self._trained_items(sequences))
        torch.manual_seed(cfg.seed)
        trainer = SASRecTrainer(self, self.net, cfg, np.random.default_rng(cfg.seed))
        with torch_threads(cfg.threads or None):
            self.net.to(cfg.torch_device())
            try:
                report, state = trainer.run(sequences, valid, target_weights)
                self._restore(state, sequences)
            finally:
                self.net.to("cpu").eval()
        if cfg.content != "off":
            self.net.fold_untrained()
        return report

    def _trained_items(self, sequences: list[np.ndarray]) -> torch.Tensor:
        """Which items occur in the training sequences (tokens or items): (I,) bool."""
        width = self.num_items + 1  # a time-gap token is item + width * bucket
        flat = np.concatenate([np.zeros(0, np.int64), *sequences]) % width
        return torch.from_numpy(np.bincount(flat, minlength=width)[: self.num_items] > 0)

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
        self,
        histories: Sequence[History],
        times: Times = None,
        batch_size: int = 256,
        *,
        weights: Weights = None,
    ) -> torch.Tensor:
        """Encode the last max_len items of each history; the state at its last item: (B, D).
        With `time_gaps`, `times` give each item's gap bucket (None: the "unknown" bucket).
        Event weights act in training only (the loss), not on the input sequence."""
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

    @torch.inference_mode()
    def item_vectors_for(self, features: torch.Tensor) -> torch.Tensor | None:
        """New items' vectors (N, D * members): each network's projection of their text."""
        if self.config.content == "off":
            return None
        projections = [n.content_proj for n in self.nets() if n.content_proj is not None]
        vectors = torch.cat([p(features.float()) for p in projections], 1)
        return (self.config.cold_scale * vectors).contiguous()

    @torch.inference_mode()
    def explain(
        self, history: History, targets: torch.Tensor, k: int = 3, times: np.ndarray | None = None
    ) -> list[list[int]]:
        """By ablation: the items among the last max_len whose removal lowers each target's score
        most (and at all), from one batched encoding of the history without each item."""
        window = self._window(history)
        items = np.unique(window)
        if not len(items):
            return [[] for _ in range(len(targets))]
        kept = [window != item for item in items]
        stamps = None if times is None else np.asarray(times, np.int64)[-len(window) :]
        rows = None if stamps is None else [stamps, *(stamps[m] for m in kept)]
        vectors = self.user_vectors([window, *(window[m] for m in kept)], rows)  # (1 + H, D)
        scores = vectors @ targets.float().T  # (1 + H, N)
        return top_items((scores[0] - scores[1:]).T, items, k, positive=True)

    # ---- persistence ----------------------------------------------------------------------

    def set_item_features(self, features: torch.Tensor) -> None:
        """Take the items' text vectors (I, F); "init" starts the ID embeddings from them."""
        if self.config.content == "off":
            return
        want = (self.num_items, self.config.content_dim)
        if tuple(features.shape) != want:
            raise ValueError(f"features of shape {tuple(features.shape)}, the model needs {want}")
        for net in self.nets():
            net.set_content(features)
            if self.config.content == "init":
                net.init_from_content()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # `net`'s names stay unprefixed, so single-network checkpoints read as before.
        tensors = {
            f"{_prefix(i)}{k}": v.detach().cpu().clone().contiguous()
            for i, net in enumerate(self.nets())
            for k, v in net.state_dict().items()
        }
        if self.config.content != "off":  # one copy of the text vectors for every network
            tensors[CONTENT] = self.net.content[: self.num_items].clone().contiguous()
        return tensors

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        parts: list[dict[str, torch.Tensor]] = [{} for _ in self.nets()]
        for name, tensor in tensors.items():
            if name == CONTENT:
                for net in self.nets():
                    net.set_content(tensor)
                continue
            member, key = _member_of(name)
            parts[member][key] = tensor
        for net, part in zip(self.nets(), parts, strict=True):
            net.load_state_dict(part)


@dataclass
class HybridSASRecConfig(SASRecConfig):
    """SASRec with the item text vectors, chosen on ml1m-half-loo validation (tuning_sasrec.md,
    session 6): "add" over "init" (val NDCG@10 0.1948 against 0.1923 at epoch 32); id_dropout
    0.1 over 0 and 0.3 on the cold-item validation check (NDCG@10 over all targets 0.1746
    against 0.1607 and 0.1658, cold HR@10 0.062 against 0.059 and 0.053) for -0.002 on the
    standard split (0.1934 against 0.1953)."""

    content: str = "add"
    content_dim: int = 384
    id_dropout: float = 0.1


class HybridSASRec(SASRec):
    """SASRec whose item embeddings read the items' pretrained text vectors."""

    name: ClassVar[str] = "sasrec-hybrid"
    Config: ClassVar[type[SASRecConfig]] = HybridSASRecConfig
    reads_content: ClassVar[bool] = True


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
        c.time_gaps,
        c.content,
        c.content_dim,
    )


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


def _sequence_weights(train: Sequence[History], weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The weights of `_training_sequences`' histories (those with 2+ items), checked > 0."""
    if len(weights) != len(train):
        raise ValueError(f"{len(weights)} weight arrays for {len(train)} histories")
    kept = []
    for history, weight in zip(train, weights, strict=True):
        weight = np.asarray(weight, dtype=np.float32).reshape(-1)
        if len(weight) != len(history):
            raise ValueError("a history and its weights differ in length")
        if len(weight) and not bool(np.all(weight > 0)):
            raise ValueError("event weights must be > 0")
        if len(history) >= 2:
            kept.append(weight)
    return kept
