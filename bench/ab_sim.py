"""The experiment report's statistics on simulated experiments, its SQL path, and its speed.

1. A/A experiments (both arms the same) through the real statistics code on per-user sums
   (app.experiments.report.moments, app.experiments.stats): users with Beta-distributed click
   propensities, Gamma-distributed activity and several exposures each, arriving over 14 days.
   False-positive rates at alpha = 0.05: the fixed-horizon test read once at the end, the
   always-valid (sequential) test read every day, the fixed test read every day (peeking), and
   the old per-exposure two-proportion test.
2. A/B experiments with a known relative lift: power and interval coverage.
3. About 100 A/A experiments through the whole SQL path (exposures and events stored, the
   report's query, the statistics) on a SQLite file, or on Postgres if RECSYS_DATABASE_URL is
   set to a postgresql+asyncpg URL (a scratch database is created in it and dropped).
4. The report's time on 1M exposures and 100k clicks in Postgres (a scratch database).

Run: nice -n 10 .venv/bin/python bench/ab_sim.py [--runs 1000] [--sql-runs 100] [--no-timing]
Writes bench/results/ab_sim.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db import repo
from app.db.experiments import ArmSums
from app.db.migrate import upgrade
from app.db.session import make_engine, make_sessionmaker
from app.experiments.book import ExperimentState
from app.experiments.report import ReportOptions, experiment_report, moments
from app.experiments.routing import Arm, assign
from app.experiments.stats import Reading, linearise, relative_lift, two_proportion_test
from bench.common import throwaway_postgres, write_result

ALPHA = 0.05
TUNING = 5000  # the settings' default experiment_sequential_tuning
FIXED, SEQUENTIAL = Reading(sequential=False, tuning=TUNING), Reading(tuning=TUNING)


@dataclass(frozen=True)
class Population:
    """Simulated shoppers: heterogeneous propensities, several exposures each."""

    users_per_arm: int = 2000
    days: int = 14
    beta: tuple[float, float] = (0.5, 4.5)  # click propensity per exposure: mean 0.1, skewed
    activity: tuple[float, float] = (2.0, 0.4)  # Gamma(shape, scale) exposures per active day
    pre_days: int = 14  # CUPED's covariate: clicks in this many days before the start


def simulate(rng: np.random.Generator, pop: Population, lift: float) -> dict[str, np.ndarray]:
    """One experiment: per arm and user, cumulative exposures and clicks per day (2, n, days),
    and the pre-period clicks (2, n); the treatment multiplies propensities by 1 + lift."""
    shape = (2, pop.users_per_arm)
    base = rng.beta(*pop.beta, size=shape)
    propensity = base.copy()
    propensity[1] = np.minimum(base[1] * (1 + lift), 1.0)
    rate = rng.gamma(*pop.activity, size=shape)
    arrival = rng.integers(0, pop.days, size=shape)
    active = np.arange(pop.days)[None, None, :] >= arrival[..., None]
    exposures = rng.poisson(rate[..., None] * active)
    clicks = rng.binomial(exposures, propensity[..., None])
    pre = rng.binomial(rng.poisson(rate * pop.pre_days), base)
    return {"x": exposures.cumsum(-1), "y": clicks.cumsum(-1), "c": pre}


def sums_of(arm: str, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> ArmSums:
    """The per-arm sums the report's SQL returns, of the users exposed so far."""
    seen = x > 0
    x, y, c = x[seen].astype(float), y[seen].astype(float), c[seen].astype(float)
    metrics = {
        "clicks_s": y.sum(),
        "clicks_ss": (y * y).sum(),
        "clicks_sx": (x * y).sum(),
        "clicks_sc": (y * c).sum(),
    }
    return ArmSums(
        arm, int(seen.sum()), x.sum(), (x * x).sum(), c.sum(), (c * c).sum(), (x * c).sum(), 0, 0,
        {k: float(v) for k, v in metrics.items()},
    )  # fmt: skip


def read_look(data: dict[str, np.ndarray], day: int) -> tuple[ArmSums, ArmSums]:
    """Both arms' sums as the report would see them at the end of `day`."""
    return (
        sums_of("a", data["x"][0, :, day], data["y"][0, :, day], data["c"][0]),
        sums_of("b", data["x"][1, :, day], data["y"][1, :, day], data["c"][1]),
    )


