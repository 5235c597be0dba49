"""Probe: recall@10 of the IVF index (models.ann) on a trained checkpoint's item vectors, by
the Euclidean transform's norm headroom and nprobe, against plain inner-product cells.

Usage: nice python -m research.probe_ann_headroom CHECKPOINT_DIR EVENTS_CSV [--users 1000]
The queries are the vectors of the first --users users of the events file (grouped by user,
as `recsys data synth` writes it). Prints one JSON line per setting; research/results/
ann_headroom.md holds a run's lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import faiss
import numpy as np
import torch

import models.ann as ann
from models.checkpoint import load_checkpoint
from models.synth import first_histories


def exact_top(items: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact top k item rows per query."""
    return torch.topk(torch.from_numpy(queries) @ torch.from_numpy(items).T, k).indices.numpy()


def main() -> None:
    """Build each index, print recall per nprobe."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("events", type=Path)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    items = checkpoint.model.item_vectors().detach().float().numpy()
    found = first_histories(args.events, checkpoint.item_ids.to_json(), args.users)
    queries = checkpoint.model.user_vectors(found).detach().float().numpy()
    exact = exact_top(items, queries)
    norms = np.linalg.norm(items, axis=1)
    print(
        json.dumps(
            {
                "items": len(items),
                "norm_percentiles_1_50_99_100": np.percentile(norms, [1, 50, 99, 100])
                .round(4)
                .tolist(),
            }
        )
    )
    for headroom in (1.0, 2.0):
        ann.NORM_HEADROOM = headroom
        index = ann.ItemIndex.build(items, nprobe=256)
        for nprobe in (256, 512):
            index.nprobe = nprobe
            recall = ann.recall_at_k(exact, index.search(queries, 10), 10)
            print(
                json.dumps(
                    {
                        "cells": "euclidean",
                        "headroom": headroom,
                        "nprobe": nprobe,
                        "recall@10": round(recall, 4),
                    }
                )
            )
    dim, nlist = items.shape[1], ann.default_nlist(len(items))
    plain = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    plain.train(items)
    plain.add(items)
    for nprobe in (64, 256):
        plain.nprobe = nprobe
        _, rows = plain.search(queries, 10)
        print(
            json.dumps(
                {
                    "cells": "inner product",
                    "nprobe": nprobe,
                    "recall@10": round(ann.recall_at_k(exact, rows, 10), 4),
                }
            )
        )


if __name__ == "__main__":
    main()
