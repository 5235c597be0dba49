"""SASRec's training: the fused full-softmax loss (or the sampled one, models/sampled.py),
length-bucketed batches, AdamW with warmup and cosine decay, and the epoch loop with validation,
patience and a time budget, data-parallel inside a torch.distributed group (models/distributed.py).

`SASRec.fit` (models.sasrec) hands its network and config to `SASRecTrainer`; this module needs
only the network (models.sasrec_net) and the Recommender contract, never models.sasrec.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base import Recommender
from models.data import EvalSet
from models.distributed import data_parallel
from models.metrics import evaluate
from models.sampled import SampledSoftmax, target_frequencies, uses_sampled
from models.sasrec_net import SASRecConfig, SASRecNet, pad_right

CE_CHUNK = 512  # rows of logits per step of the fused loss: (512, I) stays cache-sized
# Floor on logit - max before exp: exp of inputs below about -88 takes a very slow path on x86
# CPUs and its denormal results slow every later product (5-30x once the model is confident).
# e^-60 / I stays a normal float; the probability it stands for is below 1e-26.
EXP_FLOOR = -60.0


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
        `weights` (N,): each row's weight, the loss is then sum w * CE / sum w (None: mean)."""
        grad_states, grad_items = torch.empty_like(states), torch.zeros_like(items)
        total = states.new_zeros(())
        for start in range(0, states.shape[0], CE_CHUNK):
            rows = slice(start, start + CE_CHUNK)
            h, y = states[rows], labels[rows]  # (C, D), (C,)
            cols = torch.arange(len(y), device=y.device)  # (C,)
            probs = items @ h.T  # logits (I, C), turned into softmax - onehot in place
            if excluded is not None:
                _exclude(probs, excluded, start, y, float("-inf"))
            peak = probs.amax(dim=0)  # (C,)
            target_logits = probs[y, cols] - peak  # (C,) advanced indexing copies
            if weights is None:
                total -= target_logits.sum()
            probs.sub_(peak).clamp_(min=EXP_FLOOR).exp_()
            if excluded is not None:
                _exclude(probs, excluded, start, y, 0.0)  # the floor lifted them from -inf
            norm = probs.sum(dim=0)  # (C,)
            if weights is None:
                total += norm.log().sum()
            probs.div_(norm)[y, cols] -= 1.0
            if weights is not None:  # each row's CE and its gradient scaled by its weight
                w = weights[rows]
                total += (w * (norm.log() - target_logits)).sum()
                probs.mul_(w)
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


def target_weights(
    weights: Sequence[np.ndarray], max_len: int, ends: Sequence[int] | None = None
) -> torch.Tensor:
    """Each `training_pairs` target's weight (B, L) float32, from the items' weights; 0 pads."""
    ends = ends if ends is not None else [len(w) for w in weights]
    windows = [w[max(0, end - max_len - 1) : end][1:] for w, end in zip(weights, ends, strict=True)]
    width = max((len(w) for w in windows), default=0)
    out = np.zeros((len(windows), max(width, 1)), dtype=np.float32)
    for row, w in enumerate(windows):
        out[row, : len(w)] = w
    return torch.from_numpy(out)


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


