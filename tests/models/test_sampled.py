"""The shared sampled softmax (models.sampled) and the scale settings of the sequence models:
logQ correction, accidental hits, weights, `loss="auto"`, capped validation users and the
evaluator's bounded score batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models.metrics as metrics
from models.data import EvalSet
from models.gru4rec import GRU4Rec, GRU4RecConfig
from models.sampled import (
    AUTO_SAMPLED_ITEMS,
    SampledSoftmax,
    draw_candidates,
    log_expected_counts,
    sampled_softmax,
    target_frequencies,
    uses_sampled,
)
from models.sasrec import SASRecConfig

NUM_ITEMS = 30


def cyclic_sequences(users: int = 90, seed: int = 0) -> list[np.ndarray]:
    """Each user walks 0 -> 1 -> ... -> NUM_ITEMS-1 -> 0 from a random start."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, NUM_ITEMS, users), rng.integers(3, 15, users)
    return [(s + np.arange(n)) % NUM_ITEMS for s, n in zip(starts, lengths, strict=True)]


def tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """States (4, 8), an item table (10, 8) and labels (4,)."""
    gen = torch.Generator().manual_seed(seed)
    states, items = torch.randn(4, 8, generator=gen), torch.randn(10, 8, generator=gen)
    return states, items, torch.tensor([1, 2, 3, 1])


def test_loss_is_cross_entropy_of_corrected_logits_with_hits_masked() -> None:
    states, items, labels = tensors()
    candidates = torch.tensor([1, 5, 7])  # 1 is rows 0 and 3's positive: an accidental hit
    log_q = torch.tensor([-1.0, -2.0, 0.5])
    log_q_labels = torch.tensor([-1.0, 0.3, 0.2, -1.0])
    loss = sampled_softmax(states, items, labels, candidates, log_q, log_q_labels)
    expected = []
    for row, label in enumerate(labels.tolist()):
        logits = [states[row] @ items[label] - log_q_labels[row]]
        for c, q in zip(candidates.tolist(), log_q, strict=True):
            if c != label:
                logits.append(states[row] @ items[c] - q)
        expected.append(-F.log_softmax(torch.stack(logits), 0)[0])
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_log_q_lowers_popular_negatives_and_a_constant_one_cancels() -> None:
    states, items, labels = tensors()
    candidates = torch.tensor([5, 6, 7])
    zeros, zero_labels = torch.zeros(3), torch.zeros(4)
    plain = sampled_softmax(states, items, labels, candidates, zeros, zero_labels)
    shifted = sampled_softmax(states, items, labels, candidates, zeros + 2.0, zero_labels + 2.0)
    assert shifted.item() == pytest.approx(plain.item(), rel=1e-5)
    popular = torch.tensor([3.0, 0.0, 0.0])  # item 5 expected 20x: its logit drops by log 20
    assert sampled_softmax(states, items, labels, candidates, popular, zero_labels) < plain


def test_expected_counts_mix_uniform_and_in_batch_draws() -> None:
    frequencies = torch.tensor([0.5, 0.25, 0.25, 0.0])
    log_q = log_expected_counts(
        torch.tensor([0, 3]), 4, uniform=8, in_batch=4, frequencies=frequencies
    )
    assert log_q.exp().tolist() == pytest.approx([8 / 4 + 4 * 0.5, 8 / 4])


def test_gradients_reach_states_positives_and_candidates_only() -> None:
    states, items, labels = tensors()
    states.requires_grad_(True)
    items.requires_grad_(True)
    loss = SampledSoftmax(3, np.random.default_rng(0), torch.full((10,), 0.1))(
        states, items, labels
    )
    loss.backward()
    assert states.grad is not None and bool((states.grad.abs().sum(1) > 0).all())
    assert items.grad is not None
    touched = items.grad.abs().sum(1) > 0
    assert bool(touched[labels].all())
    assert int(touched.sum()) <= len(set(labels.tolist())) + 3 + len(labels)


