"""SASRec on tiny generated data: causality, padding, empty histories, learning, persistence,
and its training helpers (models.sasrec_train)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

import models.sasrec as sasrec
import models.sasrec_train as sasrec_train
from models.base import mask_items
from models.checkpoint import META, CheckpointError, load_checkpoint, save_checkpoint
from models.sasrec import SASRec, SASRecConfig, length_groups
from models.sasrec_net import pad_right
from models.sasrec_train import LinearCrossEntropy, length_batches, seen_items, training_pairs

NUM_ITEMS = 30


def tiny_config(**overrides: object) -> SASRecConfig:
    """A small, fast config; dropout on so that train/eval differences would show."""
    base: dict[str, object] = dict(
        max_len=12,
        hidden=32,
        blocks=2,
        heads=2,
        dropout=0.1,
        lr=1e-2,
        batch_size=32,
        epochs=25,
        patience=25,
        progress=False,
        seed=7,
        threads=1,  # tiny tensors: a second thread only adds synchronisation
    )
    base.update(overrides)
    return SASRecConfig(**base)  # type: ignore[arg-type]


def cyclic_sequences(users: int = 90, seed: int = 0) -> list[np.ndarray]:
    """Each user walks 0 -> 1 -> ... -> NUM_ITEMS-1 -> 0 from a random start: next item is known."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, NUM_ITEMS, users)
    lengths = rng.integers(3, 15, users)
    return [(s + np.arange(n)) % NUM_ITEMS for s, n in zip(starts, lengths, strict=True)]


@pytest.fixture(scope="module")
def trained() -> SASRec:
    model = SASRec(NUM_ITEMS, tiny_config())
    model.fit(cyclic_sequences())
    return model


def test_causal_later_items_do_not_change_earlier_positions() -> None:
    model = SASRec(NUM_ITEMS, tiny_config())
    seq = torch.tensor([[3, 8, 1, 4, 15, 9, 26, 5]])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([0, 0, 0])
    with torch.no_grad():
        before, after = model.net(seq), model.net(changed)  # (1, L, D)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padding_does_not_change_outputs() -> None:
    model = SASRec(NUM_ITEMS, tiny_config())
    short, long = np.array([4, 9, 2]), np.arange(11)
    alone = model.user_vectors([short])  # no padding
    padded = model.user_vectors([short, long])  # short is padded to the long length
    torch.testing.assert_close(alone[0], padded[0], rtol=0, atol=1e-6)
    pad = model.net.pad
    with torch.no_grad():
        hidden = model.net(torch.tensor([[4, 9, 2, pad, pad, pad]]))  # (1, 6, D)
        plain = model.net(torch.tensor([[4, 9, 2]]))  # (1, 3, D)
    torch.testing.assert_close(hidden[:, :3], plain, rtol=0, atol=1e-6)


def test_history_longer_than_max_len_uses_the_last_items() -> None:
    model = SASRec(NUM_ITEMS, tiny_config(max_len=5))
    history = np.arange(20) % NUM_ITEMS
    torch.testing.assert_close(model.user_vectors([history]), model.user_vectors([history[-5:]]))


def test_empty_history_gives_finite_vector(trained: SASRec) -> None:
    vectors = trained.user_vectors([np.array([], dtype=np.int64), np.array([1, 2, 3])])
    assert vectors.shape == (2, trained.config.hidden)
    assert torch.isfinite(vectors).all()
    assert vectors[0].abs().sum() > 0  # the mean training user, not zeros
    assert trained.user_vectors([]).shape == (0, trained.config.hidden)


def test_item_vectors_and_scores_are_a_dot_product(trained: SASRec) -> None:
    items = trained.item_vectors()
    assert items.shape == (NUM_ITEMS, trained.config.hidden)
    assert items.dtype == torch.float32 and items.is_contiguous()
    histories = [np.array([1, 2, 3]), np.array([7])]
    expected = trained.user_vectors(histories) @ items.T
    torch.testing.assert_close(trained.score(histories), expected)


