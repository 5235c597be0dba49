"""GRU4Rec on tiny generated data: causality, padding, windows, learning, weights, the refit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import mask_items
from models.gru4rec import GRU4Rec, GRU4RecConfig
from models.train import train_model
from tests.models.conftest import random_loo

NUM_ITEMS = 30


def tiny_config(**overrides: object) -> GRU4RecConfig:
    """A small, fast config; dropout on so that train/eval differences would show."""
    base: dict[str, object] = dict(
        max_len=12,
        hidden=32,
        dropout=0.1,
        lr=1e-2,
        batch_size=16,
        epochs=20,
        patience=20,
        progress=False,
        seed=7,
        threads=1,  # tiny tensors: a second thread only adds synchronisation
    )
    base.update(overrides)
    return GRU4RecConfig(**base)  # type: ignore[arg-type]


def cyclic_sequences(users: int = 90, seed: int = 0) -> list[np.ndarray]:
    """Each user walks 0 -> 1 -> ... -> NUM_ITEMS-1 -> 0 from a random start: next item is known."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, NUM_ITEMS, users)
    lengths = rng.integers(3, 15, users)
    return [(s + np.arange(n)) % NUM_ITEMS for s, n in zip(starts, lengths, strict=True)]


@pytest.fixture(scope="module")
def trained() -> GRU4Rec:
    model = GRU4Rec(NUM_ITEMS, tiny_config())
    model.fit(cyclic_sequences())
    return model


def test_later_items_do_not_change_earlier_states() -> None:
    model = GRU4Rec(NUM_ITEMS, tiny_config())
    seq = torch.tensor([[3, 8, 1, 4, 15, 9, 26, 5]])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([0, 0, 0])
    with torch.no_grad():
        before, after = model.net(seq), model.net(changed)  # (1, L, D)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padding_in_a_batch_does_not_change_a_user() -> None:
    model = GRU4Rec(NUM_ITEMS, tiny_config())
    short, long = np.array([4, 9, 2]), np.arange(11)
    alone = model.user_vectors([short])
    padded = model.user_vectors([short, long])  # short is padded to the long length
    torch.testing.assert_close(alone[0], padded[0], rtol=0, atol=1e-6)


def test_a_history_longer_than_max_len_is_its_last_max_len_items(trained: GRU4Rec) -> None:
    long = np.arange(40) % NUM_ITEMS  # max_len is 12
    torch.testing.assert_close(
        trained.user_vectors([long]), trained.user_vectors([long[-12:]]), rtol=0, atol=1e-6
    )
    assert not torch.allclose(trained.user_vectors([long]), trained.user_vectors([long[-11:]]))


def test_learns_the_deterministic_next_item(trained: GRU4Rec) -> None:
    histories = [np.array([5, 6, 7]), np.array([20, 21, 22, 23]), np.array([28, 29])]
    scores = trained.score(histories).clone()
    mask_items(scores, histories)
    assert scores.argmax(dim=1).tolist() == [8, 24, 0]


def test_empty_history_is_the_mean_training_user(trained: GRU4Rec) -> None:
    mean = trained.user_vectors(cyclic_sequences()).mean(0)
    torch.testing.assert_close(trained.user_vectors([np.array([], np.int64)])[0], mean)


def test_same_seed_same_model() -> None:
    first, second = (GRU4Rec(NUM_ITEMS, tiny_config(epochs=3)) for _ in range(2))
    first.fit(cyclic_sequences())
    second.fit(cyclic_sequences())
    for name, tensor in first.state_tensors().items():
        assert torch.equal(tensor, second.state_tensors()[name]), name


def test_weights_scale_the_loss_and_ones_change_nothing() -> None:
    train = cyclic_sequences()
    plain, ones, skewed = (GRU4Rec(NUM_ITEMS, tiny_config(epochs=2)) for _ in range(3))
    base = plain.fit(train)["history"][-1]["loss"]
    same = ones.fit(train, weights=[np.ones(len(s), np.float32) for s in train])
    rng = np.random.default_rng(1)
    other = skewed.fit(train, weights=[rng.uniform(0.1, 5.0, len(s)) for s in train])
    assert same["history"][-1]["loss"] == pytest.approx(base, rel=1e-4)
    assert other["history"][-1]["loss"] != pytest.approx(base, rel=1e-3)
    with pytest.raises(ValueError, match="must be > 0"):
        plain.fit(train, weights=[np.zeros(len(s)) for s in train])


def test_refit_runs_the_validation_chosen_epochs() -> None:
    data = random_loo()
    overrides = {"hidden": 16, "epochs": 6, "patience": 2, "progress": False, "threads": 1}
    trained = train_model("gru4rec", data, overrides, seed=0)
    best = trained.report.fit["best_epoch"]
    assert 1 <= best <= 6
    assert trained.model.config.epochs == best
    assert trained.report.refit_seconds is not None and trained.report.test


def test_out_of_range_items_are_refused(trained: GRU4Rec) -> None:
    with pytest.raises(ValueError, match="item indices"):
        trained.user_vectors([np.array([NUM_ITEMS])])
