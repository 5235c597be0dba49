"""How close NeuMF's fold-in comes to its learned user embeddings, on VALIDATION only.

Usage:
  nice python -m research.neumf_foldin --set threads=1 --set lr=0.01 --fold 10:0.05,30:0.05
Fits NeuMF on train with early stopping on val (scored by the training users' learned
embeddings), then, for the first `--users` validation users, scores their validation items
from the learned embeddings (`NeuMF.learned_users`) and from their histories folded in with
each `--fold steps:lr` pair (the config's fold_steps and fold_lr; the item side as trained):
NDCG@10 of both and the mean overlap of their top-10 lists. Appends one JSON line per fold
setting to research/results/neumf_foldin.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import mask_items
from models.data import EvalSet
from models.metrics import target_ranks
from models.neumf import NeuMF
from models.zoo import build_model, parse_overrides
from research.common import RESULTS, load_validation


def fold_settings(text: str) -> list[tuple[int, float]]:
    """`steps:lr,steps:lr` -> [(steps, lr), ...]."""
    pairs = [part.split(":") for part in text.split(",") if part.strip()]
    return [(int(steps), float(lr)) for steps, lr in pairs]


def ranked(scores: torch.Tensor, users: EvalSet) -> tuple[float, torch.Tensor]:
    """NDCG@10 of the users' targets under `scores` (U, I), history masked, and the top 10."""
    masked = scores.clone()
    mask_items(masked, users.histories)
    ranks = target_ranks(masked, torch.as_tensor(users.targets)).double()
    ndcg = torch.where(ranks <= 10, 1 / torch.log2(ranks + 1), 0.0).mean()
    return float(ndcg), torch.topk(masked, 10, dim=1).indices


def compare(model: NeuMF, users: EvalSet, learned: torch.Tensor) -> dict[str, Any]:
    """Learned against folded-in users: NDCG@10 of each, top-10 overlap, fold-in seconds."""
    start = time.perf_counter()
    folded = model.score(users.histories)
    seconds = time.perf_counter() - start
    ndcg_learned, top_learned = ranked(model.score_vectors(learned), users)
    ndcg_folded, top_folded = ranked(folded, users)
    overlap = [
        len(set(a) & set(b)) / 10
        for a, b in zip(top_learned.tolist(), top_folded.tolist(), strict=True)
    ]
    return {
        "val_ndcg@10_learned": round(ndcg_learned, 4),
        "val_ndcg@10_foldin": round(ndcg_folded, 4),
        "top10_overlap": round(float(np.mean(overlap)), 4),
        "fold_seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Fit once, then compare every fold-in setting on validation; one log line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], help="field=value (repeat)")
    parser.add_argument("--fold", default="10:0.05,30:0.05", help="steps:lr pairs")
    parser.add_argument("--users", type=int, default=500, help="validation users compared")
    parser.add_argument("--data", default="ml1m-half-loo")
    parser.add_argument("--log", type=Path, default=RESULTS / "neumf_foldin.jsonl")
    args = parser.parse_args(argv)
    data = load_validation(args.data)
    model = build_model("neumf", data.num_items, parse_overrides(args.set))
    assert isinstance(model, NeuMF)
    report = model.fit(data.train, data.val_set())
    assert model.learned_users is not None  # validation users are the training users
    val = data.val_set()
    users = EvalSet(val.histories[: args.users], val.targets[: args.users])
    for steps, lr in fold_settings(args.fold):
        model.config = dataclasses.replace(model.config, fold_steps=steps, fold_lr=lr)
        row = {
            "config": model.config_dict(),
            "users": len(users),
            "best_epoch": report["best_epoch"],
            "val_ndcg@10_learned_all": round(float(report["best_val_ndcg@10"]), 4),
            **compare(model, users, model.learned_users[: args.users]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        with args.log.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
