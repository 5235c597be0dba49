"""Data-parallel training (models.distributed): 2 gloo processes on the CPU on tiny generated
data train the same weights on both ranks, save a checkpoint that loads, and validate within a
tolerance of one process with the same total batch; the torchrun launcher end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data import EvalSet
from models.distributed import DataParallel
from models.gru4rec import GRU4Rec, GRU4RecConfig
from models.metrics import evaluate
from models.sasrec import SASRec, SASRecConfig

NUM_ITEMS, BATCH = 30, 8
REPO = Path(__file__).resolve().parents[2]


def noisy_walks(users: int = 100, seed: int = 0) -> list[np.ndarray]:
    """Walks 0 -> 1 -> ... with a random jump at 20% of the steps: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    walks = []
    for _ in range(users):
        items = [int(rng.integers(NUM_ITEMS))]
        for _ in range(int(rng.integers(5, 16))):
            jump = rng.random() < 0.2
            items.append(int(rng.integers(NUM_ITEMS)) if jump else (items[-1] + 1) % NUM_ITEMS)
        walks.append(np.array(items, dtype=np.int64))
    return walks


def split() -> tuple[list[np.ndarray], EvalSet]:
    """Train histories and the validation set (each walk's last item)."""
    walks = noisy_walks()
    return [w[:-1] for w in walks], EvalSet(
        [w[:-1] for w in walks], np.array([w[-1] for w in walks])
    )


def config(batch_size: int, **overrides: object) -> dict[str, object]:
    """A tiny SASRec config's fields."""
    base: dict[str, object] = dict(
        max_len=12, hidden=32, heads=2, lr=1e-2, batch_size=batch_size, epochs=8,
        patience=8, eval_every=4, time_gaps=False, progress=False, seed=5, threads=1,
    )  # fmt: skip
    return {**base, **overrides}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_rank(rank: int, world: int, port: int, out: str, model_name: str) -> None:
    """One rank: join the gloo group, fit, write this rank's weights; rank 0 the checkpoint."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = build(model_name, BATCH)
        train, valid = split()
        model.fit(train, valid)
        save_file(model.state_tensors(), str(Path(out) / f"rank{rank}.safetensors"))
        if rank == 0:
            save_checkpoint(model, Path(out) / "checkpoint")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def build(model_name: str, batch_size: int) -> SASRec | GRU4Rec:
    """A fresh tiny model."""
    if model_name == "gru4rec":
        fields = config(batch_size)
        for name in ("heads", "time_gaps"):
            fields.pop(name)
        return GRU4Rec(NUM_ITEMS, GRU4RecConfig(**fields))  # type: ignore[arg-type]
    return SASRec(NUM_ITEMS, SASRecConfig(**config(batch_size)))  # type: ignore[arg-type]


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
def test_two_gloo_ranks_train_one_model_as_good_as_one_process(
    tmp_path: Path, model_name: str
) -> None:
    mp.spawn(train_rank, args=(2, free_port(), str(tmp_path), model_name), nprocs=2, join=True)
    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    distributed = load_checkpoint(tmp_path / "checkpoint").model
    _, valid = split()
    ndcg = evaluate(distributed, valid, ks=(10,))["ndcg@10"]
    single = build(model_name, 2 * BATCH)  # the same total batch in one process
    with_threads = torch.get_num_threads()
    try:
        single.fit(*split())
    finally:
        torch.set_num_threads(with_threads)
    reference = evaluate(single, valid, ks=(10,))["ndcg@10"]
    assert reference > 0.3  # the data are learnable: the comparison means something
    assert abs(ndcg - reference) < 0.05, (ndcg, reference)


def test_shards_are_disjoint_equal_and_cover_all_but_the_tail() -> None:
    batches = list(range(11))
    shards = [DataParallel(rank, 3).shard(batches) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert DataParallel(0, 3).steps(11) == 3


def write_split(directory: Path) -> None:
    """The noisy walks as a split directory: train, val (last item) and test (one more)."""
    directory.mkdir()
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for user, walk in enumerate(noisy_walks()):
        for position, item in enumerate(walk):
            part = "test" if position == len(walk) - 1 else "train"
            part = "val" if position == len(walk) - 2 else part
            rows[part].append(f"u{user}\ti{item}\t{1000 + position}")
    for part, lines in rows.items():
        (directory / f"{part}.tsv").write_text("user_id\titem_id\ttimestamp\n" + "\n".join(lines))


def test_torchrun_launcher_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    write_split(tmp_path / "data")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()), "-m", "models.distributed", "--model", "gru4rec",
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ckpt"), "--no-refit",
        "--set", "epochs=2", "--set", "hidden=16", "--set", "max_len=12", "--set", "threads=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    assert checkpoint.model.num_items == NUM_ITEMS
    assert checkpoint.meta["metrics"]["val"]["ndcg@10"] > 0.0
