"""Event weights in training: they travel through the splits and change what mf and sasrec learn;
without weights (or with every weight 1) nothing changes."""

from __future__ import annotations

import numpy as np
import torch

from models.base import Recommender
from models.data import Interactions, LeaveOneOut
from models.split import holdout_split, leave_one_out_rows, shift_back
from models.train import train_model
from models.zoo import build_model

VIEWED, PURCHASED = 0, 1  # every user views item 0 and purchases item 1
SASREC_FAST = {"hidden": 16, "blocks": 1, "epochs": 8, "max_len": 10, "threads": 1}
SASREC_FAST |= {"progress": False, "dropout": 0.0, "eval_every": 100}


def shop(users: int = 60, items: int = 30, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Histories of 5 random context items, then the viewed and the purchased item in either
    order (half the users each), and the context of each user (for probing)."""
    rng = np.random.default_rng(seed)
    histories = []
    for user in range(users):
        context = rng.choice(np.arange(2, items), size=5, replace=False)
        pair = [VIEWED, PURCHASED] if user % 2 else [PURCHASED, VIEWED]
        histories.append(np.concatenate([context, pair]).astype(np.int64))
    return histories, list(range(users))


def purchase_weights(histories: list[np.ndarray], purchase: float) -> list[np.ndarray]:
    """Weight 1 for every event, `purchase` for the purchased item's."""
    return [np.where(h == PURCHASED, purchase, 1.0) for h in histories]


def purchase_lead(model: Recommender, histories: list[np.ndarray]) -> float:
    """Mean score of the purchased item minus the viewed one, given each user's context."""
    contexts = [h[:5] for h in histories]
    with torch.inference_mode():
        scores = model.score(contexts)
    return float((scores[:, PURCHASED] - scores[:, VIEWED]).mean())


def fitted(name: str, overrides: dict[str, object], purchase: float | None) -> Recommender:
    """`name` fit on the shop, with the given purchase weight (None: no weights)."""
    histories, _ = shop()
    torch.manual_seed(0)
    model = build_model(name, 30, overrides)
    weights = None if purchase is None else purchase_weights(histories, purchase)
    model.fit(histories, None, None, weights)
    return model


def test_mf_purchase_weight_ranks_the_purchase_higher() -> None:
    histories, _ = shop()
    light = fitted("mf", {"factors": 8, "iterations": 4}, 1.0)
    heavy = fitted("mf", {"factors": 8, "iterations": 4}, 5.0)
    assert abs(purchase_lead(light, histories)) < 0.02  # symmetric data, equal weights
    assert purchase_lead(heavy, histories) > purchase_lead(light, histories) + 0.03


def test_mf_weights_of_one_change_nothing() -> None:
    plain = fitted("mf", {"factors": 8, "iterations": 3}, None)
    ones = fitted("mf", {"factors": 8, "iterations": 3}, 1.0)
    assert torch.equal(plain.item_vectors(), ones.item_vectors())


def test_sasrec_purchase_weight_ranks_the_purchase_higher() -> None:
    histories, _ = shop()
    light = fitted("sasrec", SASREC_FAST, 1.0)
    heavy = fitted("sasrec", SASREC_FAST, 5.0)
    assert purchase_lead(heavy, histories) > purchase_lead(light, histories) + 0.1


def test_sasrec_weights_of_one_change_nothing() -> None:
    plain = fitted("sasrec", {**SASREC_FAST, "epochs": 2}, None)
    ones = fitted("sasrec", {**SASREC_FAST, "epochs": 2}, 1.0)
    assert torch.allclose(plain.item_vectors(), ones.item_vectors(), atol=1e-5)


def test_weights_must_be_positive_and_fit_their_histories() -> None:
    histories, _ = shop(users=4)
    for name, overrides in (("mf", {"factors": 4}), ("sasrec", SASREC_FAST)):
        model = build_model(name, 30, overrides)
        short = [w[:-1] for w in purchase_weights(histories, 2.0)]
        try:
            model.fit(histories, None, None, short)
        except ValueError as error:
            assert "length" in str(error)
        else:
            raise AssertionError(f"{name} took weights of the wrong length")
    model = build_model("sasrec", 30, SASREC_FAST)
    zero = [np.zeros(len(h)) for h in histories]
    try:
        model.fit(histories, None, None, zero)
    except ValueError as error:
        assert "> 0" in str(error)
    else:
        raise AssertionError("sasrec took zero weights")


def test_holdout_split_keeps_each_pairs_largest_weight() -> None:
    # user a: views x, views y, purchases x (weight 5), views z; user b: three views
    users = np.array([0, 0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 0, 2, 0, 1, 2])
    times = np.arange(7) * 1_000_000
    weights = np.array([1.0, 1.0, 5.0, 2.0, 1.0, 1.0, 1.0])
    split = holdout_split(["a", "b"], ["x", "y", "z"], users, items, times, 2, weights)
    assert [h.tolist() for h in split.train] == [[0, 1], [0, 1]]
    assert split.train_weights is not None and split.val_weights is not None
    assert [w.tolist() for w in split.train_weights] == [[5.0, 1.0], [1.0, 1.0]]
    assert split.val_weights.tolist() == [2.0, 1.0]
    assert split.train_plus_val_weights() is not None
    plain = holdout_split(["a", "b"], ["x", "y", "z"], users, items, times, 2)
    assert plain.train_weights is None and plain.train_plus_val_weights() is None
    assert plain.fingerprint() == split.fingerprint()
    back = shift_back(split)
    assert back.train_weights is not None and back.val_weights is not None
    assert back.val_weights.tolist() == [1.0, 1.0]


def test_weight_column_travels_through_leave_one_out_rows() -> None:
    rows = Interactions(
        user_ids=np.array(["u"] * 4 + ["v"] * 4),
        item_ids=np.array(["1", "2", "3", "4"] * 2),
        timestamps=np.array([4, 3, 2, 1, 1, 2, 3, 4]),
        weights=np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
    )
    split = LeaveOneOut.from_rows(*leave_one_out_rows(rows))
    assert split.train_weights is not None and split.val_weights is not None
    assert [w.tolist() for w in split.train_weights] == [[4.0, 3.0], [5.0, 6.0]]
    assert split.val_weights.tolist() == [2.0, 7.0]
    unweighted = Interactions(rows.user_ids, rows.item_ids, rows.timestamps)
    assert LeaveOneOut.from_rows(*leave_one_out_rows(unweighted)).train_weights is None


def test_train_model_passes_the_weights_to_both_fits() -> None:
    histories, _ = shop()
    tails = [np.array([2 + u % 28, 2 + (u + 7) % 28]) for u in range(len(histories))]
    extended = [np.concatenate(p) for p in zip(histories, tails, strict=True)]
    data = LeaveOneOut.from_rows(*_rows(extended))
    assert data.item_ids.ids == [str(i) for i in range(30)]  # indices are the items
    data.train_weights = purchase_weights(data.train, 5.0)
    data.val_weights = np.where(data.val == PURCHASED, 5.0, 1.0)
    weighted = train_model("mf", data, {"factors": 8, "iterations": 3})
    data.train_weights = data.val_weights = None
    plain = train_model("mf", data, {"factors": 8, "iterations": 3})
    assert purchase_lead(weighted.fitted, histories) > purchase_lead(plain.fitted, histories)
    assert purchase_lead(weighted.model, histories) > purchase_lead(plain.model, histories)


def _rows(histories: list[np.ndarray]) -> tuple[Interactions, Interactions, Interactions]:
    """The histories as rows, split leave-one-out (the last two items: val and test)."""
    users = np.concatenate([[str(u)] * len(h) for u, h in enumerate(histories)])
    items = np.concatenate([h.astype(str) for h in histories])
    stamps = np.concatenate([np.arange(len(h)) for h in histories]).astype(np.int64)
    return leave_one_out_rows(Interactions(users, items, stamps))
