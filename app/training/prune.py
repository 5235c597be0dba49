"""Pruning retired model versions: their directories and model_versions rows.

Retired versions are what `recsys models rollback` goes back to, so the newest `keep` of each
model stay. Active and candidate versions are never touched, nor a directory that one of them
also uses. The rows go first (one transaction), then the directories: a run stopped in between
leaves orphan directories that nothing serves, never a row that names a missing directory.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.db.tables import ModelVersion

log = logging.getLogger(__name__)


def doomed_versions(rows: list[ModelVersion], keep: int) -> list[ModelVersion]:
    """The retired versions beyond the newest `keep` of each model (rows newest first)."""
    retired: dict[str, list[ModelVersion]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id, reverse=True):
        if row.status == "retired":
            retired[row.model_name].append(row)
    protected = {Path(r.path).resolve() for r in rows if r.status != "retired"}
    return [
        row
        for versions in retired.values()
        for row in versions[keep:]
        if Path(row.path).resolve() not in protected
    ]


def remove_checkpoint(path: Path) -> bool:
    """Delete a checkpoint directory (one with a meta.json only); True when deleted."""
    if not (path / "meta.json").is_file():
        log.warning("not a checkpoint directory, left alone: %s", path)
        return False
    shutil.rmtree(path)
    return True


async def prune_retired(
    sessionmaker: async_sessionmaker[AsyncSession], keep: int, *, dry_run: bool = False
) -> list[ModelVersion]:
    """Delete the retired versions beyond the newest `keep` per model; the deleted rows."""
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    async with sessionmaker() as session:
        doomed = doomed_versions(await repo.model_versions(session=session), keep)
        if dry_run or not doomed:
            return doomed
        await repo.delete_model_versions(session=session, ids=[row.id for row in doomed])
        await session.commit()
    for row in doomed:
        remove_checkpoint(Path(row.path))
    return doomed