def compare(a: ArmSums, b: ArmSums, reading: Reading, cuped: bool = True) -> Any:
    """The report's CTR lift of b over a."""
    lines = linearise(moments(a, "clicks")), linearise(moments(b, "clicks"))
    assert lines[0] is not None and lines[1] is not None
    return relative_lift(lines[0], lines[1], reading, cuped=cuped)


def one_run(rng: np.random.Generator, pop: Population, lift: float) -> dict[str, Any]:
    """Every reading of one simulated experiment."""
    data = simulate(rng, pop, lift)
    looks = [read_look(data, day) for day in range(pop.days)]
    sequential = [compare(a, b, SEQUENTIAL) for a, b in looks]
    fixed_daily = [compare(a, b, FIXED) for a, b in looks]
    a, b = looks[-1]
    old = two_proportion_test(int(a.metrics["clicks_s"]), int(a.sx), int(b.metrics["clicks_s"]),
                              int(b.sx))  # fmt: skip
    return {
        "fixed": fixed_daily[-1],
        "fixed_no_cuped": compare(a, b, FIXED, cuped=False),
        "sequential": sequential,
        "fixed_daily": fixed_daily,
        "old_p": old["p_value"],
        "users": a.n + b.n,
        "exposures": a.sx + b.sx,
    }


def share(flags: Any) -> float:
    """The share of true values."""
    return float(np.mean(list(flags)))


def covers(lift: Any, truth: float) -> bool:
    """Whether an interval holds the true lift."""
    return bool(lift.low <= truth <= lift.high)


def aa_study(runs: int, pop: Population, seed: int) -> dict[str, Any]:
    """False-positive rates of each test over `runs` A/A experiments."""
    rng = np.random.default_rng(seed)
    rows = [one_run(rng, pop, 0.0) for _ in range(runs)]
    rate = lambda hits: {"false_positive_rate": float(np.mean(hits))}  # noqa: E731
    return {
        "runs": runs,
        "users_per_experiment": float(np.mean([r["users"] for r in rows])),
        "exposures_per_user": float(np.mean([r["exposures"] / r["users"] for r in rows])),
        "fixed": rate([r["fixed"].p_value < ALPHA for r in rows]),
        "sequential": {
            **rate([any(x.p_value < ALPHA for x in r["sequential"]) for r in rows]),
            "looks": pop.days,
        },
        "per_exposure_old": rate([r["old_p"] < ALPHA for r in rows]),
        "fixed_read_daily": {
            **rate([any(x.p_value < ALPHA for x in r["fixed_daily"]) for r in rows]),
            "looks": pop.days,
        },
        "fixed_no_cuped": rate([r["fixed_no_cuped"].p_value < ALPHA for r in rows]),
    }


def ab_study(runs: int, pop: Population, lift: float, seed: int) -> dict[str, Any]:
    """Power and coverage of the true lift over `runs` A/B experiments."""
    rng = np.random.default_rng(seed)
    rows = [one_run(rng, pop, lift) for _ in range(runs)]
    reduction = [r["fixed"].variance_reduction for r in rows]
    return {
        "runs": runs,
        "true_lift": lift,
        "fixed": {
            "power": float(np.mean([r["fixed"].p_value < ALPHA for r in rows])),
            "coverage": float(np.mean([covers(r["fixed"], lift) for r in rows])),
            "coverage_no_cuped": float(np.mean([covers(r["fixed_no_cuped"], lift) for r in rows])),
            "power_no_cuped": float(np.mean([r["fixed_no_cuped"].p_value < ALPHA for r in rows])),
        },
        "sequential": {
            "power": float(
                np.mean([any(x.p_value < ALPHA for x in r["sequential"]) for r in rows])
            ),
            "coverage_final_look": float(
                np.mean([covers(r["sequential"][-1], lift) for r in rows])
            ),
            "coverage_every_look": float(
                np.mean([all(covers(x, lift) for x in r["sequential"]) for r in rows])
            ),
        },
        "cuped": {
            "variance_reduction_mean": float(np.mean(reduction)),
            "interval_narrowing_mean": float(np.mean(1 - np.sqrt(1 - np.array(reduction)))),
        },
    }


SQL_ARMS = (Arm("a", "mf", 1.0), Arm("b", "mf", 1.0))
START = datetime(2026, 11, 1, tzinfo=UTC)


