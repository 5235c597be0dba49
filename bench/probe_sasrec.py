"""Validation-only probes of what SASRec's accuracy on ml1m-half-loo rests on.

  python -m bench.probe_sasrec ties --seed 0
      Fit the committed config while the items of a user that share a timestamp are put in a
      random order at every epoch (the split keeps same-second ratings in file order); compare
      its best validation NDCG@10 with the plain fit's (`bench.tune_sasrec`).
  python -m bench.probe_sasrec gaps --seed 0
      Fit the committed config with one more input embedding per item: the bucket of the time
      since the user's previous item (same second, a minute, an hour, a day, a month, more),
      as TiSASRec uses intervals; only the history's own times, never the target's. Runs
      `SASRecConfig.time_gaps`; the numbers logged before it existed came from the probe's own
      copy of that model, initialised in another order, so reruns differ by seed-level noise.
  python -m bench.probe_sasrec gaps-protocol --seed 0
      The same model under bench.protocol_check's protocol: on the split shifted one item back,
      fit with early stopping, then refit for the best epoch count; both scored on the real
      validation items (compare with bench/results/protocol_sasrec.json), and the two joined
      (their scores added, as `ensemble_refit` serves them).
  python -m bench.probe_sasrec ensemble --seed 0
      bench.protocol_check's fit and refit of the plain config, then the refit's and the
      early-stopped model's scores mixed, w * early-stopped + (1 - w) * refit, for w from 0 to 1,
      scored on the real validation items.
  python -m bench.probe_sasrec split --checkpoint var/ckpt/sasrec
      A trained checkpoint's validation NDCG@10 for the users whose validation item shares its
      second with their last training item, and for the others.
  python -m bench.probe_sasrec prior --checkpoint var/ckpt/sasrec
      Add beta * log(1 + the item's interactions in the W seconds before the user's last
      training event) to a trained checkpoint's scores and print validation NDCG@10 per W, beta.

Only train and val are read (`load_train_val`): the test file is never opened.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models.sasrec as sasrec
from bench.protocol_check import shifted
from models.checkpoint import load_checkpoint
from models.data import EvalSet, LeaveOneOut, default_data_dir, load_train_val
from models.metrics import evaluate
from models.sasrec import SASRec, SASRecConfig


def train_times(data: LeaveOneOut) -> tuple[list[np.ndarray], np.ndarray]:
    """Per user, the timestamps of `data.train` in its order; and the flat (user, item, time)."""
    times = data.train_times
    assert times is not None, "the loader gave no timestamps"
    users = np.repeat(np.arange(len(times)), [len(t) for t in times])
    return times, np.stack([users, np.concatenate(data.train), np.concatenate(times)])


class TieShuffled(SASRec):
    """SASRec whose training sequences have their same-timestamp items permuted every epoch."""

    times: list[np.ndarray]

    def _train_epoch(self, train: list[np.ndarray], *args: Any, **kwargs: Any) -> float:
        rng: np.random.Generator = args[3]
        shuffled = [
            s[np.lexsort((rng.random(len(s)), t))] for s, t in zip(train, self.times, strict=True)
        ]
        return super()._train_epoch(shuffled, *args, **kwargs)


def ties(path: Path, seed: int) -> dict[str, Any]:
    """Best validation of the committed config trained with same-second items shuffled."""
    data = load_train_val(path)
    model = TieShuffled(data.num_items, SASRecConfig(seed=seed, threads=1, progress=False))
    model.times, _ = train_times(data)
    return best_of("ties", seed, model.fit(data.train, data.val_set()))


def best_of(probe: str, seed: int, report: dict[str, Any]) -> dict[str, Any]:
    """A fit report's best validation, as a probe's result."""
    best = report["best"]
    return {
        "probe": probe,
        "seed": seed,
        "val_ndcg@10": round(best["val_ndcg@10"], 4),
        "val_hr@10": round(best["val_hr@10"], 4),
        "best_epoch": report["best_epoch"],
    }


def gaps(path: Path, seed: int) -> dict[str, Any]:
    """Best validation of the committed config with `time_gaps` (gap-bucket input embeddings)."""
    data = load_train_val(path)
    config = SASRecConfig(seed=seed, threads=1, progress=False, time_gaps=True)
    model = SASRec(data.num_items, config)
    return best_of("gaps", seed, model.fit(data.train, data.val_set(), times=data.train_times))


class Mixed:
    """w * one model's scores + (1 - w) * another's (both see the same histories)."""

    def __init__(self, first: SASRec, second: SASRec, weight: float) -> None:
        self.first, self.second, self.weight = first, second, weight
        self.num_items = first.num_items

    def score(self, histories: Any, times: Any = None) -> torch.Tensor:
        first, second = self.first.score(histories, times), self.second.score(histories, times)
        return self.weight * first + (1 - self.weight) * second


def fit_and_refit(data: LeaveOneOut, config: SASRecConfig) -> tuple[SASRec, SASRec, int]:
    """bench.protocol_check's two fits, kept apart: early-stopped on val, then on train + val."""
    fitted = SASRec(data.num_items, config)
    report = fitted.fit(data.train, data.val_set(), times=data.train_times)
    refit = SASRec(data.num_items, replace(config, epochs=report["best_epoch"]))
    refit.fit(data.train_plus_val(), None, times=data.train_plus_val_times())
    return fitted, refit, report["best_epoch"]


