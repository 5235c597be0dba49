"""Checkpoint metadata that names users: found under the model directory, rewritten atomically.

Checkpoints written since issue 14 hold no user ids (models.train no longer stores them: no
model keeps a per-user row, users are folded in from their histories). Older ones list every
training user in meta.json's `user_ids`; an erasure rewrites those files without the user.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

META = "meta.json"
USER_IDS = "user_ids"


def meta_files(roots: Iterable[Path]) -> list[Path]:
    """Every checkpoint meta.json under the roots (a validation sibling included), once each."""
    found: dict[Path, None] = {}
    for root in roots:
        if root.is_dir():
            for path in sorted(root.rglob(META)):
                found[path.resolve()] = None
    return list(found)


def write_atomic(path: Path, text: str) -> None:
    """Replace a file's content durably and atomically, keeping its own and its directory's
    modification times: the registry picks the newest version directory by mtime, and a
    rewritten old version must not look new."""
    file_stat, dir_stat = path.stat(), path.parent.stat()
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staged, file_stat.st_mode & 0o7777)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    os.utime(path, ns=(file_stat.st_atime_ns, file_stat.st_mtime_ns))
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
    os.utime(path.parent, ns=(dir_stat.st_atime_ns, dir_stat.st_mtime_ns))


def without_user(meta: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    """The metadata without the user in its user id list, or None when it does not name them."""
    ids = meta.get(USER_IDS)
    if not isinstance(ids, list) or user_id not in ids:
        return None
    return {**meta, USER_IDS: [other for other in ids if other != user_id]}


def scrub_checkpoints(roots: Iterable[Path], user_id: str) -> int:
    """Rewrite every meta.json under the roots that names the user; how many were rewritten."""
    rewritten = 0
    for path in meta_files(roots):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not a readable checkpoint: the registry refuses it anyway
        scrubbed = without_user(meta, user_id) if isinstance(meta, dict) else None
        if scrubbed is not None:
            write_atomic(path, json.dumps(scrubbed, indent=1))
            rewritten += 1
    return rewritten
