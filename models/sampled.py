"""Sampled softmax for the sequence models (SASRec, GRU4Rec): the loss for catalogs too large
for the full softmax, which costs O(positions x items) per batch even fused.

Each position's softmax runs over its positive and a shared candidate set of `n_negatives`
uniform items plus up to `n_negatives` of the batch's other positives (in-batch negatives,
which follow item popularity, as the hard negatives of a power-law catalog do). Every logit is
corrected by the log of its item's expected count in the candidate set (logQ correction: Yi et
al. 2019, "Sampling-bias-corrected neural modeling"; Jean et al. 2015), so that the sum over
candidates estimates the full softmax's normaliser without popularity bias; a candidate equal
to the row's positive (an accidental hit) is masked. Logits are (N, 2K), never (N, I).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Catalog size above which `loss="auto"` uses the sampled softmax: at 50k items the fused full
# softmax's (N, I) work per batch is ~10x its cost on ML-1M's 3.3k items and still fine on a
# GPU; at 1M items it is 300x and infeasible on a CPU.
AUTO_SAMPLED_ITEMS = 50_000
LOSSES = ("auto", "ce", "sampled")


def check_loss(loss: str, n_negatives: int, eval_users: int | None) -> None:
    """ValueError naming the field when a sequence model's loss or validation settings are
    invalid (SASRecConfig and GRU4RecConfig share them)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be at least 1, not {n_negatives}")
    if eval_users is not None and eval_users < 1:
        raise ValueError(f"eval_users must be at least 1 or None, not {eval_users}")


def uses_sampled(loss: str, num_items: int) -> bool:
    """Whether `loss` means the sampled softmax for a catalog of `num_items`."""
    return loss == "sampled" or (loss == "auto" and num_items > AUTO_SAMPLED_ITEMS)


def target_frequencies(sequences: list[np.ndarray], width: int) -> torch.Tensor:
    """Each item's share of all training targets (every item but a sequence's first): (width,)
    float64; items are `token % width` (time-gap tokens count as their item)."""
    targets = [np.asarray(s[1:], dtype=np.int64) % width for s in sequences]
    counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *targets]), minlength=width)
    return torch.from_numpy(counts / max(counts.sum(), 1))


def draw_candidates(
    labels: torch.Tensor,
    num_items: int,
    n_negatives: int,
    rng: np.random.Generator,
    frequencies: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared candidates (C,) and each one's log expected count in the candidate set (C,):
    n_negatives uniform items and up to n_negatives of the batch's positives, drawn without
    replacement among positions (so by the items' target frequencies)."""
    device = labels.device
    uniform = torch.from_numpy(rng.integers(0, num_items, n_negatives)).to(device)
    picked = rng.permutation(len(labels))[:n_negatives]
    in_batch = labels[torch.from_numpy(picked).to(device)]
    candidates = torch.cat([uniform, in_batch])  # (C,)
    return candidates, log_expected_counts(
        candidates, num_items, n_negatives, len(in_batch), frequencies
    )


def log_expected_counts(
    items: torch.Tensor, num_items: int, uniform: int, in_batch: int, frequencies: torch.Tensor
) -> torch.Tensor:
    """log Q of each item (same shape): its expected count among `uniform` uniform draws and
    `in_batch` draws by target frequency."""
    expected = uniform / num_items + in_batch * frequencies.to(items.device)[items].float()
    return expected.log()


def sampled_softmax(
    states: torch.Tensor,
    items: torch.Tensor,
    labels: torch.Tensor,
    candidates: torch.Tensor,
    log_q: torch.Tensor,
    log_q_labels: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean (or `weights`-weighted mean) cross-entropy of each state (N, D) over its positive
    and the candidates (C,), every logit minus its log Q, accidental hits masked."""
    positive = (states * items[labels]).sum(-1, keepdim=True) - log_q_labels[:, None]  # (N, 1)
    negative = states @ items[candidates].T - log_q[None, :]  # (N, C)
    negative = negative.masked_fill(candidates[None, :] == labels[:, None], float("-inf"))
    logits = torch.cat([positive, negative], dim=1)  # (N, 1 + C)
    losses = F.cross_entropy(logits, torch.zeros_like(labels), reduction="none")
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


class SampledSoftmax:
    """The sampled loss of one training run: its negatives' count and rng, and the target
    frequencies the in-batch candidates follow.

    Uniform negatives alone (the loss SASRec had before) were measured and deleted: ML-1M
    validation NDCG@10 0.0953 against 0.1423 with the in-batch ones added, same 10 epochs
    (research/results/tuning_sampled.md)."""

    def __init__(
        self, n_negatives: int, rng: np.random.Generator, frequencies: torch.Tensor
    ) -> None:
        self.n_negatives, self.rng = n_negatives, rng
        self.frequencies = frequencies.float()

    def __call__(
        self,
        states: torch.Tensor,
        items: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
        among: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of states (N, D) against the item table (I, D) and labels (N,); `among`:
        the catalog items the table's rows are (None: all, in order)."""
        num_items, k = items.shape[0], self.n_negatives
        frequencies = self.frequencies.to(states.device)
        if among is not None:
            frequencies = frequencies[among]
        candidates, log_q = draw_candidates(labels, num_items, k, self.rng, frequencies)
        picked = len(candidates) - k  # the in-batch draws
        log_q_labels = log_expected_counts(labels, num_items, k, picked, frequencies)
        return sampled_softmax(states, items, labels, candidates, log_q, log_q_labels, weights)
