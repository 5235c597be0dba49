"""Scale: a synthetic shop of size S, M (and L where memory and time allow), end to end.

Per size: the shop is written by `recsys data synth` (kept under --work for reruns); its
catalog is imported and its events bulk-loaded (`recsys data load`) into a fresh Postgres
database, against a raw COPY of the same file into a bare table (the ratio is what the load
costs over Postgres itself); each model is retrained by `recsys retrain` in its own process
(wall time and peak RSS from the kernel's accounting of that process); the served version's
item vectors get the approximate index (recall@10 of its candidates, re-scored, against exact
scoring, over real users' vectors); then one `recsys serve` worker on Postgres + Redis answers
/recommend at 16 connections, cold (each user once, empty cache) and warm, with its RSS.

Run: .venv/bin/python bench/scale.py --sizes S,M [--models mf,sasrec] [--work var/scale]
A stage that fails or runs out of --budget seconds is recorded with its error, and the sizes
after it still run. Writes bench/results/scale.json and bench/results/scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PG_ADMIN_DSN, RESULTS, ROOT, machine, served, service_env, write_result
from models.synth import SIZES as PRESETS
from models.synth import first_histories

# The sizes, and XS: a smoke test of every stage in a few minutes.
SIZES = {"XS": (2_000, 5_000, 100_000), **PRESETS}

RECSYS = str(Path(sys.executable).with_name("recsys"))
PROBES = (64, 128, 256, 512, 1024)  # the index stage's nprobe values, besides the service's
# Per model: retrain's overrides. SASRec and GRU4Rec keep their loss="auto" (the full softmax
# up to 50k items, the sampled one above) and train within --seq-seconds.
OVERRIDES: dict[str, list[str]] = {
    "mf": [],
    "sasrec": ["sasrec.progress=false"],
    "gru4rec": ["gru4rec.progress=false"],
}


def _env(dsn: str, model_dir: Path, prefix: str, threads: int) -> dict[str, str]:
    """The service's settings for one size: its database, model directory and cache prefix."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    settings = service_env(dsn, model_dir, redis_prefix=prefix, torch_threads=str(threads))
    return {**clean, **settings}