class EpochTrainer:
    """The epoch loop the sequence models share (SASRec, GRU4Rec): AdamW with warmup and cosine
    decay, periodic validation, patience and a time budget. Trains `net` in place on the device
    it sits on; the caller seeds torch and `rng` and restores the returned best weights.
    Subclasses give `_epoch` (one pass: the mean loss), drawing its batches from `_batches`,
    running the network through `forward` and a sampled loss through `sampled`.

    Inside a data-parallel group (models.distributed) each rank trains on its share of every
    epoch's batches with `forward` wrapped in DistributedDataParallel; rank 0 validates."""

    label = "train"  # the progress bar's name

    def __init__(self, model: Recommender, net: Any, config: Any, rng: np.random.Generator) -> None:
        self.model, self.net, self.config, self.rng = model, net, config, rng
        self.weights: list[np.ndarray] | None = None  # per sequence, its items' weights
        self.deadline: float | None = None  # perf_counter() at which max_seconds runs out
        self.cut = False  # the epoch in progress was ended by the deadline
        self.forward: Any = net  # the network's training forward (DDP-wrapped when parallel)
        self.sampled: SampledSoftmax | None = None  # the sampled loss, when the loss is one
        self.parallel = data_parallel()
        # Batch order comes from `order_rng`, identical on every rank (the same seed), so the
        # ranks' shards are disjoint; windows and negatives use a stream of the rank's own.
        self.order_rng = rng
        if self.parallel is not None:
            self.rng = np.random.default_rng([config.seed, self.parallel.rank])

    def run(
        self,
        train: list[np.ndarray],
        valid: EvalSet | None,
        weights: list[np.ndarray] | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Epoch loop with periodic validation, patience and a time budget: the fit report and
        the best validated weights (without validation, the last epoch's). `weights`: each
        item's weight as a target (None: all 1)."""
        cfg = self.config
        self.weights = weights
        lengths = np.array([min(len(s) - 1, cfg.max_len) for s in train], dtype=np.int64)
        self._prepare(train)
        valid = None if valid is None else valid.sample(cfg.eval_users, cfg.seed)
        steps = math.ceil(len(train) / cfg.batch_size)
        optimizer, schedule = self._optimizer(
            steps if self.parallel is None else self.parallel.steps(steps)
        )
        start = time.perf_counter()
        self.deadline = None if cfg.max_seconds is None else start + cfg.max_seconds
        best: dict[str, float] = {"epoch": 0, "val_ndcg@10": -1.0, "seconds": 0.0}
        best_state = copy.deepcopy(self.net.state_dict())
        history: list[dict[str, float]] = []
        own_bar = cfg.progress and self.model.epoch_callback is None  # models.train draws its own
        for epoch in tqdm(range(1, cfg.epochs + 1), desc=self.label, disable=not own_bar):
            stats: dict[str, float] = {"epoch": epoch, "epochs": cfg.epochs}
            self.cut = False
            stats["loss"] = self._epoch(train, lengths, optimizer, schedule)
            if self.cut:
                stats["partial"] = 1.0  # the time budget ended it mid-way
            out_of_time = self._agreed(self._out_of_time(time.perf_counter() - start, epoch))
            out_of_time = out_of_time or self.cut
            last = epoch == cfg.epochs or out_of_time
            if valid is not None and (epoch % cfg.eval_every == 0 or last):
                stats.update(self._validate(valid))
            stats["seconds"] = time.perf_counter() - start
            history.append(stats)
            self.model.log_epoch(**stats)
            if stats.get("val_ndcg@10", -1.0) > best["val_ndcg@10"]:
                best, best_state = stats, copy.deepcopy(self.net.state_dict())
            # Without validation (a refit) there is nothing to stall on: run every epoch.
            stalled = valid is not None and epoch - best["epoch"] >= cfg.patience * cfg.eval_every
            if out_of_time or stalled:
                break
        if valid is None:
            best, best_state = history[-1], self.net.state_dict()
        return _report(history, best, valid is not None, time.perf_counter() - start), best_state

    def _prepare(self, train: list[np.ndarray]) -> None:
        """Set up the run's sampled loss (when the catalog calls for it) and DDP wrapper."""
        cfg, num_items = self.config, self.net.pad  # the padding index is the catalog size
        if uses_sampled(cfg.loss, num_items):
            frequencies = target_frequencies(train, num_items + 1)[:num_items]
            self.sampled = SampledSoftmax(cfg.n_negatives, self.rng, frequencies)
        if self.parallel is not None:
            self.forward = self.parallel.wrap(self.net, cfg.seed)

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """This epoch's length-bucketed batches of user indices (this rank's share). A single
        process stops mid-epoch at the `max_seconds` deadline (sets `cut`): one epoch over
        millions of users can outlast any budget. Data-parallel ranks finish the epoch, so they
        take the same number of steps."""
        batches = length_batches(lengths, self.config.batch_size, self.order_rng)
        if self.parallel is not None:
            yield from self.parallel.shard(batches)
            return
        for done, batch in enumerate(batches):
            if done and self.deadline is not None and time.perf_counter() > self.deadline:
                self.cut = True
                return
            yield batch

    def _agreed(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank (itself without a data-parallel group)."""
        return flag if self.parallel is None else bool(self.parallel.from_main([flag])[0])

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

    def _epoch(
        self,
        train: list[np.ndarray],
        lengths: np.ndarray,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> float:
        """One pass over all users; returns the mean loss."""
        raise NotImplementedError

    @staticmethod
    def _step(
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> float:
        """One optimiser step on `loss`, the schedule advanced; returns the loss's value."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        return loss.item()

    def _validate(self, valid: EvalSet) -> dict[str, float]:
        """Validation NDCG@10 and HR@10 (full ranking, history excluded), shared evaluator;
        in a data-parallel group rank 0 computes them and the other ranks wait for them."""
        stats = {"val_ndcg@10": 0.0, "val_hr@10": 0.0}
        if self.parallel is None or self.parallel.is_main:
            metrics = evaluate(self.model, valid, ks=(10,))
            stats = {"val_ndcg@10": metrics["ndcg@10"], "val_hr@10": metrics["hr@10"]}
        if self.parallel is not None:
            stats = dict(zip(stats, self.parallel.from_main(list(stats.values())), strict=True))
        return stats

    def _out_of_time(self, elapsed: float, epochs_done: int) -> bool:
        """True when another epoch of the average length would overrun `max_seconds`."""
        budget = self.config.max_seconds
        return budget is not None and elapsed * (epochs_done + 1) / epochs_done > budget


class SASRecTrainer(EpochTrainer):
    """Trains a single-network SASRec's `net` (random windows, the fused or sampled loss)."""

    label = "sasrec"
    net: SASRecNet
    config: SASRecConfig

    def _epoch(
        self,
        train: list[np.ndarray],
        lengths: np.ndarray,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> float:
        """One pass over all users in length-bucketed batches; returns the mean loss."""
        self.net.train()
        total, count = 0.0, 0
        device = self.net.empty_user.device
        for batch in self._batches(lengths):
            seqs = [train[i] for i in batch]
            ends = self._window_ends(seqs)
            inputs, targets = training_pairs(seqs, self.config.max_len, self.net.pad, ends)
            weights = None
            if self.weights is not None:
                rows = [self.weights[i] for i in batch]
                weights = target_weights(rows, self.config.max_len, ends).to(device)
            self.net.drop_ids()
            loss = self._loss(inputs.to(device), targets.to(device), weights)
            total, count = total + self._step(loss, optimizer, schedule), count + 1
        self.net.eval()
        self.net.dropped = None
        return total / max(count, 1)

    def _window_ends(self, seqs: list[np.ndarray]) -> list[int]:
        """Window ends: the history's end, or (chance random_windows) an earlier one if long."""
        cfg, ends = self.config, [len(s) for s in seqs]
        if cfg.random_windows <= 0:
            return ends
        for row, n in enumerate(ends):
            if n > cfg.max_len + 1 and self.rng.random() < cfg.random_windows:
                ends[row] = int(self.rng.integers(cfg.max_len + 1, n + 1))
        return ends

    def _loss(
        self, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-item cross-entropy at the non-padded positions only; `weights` (B, L): each
        target's weight (a weighted mean; None: the plain mean)."""
        cfg = self.config
        hidden = self.forward(inputs)  # (B, L, D)
        keep = targets >= 0  # (B, L)
        kept_weights = None if weights is None else weights[keep]  # (N,)
        if cfg.time_gaps:  # tokens -> items: targets and the seen-item mask are items
            inputs, targets = inputs % (self.net.pad + 1), targets % (self.net.pad + 1)
        states, labels = hidden[keep], targets[keep]  # (N, D), (N,)
        items = self.net.items()  # (I, D)
        among = self.net.softmax_items()  # None: all items
        if among is not None:
            inputs, labels, items = _within(among, inputs, labels, items, self.net.pad + 1)
        if self.sampled is not None:
            return self.sampled(states, items, labels, kept_weights, among)
        excluded = seen_items(inputs, keep) if cfg.mask_history else None
        return LinearCrossEntropy.apply(states, items, labels, excluded, kept_weights)


def _within(
    among: torch.Tensor,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    items: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss over the items `among` (K,) only: inputs and labels as positions in it (every
    trained item is in it; padding maps to -1 and is never read), and their table rows."""
    position = torch.full((width,), -1, dtype=torch.long, device=among.device)
    position[among] = torch.arange(len(among), device=among.device)
    return position[inputs], position[labels], items[among]


def _report(
    history: list[dict[str, float]], best: dict[str, float], validated: bool, seconds: float
) -> dict[str, Any]:
    """The fit report: epochs run, the best epoch and its validation, timings, the history."""
    return {
        "epochs": len(history),
        "best_epoch": int(best["epoch"]),
        "best_val_ndcg@10": best["val_ndcg@10"] if validated else None,
        "best": best,
        "seconds": seconds,
        "seconds_to_best": best["seconds"],
        "history": history,
    }
