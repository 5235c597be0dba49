"""Data-parallel training of the sequence models (SASRec, GRU4Rec) with torch.distributed.

Launched by torchrun, one process per rank (gloo on the CPU, nccl on CUDA):

    python -m torch.distributed.run --nproc_per_node 2 -m models.distributed \
        --model sasrec --data ml1m-half-loo --out var/models/sasrec-ddp --set threads=1

Every rank runs the same `models.train.train_model` (fit, then refit). While a process group
is initialised, `EpochTrainer` (models.sasrec_train) asks `data_parallel()` for the rank's part:
each epoch's batches are drawn in the same order on every rank (the same seed) and rank r takes
every world-th one; the network runs wrapped in DistributedDataParallel (gradients averaged, so
the weights stay identical); rank 0 validates and broadcasts the numbers, so every rank takes
the same early-stopping decisions, and rank 0 alone writes the checkpoint, a normal one.
(`train_model`'s closing evaluations of the fitted and served model run on every rank: the
same numbers, redundant work, kept so that the protocol stays one function.)
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


class DataParallel:
    """This process's rank among `world` training processes, and what that changes."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates and saves."""
        return self.rank == 0

    def shard(self, batches: Sequence[T]) -> list[T]:
        """This rank's batches: every world-th, after dropping the last len % world ones, so
        that every rank takes as many steps (each step is a collective all-reduce)."""
        usable = len(batches) - len(batches) % self.world
        return list(batches[self.rank : usable : self.world])

    def steps(self, batches: int) -> int:
        """Optimiser steps per epoch on each rank when an epoch has `batches` batches."""
        return max(batches // self.world, 1)

    def wrap(self, net: nn.Module, seed: int) -> nn.Module:
        """`net` in DistributedDataParallel (rank 0's weights broadcast); dropout seeded per
        rank, so that ranks do not drop the same units of different users."""
        device = next(net.parameters()).device
        ids = [device] if device.type == "cuda" else None
        # The buffers (empty_user, content) are equal on every rank and fixed during training:
        # no per-step broadcast of them.
        wrapped = DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)
        torch.manual_seed(seed + self.rank)
        return wrapped

    def from_main(self, values: Sequence[float]) -> list[float]:
        """Rank 0's `values` on every rank (a collective: the other ranks wait for rank 0)."""
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()


def data_parallel() -> DataParallel | None:
    """The running data-parallel group (an initialised process group of 2+), else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DataParallel(dist.get_rank(), dist.get_world_size())


def init_process_group(device: str = "auto", timeout_s: float = 1800.0) -> DataParallel:
    """Join the group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
    environment): nccl with each local rank on its own GPU, else gloo."""
    cuda = device != "cpu" and torch.cuda.is_available() and device.startswith(("auto", "cuda"))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return DataParallel(dist.get_rank(), dist.get_world_size())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The launcher's options: those of `recsys train` that a data-parallel fit takes."""
    parser = argparse.ArgumentParser(
        prog="python -m torch.distributed.run --nproc_per_node N -m models.distributed",
        description="Data-parallel training of sasrec or gru4rec; rank 0 saves the checkpoint.",
    )
    parser.add_argument("--model", required=True, help="sasrec or gru4rec")
    parser.add_argument("--data", required=True, help="a split directory or ratings file")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="key=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-refit", dest="refit", action="store_false")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--validation-only", action="store_true", help="a split directory's train and val only"
    )
    parser.add_argument("--report", help="write rank 0's training report (JSON) here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train on every rank, save on rank 0: rank 0's report, None on the others."""
    from models.data import load_train_val, resolve_data_path
    from models.split import load_dataset
    from models.train import save_trained, train_model
    from models.zoo import parse_overrides

    args = parse_args(argv)
    if args.model not in ("sasrec", "gru4rec"):
        raise SystemExit(
            f"--model: data-parallel training covers sasrec and gru4rec, not {args.model}"
        )
    overrides = parse_overrides(args.settings)
    group = init_process_group(overrides.get("device", "cpu"))
    try:
        path = resolve_data_path(args.data)
        data = load_train_val(path) if args.validation_only else load_dataset(path)
        trained = train_model(
            args.model, data, overrides, seed=args.seed, refit=args.refit, progress=group.is_main
        )
        report = None
        if group.is_main:
            save_trained(trained.model, trained.report, data, args.out, overwrite=args.overwrite)
            report = trained.report.to_json()
            if args.report:
                Path(args.report).write_text(json.dumps(report, indent=1, default=str))
            print(f"val {trained.report.val}\ntest {trained.report.test}\ncheckpoint: {args.out}")
        dist.barrier()
        return report
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