def run_measured(command: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run a command; its wall seconds, peak RSS (MiB, the kernel's count for that process)
    and output. A timeout kills it and says so."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = started + timeout
        status, usage = 0, None
        while usage is None:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                usage = rusage
            elif time.perf_counter() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                status = -9
            else:
                time.sleep(0.5)
        process.returncode = 0  # reaped above: keep Popen from waiting again
        out.seek(0)
        text = out.read()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": os.waitstatus_to_exitcode(status) if status >= 0 else "timeout",
        "tail": text[-1500:],
    }


def synthesize(size: str, work: Path) -> tuple[Path, dict[str, Any]]:
    """The shop's files (written once, reused by later runs)."""
    out = work / size
    if not (out / "summary.json").is_file():
        items, users, events = SIZES[size]
        sizes = ["--items", str(items), "--users", str(users), "--events", str(events)]
        command = [RECSYS, "data", "synth", *sizes, "--out", str(out)]
        done = run_measured(command, {**os.environ}, 3600)
        if done["exit"] != 0:
            raise RuntimeError(f"synth failed: {done['tail']}")
    return out, json.loads((out / "summary.json").read_text())


async def raw_copy(dsn: str, events: Path) -> tuple[float, float]:
    """Seconds to COPY the CSV into a bare table of text columns (Postgres's floor), and that
    plus one INSERT .. SELECT into a twin of the events table (its columns, constraints and
    indexes): what the database alone needs to store these rows as the service does."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE raw_events (event_id text, user_id text, item_id text,"
            " ts bigint, type text, value text)"
        )
        await connection.execute("CREATE TABLE twin_events (LIKE events INCLUDING ALL)")
        started = time.perf_counter()
        await connection.copy_to_table("raw_events", source=str(events), format="csv", header=True)
        copied = time.perf_counter() - started
        await connection.execute(
            "INSERT INTO twin_events (event_id, user_id, item_id, type, value, event_time)"
            " SELECT event_id, user_id, item_id, type, NULLIF(value, '')::float8,"
            " to_timestamp(ts) FROM raw_events"
        )
        stored = time.perf_counter() - started
        await connection.execute("DROP TABLE raw_events, twin_events")
        return copied, stored
    finally:
        await connection.close()


def ingest(
    shop: Path, env: dict[str, str], dsn: str, events: int, timeout: float
) -> dict[str, Any]:
    """Catalog import and the bulk load, timed; the raw COPY baseline."""
    items = run_measured([RECSYS, "items", "import", str(shop / "catalog.jsonl")], env, timeout)
    state = shop / "events.csv.load-state.json"
    state.unlink(missing_ok=True)  # a fresh database: load everything
    load = run_measured(
        [RECSYS, "data", "load", str(shop / "events.csv"), "--chunk", "200000"], env, timeout
    )
    state.unlink(missing_ok=True)
    copy_seconds, stored_seconds = asyncio.run(raw_copy(dsn, shop / "events.csv"))
    rate = events / load["seconds"] if load["exit"] == 0 else None
    return {
        "catalog_import": _brief(items),
        "load": _brief(load),
        "events_per_s": None if rate is None else round(rate),
        "raw_copy_events_per_s": round(events / copy_seconds),
        "vs_raw_copy": None if rate is None else round(rate / (events / copy_seconds), 3),
        "database_only_events_per_s": round(events / stored_seconds),
        "vs_database_only": None if rate is None else round(rate * stored_seconds / events, 3),
    }


def _brief(done: dict[str, Any]) -> dict[str, Any]:
    """A run's numbers, with its output's tail only when it failed."""
    return {k: v for k, v in done.items() if k != "tail" or done["exit"] != 0}


def retrain(name: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """`recsys retrain --models NAME` in its own process: time, peak RSS, the outcome."""
    settings = [*OVERRIDES.get(name, [])]
    if name in ("sasrec", "gru4rec"):
        settings.append(f"{name}.max_seconds={args.seq_seconds}")
    command = [RECSYS, "retrain", "--models", name]
    for setting in settings:
        command += ["--set", setting]
    done = run_measured(command, env, args.budget)
    out = _brief(done)
    out["outcome"] = _outcome(done["tail"])
    return out


def _outcome(text: str) -> Any:
    """The retrain's JSON outcome line, when it printed one."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def served_versions(model_dir: Path) -> dict[str, Path]:
    """The newest version directory of each retrained model."""
    found = {}
    for name_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        versions = sorted(
            (p for p in name_dir.iterdir() if (p / "meta.json").is_file()),
            key=lambda p: p.stat().st_mtime,
        )
        if versions:
            found[name_dir.name] = versions[-1]
    return found


def index_recall(version: Path, shop: Path, users: int, nprobe: int | None) -> dict[str, Any]:
    """The approximate index over the version's items: build time and recall@10 against
    exact scoring, for the vectors of `users` real users (their stored histories), at the
    service's nprobe (the plain "recall@10") and at the PROBES around it (`by_nprobe`)."""
    import torch

    from app.config import Settings
    from bench.ann import exact_top, measure
    from models.ann import ItemIndex
    from models.checkpoint import load_checkpoint

    nprobe = nprobe or Settings().ann_nprobe
    checkpoint = load_checkpoint(version)
    model = checkpoint.model
    items = model.item_vectors().detach().float().numpy()
    histories = first_histories(shop / "events.csv", checkpoint.item_ids.to_json(), users)
    vectors = model.user_vectors(histories).detach().float().numpy()
    index = ItemIndex.build(items, nprobe=nprobe)
    exact = exact_top(torch.from_numpy(items), torch.from_numpy(vectors), 10)
    by_nprobe = {
        probes: measure(items, vectors, probes, index=index, exact=exact)
        for probes in sorted({*PROBES, nprobe})
        if probes <= index.nlist
    }
    return {"users": len(histories), **by_nprobe[nprobe], "by_nprobe": by_nprobe}


def user_ids(events: Path, count: int, skip: int = 0) -> list[str]:
    """`count` distinct user ids from the file, after the first `skip` users."""
    seen: list[str] = []
    last = None
    with events.open() as f:
        next(f)
        for line in f:
            user = line.split(",", 2)[1]
            if user != last:
                last = user
                seen.append(user)
                if len(seen) == skip + count:
                    break
    return seen[skip:]


def serving(
    env: dict[str, str], shop: Path, model: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One worker: cold /recommend (each user once, empty cache), then warm (a warm-up pass,
    then a timed run over the same users), at --clients connections; the worker's RSS."""
    from bench.serve import flush_prefix, load

    prefix = env["RECSYS_REDIS_PREFIX"]
    users = user_ids(shop / "events.csv", args.serve_users)
    paths = [f"/recommend?user_id={u}&k=10&model={model}" for u in users]
    flush_prefix(prefix)
    with served(env, ready_seconds=args.budget) as (base, process):
        cold = load(base, paths, args, once=True)
        load(base, paths, args, once=True)  # every user's state now cached
        warm = load(base, paths, args)
        rss = _rss_mib(process.pid)
    flush_prefix(prefix)
    # Other jobs on the machine show here: serving latency depends on idle cores.
    return {"cold": cold, "warm": warm, **rss, "load_average_1m": round(os.getloadavg()[0], 2)}


def _rss_mib(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak (MiB), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mib": fields.get("VmRSS", 0.0), "peak_rss_mib": fields.get("VmHWM", 0.0)}


def stage(
    report: dict[str, Any], key: str, work: Callable[[], Any], save: Callable[[], None]
) -> Any:
    """Run one stage, recording its result or its error, then `save` the size's report (a run
    stopped later keeps it); the size goes on either way."""
    started = time.perf_counter()
    try:
        report[key] = work()
    except Exception as error:  # a failed stage is a result, said in the table
        report[key] = {
            "error": f"{type(error).__name__}: {error}",
            "trace": traceback.format_exc()[-1500:],
        }
    print(f"  {key}: {time.perf_counter() - started:.0f} s", flush=True)
    save()
    return report[key]


def database(size: str, fresh: bool) -> str:
    """The size's own migrated database (asyncpg DSN), kept between runs so later stages can
    rerun alone; `fresh`: dropped and created again first."""
    from app.db.migrate import upgrade

    name = f"recsys_scale_{size.lower()}"
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"

    async def create() -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
            if exists and fresh:
                await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            if fresh or not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    return dsn


def run_size(
    size: str, args: argparse.Namespace, report: dict[str, Any], save: Callable[[], None]
) -> dict[str, Any]:
    """The chosen stages of one size, into `report` (a rerun keeps the stages it skips)."""
    items, users, events = SIZES[size]
    report.update({"items": items, "users": users, "events": events})
    shop, report["synth"] = synthesize(size, args.work)
    dsn = database(size, fresh="ingest" in args.stages)
    models_dir = shop / "models"
    env = _env(dsn, models_dir, f"scale-{size}-{os.getpid()}:", args.threads)
    if "ingest" in args.stages:
        stage(
            report, "ingest", functools.partial(ingest, shop, env, dsn, events, args.budget), save
        )
    if "retrain" in args.stages:
        shutil.rmtree(models_dir, ignore_errors=True)
        models_dir.mkdir(parents=True)
        report["retrain"] = {}
        for name in args.models:
            stage(report["retrain"], name, functools.partial(retrain, name, env, args), save)
    versions = served_versions(models_dir) if models_dir.is_dir() else {}
    if "index" in args.stages:
        report["index"] = {}
        for name, version in versions.items():
            measure = functools.partial(index_recall, version, shop, args.index_users, args.nprobe)
            stage(report["index"], name, measure, save)
    if "serve" in args.stages:
        report["serving"] = {}
        for name in versions:
            stage(report["serving"], name, functools.partial(serving, env, shop, name, args), save)
    return report


def table(results: dict[str, Any]) -> str:
    """The Markdown summary of every size."""
    lines = ["| size | stage | model | numbers |", "|---|---|---|---|"]
    for size, report in results.items():
        done = report.get("ingest", {})
        if done.get("events_per_s"):
            lines.append(
                f"| {size} | ingest | - | {done['events_per_s']:,} events/s; raw COPY "
                f"{done['raw_copy_events_per_s']:,}/s (ratio {done['vs_raw_copy']}); the "
                f"database alone, same indexes {done.get('database_only_events_per_s', 0):,}/s "
                f"(ratio {done.get('vs_database_only')}) |"
            )
        rows = [
            ("retrain", ("seconds", "cpu_seconds", "peak_rss_mib", "exit")),
            ("index", ("build_seconds", "recall@10", "nprobe")),
        ]
        if done and not done.get("events_per_s"):
            lines.append(f"| {size} | ingest | - | {_numbers(done.get('load', done), 'exit')} |")
        for stage_name, keys in rows:
            for name, done in report.get(stage_name, {}).items():
                lines.append(f"| {size} | {stage_name} | {name} | {_numbers(done, *keys)} |")
        for name, done in report.get("serving", {}).items():
            lines.append(f"| {size} | serve | {name} | {_serving_cell(done)} |")
    return "\n".join(lines) + "\n"


def _serving_cell(done: dict[str, Any]) -> str:
    """Warm and cold latency, throughput and RSS of one model's serving stage."""
    if "cold" not in done:
        return str(done.get("error"))
    cold, warm = done["cold"], done["warm"]
    return (
        f"warm p50 {warm['p50_ms']:.1f} / p99 {warm['p99_ms']:.1f} ms ({warm['rps']:.0f}/s); "
        f"cold p50 {cold['p50_ms']:.1f} / p99 {cold['p99_ms']:.1f} ms ({cold['rps']:.0f}/s); "
        f"RSS {done['peak_rss_mib']:.0f} MiB"
    )


def _numbers(done: dict[str, Any], *keys: str) -> str:
    """`key value` pairs of a stage, or its error."""
    if "error" in done:
        return str(done["error"])
    return ", ".join(f"{k} {done[k]}" for k in keys if done.get(k) is not None)


def main() -> None:
    """Parse arguments, run each size, write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="S,M")
    parser.add_argument("--models", default="mf,sasrec")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "scale")
    parser.add_argument("--budget", type=float, default=3600, help="seconds per stage")
    parser.add_argument("--seq-seconds", type=float, default=600, help="SASRec/GRU4Rec fit budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--index-users", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=None)
    parser.add_argument("--serve-users", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stages", default="ingest,retrain,index,serve")
    parser.add_argument("--out", default="scale")
    args = parser.parse_args()
    args.models = args.models.split(",")
    args.stages = set(args.stages.split(","))
    for size in args.sizes.split(","):
        print(f"size {size}", flush=True)
        # One file per size, so sizes can run in parallel processes; each stage's run records
        # its own command.
        path = RESULTS / args.out / f"{size}.json"
        report = json.loads(path.read_text()) if path.is_file() else {}
        report.setdefault("commands", {})
        command = " ".join(["bench/scale.py", *sys.argv[1:]])
        for stage_name in sorted(args.stages):
            report["commands"][stage_name] = command
        path.parent.mkdir(parents=True, exist_ok=True)

        def save(report: dict[str, Any] = report, path: Path = path) -> None:
            # Merged into what the file holds now: another run may be doing other stages of
            # this size (an ingest and a retrain in parallel).
            stored = json.loads(path.read_text()) if path.is_file() else {}
            stored["commands"] = {**stored.get("commands", {}), **report.get("commands", {})}
            merged = {**stored, **{k: v for k, v in report.items() if k != "commands"}}
            path.write_text(json.dumps({**merged, "machine": machine()}, indent=2) + "\n")

        run_size(size, args, report, save)
    summarize(args.out)


def summarize(out: str) -> None:
    """bench/results/<out>.json and .md from every size's file, in size order."""
    results = {}
    for size in SIZES:
        path = RESULTS / out / f"{size}.json"
        if path.is_file():
            results[size] = json.loads(path.read_text())
    write_result(out, {"sizes": results})
    text = table(results)
    (RESULTS / f"{out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
