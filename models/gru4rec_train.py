"""GRU4Rec's training: SASRec's fused full-softmax loss (or the shared sampled softmax,
models/sampled.py), batches and schedule (models/sasrec_train.py), in an epoch loop with
validation, patience and a time budget.

`GRU4Rec.fit` (models.gru4rec) hands its network and config here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from models.sasrec_train import (
    EpochTrainer,
    LinearCrossEntropy,
    seen_items,
    target_weights,
    training_pairs,
)

if TYPE_CHECKING:  # models.gru4rec imports this module
    from models.gru4rec import GRU4RecConfig, GRU4RecNet


class GRU4RecTrainer(EpochTrainer):
    """Trains `net` in place: SASRec's epoch loop, schedule and validation (`EpochTrainer`),
    with GRU4Rec's batches and loss; the caller seeds torch and `rng` and loads the returned
    best weights (`GRU4Rec.fit`)."""

    label = "gru4rec"
    net: GRU4RecNet
    config: GRU4RecConfig

    def _epoch(
        self,
        train: list[np.ndarray],
        lengths: np.ndarray,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> float:
        """One pass over all users in length-bucketed batches: the mean loss."""
        self.net.train()
        total, count = 0.0, 0
        for batch in self._batches(lengths):
            loss = self._loss([train[i] for i in batch], batch)
            total, count = total + self._step(loss, optimizer, schedule), count + 1
        self.net.eval()
        return total / max(count, 1)

    def _loss(self, seqs: list[np.ndarray], batch: np.ndarray) -> torch.Tensor:
        """Next-item cross-entropy over all items at every real position of the last max_len
        + 1 items (the items seen so far left out with `mask_history`), optionally weighted."""
        cfg, device = self.config, self.net.empty_user.device
        inputs, targets = training_pairs(seqs, cfg.max_len, self.net.pad)  # (B, L) each
        inputs, targets = inputs.to(device), targets.to(device)
        keep = targets >= 0  # (B, L)
        weights = None
        if self.weights is not None:
            rows = [self.weights[i] for i in batch]
            weights = target_weights(rows, cfg.max_len).to(device)[keep]  # (N,)
        states = self.forward(inputs)[keep]  # (N, D)
        if self.sampled is not None:
            return self.sampled(states, self.net.items(), targets[keep], weights)
        excluded = seen_items(inputs, keep) if cfg.mask_history else None
        return LinearCrossEntropy.apply(states, self.net.items(), targets[keep], excluded, weights)