def test_weights_scale_rows_and_zero_weight_rows_drop_out() -> None:
    states, items, labels = tensors()
    candidates, log_q = torch.tensor([5, 6]), torch.zeros(2)
    per_row = [
        sampled_softmax(
            states[i : i + 1], items, labels[i : i + 1], candidates, log_q, torch.zeros(1)
        )
        for i in range(4)
    ]
    weights = torch.tensor([1.0, 3.0, 0.0, 2.0])
    loss = sampled_softmax(states, items, labels, candidates, log_q, torch.zeros(4), weights)
    expected = sum(w * r for w, r in zip(weights, per_row, strict=True)) / weights.sum()
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)


def test_in_batch_candidates_are_the_batch_positives() -> None:
    labels = torch.tensor([4, 4, 9, 2])
    frequencies = target_frequencies([np.array([0, 4, 4, 9, 2])], 10)
    candidates, log_q = draw_candidates(labels, 10, 3, np.random.default_rng(0), frequencies)
    assert len(candidates) == 6 and set(candidates[3:].tolist()) <= {4, 9, 2}
    assert log_q[3:].exp().tolist() == pytest.approx(
        [0.3 + 3 * frequencies[c].item() for c in candidates[3:].tolist()]
    )


def test_target_frequencies_count_every_item_but_the_first() -> None:
    frequencies = target_frequencies([np.array([0, 1, 1]), np.array([2, 3])], 4)
    assert frequencies.tolist() == pytest.approx([0.0, 2 / 3, 0.0, 1 / 3])


def test_auto_loss_switches_at_the_catalog_threshold() -> None:
    assert not uses_sampled("auto", AUTO_SAMPLED_ITEMS)
    assert uses_sampled("auto", AUTO_SAMPLED_ITEMS + 1)
    assert uses_sampled("sampled", 10) and not uses_sampled("ce", 10**7)


@pytest.mark.parametrize("config", [SASRecConfig, GRU4RecConfig])
def test_configs_refuse_bad_loss_settings(config: type) -> None:
    with pytest.raises(ValueError, match="loss"):
        config(loss="bpr")
    with pytest.raises(ValueError, match="n_negatives"):
        config(n_negatives=0)
    with pytest.raises(ValueError, match="eval_users"):
        config(eval_users=0)


def test_gru4rec_learns_with_the_sampled_loss() -> None:
    config = GRU4RecConfig(
        max_len=12,
        hidden=32,
        lr=1e-2,
        batch_size=16,
        epochs=12,
        patience=12,
        loss="sampled",
        n_negatives=8,
        progress=False,
        seed=7,
        threads=1,
    )
    model = GRU4Rec(NUM_ITEMS, config)
    seqs = cyclic_sequences()
    valid = EvalSet([s[:-1] for s in seqs], np.array([s[-1] for s in seqs]))
    report = model.fit([s[:-1] for s in seqs], valid)
    assert report["history"][-1]["loss"] < report["history"][0]["loss"] / 2
    assert report["best_val_ndcg@10"] > 0.8  # a cyclic walk: the next item is known


def test_sample_users_is_seeded_and_ordered() -> None:
    valid = EvalSet([np.array([i]) for i in range(50)], np.arange(50), None)
    first, again = valid.sample(10, seed=3), valid.sample(10, seed=3)
    assert len(first) == 10 and first.targets.tolist() == again.targets.tolist()
    assert first.targets.tolist() == sorted(first.targets.tolist())
    assert valid.sample(50, seed=3) is valid and valid.sample(None, 3) is valid


def test_evaluate_bounds_score_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(40, 4, generator=gen), torch.randn(25, 4, generator=gen)
    data = EvalSet([np.array([i % 25]) for i in range(40)], np.arange(40) % 23 + 1)
    whole = metrics.evaluate_vectors(users, items, data, ks=(10,))
    seen: list[int] = []
    original = metrics.mask_items

    def recording(scores: torch.Tensor, histories: list[np.ndarray]) -> None:
        seen.append(scores.shape[0])
        original(scores, histories)

    monkeypatch.setattr(metrics, "MAX_BATCH_SCORES", 3 * 25)
    monkeypatch.setattr(metrics, "mask_items", recording)
    assert metrics.evaluate_vectors(users, items, data, ks=(10,)) == pytest.approx(whole)
    assert max(seen) == 3