def shop(
    rng: np.random.Generator,
    name: str,
    users: int,
    per_user: int | None = None,
    start: datetime = START,
) -> dict[str, Any]:
    """Stored rows of one A/A experiment: exposures (5 items each), clicks on a shown item within
    10 minutes (half carry the recommendation_id), purchases after a fifth of the clicks, and
    views before the start (the covariate)."""
    pop = Population()
    uids = [f"{name}-u{k}" for k in range(users)]
    arms = [assign(SQL_ARMS, name, uid).name for uid in uids]
    propensity, rate = rng.beta(*pop.beta, size=users), rng.gamma(*pop.activity, size=users)
    counts = np.full(users, per_user) if per_user else 1 + rng.poisson(rate * pop.days / 2)
    owner = np.repeat(np.arange(users), counts)
    m = len(owner)
    seconds = rng.uniform(0, pop.days * 86400, m)
    clicked = rng.random(m) < propensity[owner]
    pre = rng.poisson(rate * pop.pre_days)
    return {
        "start": start,
        "uids": uids,
        "arms": arms,
        "owner": owner,
        "seconds": seconds,
        "items": rng.integers(0, 500, size=(m, 5)),
        "clicked": clicked,
        "slot": rng.integers(0, 5, m),
        "delay": rng.uniform(1, 600, m),
        "with_id": rng.random(m) < 0.5,
        "purchased": clicked & (rng.random(m) < 0.2),
        "value": rng.lognormal(3, 1, m),
        "pre_owner": np.repeat(np.arange(users), pre),
        "pre_seconds": rng.uniform(1, pop.pre_days * 86400, int(pre.sum())),
    }


def exposure_records(name: str, data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows in app.db.repo.EXPOSURE_COLUMNS order."""
    rows = []
    for k, user in enumerate(data["owner"]):
        items = orjson.dumps({"items": [f"i{j}" for j in data["items"][k]]}).decode()
        rows.append(
            (f"{name}-r{k}", data["uids"][user], "mf", "v1", name, data["arms"][user], items,
             data["start"] + timedelta(seconds=float(data["seconds"][k])), 10.0, None)
        )  # fmt: skip
    return rows


def event_records(name: str, data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows in app.db.repo.EVENT_COLUMNS order: clicks, purchases, pre-period views."""
    rows: list[tuple[Any, ...]] = []
    for k in np.flatnonzero(data["clicked"]):
        user, item = data["uids"][data["owner"][k]], f"i{data['items'][k][data['slot'][k]]}"
        moment = data["start"] + timedelta(seconds=float(data["seconds"][k] + data["delay"][k]))
        rid = f"{name}-r{k}" if data["with_id"][k] else None
        rows.append((f"{name}-c{k}", user, item, "click", None, moment, rid))
        if data["purchased"][k]:
            later = moment + timedelta(seconds=60)
            rows.append(
                (f"{name}-p{k}", user, item, "purchase", float(data["value"][k]), later, rid)
            )
    for j, user in enumerate(data["pre_owner"]):
        moment = data["start"] - timedelta(seconds=float(data["pre_seconds"][j]))
        rows.append((f"{name}-v{j}", data["uids"][user], "i0", "view", None, moment, None))
    return rows


def options(reading: Reading) -> ReportOptions:
    """The report's options as the default settings give them."""
    return ReportOptions(
        window=timedelta(seconds=1800),
        conversions=("purchase",),
        pre_window=timedelta(days=14),
        reading=reading,
        cuped=True,
        guardrail={"metric": "latency_p99_ms", "tolerance": 0.2},
    )


async def store(session: Any, name: str, data: dict[str, Any]) -> ExperimentState:
    """Write one experiment's rows through app.db.repo, as the service does."""
    exposures = [dict(zip(repo.EXPOSURE_COLUMNS, row, strict=True))
                 for row in exposure_records(name, data)]  # fmt: skip
    for start in range(0, len(exposures), 5000):
        await repo.insert_exposures(session=session, rows=exposures[start : start + 5000])
    events = event_records(name, data)
    columns = repo.EventColumns(*[list(c) for c in zip(*events, strict=True)])
    await repo.insert_events(session=session, events=columns)
    arms = [{"name": a.name, "model": a.model, "weight": a.weight} for a in SQL_ARMS]
    row = await repo.put_experiment(
        session=session, name=name, arms=arms, salt=name, status="running",
        started_at=data["start"],
    )  # fmt: skip
    return ExperimentState.of(row)


async def sql_aa(url: str, runs: int, users: int, seed: int) -> dict[str, Any]:
    """A/A experiments stored in a database and read by the report, end to end."""
    rng = np.random.default_rng(seed)
    engine = make_engine(url)
    hits: dict[str, list[bool]] = {"fixed": [], "sequential": [], "srm_flagged": []}
    seconds: list[float] = []
    try:
        async with make_sessionmaker(engine)() as session:
            for run in range(runs):
                name = f"aa{run}-{uuid.uuid4().hex[:6]}"
                # a month apart: each report reads its own events, not all runs' so far
                start = START + timedelta(days=30 * run)
                state = await store(session, name, shop(rng, name, users, start=start))
                for key, reading in (("fixed", FIXED), ("sequential", SEQUENTIAL)):
                    began = time.perf_counter()
                    found = await experiment_report(
                        session=session, state=state, options=options(reading)
                    )
                    seconds.append(time.perf_counter() - began)
                    lift = found["arms"][1]["vs_control"]["clicks"]
                    hits[key].append(lift is not None and lift["p_value"] < ALPHA)
                hits["srm_flagged"].append(not found["srm"]["ok"])
    finally:
        await engine.dispose()
    return {
        "runs": runs,
        "users_per_experiment": users,
        "backend": url.split(":", 1)[0],
        "fixed": {"false_positive_rate": float(np.mean(hits["fixed"]))},
        "sequential": {"false_positive_rate": float(np.mean(hits["sequential"])), "looks": 1},
        "srm_flag_rate": float(np.mean(hits["srm_flagged"])),
        "report_seconds_median": float(np.median(seconds)),
    }


async def copy_rows(dsn: str, name: str, data: dict[str, Any]) -> tuple[int, int]:
    """COPY one large experiment into Postgres; (exposures, events) written."""
    import asyncpg

    exposures, events = exposure_records(name, data), event_records(name, data)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "exposures", records=exposures, columns=list(repo.EXPOSURE_COLUMNS)
        )
        await connection.copy_records_to_table(
            "events", records=events, columns=list(repo.EVENT_COLUMNS)
        )
        await connection.execute("VACUUM ANALYZE")  # as autovacuum leaves a table at rest
    finally:
        await connection.close()
    return len(exposures), len(events)