def next_item_accuracy(model: SASRec) -> float:
    """Share of 6-step cyclic walks whose top-1 recommendation is the walk's next item."""
    histories = [(s + np.arange(6)) % NUM_ITEMS for s in range(NUM_ITEMS)]
    ids, _ = model.recommend(histories, k=1)
    expected = torch.tensor([(s + 6) % NUM_ITEMS for s in range(NUM_ITEMS)])
    return float((ids[:, 0] == expected).float().mean())


def test_overfits_a_sequential_pattern(trained: SASRec) -> None:
    assert next_item_accuracy(trained) >= 0.95


def test_same_seed_same_scores() -> None:
    histories = [np.array([1, 2, 3]), np.array([5, 6])]
    scores = []
    for _ in range(2):
        model = SASRec(NUM_ITEMS, tiny_config(epochs=3))
        model.fit(cyclic_sequences())
        scores.append(model.score(histories))
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=0)


def test_state_round_trip_gives_identical_scores(trained: SASRec) -> None:
    tensors = load(save(trained.state_tensors()))  # through safetensors bytes, as checkpoints do
    restored = SASRec.from_state(trained.config_dict(), tensors)
    histories = [np.array([], dtype=np.int64), np.array([1, 2, 3]), np.arange(20) % NUM_ITEMS]
    torch.testing.assert_close(restored.score(histories), trained.score(histories), rtol=0, atol=0)
    assert restored.config == trained.config and restored.num_items == NUM_ITEMS


def test_fit_without_validation_runs_every_epoch() -> None:
    # A refit on train + val has no validation set: patience must not cut its schedule short.
    model = SASRec(NUM_ITEMS, tiny_config(epochs=5, patience=1, eval_every=1))
    report = model.fit(cyclic_sequences())
    assert report["epochs"] == 5 and report["best_epoch"] == 5


def test_sampled_softmax_learns_too() -> None:
    model = SASRec(NUM_ITEMS, tiny_config(loss="sampled", n_negatives=10, epochs=10))
    report = model.fit(cyclic_sequences())
    first, last = report["history"][0]["loss"], report["history"][-1]["loss"]
    assert last < first / 2


def test_out_of_range_items_are_rejected(trained: SASRec) -> None:
    with pytest.raises(ValueError):
        trained.user_vectors([np.array([NUM_ITEMS])])
    with pytest.raises(ValueError):
        SASRecConfig(hidden=30, heads=4)


def test_training_pairs_shift_by_one_and_pad_targets() -> None:
    inputs, targets = training_pairs([np.array([1, 2, 3, 4]), np.array([5, 6])], max_len=2, pad=9)
    assert inputs.tolist() == [[2, 3], [5, 9]]
    assert targets.tolist() == [[3, 4], [6, -100]]
    inputs, targets = training_pairs([np.array([1, 2, 3, 4])], max_len=2, pad=9, ends=[3])
    assert inputs.tolist() == [[1, 2]] and targets.tolist() == [[2, 3]]


