"""`recsys models prune --keep N`: retired versions beyond the newest N go, rows and directories;
active and candidate versions (and a directory one of them uses) never."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from app.db import repo
from app.db.session import make_engine, make_sessionmaker
from app.db.tables import ModelVersion
from tests.app.cli.test_cli import RECSYS, clean_env, run_cli
from tests.conftest import _truncate

VERSIONS = [  # (model, version, status), oldest first
    ("mf", "mf-1", "retired"),
    ("mf", "mf-2", "retired"),
    ("mf", "mf-3", "retired"),
    ("mf", "mf-4", "active"),
    ("mf", "mf-5", "candidate"),
    ("mf", "mf-6", "retired"),  # re-registered at the active version's directory
    ("sasrec", "sasrec-1", "retired"),
    ("sasrec", "sasrec-2", "active"),
]


async def register(url: str, root: Path) -> None:
    """The rows, and a checkpoint directory for each (mf-6 shares mf-4's)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            for model, version, status in VERSIONS:
                path = root / model / ("mf-4" if version == "mf-6" else version)
                path.mkdir(parents=True, exist_ok=True)
                (path / "meta.json").write_text("{}")
                session.add(
                    ModelVersion(model_name=model, version=version, path=str(path), status=status)
                )
                await session.flush()  # ids in this order: newest = highest id
            await session.commit()
    finally:
        await engine.dispose()


async def registered(url: str) -> list[str]:
    """The versions still registered, oldest first."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return [r.version for r in reversed(await repo.model_versions(session=session))]
    finally:
        await engine.dispose()


def test_prune_keeps_the_newest_retired_and_never_active_or_candidate(
    pg_database: str, tmp_path: Path
) -> None:
    asyncio.run(_truncate(pg_database))
    root = tmp_path / "models"
    asyncio.run(register(pg_database, root))
    env = {"RECSYS_DATABASE_URL": pg_database, "RECSYS_LOG_LEVEL": "WARNING"}

    dry = run_cli("models", "prune", "--keep", "1", "--dry-run", cwd=tmp_path, **env).stdout
    assert "3 retired version(s) would delete" in dry
    assert len(asyncio.run(registered(pg_database))) == len(VERSIONS)

    done = run_cli("models", "prune", "--keep", "1", cwd=tmp_path, **env).stdout
    assert all(f"deleted mf mf-{n} " in done for n in (1, 2, 3)), done
    assert not any((root / "mf" / f"mf-{n}").exists() for n in (1, 2, 3))
    assert asyncio.run(registered(pg_database)) == [
        "mf-4",
        "mf-5",
        "mf-6",
        "sasrec-1",
        "sasrec-2",
    ]

    # keep 0: mf-6 would go, but its directory is the active version's: kept.
    done = run_cli("models", "prune", "--keep", "0", cwd=tmp_path, **env).stdout
    assert "deleted sasrec sasrec-1 " in done and "mf-6" not in done
    assert asyncio.run(registered(pg_database)) == ["mf-4", "mf-5", "mf-6", "sasrec-2"]
    assert all((root / "mf" / v).is_dir() for v in ("mf-4", "mf-5"))
    assert (root / "sasrec" / "sasrec-2").is_dir() and not (root / "sasrec" / "sasrec-1").exists()

    refused = subprocess.run(
        [RECSYS, "models", "prune", "--keep", "-1"],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "--keep" in refused.stderr