def backend_cpu(pid: int) -> float | None:
    """CPU seconds a local Postgres backend has used (None when its /proc is not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_report(url: str, name: str, repeats: int = 3) -> dict[str, list[float]]:
    """Wall seconds per report (sequential and fixed alternate) on the stored experiment, and
    the CPU seconds its Postgres backend spent (the machine is shared: wall time waits)."""
    engine = make_engine(url)
    spent: dict[str, list[float]] = {"wall": [], "postgres_cpu": []}
    try:
        async with make_sessionmaker(engine)() as session:
            arms = [{"name": a.name, "model": a.model, "weight": a.weight} for a in SQL_ARMS]
            row = await repo.put_experiment(
                session=session, name=name, arms=arms, salt=name, status="running",
                started_at=START,
            )  # fmt: skip
            state = ExperimentState.of(row)
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            for n in range(repeats):
                cpu, began = backend_cpu(pid), time.perf_counter()
                reading = SEQUENTIAL if n % 2 == 0 else FIXED
                await experiment_report(session=session, state=state, options=options(reading))
                spent["wall"].append(time.perf_counter() - began)
                after = backend_cpu(pid)
                if cpu is not None and after is not None:
                    spent["postgres_cpu"].append(after - cpu)
    finally:
        await engine.dispose()
    return spent


def sql_timing(seed: int) -> dict[str, Any]:
    """The report on 1M exposures (100k users, 10 each) and their ~100k clicks in Postgres."""
    data = shop(np.random.default_rng(seed), "big", 100_000, per_user=10)
    with throwaway_postgres() as dsn:
        exposures, events = asyncio.run(copy_rows(dsn, "big", data))
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        spent = asyncio.run(time_report(url, "big"))
    return {
        "backend": "postgresql",
        "exposures": exposures,
        "clicks": int(data["clicked"].sum()),
        "events": events,
        "users": 100_000,
        "report_seconds": spent["wall"],
        "report_seconds_best": min(spent["wall"]),
        "postgres_backend_cpu_seconds": spent["postgres_cpu"],
        "load_average_1min": os.getloadavg()[0],
        "target_seconds": 2.0,
    }


def sql_database() -> tuple[str, Any]:
    """The SQL A/A runs' database: a scratch Postgres one when RECSYS_DATABASE_URL names
    Postgres, else a migrated SQLite file."""
    url = os.environ.get("RECSYS_DATABASE_URL", "")
    if url.startswith("postgresql"):
        context: Any = throwaway_postgres()
        dsn = context.__enter__()
        return dsn.replace("postgresql://", "postgresql+asyncpg://", 1), context
    folder = tempfile.TemporaryDirectory()
    url = f"sqlite+aiosqlite:///{folder.name}/ab_sim.db"
    upgrade(url)
    return url, folder


def table(result: dict[str, Any]) -> str:
    """The printed summary."""
    aa, ab = result["aa"], result["ab"]
    lines = [f"{'A/A test (alpha 0.05)':<40} false-positive rate", "-" * 60]
    for key in ("fixed", "sequential", "fixed_read_daily", "per_exposure_old", "fixed_no_cuped"):
        lines.append(f"{key:<40} {aa[key]['false_positive_rate']:.3f}")
    if "sql_aa" in result:
        sql = result["sql_aa"]
        lines.append(f"{'SQL path fixed (' + sql['backend'] + ')':<40} "
                     f"{sql['fixed']['false_positive_rate']:.3f}")  # fmt: skip
        lines.append(f"{'SQL path sequential':<40} {sql['sequential']['false_positive_rate']:.3f}")
    lines += ["", f"A/B, true lift {ab['true_lift']:+.0%}: power fixed {ab['fixed']['power']:.3f}, "
              f"sequential {ab['sequential']['power']:.3f}; coverage fixed "
              f"{ab['fixed']['coverage']:.3f}, sequential every look "
              f"{ab['sequential']['coverage_every_look']:.3f}; CUPED narrows intervals by "
              f"{ab['cuped']['interval_narrowing_mean']:.1%}"]  # fmt: skip
    if "sql_timing" in result:
        timing = result["sql_timing"]
        lines.append(f"report on {timing['exposures']:,} exposures / {timing['clicks']:,} clicks "
                     f"(Postgres): {timing['report_seconds_best']:.2f} s wall, backend CPU "
                     f"{timing['postgres_backend_cpu_seconds']} s, load "
                     f"{timing['load_average_1min']:.1f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    """Run every study and write bench/results/ab_sim.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated A/A experiments")
    parser.add_argument("--ab-runs", type=int, default=500, help="simulated A/B experiments")
    parser.add_argument("--lift", type=float, default=0.20, help="the A/B's true relative lift")
    parser.add_argument("--sql-runs", type=int, default=100, help="A/A runs through SQL")
    parser.add_argument("--sql-users", type=int, default=400, help="users per SQL A/A run")
    parser.add_argument("--no-timing", action="store_true", help="skip the 1M-exposure timing")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    pop = Population()
    began = time.perf_counter()
    result: dict[str, Any] = {"population": pop.__dict__, "alpha": ALPHA, "tuning": TUNING}
    result["aa"] = aa_study(args.runs, pop, args.seed)
    for key in ("fixed", "sequential", "per_exposure_old"):
        result[key] = {"false_positive_rate": result["aa"][key]["false_positive_rate"]}
    result["ab"] = ab_study(args.ab_runs, pop, args.lift, args.seed + 1)
    if args.sql_runs:
        url, holder = sql_database()
        try:
            result["sql_aa"] = asyncio.run(sql_aa(url, args.sql_runs, args.sql_users, args.seed))
        finally:
            holder.__exit__(None, None, None) if hasattr(holder, "__exit__") else None
    if not args.no_timing:
        result["sql_timing"] = sql_timing(args.seed + 2)
    result["seconds"] = time.perf_counter() - began
    print(table(result))
    print(f"wrote {write_result('ab_sim', result)}")


if __name__ == "__main__":
    main()