def test_length_batches_cover_every_user_once() -> None:
    lengths = np.array([5, 1, 9, 3, 3, 7, 2])
    batches = length_batches(lengths, batch_size=3, rng=np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert all(lengths[b].max() - lengths[b].min() <= 4 for b in batches)


@pytest.mark.parametrize("scale", [1.0, 60.0])  # 60: logits spread far past the exp floor
def test_fused_cross_entropy_matches_autograd(
    monkeypatch: pytest.MonkeyPatch, scale: float
) -> None:
    monkeypatch.setattr(sasrec_train, "CE_CHUNK", 7)  # several chunks, one of them partial
    gen = torch.Generator().manual_seed(0)
    states = (scale * torch.randn(30, 8, generator=gen, dtype=torch.float64)).requires_grad_()
    items = torch.randn(11, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (30,), generator=gen)
    expected = torch.nn.functional.cross_entropy(states @ items.T, labels)
    want = torch.autograd.grad(2 * expected, (states, items))
    loss = LinearCrossEntropy.apply(states, items, labels)
    got = torch.autograd.grad(2 * loss, (states, items))
    torch.testing.assert_close(loss, expected)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_history_masked_cross_entropy_leaves_seen_items_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sasrec_train, "CE_CHUNK", 2)  # pairs must be split across chunks correctly
    inputs = torch.tensor([[1, 2, 3, 9], [4, 1, 9, 9]])  # 9 pads
    keep = torch.tensor([[True, True, True, False], [True, True, False, False]])
    rows, items = seen_items(inputs, keep)
    assert list(zip(rows.tolist(), items.tolist(), strict=True)) == [
        (0, 1), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 4), (4, 4), (4, 1)
    ]  # fmt: skip
    states = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    table = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2, 3, 1, 1, 2])  # row 2's target (1) was seen: it stays in
    mask = torch.zeros(5, 9, dtype=torch.bool)
    mask[rows, items] = True
    mask[torch.arange(5), labels] = False
    logits = (states @ table.T).masked_fill(mask, float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, labels)
    loss = LinearCrossEntropy.apply(states, table, labels, (rows, items))
    torch.testing.assert_close(loss, expected)
    got = torch.autograd.grad(loss, (states, table))
    for g, w in zip(got, torch.autograd.grad(expected, (states, table)), strict=True):
        torch.testing.assert_close(g, w)


def test_last_states_match_the_full_forward_at_each_last_position() -> None:
    model = SASRec(NUM_ITEMS, tiny_config(epochs=2))
    model.fit(cyclic_sequences())
    seqs = [np.arange(n) % NUM_ITEMS for n in (1, 5, 12, 3)]
    padded = pad_right(seqs, model.net.pad)
    last = torch.tensor([len(s) - 1 for s in seqs])
    with torch.inference_mode():
        full = model.net(padded)[torch.arange(len(seqs)), last]
        torch.testing.assert_close(model.net.last_states(padded, last), full)


def test_length_groups_cover_every_row_once_with_similar_lengths() -> None:
    lengths = [1, 200, 9, 17, 150, 16, 40, 8, 199, 3, 80, 81]
    groups = length_groups(lengths, max_batch=3)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        assert len(group) <= 3 and max(sizes) <= 2 * max(min(sizes), 8)


def test_device_is_checked_and_the_trained_model_comes_back_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="device"):
        tiny_config(device="mps")
    model = SASRec(NUM_ITEMS, tiny_config(device="auto", epochs=1))
    model.fit(cyclic_sequences())
    assert all(t.device.type == "cpu" for t in model.state_tensors().values())
    assert model.user_vectors([np.array([1, 2])]).device.type == "cpu"


@pytest.fixture(scope="module")
def joined(trained: SASRec) -> SASRec:
    """`trained` joined with a second network fit for a few epochs from another seed."""
    other = SASRec(NUM_ITEMS, tiny_config(epochs=3, seed=8))
    other.fit(cyclic_sequences())
    return SASRec.joined([other, trained])


def test_joined_scores_are_the_sum_of_the_members_scores(trained: SASRec, joined: SASRec) -> None:
    other = joined.nets()[0]
    alone = SASRec(NUM_ITEMS, tiny_config())
    alone.net = other
    histories = [np.array([], dtype=np.int64), np.array([1, 2, 3]), np.arange(20) % NUM_ITEMS]
    expected = alone.score(histories) + trained.score(histories)
    torch.testing.assert_close(joined.score(histories), expected, rtol=1e-5, atol=1e-5)
    assert joined.user_vectors(histories).shape == (3, 2 * trained.config.hidden)
    assert joined.item_vectors().shape == (NUM_ITEMS, 2 * trained.config.hidden)
    assert joined.config.members == 2


def test_joined_state_round_trip_gives_identical_scores(joined: SASRec) -> None:
    tensors = load(save(joined.state_tensors()))
    assert "member1.item_emb.weight" in tensors and "item_emb.weight" in tensors
    restored = SASRec.from_state(joined.config_dict(), tensors)
    histories = [np.array([1, 2, 3]), np.arange(20) % NUM_ITEMS]
    torch.testing.assert_close(restored.score(histories), joined.score(histories), rtol=0, atol=0)
    tensors["member2.item_emb.weight"] = tensors["item_emb.weight"]
    with pytest.raises(ValueError, match=r"member2\.item_emb\.weight"):
        SASRec.from_state(joined.config_dict(), tensors)


