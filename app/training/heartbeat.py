"""The retrain loop's heartbeat file, and the container health check that reads it.

`recsys retrain --every 1h --heartbeat PATH` touches PATH when it starts, after each run that
completes (a trained model or too little data) and while it waits after one; never while it
retries an unreachable database or after a failed run. So the file's age is the time since the
loop last did its job: the trainer is healthy while that age stays under the interval plus the
longest run expected. Standard library only: the check runs every few seconds in the container.

    python -m app.training.heartbeat PATH MAX_AGE_S   # exit 0 when fresh, 1 when stale or missing
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def touch(path: Path) -> None:
    """Mark the loop alive now (creating the file and its directory when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)  # touch() of an existing file may keep its time on some filesystems


def age_s(path: Path) -> float | None:
    """Seconds since the last beat; None when the loop never beat."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def is_fresh(path: Path, max_age_s: float) -> bool:
    """Whether the loop beat within `max_age_s`."""
    age = age_s(path)
    return age is not None and age <= max_age_s


def main(argv: list[str]) -> int:
    """The health check: 0 when the heartbeat is fresh, else 1 with the reason on stderr."""
    if len(argv) != 2:
        print("usage: python -m app.training.heartbeat PATH MAX_AGE_S", file=sys.stderr)
        return 2
    path, max_age = Path(argv[0]), float(argv[1])
    age = age_s(path)
    if age is None:
        print(f"no heartbeat at {path}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"heartbeat is {age:.0f}s old (limit {max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