def gaps_protocol(path: Path, seed: int) -> dict[str, Any]:
    """protocol_check for the gap model: shifted fit, no-refit, refit and joined on real val."""
    data = shifted(load_train_val(path))
    config = SASRecConfig(
        seed=seed, threads=2, progress=False, ensemble_refit=False, time_gaps=True
    )
    fitted, refit, best_epoch = fit_and_refit(data, config)
    real_val = data.test_set()
    scores = {
        "shifted_val": evaluate(fitted, data.val_set(), ks=(10,)),
        "no_refit": evaluate(fitted, real_val, ks=(10,)),
        "refit": evaluate(refit, real_val, ks=(10,)),
        "joined": evaluate(Mixed(fitted, refit, 0.5), real_val, ks=(10,)),
    }
    return {
        "probe": "gaps-protocol",
        "seed": seed,
        "best_epoch": best_epoch,
        **{name: round(m["ndcg@10"], 4) for name, m in scores.items()},
    }


def ensemble(path: Path, seed: int) -> dict[str, Any]:
    """Shifted fit and refit of the plain config; their score mixes scored on real val."""
    data = shifted(load_train_val(path))
    config = SASRecConfig(seed=seed, threads=2, progress=False, ensemble_refit=False)
    fitted, refit, best_epoch = fit_and_refit(data, config)
    mixes = {
        f"w={w}": round(evaluate(Mixed(fitted, refit, w), data.test_set(), ks=(10,))["ndcg@10"], 4)
        for w in (0.0, 0.25, 0.5, 0.75, 1.0)
    }
    return {"probe": "ensemble", "seed": seed, "best_epoch": best_epoch, **mixes}


def windowed_counts(flat: np.ndarray, at: np.ndarray, window: float, items: int) -> np.ndarray:
    """(U, I): per user, each item's interactions in (at[u] - window, at[u]]."""
    _, item, time = flat
    order = np.lexsort((time, item))
    item, time = item[order], time[order]
    bounds = np.searchsorted(item, np.arange(items + 1))
    counts = np.zeros((len(at), items), dtype=np.float32)
    for i in range(items):
        t = time[bounds[i] : bounds[i + 1]]
        counts[:, i] = np.searchsorted(t, at, "right") - np.searchsorted(t, at - window, "right")
    return counts


class FixedScores:
    """A Scorer over precomputed (U, I) scores, found by the identity of each history."""

    def __init__(self, scores: torch.Tensor, histories: list[np.ndarray]) -> None:
        self.scores, self.num_items = scores, scores.shape[1]
        self.rows = {id(h): row for row, h in enumerate(histories)}

    def score(self, histories: Any, times: Any = None) -> torch.Tensor:
        return self.scores[[self.rows[id(h)] for h in histories]]


def prior(path: Path, checkpoint: Path) -> list[dict[str, float]]:
    """Validation NDCG@10 of checkpoint scores plus the windowed-popularity prior."""
    data = load_train_val(path)
    model = load_checkpoint(checkpoint).model
    _, flat = train_times(data)
    last = np.zeros(len(data.user_ids), dtype=np.int64)
    np.maximum.at(last, flat[0], flat[2])
    valid = data.val_set()
    with torch.inference_mode():
        scores = model.user_vectors(valid.histories) @ model.item_vectors().T  # (U, I)
    out = []
    for days in (1, 7, 30):
        counts = windowed_counts(flat, last, days * 86400, data.num_items)
        log_counts = torch.from_numpy(np.log1p(counts))
        for beta in (0.0, 0.1, 0.25, 0.5, 1.0):
            scorer = FixedScores(scores + beta * log_counts, valid.histories)
            metrics = evaluate(scorer, valid, ks=(10,))
            out.append({"days": days, "beta": beta, "val_ndcg@10": round(metrics["ndcg@10"], 4)})
    return out


def split(path: Path, checkpoint: Path) -> dict[str, Any]:
    """Validation NDCG@10 of a checkpoint, apart for same-second and later validation items."""
    data = load_train_val(path)
    times, _ = train_times(data)
    assert data.val_times is not None
    same = data.val_times == np.array([t[-1] for t in times])
    model = load_checkpoint(checkpoint).model
    out: dict[str, Any] = {"probe": "split", "same_second_share": round(float(same.mean()), 4)}
    for name, users in (("same_second", same), ("later", ~same)):
        rows_of = np.flatnonzero(users)
        subset = EvalSet([data.train[u] for u in rows_of], data.val[rows_of])
        out[name] = round(evaluate(model, subset, ks=(10,))["ndcg@10"], 4)
    return out


def main() -> None:
    """Run one probe and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "probe", choices=("ties", "gaps", "gaps-protocol", "ensemble", "prior", "split")
    )
    parser.add_argument("--data", default=str(default_data_dir() / "ml1m-half-loo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="var/ckpt/sasrec")
    parser.add_argument("--edges", default="", help="gaps: bucket edges in seconds, e.g. 1,60")
    args = parser.parse_args()
    path = Path(args.data)
    if args.edges:  # models.sasrec reads these module constants when a gap model is built
        edges = np.array([int(edge) for edge in args.edges.split(",")])
        first, unknown = len(edges) + 1, len(edges) + 2
        vars(sasrec).update(GAP_EDGES=edges, FIRST_GAP=first, UNKNOWN_GAP=unknown)
    result: Any
    if args.probe in ("prior", "split"):
        result = (prior if args.probe == "prior" else split)(path, Path(args.checkpoint))
    else:
        probes = {"ties": ties, "gaps": gaps, "gaps-protocol": gaps_protocol, "ensemble": ensemble}
        result = probes[args.probe](path, args.seed)
    if isinstance(result, dict) and args.probe.startswith("gaps"):
        result["edges"] = sasrec.GAP_EDGES.tolist()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