def test_with_refit_joins_only_when_asked(trained: SASRec) -> None:
    refit = SASRec(NUM_ITEMS, tiny_config(epochs=2))
    served = trained.with_refit(refit)
    assert isinstance(served, SASRec) and served.nets() == [refit.net, trained.net]
    alone = SASRec(NUM_ITEMS, tiny_config(ensemble_refit=False))
    assert alone.with_refit(refit) is refit


def test_only_same_architecture_joins_and_a_joined_model_is_not_trained(joined: SASRec) -> None:
    with pytest.raises(ValueError, match="same architecture"):
        SASRec.joined([joined, SASRec(NUM_ITEMS, tiny_config(hidden=16))])
    with pytest.raises(ValueError, match="not trained further"):
        joined.fit(cyclic_sequences())


def test_gap_buckets_count_seconds_since_the_previous_item() -> None:
    times = np.array([100, 100, 130, 3000, 3000 + 86400 * 40])
    assert sasrec.gap_buckets(times).tolist() == [sasrec.FIRST_GAP, 0, 1, 2, 5]
    assert sasrec.gap_buckets(np.array([], dtype=np.int64)).tolist() == []


def gap_walks(users: int = 120, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Walks whose next step is +1 after an item that came fast (< 1 min), +2 after a slow one."""
    rng = np.random.default_rng(seed)
    histories, times = [], []
    for _ in range(users):
        item, clock = int(rng.integers(NUM_ITEMS)), 0
        fast = rng.random(10) < 0.5
        items, stamps = [], []
        for quick in fast:
            clock += 5 if quick else 7200
            items.append(item)
            stamps.append(clock)
            item = (item + (1 if quick else 2)) % NUM_ITEMS
        histories.append(np.array(items))
        times.append(np.array(stamps))
    return histories, times


def gap_accuracy(model: SASRec, histories: list[np.ndarray], times: list[np.ndarray]) -> float:
    """Share of walks whose top-1 is the true next step, given each walk but its last item."""
    inputs, stamps = [h[:-1] for h in histories], [t[:-1] for t in times]
    scores = model.score(inputs, stamps).clone()
    mask_items(scores, inputs)  # as the evaluator does: training leaves seen items out too
    ids = torch.topk(scores, 1).indices[:, 0]
    return float((ids == torch.tensor([h[-1] for h in histories])).float().mean())


def test_time_gaps_learn_what_the_time_between_items_tells() -> None:
    histories, times = gap_walks()
    timed = SASRec(NUM_ITEMS, tiny_config(time_gaps=True, epochs=40, patience=40))
    timed.fit(histories, times=times)
    plain = SASRec(NUM_ITEMS, tiny_config(time_gaps=False, epochs=40, patience=40))
    plain.fit(histories)
    test_histories, test_times = gap_walks(60, seed=1)
    assert gap_accuracy(timed, test_histories, test_times) >= 0.9
    assert gap_accuracy(plain, test_histories, test_times) <= 0.75  # a coin flip between +1, +2
    unknown = timed.user_vectors(test_histories[:3])  # no times: the "unknown" bucket
    assert not torch.allclose(unknown, timed.user_vectors(test_histories[:3], test_times[:3]))
    assert timed.uses_times and not plain.uses_times
    torch.testing.assert_close(  # a model without time_gaps ignores times
        plain.score(test_histories, test_times), plain.score(test_histories), rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="timestamps for a history"):
        timed.user_vectors(test_histories[:1], [test_times[0][:-1]])
    restored = SASRec.from_state(timed.config_dict(), load(save(timed.state_tensors())))
    torch.testing.assert_close(
        restored.score(test_histories, test_times), timed.score(test_histories, test_times)
    )


def _saved_with_config(trained: SASRec, directory: Path, **config: object) -> Path:
    """`trained` saved as a checkpoint whose meta.json config carries `config` as well."""
    save_checkpoint(trained, directory)
    meta = json.loads((directory / META).read_text())
    meta["config"].update(config)
    (directory / META).write_text(json.dumps(meta))
    return directory


def test_checkpoints_with_removed_options_off_still_load(trained: SASRec, tmp_path: Path) -> None:
    # Written before positions, ema_decay and recency_boost were removed, at their defaults.
    old = {"positions": "start", "ema_decay": 0.0, "recency_boost": 0.0, "recency_halflife": 8.0}
    loaded = load_checkpoint(_saved_with_config(trained, tmp_path / "old", **old)).model
    histories = [np.array([1, 2, 3]), np.arange(20) % NUM_ITEMS]
    torch.testing.assert_close(loaded.score(histories), trained.score(histories), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("field", "value"), [("positions", "end"), ("ema_decay", 0.998), ("recency_boost", 10.0)]
)
def test_checkpoints_with_removed_options_on_are_refused(
    trained: SASRec, tmp_path: Path, field: str, value: object
) -> None:
    directory = _saved_with_config(trained, tmp_path / field, **{field: value})
    with pytest.raises(CheckpointError, match=f"{field}={value!r} is a removed option"):
        load_checkpoint(directory)
    with pytest.raises(ValueError, match=field):
        SASRec.from_state({**trained.config_dict(), field: value}, trained.state_tensors())


@pytest.mark.parametrize("field", ["positions", "ema_decay", "recency_boost", "recency_halflife"])
def test_removed_options_are_no_config_fields(field: str) -> None:
    with pytest.raises(TypeError, match=field):
        tiny_config(**{field: 1})


def _score_without(model: SASRec, history: np.ndarray, items: list[int], target: int) -> float:
    """The target's score for the history with `items` removed."""
    kept = history[~np.isin(history, items)]
    return float(model.user_vectors([kept])[0] @ model.item_vectors()[target])


def test_explain_names_the_items_whose_removal_lowers_the_score_most(trained: SASRec) -> None:
    history, target = np.arange(3, 9), 9  # the cycle's next item after 8 is 9
    [reasons] = trained.explain(history, trained.item_vectors()[[target]], k=2)
    assert reasons and reasons[0] == 8  # the walk's last step says most about the next one
    full = _score_without(trained, history, [], target)
    drops = {int(i): full - _score_without(trained, history, [int(i)], target) for i in history}
    assert all(drops[i] > 0 for i in reasons)
    assert drops[reasons[0]] == pytest.approx(max(drops.values()), abs=1e-5)
    others = [i for i in drops if i not in reasons]
    rng = np.random.default_rng(0)
    assert drops[reasons[0]] > drops[int(rng.choice(others))]


def test_explain_looks_at_the_last_max_len_items_only(trained: SASRec) -> None:
    history = np.arange(20) % NUM_ITEMS  # max_len is 12: items 8..19 are encoded
    reasons = trained.explain(history, trained.item_vectors()[[20, 5]], k=12)
    assert all(set(r) <= set(range(8, 20)) for r in reasons)


def test_a_config_stored_before_time_gaps_loads_without_them() -> None:
    # time_gaps is on by default now; a checkpoint saved before the field existed had it off.
    model = SASRec(NUM_ITEMS, tiny_config(time_gaps=False))
    stored = {k: v for k, v in model.config_dict().items() if k != "time_gaps"}
    loaded = SASRec.from_state(stored, model.state_tensors())
    assert not loaded.uses_times and SASRecConfig().time_gaps


def test_time_budget_ends_an_epoch_mid_way() -> None:
    # One epoch over many users must not outlast max_seconds: the deadline cuts it.
    model = SASRec(NUM_ITEMS, tiny_config(epochs=5, batch_size=2, max_seconds=0.05))
    report = model.fit(cyclic_sequences(users=400))
    assert report["epochs"] == 1 and report["history"][0].get("partial") == 1.0
    whole = SASRec(NUM_ITEMS, tiny_config(epochs=1, batch_size=64)).fit(cyclic_sequences())
    assert "partial" not in whole["history"][0]
