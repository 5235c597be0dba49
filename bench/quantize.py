"""int8 and fp16 checkpoints against their float source: quality, size, scoring cost, serving.

For mf and sasrec: test NDCG@10 on ml1m-half-loo (full ranking, the checkpoint's own protocol)
and its change from float, checkpoint MB (all files, and weights.safetensors alone), ms/user
for one user and per user in batches of 256 (models.compare's scoring_latency and
batched_latency: one thread for one user, as a serving worker; the precisions take turns
every 10 users and every batch, medians reported), each model loaded back from the checkpoint
`recsys quantize` writes. With --serve, bench/serve.py's run (a real uvicorn
server on Postgres and Redis, 16 clients) serves the float and int8 checkpoints side by side:
cold (empty cache) and warm latency per model, stored under "serve" (not in serve.json).

Run: .venv/bin/python bench/quantize.py --mf var/q/mf --sasrec var/q/sasrec [--serve]
Writes bench/results/quantize.json (--result names another file).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, write_result
from models.checkpoint import WEIGHTS, checkpoint_bytes, load_checkpoint
from models.compare import batched_latency, scoring_latency
from models.data import default_data_dir, load_split_dir
from models.metrics import evaluate
from models.quantize import PRECISIONS, quantize_checkpoint

FLOAT = "float32"


def checkpoints(name: str, source: Path, work: Path) -> dict[str, Path]:
    """The float checkpoint and its quantized forms, written under work/<name>-<precision>."""
    paths = {FLOAT: source}
    for precision in PRECISIONS:
        target = work / f"{name}-{precision}"
        shutil.rmtree(target, ignore_errors=True)
        paths[precision] = quantize_checkpoint(source, precision, target)
    return paths


def quality(path: Path, data: Any) -> dict[str, Any]:
    """One checkpoint's model name, test metrics and size."""
    loaded = load_checkpoint(path)
    aligned = data.with_item_ids(loaded.item_ids)
    metrics = evaluate(loaded.model, aligned.test_set(), item_popularity=aligned.item_popularity())
    return {
        "model": loaded.model.name,
        "test_ndcg@10": metrics["ndcg@10"],
        "test_hr@10": metrics["hr@10"],
        "mb": checkpoint_bytes(path) / 1e6,
        "weights_mb": (path / WEIGHTS).stat().st_size / 1e6,
    }


def latencies(paths: list[Path], data: Any, users: int, rounds: int) -> list[dict[str, float]]:
    """Per checkpoint, ms/user alone (median over chunks of 10 users) and in batches of 256
    (median over batches). The checkpoints take turns chunk by chunk and batch by batch, so a
    busy spell on the shared machine hits them alike."""
    models = [load_checkpoint(p).model for p in paths]
    histories = data.with_item_ids(load_checkpoint(paths[0]).item_ids).test_set().histories
    single: list[list[float]] = [[] for _ in paths]
    batched: list[list[float]] = [[] for _ in paths]
    for turn in range(rounds):
        for lo in range(0, users, 10):
            for n in _order(len(models), turn + lo):
                single[n].append(scoring_latency(models[n], histories[lo : lo + 10], 10))
        for lo in range(0, 4 * 256, 256):
            for n in _order(len(models), turn + lo):
                batched[n].append(batched_latency(models[n], histories[lo : lo + 256]))
    return [
        {"ms_per_user": median(s), "ms_per_user_batched": median(b)}
        for s, b in zip(single, batched, strict=True)
    ]


def _order(count: int, shift: int) -> list[int]:
    """0..count-1 rotated by `shift`: no checkpoint always goes first."""
    return [(n + shift) % count for n in range(count)]


def compare_precisions(name: str, source: Path, work: Path, data: Any, args: Any) -> list[Any]:
    """Rows for float, fp16 and int8 of one model, each with its change from float."""
    paths = list(checkpoints(name, source, work).values())
    rows = [quality(p, data) for p in paths]
    for row, timing in zip(
        rows, latencies(paths, data, args.users, args.timing_rounds), strict=True
    ):
        row.update(timing)
    base = rows[0]
    for row, precision in zip(rows, (FLOAT, *PRECISIONS), strict=True):
        row["precision"] = precision
        row["ndcg_change"] = row["test_ndcg@10"] - base["test_ndcg@10"]
        row["ms_per_user_ratio"] = row["ms_per_user"] / base["ms_per_user"]
    return rows


def serve(work: Path, sources: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """bench/serve.py's run on the float and int8 checkpoints (cold and warm per model)."""
    from bench import serve as serve_bench

    served = work / "served"
    shutil.rmtree(served, ignore_errors=True)
    names = []
    for name, source in sources.items():
        shutil.copytree(source, served / name)
        shutil.copytree(work / f"{name}-int8", served / f"{name}-int8")
        names += [name, f"{name}-int8"]
    options = argparse.Namespace(
        data=args.data, checkpoints=str(served), clients=16, seconds=args.seconds,
        warm_users=1000, rounds=args.rounds, long_users=0, long_events=0, models=tuple(names),
    )  # fmt: skip
    outcome: dict[str, Any] = serve_bench.run(options)
    return outcome


def print_table(rows: list[dict[str, Any]]) -> None:
    """The Markdown table of every row."""
    print("| model | test NDCG@10 | change | MB (weights) | ms/user | x float | ms/user @256 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['test_ndcg@10']:.4f} | {r['ndcg_change']:+.4f} | "
            f"{r['mb']:.2f} ({r['weights_mb']:.2f}) | {r['ms_per_user']:.2f} | "
            f"{r['ms_per_user_ratio']:.2f} | {r['ms_per_user_batched']:.3f} |"
        )


def print_serve(outcome: dict[str, Any]) -> None:
    """The serving scenarios' medians."""
    print("| scenario | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, r in outcome["results"].items():
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )


def main() -> None:
    """Quantize, measure, print, write bench/results/quantize.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_data_dir() / "ml1m-half-loo"))
    parser.add_argument("--mf", type=Path, help="float mf checkpoint (recsys train)")
    parser.add_argument("--sasrec", type=Path, help="float sasrec checkpoint")
    parser.add_argument("--work", type=Path, default=Path("var/q/bench"), help="quantized here")
    parser.add_argument("--users", type=int, default=200, help="users timed one at a time")
    parser.add_argument("--timing-rounds", type=int, default=3, help="latency: median of")
    parser.add_argument("--serve", action="store_true", help="also run bench/serve.py's load")
    parser.add_argument("--serve-only", action="store_true", help="--serve without the rows")
    parser.add_argument("--seconds", type=float, default=5.0, help="--serve: per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="--serve: medians over rounds")
    parser.add_argument("--result", default="quantize", help="bench/results/<result>.json")
    args = parser.parse_args()
    sources = {n: p for n, p in (("mf", args.mf), ("sasrec", args.sasrec)) if p is not None}
    payload: dict[str, Any] = {"data": Path(args.data).name}
    payload["sources"] = {n: load_checkpoint(p).meta.get("config") for n, p in sources.items()}
    if not args.serve_only:
        data = load_split_dir(Path(args.data))
        work, rows = args.work, []
        for name, path in sources.items():
            rows += compare_precisions(name, path, work, data, args)
        print_table(rows)
        payload["rows"] = rows
    else:
        for name, path in sources.items():
            checkpoints(name, path, args.work)
    if args.serve or args.serve_only:
        payload["serve"] = serve(args.work, sources, args)
        print_serve(payload["serve"])
    print(f"wrote {write_result(args.result, payload)}")


if __name__ == "__main__":
    main()
