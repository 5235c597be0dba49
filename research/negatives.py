"""Negative feedback in training, on VALIDATION only: leave dislikes out, or train on them?

MovieLens ratings stand in for a shop's feedback, by the service's rule (app.ingest.meaning):
a rating >= 4 is positive, <= 2 a dislike, 3 neutral, which is model input like a positive
(`--neutral out` leaves the 3s out instead). The inputs form the split (5-core, leave-one-out by
time, as models.split.build_leave_one_out; the test items are dropped, never scored), so every
option is scored on the same validation targets: each user's second-to-last input item. A
user's dislikes before that item's time are the negatives. Options, for `mf`:

- `as-positives`: dislikes are ordinary interactions (what retraining did before, reading every
  rating as an interaction); the fold-in reads them too;
- `leave-out`: dislikes are not trained on (option a, the one retraining uses).

Option b, `negative-K` (each dislike a zero target of iALS with confidence K, on top of the
unobserved weight, through a weight of -K), was measured with K = 0.3, 1, 3, 10 and was no
better than `leave-out` (results/negatives.md), so its code was deleted from models/mf.py and
here; its rows stay in results/negatives.jsonl.

Scoring is what serving does: the user vector is folded in from the model input (the likes;
`as-positives` the dislikes too), and the dislikes are masked with the history (serving masks
them). Validation NDCG@10 / HR@10 under full ranking. Usage:
  nice python -m research.negatives [--data ml-1m-subset-cs100/ratings.dat.gz]
     [--options as-positives,leave-out] [--neutral in|out] [--set field=value] [--tag T]
Appends one JSON line per option to research/results/negatives.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import EvalSet, Interactions, LeaveOneOut, load_interactions, resolve_data_path
from models.metrics import evaluate_vectors
from models.split import build_leave_one_out
from models.zoo import build_model, parse_overrides
from research.common import RESULTS, rounded

HEADLINE = ("ndcg@10", "hr@10")
OPTIONS = ("as-positives", "leave-out")


@dataclass
class Feedback:
    """The likes' split (test dropped) and each user's earlier dislikes (item indices)."""

    split: LeaveOneOut
    dislikes: list[np.ndarray]  # per user, chronological


def rating_polarity(values: np.ndarray, liked: float = 4.0, disliked: float = 2.0) -> np.ndarray:
    """+1 for a like (>= liked), -1 for a dislike (<= disliked), 0 neutral: (N,) int8."""
    return np.where(values >= liked, 1, np.where(values <= disliked, -1, 0)).astype(np.int8)


def load_feedback(path: str | Path, neutral_in: bool = True) -> Feedback:
    """Split the likes (with the neutral ratings unless `neutral_in` is False); keep each
    user's dislikes of known items before their validation item."""
    rows = load_interactions(resolve_data_path(path))
    if rows.values is None:
        raise ValueError(f"{path}: no rating column")
    polarity = rating_polarity(rows.values)
    split = build_leave_one_out(rows.take(polarity >= (0 if neutral_in else 1)))
    split.test = np.full(split.num_users, -1, dtype=np.int64)  # never scored here
    split.test_times = None
    return Feedback(split, _dislikes(rows.take(polarity < 0), split))


def _dislikes(rows: Interactions, split: LeaveOneOut) -> list[np.ndarray]:
    """Per split user, the disliked known items before the validation item, by time."""
    users = split.user_ids.indices(rows.user_ids, default=-1)
    items = split.item_ids.indices(rows.item_ids, default=-1)
    val_times = split.val_times if split.val_times is not None else np.zeros(split.num_users)
    known = (users >= 0) & (items >= 0)
    before = known & (rows.timestamps < val_times[np.maximum(users, 0)])
    order = np.lexsort((rows.timestamps[before], users[before]))
    kept_users, kept_items = users[before][order], items[before][order]
    cuts = np.cumsum(np.bincount(kept_users, minlength=split.num_users))[:-1]
    return [h.astype(np.int64) for h in np.split(kept_items, cuts)]


def training_input(option: str, data: Feedback) -> list[np.ndarray]:
    """The train (and fold-in) histories of one option."""
    likes, dislikes = data.split.train, data.dislikes
    if option == "leave-out":
        return list(likes)
    if option == "as-positives":  # dislikes first: the recency boost stays on the likes
        return [np.concatenate([d, h]) for d, h in zip(dislikes, likes, strict=True)]
    raise ValueError(f"unknown option {option!r}; known: {', '.join(OPTIONS)}")


def run_option(
    option: str, data: Feedback, model_name: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Fit with early stopping on validation; score the fold-in with dislikes masked."""
    split = data.split
    train = training_input(option, data)
    model = build_model(model_name, split.num_items, overrides)
    started = time.perf_counter()
    fit = model.fit(train, EvalSet(train, split.val))
    seconds = time.perf_counter() - started
    masked = [np.concatenate([d, h]) for d, h in zip(data.dislikes, split.train, strict=True)]
    with torch.inference_mode():
        users = model.user_vectors(train)
        metrics = evaluate_vectors(
            users,
            model.item_vectors(),
            EvalSet(masked, split.val),
            item_popularity=split.item_popularity(),
        )
    return {
        "option": option,
        "model": model_name,
        "overrides": overrides,
        "val": rounded(metrics, HEADLINE),
        "best_epoch": fit.get("best_epoch"),
        "fit_seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run every option and append its row."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="ml-1m-subset-cs100/ratings.dat.gz")
    parser.add_argument("--model", default="mf")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--set", action="append", default=[], help="config field=value")
    parser.add_argument("--neutral", choices=("in", "out"), default="in", help="3s as input?")
    parser.add_argument("--tag", default="run")
    parser.add_argument("--log", type=Path, default=RESULTS / "negatives.jsonl")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    data = load_feedback(args.data, args.neutral == "in")
    sizes = {
        "users": data.split.num_users,
        "items": data.split.num_items,
        "likes": int(sum(len(h) for h in data.split.train)),
        "dislikes": int(sum(len(d) for d in data.dislikes)),
    }
    for option in args.options.split(","):
        row = {"tag": args.tag, "data": str(args.data), "neutral": args.neutral, **sizes}
        row |= run_option(option, data, args.model, overrides)
        row["date"] = time.strftime("%Y-%m-%d %H:%M")
        with args.log.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
